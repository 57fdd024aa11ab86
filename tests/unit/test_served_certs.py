"""The certificate a proxy serves against the file it was given: a proxy reads its certificate files when it
loads them, so a file changed since (an apply stopped between the cert and route steps, a copy by hand) is
not what clients get.  The facts script asks as a client would (openssl s_client, the route's name as SNI,
at the node's address); the plan lists the route as drift, and apply's re-add makes the proxy read the file."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mcfleet.fleet.desired import DesiredAgent, DesiredCert, DesiredHost, DesiredRoute
from mcfleet.kinds.providers import routes_diff
from mcfleet.observe.certs import parse_cert
from mcfleet.observe.facts import CertFacts, Facts
from mcfleet.observe.manifest import Manifest, ManifestRoute
from mcfleet.observe.parse import parse_facts, parse_served
from mcfleet.observe.script import SERVED_AT_ONCE, ScriptInputs, facts_script
from mcfleet.transport.local import LocalNode
from tests.certs import self_signed

NAME = "web.example.test"
PEM = f"/srv/mc-proxy/certs/{NAME}.pem"
BACKEND = "10.0.0.5:20001"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """openssl s_server on a free 127.0.0.1 port with a self-signed certificate for NAME: (address:port, pem)."""
    pem, key = self_signed(NAME, tmp_path / "served")
    server = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", str(pem), "-key", str(key),
                               "-www"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        while line and not line.startswith("ACCEPT"):
            line = server.stdout.readline()
        assert line.startswith("ACCEPT "), "openssl s_server did not start"
        yield line.split()[1], pem
    finally:
        server.kill()
        server.communicate()  # reaps it and closes its stdout


def _served(served: tuple[tuple[str, str], ...], cert_dir: Path) -> Facts:
    inp = ScriptInputs(users=("root",), uids=(0,), gids=(0,), agent_path="/nonexistent/agent",
                       agent_unit="none.service", cert_dir=str(cert_dir), served=served)  # fmt: skip
    result = asyncio.run(LocalNode().run(facts_script(inp), timeout=60))
    assert result.exit_status == 0, result.stderr
    return parse_facts("local", result.stdout, agent_path=inp.agent_path)


def test_the_facts_script_gets_the_certificate_a_client_gets(tls_server: tuple[str, Path], tmp_path: Path) -> None:
    target, pem = tls_server
    on_file, _ = self_signed(NAME, tmp_path / "certs")  # another certificate for the same name
    closed = "127.0.0.1:1"  # nothing listens: no handshake, no certificate
    facts = _served(((target, f"443/{NAME}"), (closed, f"8443/{NAME}")), tmp_path / "certs")
    served = parse_cert(str(pem), pem.read_text()).sha256
    assert served and facts.served_certs == {f"443/{NAME}": served, f"8443/{NAME}": ""}
    [held] = facts.certs
    assert held.sha256 == parse_cert(str(on_file), on_file.read_text()).sha256 != served
    assert _served((), tmp_path / "certs").served_certs is None  # not asked: no judgement
    with socket.socket() as hung:  # takes connections (the kernel's backlog) and never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        at = f"127.0.0.1:{hung.getsockname()[1]}"
        more = tuple((target, f"{9000 + i}/{NAME}") for i in range(SERVED_AT_ONCE - 1))  # one batch and one
        after = _served(((at, f"443/{NAME}"), (target, f"8443/{NAME}"), *more), tmp_path / "certs").served_certs
    # one timeout: the routes asked with the hung one are answered, the batches after it are not asked (unknown)
    assert after is not None and after.pop(f"443/{NAME}") == "" and len(after) == SERVED_AT_ONCE - 1
    assert set(after.values()) == {served} and f"{9000 + SERVED_AT_ONCE - 2}/{NAME}" not in after
    without = facts_script(ScriptInputs(users=(), uids=(), gids=(), agent_path="/a", agent_unit="a.service",
                                        served=((target, f"443/{NAME}"),)))  # fmt: skip
    assert "command -v openssl" in without  # a node without openssl answers `absent`: unknown, not drift
    assert parse_served("absent\n") is None


def _host() -> DesiredHost:
    agent = DesiredAgent(path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/srv/mcp/s",
                         unit_sha256="", sha256=None)  # fmt: skip
    route = DesiredRoute(hostname=NAME, mode="l7", service="web", service_host="n1", backend=BACKEND)
    cert = DesiredCert("web", PEM, (NAME,), "mc-proxy")
    return DesiredHost(name="n1", os="debian", arch="amd64", agent=agent, routes={route.key: route},
                       certs={"web": cert})  # fmt: skip


def _facts(on_file: str | None, served: dict[str, str] | None, held: dict[str, str] | None = None) -> Facts:
    cert = CertFacts(path=PEM, sans=[NAME], not_after="2027-03-01T00:00:00+00:00", sha256=on_file)
    return Facts(host="n1", certs=[cert], live_routes={f"443/{NAME}": BACKEND}, served_certs=served, live_certs=held)


def test_a_route_whose_proxy_holds_another_certificate_file_or_none_is_drift() -> None:
    """What the proxy's own API says it holds for the route (Caddy's tagged load_files entry, mc-proxy's
    tls_cert): none, after its entry was removed by another hand, or another file."""
    applied = Manifest(routes=[ManifestRoute(hostname=NAME, mode="l7", service="web", backend=BACKEND)])
    key = f"443/{NAME}"
    said = {}
    for held in ("", "/etc/ssl/other.pem"):
        [act] = routes_diff(_host(), _facts("b" * 64, None, {key: held}), applied)
        assert (act.kind, act.subject) == ("update", f"route {key}")
        assert isinstance(act.before, dict) and isinstance(act.after, dict)
        assert (act.before["certificate"], act.after["certificate"]) == (held or "(none)", PEM)
        said[held] = act.reason
    assert said[""].startswith("drift: the proxy holds no certificate (its TLS entry was removed) for it, not")
    assert said["/etc/ssl/other.pem"].startswith(
        f"drift: the proxy holds the certificate file /etc/ssl/other.pem for it, not {PEM}"
    )
    assert routes_diff(_host(), _facts("b" * 64, None, {key: PEM}), applied) == []
    assert routes_diff(_host(), _facts("b" * 64, None, {}), applied) == []  # not a TLS route the proxy listed


def test_a_route_served_with_another_certificate_than_its_file_is_drift_apply_re_adds() -> None:
    applied = Manifest(routes=[ManifestRoute(hostname=NAME, mode="l7", service="web", backend=BACKEND)])
    key = f"443/{NAME}"
    [act] = routes_diff(_host(), _facts("b" * 64, {key: "a" * 64}), applied)
    assert (act.kind, act.subject) == ("update", f"route {key}")
    assert act.reason.startswith(f"drift: the proxy serves another certificate for {NAME} than {PEM} holds")
    assert isinstance(act.before, dict) and isinstance(act.after, dict)
    assert (act.before["certificate"], act.after["certificate"]) == ("sha256:" + "a" * 12, "sha256:" + "b" * 12)
    unknown = [("b" * 64, {key: "b" * 64}), ("b" * 64, None), ("b" * 64, {key: ""}), (None, {key: "a" * 64})]
    for on_file, served in unknown:  # the same, not asked, no handshake, no file read: nothing to say
        assert routes_diff(_host(), _facts(on_file, served), applied) == [], (on_file, served)
    l4 = _host()
    l4.routes[key] = replace(l4.routes[key], mode="l4")
    assert not [
        a
        for a in routes_diff(
            l4,
            _facts("b" * 64, {key: "a" * 64}),
            Manifest(routes=[ManifestRoute(hostname=NAME, mode="l4", service="web", backend=BACKEND)]),
        )
        if "certificate" in a.reason
    ]


def test_the_served_certificates_are_asked_only_where_a_route_provider_ends_tls(tmp_path: Path) -> None:
    """A fleet without providers.route has no proxy of mcfleet's on the node: a handshake there would get
    nothing and read as an outage (`mcfleet status`: "no TLS") on every host with a declared l7 route."""
    import json

    from mcfleet.fleet.desired import desired_state
    from mcfleet.observe.collect import script_inputs
    from tests.unit.test_plan_cases import CASES, write_case_fleet

    case = json.loads((CASES / "in-sync.json").read_text())  # rift: web with an l7 route (and its certificate)
    asked = {}
    for label, providers in (("none", {}), ("caddy", {"route": {"kind": "caddy", "admin_url": "unix:/run/c.sock"}})):
        case["fleet"] = {"providers": providers}
        loaded = write_case_fleet(tmp_path / label, case)
        asked[label] = script_inputs(loaded, loaded.hosts["rift"], desired_state(loaded)["rift"]).served
    assert asked["none"] == ()
    assert [key for _target, key in asked["caddy"]] == ["443/web.svc.mcp.example.test"]
