"""The certificates' private keys on a node: the facts script reads their owner, mode and the sha256 of
their public half (never their content), and a key that is missing, readable by other accounts, owned by
another user, not the certificate's or not loadable is replaced;
a certificate another cert provider issued is issued again."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

from mcfleet.fleet.desired import DesiredAgent, DesiredCert, DesiredHost
from mcfleet.kinds.providers import certs_diff
from mcfleet.observe.facts import CertFacts, Facts
from mcfleet.observe.manifest import Manifest
from mcfleet.observe.parse import parse_facts
from mcfleet.observe.script import ScriptInputs, facts_script

NOW = datetime.fromisoformat("2026-12-01T00:00:00+00:00")


def _cert(folder: Path, stem: str) -> Path:
    """A self-signed certificate `<stem>.pem` and its key at `<stem>.key.new` (not yet in place)."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", f"/CN={stem}.example.test", "-addext", f"subjectAltName=DNS:{stem}.example.test", "-days", "90",
         "-keyout", str(folder / f"{stem}.key.new"), "-out", str(folder / f"{stem}.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder / f"{stem}.key.new"


def test_the_facts_script_reads_each_keys_owner_mode_and_public_half_never_its_content(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    keys = {stem: _cert(certs, stem) for stem in ("good", "open", "linked", "nokey", "keycloak", "swapped", "locked")}
    keys["good"].rename(certs / "good.key")
    (certs / "good.key").chmod(0o600)
    keys["open"].rename(certs / "open.key")
    (certs / "open.key").chmod(0o644)
    (certs / "linked.key").symlink_to(keys["linked"])  # a link is never followed: no key
    keys["keycloak"].rename(certs / "keycloak.key")
    (certs / "keycloak.key").chmod(0o600)
    (certs / "swapped.key").write_text((certs / "open.key").read_text())  # another certificate's key
    (certs / "swapped.key").chmod(0o600)
    subprocess.run(["openssl", "pkey", "-in", str(keys["locked"]), "-aes256", "-passout", "pass:secret",
                    "-out", str(certs / "locked.key")], check=True, capture_output=True)  # fmt: skip
    (certs / "privkey.pem").write_text((certs / "good.key").read_text())  # a key kept as .pem (certbot's name)
    combined = certs / "combined.pem"  # a key and its chain in one file (HAProxy's form)
    combined.write_text((certs / "open.key").read_text() + (certs / "open.pem").read_text())
    inputs = ScriptInputs(users=("mcp",), uids=(850,), gids=(850,), agent_path="/srv/mcp/mcp-agent",
                          agent_unit="mcp-agent.service", cert_dir=str(certs))  # fmt: skip
    out = subprocess.run(["sh", "-c", facts_script(inputs)], capture_output=True, text=True, check=True).stdout
    facts = parse_facts("n1", out, agent_path="/srv/mcp/mcp-agent")
    seen = {Path(c.path).stem: (c.key_mode, c.key_uid, c.key_missing) for c in facts.certs}
    assert {k: v for k, v in seen.items() if k not in ("privkey", "combined")} == {
        "good": ("600", 0, False), "open": ("644", 0, False), "linked": (None, None, True),
        "nokey": (None, None, True), "keycloak": ("600", 0, False), "swapped": ("600", 0, False),
        "locked": ("600", 0, False)}  # fmt: skip
    named = {Path(c.path).stem: c for c in facts.certs}
    # whether each key is its certificate's: the public key's sha256 from openssl on the node, the
    # certificate's from cryptography here; '' for a key openssl cannot load without a passphrase
    pubs = {k: c.key_pub_sha256 == c.pub_sha256 for k, c in named.items() if c.key_pub_sha256}
    assert pubs == {"good": True, "open": True, "keycloak": True, "swapped": False}
    assert named["locked"].key_pub_sha256 == "" and named["linked"].key_pub_sha256 is None
    no_openssl = facts_script(inputs).replace("command -v openssl", "command -v no-such-openssl")
    out_without = subprocess.run(["sh", "-c", no_openssl], capture_output=True, text=True, check=True).stdout
    without = parse_facts("n1", out_without, agent_path="/srv/mcp/mcp-agent").certs
    assert [c.key_pub_sha256 for c in without] == [None] * len(without)  # unknown, not "unreadable"
    assert named["keycloak"].sans == ["keycloak.example.test"]  # a name with "key" in it is read like any
    assert named["combined"].sans == ["open.example.test"]  # its certificate, not its key
    assert named["privkey"].error is not None and not named["privkey"].sans  # nothing but a key: nothing sent
    wire = base64_words(out)
    for key in ("good", "open", "keycloak", "swapped"):
        body = max((certs / f"{key}.key").read_text().splitlines(), key=len)
        assert body not in wire, f"{key}'s private key left the node"


def base64_words(out: str) -> str:
    """The script's output with every base64 word decoded (what a reader of the wire could recover)."""
    import base64
    import binascii

    decoded = []
    for word in out.split():
        try:
            decoded.append(base64.b64decode(word, validate=True).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            decoded.append(word)
    return "\n".join(decoded)


def _host(owner: str = "mc-proxy") -> DesiredHost:
    agent = DesiredAgent(path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/srv/mcp/s",
                         unit_sha256="", sha256=None)  # fmt: skip
    cert = DesiredCert("web", "/srv/mc-proxy/certs/web.pem", ("web.example.test",), owner)
    return DesiredHost(name="n1", os="debian", arch="amd64", agent=agent, certs={"web": cert})


def _facts(**key: object) -> Facts:
    cert = CertFacts(path="/srv/mc-proxy/certs/web.pem", sans=["web.example.test"],
                     not_after="2027-03-01T00:00:00+00:00", **key)  # type: ignore[arg-type]  # fmt: skip
    return Facts(host="n1", certs=[cert])


def test_a_key_that_is_missing_exposed_or_owned_by_another_user_is_replaced() -> None:
    fine = _facts(key_uid=991, key_user="mc-proxy", key_mode="600")
    assert certs_diff(_host(), fine, Manifest(), NOW) == []
    assert certs_diff(_host(), _facts(), Manifest(), NOW) == []  # the key was not asked about: no judgement
    assert certs_diff(_host(), _facts(key_uid=991, key_user="mc-proxy", key_mode="400"), Manifest(), NOW) == []
    assert certs_diff(_host("991"), fine, Manifest(), NOW) == []  # the proxy user given by its uid
    matched = _facts(key_uid=991, key_user="mc-proxy", key_mode="600", pub_sha256="a" * 64, key_pub_sha256="a" * 64)
    assert certs_diff(_host(), matched, Manifest(), NOW) == []
    cases = {
        "exposed": (_facts(key_uid=991, key_user="mc-proxy", key_mode="644"),
                    "its private key /srv/mc-proxy/certs/web.key is mode 0644, readable by other accounts"),
        "group": (_facts(key_uid=991, key_user="mc-proxy", key_mode="640"), "is mode 0640, readable by other"),
        "owner": (_facts(key_uid=0, key_user="root", key_mode="600"),
                  "its private key /srv/mc-proxy/certs/web.key is owned by root, not the proxy's user mc-proxy"),
        "missing": (_facts(key_missing=True), "its private key /srv/mc-proxy/certs/web.key is missing"),
        "another's": (_facts(key_uid=991, key_user="mc-proxy", key_mode="600", pub_sha256="a" * 64,
                             key_pub_sha256="b" * 64),
                      "its private key /srv/mc-proxy/certs/web.key is not the certificate's"),
        "unloadable": (_facts(key_uid=991, key_user="mc-proxy", key_mode="600", pub_sha256="a" * 64,
                              key_pub_sha256=""),
                       "its private key /srv/mc-proxy/certs/web.key is not one the proxy can load"),
    }  # fmt: skip
    for case, (facts, says) in cases.items():
        [act] = certs_diff(_host(), facts, Manifest(), NOW)
        assert (act.kind, act.subject) == ("replace", "cert web"), case
        assert says in act.reason, (case, act.reason)


def test_a_certificate_another_provider_issued_is_issued_again_and_recorded_as_this_ones() -> None:
    from dataclasses import replace

    from mcfleet.kinds.providers import record_certs
    from mcfleet.observe.manifest import ManifestCert

    staging, production = "acme https://staging.example/dir", "acme https://acme.example/dir"
    host = _host()
    host.certs["web"] = replace(host.certs["web"], issuer=production)
    fine = _facts(key_uid=991, key_user="mc-proxy", key_mode="600")

    def recorded(issuer: str | None) -> Manifest:
        return Manifest(certs=[ManifestCert(name="web", path="/srv/mc-proxy/certs/web.pem", issuer=issuer)])

    [again] = certs_diff(host, fine, recorded(staging), NOW)
    assert (again.kind, again.reason) == (
        "replace", f"issued by {staging}; the fleet's cert provider is now {production}"
    )  # fmt: skip
    assert certs_diff(host, fine, recorded(production), NOW) == []
    assert certs_diff(host, fine, recorded(None), NOW) == []  # issued before mcfleet recorded it: not known

    assert [c.issuer for c in record_certs(host, recorded(staging), issued={"web"})] == [production]
    assert [c.issuer for c in record_certs(host, recorded(staging))] == [staging]  # kept: still staging's
    assert [c.issuer for c in record_certs(host, Manifest())] == [None]  # found in place, not issued here
