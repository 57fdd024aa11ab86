"""A plan with record changes asks the DNS provider whether it would take them (plan/planner.py
hold_unwritable): a key the server rejects turns them into refusals, and the manifest action
they alone called for goes with them."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from mcfleet.fleet.load import LoadedFleet
from mcfleet.kinds import KINDS
from mcfleet.kinds.providers import DnsKind
from mcfleet.plan.planner import build, hold_unwritable
from tests.json_server import serve_json
from tests.unit.test_plan_cases import CASES, case_facts, write_case_fleet


@pytest.fixture
def acme_directory() -> Iterator[str]:
    """An HTTP server whose /dir answers an ACME directory (the URLs it names are not served) and whose
    other paths answer an empty JSON object."""

    with serve_json(lambda path: {"newOrder": "http://127.0.0.1:9/new-order"} if path == "/dir" else {}) as url:
        yield url


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


REJECTED = ("the DNS server at 10.0.0.53:53 rejected the TSIG key 'mcfleet-key': the secret does not match (BADSIG)",
            "check that key_file holds the secret")  # fmt: skip


class RejectingServer(DnsKind):
    """The DNS kind, with the server's verdict on the key given (the real question is asked of Knot in
    tests/integration/test_plan_lab.py and test_providers_lab.py)."""

    def __init__(self, verdict: tuple[str, str | None] | None) -> None:
        self.verdict = verdict
        self.asked = 0

    async def write_refusal(self, loaded: LoadedFleet) -> tuple[str, str | None] | None:
        self.asked += 1
        return self.verdict


def _plan(tmp_path: Path, edit: str) -> tuple[RejectingServer, list[str], list[str]]:
    """in-sync.json with `edit` made to the node: (the kind, the actions before, the actions after the check)."""
    case = json.loads((CASES / "in-sync.json").read_text())
    facts = case["facts"]["rift"]
    if edit == "record gone":  # never written (the manifest lacks it too): a create, and a manifest update
        facts["dns"] = {"web.svc.mcp.example.test": []}
        facts["manifest"]["dns"] = []
    elif edit == "container exited":  # no record change
        facts["containers"] = [{"name": "web", "state": "exited"}]
    loaded = write_case_fleet(tmp_path, case)
    observed = case_facts(loaded, case)
    plan = build(loaded, observed, now=datetime.fromisoformat(case["now"]), check_backends=False)
    kind = RejectingServer(REJECTED)
    kinds = [kind if isinstance(k, DnsKind) else k for k in KINDS]
    from mcfleet.fleet.desired import desired_state

    held = asyncio.run(hold_unwritable(loaded, plan, observed, desired_state(loaded), kinds))

    def lines(actions: list) -> list[str]:  # type: ignore[type-arg]
        return [f"{a.phase} {a.kind} {a.subject}" for a in actions]

    assert all(a.reason.startswith(REJECTED[0]) for a in held.actions if a.kind == "refuse")
    return kind, lines(plan.actions), lines(held.actions)


def test_record_changes_become_refusals_and_the_manifest_change_they_called_for_goes(tmp_path: Path) -> None:
    kind, before, after = _plan(tmp_path, "record gone")
    assert before == ["dns create dns web.svc.mcp.example.test", "manifest update manifest"]
    assert after == ["dns refuse dns web.svc.mcp.example.test"]
    assert kind.asked == 1


def test_a_plan_without_record_changes_never_asks_the_server(tmp_path: Path) -> None:
    kind, before, after = _plan(tmp_path, "container exited")
    assert before == after
    assert "deploy update service web" in after
    assert kind.asked == 0


def test_the_dns_kind_asks_the_fleets_provider(tmp_path: Path) -> None:
    """DnsKind.write_refusal with the fleet's own provider: MCNS (its contract fake) with a token it refuses."""
    from tests.contract_fakes.mcns import run_mcns

    token = tmp_path / "token"
    token.write_text("an-old-token\n")
    token.chmod(0o600)
    with run_mcns("svc.mcp.example.test", "the-right-token") as (url, state):
        case = json.loads((CASES / "in-sync.json").read_text())
        case["fleet"] = {"providers": {"dns": {"kind": "mcns", "url": url, "token_file": str(token)}}}
        loaded = write_case_fleet(tmp_path / "fleet", case)
        refusal = asyncio.run(DnsKind().write_refusal(loaded))
        assert refusal is not None and refusal[0].startswith("MCNS rejects the MCIAS token of token_file")
        token.write_text("the-right-token\n")
        assert asyncio.run(DnsKind().write_refusal(loaded)) is None
        token.write_text(jwt(exp=1767225600) + "\n")  # 2026-01-01: refused before MCNS is asked
        refusal = asyncio.run(DnsKind().write_refusal(loaded))
        assert refusal == (
            f"the MCIAS token in {token} expired on 2026-01-01 00:00 UTC (its `exp` claim)",
            f"have MCIAS issue a new token for the service account and write it to {token}",
        )
        token.write_text("the-right-token\n")
        token.chmod(0o640)  # MCNS would take it: refused before it is sent
        calls = len(state.calls)
        refusal = asyncio.run(DnsKind().write_refusal(loaded))
        assert refusal == (
            f"the MCIAS token file {token} is open to other users (mode 0640): mcfleet does not use a credential "
            "others can read or replace",
            f"chmod 600 {token} (and replace the MCIAS token if others may have read it)",
        )
        assert len(state.calls) == calls


def jwt(**claims: object) -> str:
    """An MCIAS-style bearer token: a JWT with these claims (signature not checked by mcfleet)."""
    import base64

    def part(data: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'EdDSA', 'typ': 'JWT'})}.{part({'sub': 'mcp-agent', **claims})}.c2lnbmF0dXJl"


def test_a_jwts_exp_is_read_and_nothing_else_is_judged() -> None:
    from mcfleet.providers.base import jwt_expired_at

    now = datetime.fromisoformat("2026-12-06T00:00:00+00:00")
    assert jwt_expired_at(jwt(exp=1767225600), now) == datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    assert jwt_expired_at(jwt(exp=1806969600), now) is None  # 2027-04-03, as the platform's mcp-master token
    unknown = [jwt(), jwt(exp="soon"), jwt(exp=True), "opaque-token", "a.b.c", "a.%%%.c", jwt(exp=10**20)]
    assert [jwt_expired_at(t, now) for t in unknown] == [None] * len(unknown)


def test_certificates_to_issue_are_refused_when_the_providers_credential_cannot_be_used(
    tmp_path: Path, acme_directory: str, closed_port: int
) -> None:
    """The cert kind's own question, with the fleet's providers: a Metacrypt token file that cannot be
    read, an ACME account key file that is not a key, a CA bundle that is gone, an ACME server that does
    not answer or is no ACME server.  A missing ACME account key is made on first use: no refusal."""
    from mcfleet.kinds.providers import CertKind

    case = json.loads((CASES / "in-sync.json").read_text())
    token = tmp_path / "token"
    ca, closed = acme_directory, closed_port
    cases = {
        "metacrypt, no token file": ({"kind": "metacrypt", "url": "https://ca.example.test", "token_file": str(token)},
                                     f"cannot read the MCIAS token file {token}"),
        "metacrypt, token expired": ({"kind": "metacrypt", "url": "https://ca.example.test",
                                      "token_file": str(tmp_path / "old-token")},
                                     f"the MCIAS token in {tmp_path / 'old-token'} expired on 2026-01-01 00:00 UTC"),
        "acme, not a key": ({"kind": "acme", "directory": "https://ca.example.test/dir",
                             "account_key_file": str(tmp_path / "not-a-key.pem")},
                            f"the ACME account key file {tmp_path / 'not-a-key.pem'} is not a readable PEM"),
        "acme, CA bundle gone": ({"kind": "acme", "directory": "https://ca.example.test/dir",
                                  "account_key_file": str(tmp_path / "made-later.pem"),
                                  "ca_file": "/nonexistent/ca.pem"},
                                 "cannot read the CA bundle /nonexistent/ca.pem"),
        "acme, key made on first use": ({"kind": "acme", "directory": f"{ca}/dir",
                                         "account_key_file": str(tmp_path / "made-later.pem")}, None),
        "acme, server down": ({"kind": "acme", "directory": f"http://127.0.0.1:{closed}/dir",
                               "account_key_file": str(tmp_path / "made-later.pem")},
                              f"the ACME server at 127.0.0.1:{closed} is unreachable: "),
        "acme, not a directory": ({"kind": "acme", "directory": f"{ca}/other",
                                   "account_key_file": str(tmp_path / "made-later.pem")},
                                  f"{ca}/other is not an ACME directory (its answer names no newOrder URL)"),
        "acme, key others can read": ({"kind": "acme", "directory": f"{ca}/dir",
                                       "account_key_file": str(tmp_path / "open-key.pem")},
                                      f"the ACME account key file {tmp_path / 'open-key.pem'} is open to other users "
                                      "(mode 0644)"),
    }  # fmt: skip
    (tmp_path / "not-a-key.pem").write_text("not a key\n")
    (tmp_path / "not-a-key.pem").chmod(0o600)
    (tmp_path / "old-token").write_text(jwt(exp=1767225600) + "\n")
    (tmp_path / "old-token").chmod(0o600)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "open-key.pem").write_bytes(pem)
    (tmp_path / "open-key.pem").chmod(0o644)
    for i, (name, (provider, said)) in enumerate(cases.items()):
        case["fleet"] = {"providers": {"cert": provider}}
        loaded = write_case_fleet(tmp_path / f"fleet{i}", case)
        refusal = asyncio.run(CertKind().write_refusal(loaded))
        if said is None:
            assert refusal is None, name
        else:
            assert refusal is not None and refusal[0].startswith(said), (name, refusal)
    assert not (tmp_path / "made-later.pem").exists()  # asking never makes the account key


def test_a_certificate_to_issue_is_refused_with_the_cert_kinds_answer(tmp_path: Path) -> None:
    from mcfleet.kinds.providers import CertKind

    class NoToken(CertKind):
        async def write_refusal(self, loaded: LoadedFleet) -> tuple[str, str | None] | None:
            return "cannot read the MCIAS token file /k/token: No such file or directory", "create /k/token"

    case = json.loads((CASES / "in-sync.json").read_text())
    case["facts"]["rift"]["certs"] = []  # the certificate is gone from the node: issued again
    loaded = write_case_fleet(tmp_path, case)
    observed = case_facts(loaded, case)
    plan = build(loaded, observed, now=datetime.fromisoformat(case["now"]), check_backends=False)
    assert [f"{a.phase} {a.kind} {a.subject}" for a in plan.actions if a.phase == "cert"] == ["cert create cert web"]
    kinds = [NoToken() if isinstance(k, CertKind) else k for k in KINDS]
    from mcfleet.fleet.desired import desired_state

    held = asyncio.run(hold_unwritable(loaded, plan, observed, desired_state(loaded), kinds))
    [cert] = [a for a in held.actions if a.phase == "cert"]
    assert cert.kind == "refuse" and cert.reason.startswith("cannot read the MCIAS token file /k/token")
    assert ", so apply could not issue it (" in cert.reason and cert.hint == "create /k/token"
