"""`mcfleet plan` against real lab nodes (netns + sshd per node, knot for DNS answers).

The module adds its own three nodes (planN1..3) to the worker's lab so that what other
tests do to the shared lab nodes cannot change what a *fresh* node plans; every test
that changes a node puts it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcfleet.errors import Refused
from mcfleet.fleet.load import load_fleet
from mcfleet.observe.collect import gather
from mcfleet.observe.manifest import MANIFEST_PATH
from mcfleet.plan.model import Plan
from mcfleet.plan.saved import ensure_fresh, load_plan
from tests.conftest import run_cli

pytestmark = pytest.mark.lab

NODES = ["plann1", "plann2", "plann3"]
WEB = {
    "name": "planweb",  # unique in the worker's lab: knot and caddy are shared with other tests
    "components": [{"name": "planweb", "image": "localhost/mcfleet-bb:test", "routes": [{"port": 8080, "mode": "l7"}]}],
}


@pytest.fixture(scope="module")
def plan_lab(lab: Any, knot: Any, caddy: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    async def up() -> None:
        await asyncio.gather(*(lab.add_fast_node(n, with_podman=False) for n in NODES))

    asyncio.run(up())
    root = lab.write_fleet(tmp_path_factory.mktemp("planlab") / "fleet", nodes=NODES)
    svc_dir = root / "hosts" / "plann2" / "services"
    svc_dir.mkdir(parents=True, exist_ok=True)
    (svc_dir / "planweb.json").write_text(json.dumps(WEB, indent=2))
    yield lab, root


def plan_json(root: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = run_cli("plan", str(root), "--json", *args)
    assert "Traceback" not in out + err, err
    return code, json.loads(out), err


def actions(data: dict[str, Any], host: str) -> list[str]:
    return [f"{a['phase']} {a['kind']} {a['subject']}" for a in data["actions"] if a["host"] == host]


def test_fresh_lab_plans_the_expected_creates(plan_lab: tuple[Any, Path]) -> None:
    _lab, root = plan_lab
    code, data, _err = plan_json(root, "--detailed-exitcode")
    assert code == 1, data  # lab fast nodes do not run systemd: the agent is refused, the rest still planned
    assert data["unreachable"] == {}
    for node in NODES:
        # a fast node shares this machine's /var/lib: linger is planned exactly when the file is not there
        code, _out, _err = asyncio.run(_lab.exec_in(node, ["test", "-e", "/var/lib/systemd/linger/mcp"]))
        linger = ["host create linger mcp"] if code != 0 else []
        # mcp has no subordinate range on a fresh node, and host.json names none: provisioning adds one
        ranges = []
        for label in ("subgid", "subuid"):
            code, _out, _err = asyncio.run(_lab.exec_in(node, ["grep", "-q", "^mcp:", f"/etc/{label}"]))
            ranges += [f"host create {label} mcp"] if code != 0 else []
        assert ranges, "a fresh fast node has no range for mcp"
        host = [
            "host create dir /srv/mcp",
            *linger,
            "host create podman.socket mcp",
            "host update resolvers",
            *ranges,
            "host create user mcp",
            "agent refuse agent",
        ]
        assert actions(data, node)[: len(host)] == host
        assert actions(data, node)[-1] == "manifest create manifest"
    # A cert is planned when the session's lab runs Pebble (fleet.json then names a cert provider).
    cert = ["cert create cert planweb"] if "cert" in json.loads((root / "fleet.json").read_text())["providers"] else []
    assert actions(data, "plann2")[len(host) :] == [
        *cert,
        "deploy create service planweb",
        "route create route 443/planweb.svc.mcp.example.test",
        "dns create dns planweb.svc.mcp.example.test",
        "manifest create manifest",
    ]
    dns = next(a for a in data["actions"] if a["phase"] == "dns")
    assert dns["reason"] == "no A record at the authoritative server"  # knot was asked


def test_skip_agent_plans_the_rest_and_says_the_agent_was_not_planned(plan_lab: tuple[Any, Path]) -> None:
    """`--skip agent`: what a host without systemd can have planned, exit 2 (changes), never a refusal."""
    _lab, root = plan_lab
    code, data, _err = plan_json(root, "--detailed-exitcode", "--skip", "agent")
    assert code == 2 and data["unreachable"] == {}, data
    assert not [a for a in data["actions"] if a["kind"] == "refuse" or a["phase"] == "agent"]
    for node in NODES:
        assert "host create user mcp" in actions(data, node)
        assert {"host": node, "phase": "agent", "reason": "not planned (--skip agent)"} in data["blocked"]
    code, _out, err = run_cli("plan", str(root), "--skip", "agent", "-o", str(root / "partial.json"))
    assert code == 2 and "cannot be saved" in err and not (root / "partial.json").exists()
    code, _out, err = run_cli("plan", str(root), "--skip", "agnet")
    assert code == 2 and "not a kind: agnet" in err and "one of host, agent" in err


def test_uid_changed_on_the_node_is_refused(plan_lab: tuple[Any, Path]) -> None:
    lab, root = plan_lab
    asyncio.run(lab.exec_in("plann3", ["useradd", "-u", "2850", "-U", "mcp"]))
    try:
        code, out, _err = run_cli("plan", str(root), "--on", "plann3")
    finally:
        asyncio.run(lab.exec_in("plann3", ["userdel", "mcp"]))
    assert code == 1
    line = next(x for x in out.splitlines() if x.strip().startswith("! user mcp"))
    for needle in ("user mcp on plann3", "UID 2850", "UID 850", "never change a rootless podman user's UID",
                   "declare a pin_exception for this host or free the UID on the node"):  # fmt: skip
        assert needle in line, line


def test_stopped_sshd_is_unreachable_while_others_still_plan(plan_lab: tuple[Any, Path]) -> None:
    lab, root = plan_lab
    asyncio.run(lab.stop_sshd("plann1"))
    try:
        code, out, _err = run_cli("plan", str(root), "--connect-timeout", "3")
    finally:
        asyncio.run(lab.start_sshd("plann1"))
    assert code == 1
    assert "plann1: unreachable: no address answered:" in out
    assert "plann2\n  host\n    + dir /srv/mcp" in out and "plann3\n  host\n    + dir /srv/mcp" in out
    assert "1 host unreachable (plann1)." in out


def test_stale_saved_plan_is_refused(plan_lab: tuple[Any, Path], tmp_path: Path) -> None:
    lab, root = plan_lab
    copy = tmp_path / "fleet"
    shutil.copytree(root, copy)
    saved = tmp_path / "plan.json"
    code, _out, _err = run_cli("plan", str(copy), "--on", "plann1", "-o", str(saved))
    assert code == 1 and saved.exists()  # refused (no systemd on a fast node), and saved all the same
    plan = load_plan(saved, root=copy)  # fresh: accepted

    # the node changed: facts digest differs
    asyncio.run(lab.exec_in("plann1", ["sh", "-c", "mkdir -p /srv/mcp && echo x > /srv/mcp/mcp-agent"]))
    try:
        loaded = load_fleet(copy)
        facts = asyncio.run(gather(loaded, ["plann1"]))
    finally:
        asyncio.run(lab.exec_in("plann1", ["rm", "-f", "/srv/mcp/mcp-agent"]))
    with pytest.raises(Refused, match=r"stale plan: what the nodes show changed .*plann1"):
        ensure_fresh(plan, facts)

    # the files changed
    svc = copy / "hosts" / "plann1" / "services"
    svc.mkdir(exist_ok=True)
    (svc / "web2.json").write_text(json.dumps({**WEB, "name": "web2"}))
    with pytest.raises(Refused, match="stale plan: the fleet files"):
        load_plan(saved, root=copy)


def test_json_plan_round_trips(plan_lab: tuple[Any, Path], tmp_path: Path) -> None:
    _lab, root = plan_lab
    saved = tmp_path / "plan.json"
    _code, data, _err = plan_json(root, "-o", str(saved))
    plan = Plan.model_validate(data)
    assert plan.model_dump(mode="json") == data == json.loads(saved.read_text())
    assert Plan.model_validate_json(saved.read_text()) == plan
    assert len(plan.actions) > 10 and set(plan.facts_digests) == set(NODES)


def test_wrong_pinned_host_key_is_a_refusal_with_a_clear_message(plan_lab: tuple[Any, Path], tmp_path: Path) -> None:
    _lab, root = plan_lab
    copy = tmp_path / "fleet"
    shutil.copytree(root, copy)
    h1, h2 = (copy / "hosts" / n / "host.json" for n in ("plann1", "plann2"))
    d1, d2 = json.loads(h1.read_text()), json.loads(h2.read_text())
    d1["ssh"]["host_key"] = d2["ssh"]["host_key"]
    h1.write_text(json.dumps(d1))
    code, out, err = run_cli("plan", str(copy), "--on", "plann1")
    assert code == 1
    assert "Traceback" not in out + err
    assert "! ssh host key" in out and "does not match the pinned one" in out
    assert "hint: if the node was reinstalled, verify its new key out of band" in out


def _knot_update(knot: Any, name: str, address: str | None, ttl: int = 60, *, cname: str | None = None) -> None:
    """`address` None: the name's A records deleted (and its CNAME, or with `cname` one made to that name)."""
    import dns.query
    import dns.tsig
    import dns.tsigkeyring
    import dns.update

    keyring = dns.tsigkeyring.from_text({knot.key_name: knot.secret()})
    update = dns.update.UpdateMessage(
        knot.zone, keyring=keyring, keyname=knot.key_name, keyalgorithm=dns.tsig.HMAC_SHA256
    )
    if address is None:
        update.delete(name, "A")
        update.delete(name, "CNAME")
        if cname is not None:
            update.add(name, ttl, "CNAME", cname)
    else:
        update.replace(name, ttl, "A", address)
    dns.query.tcp(update, knot.server, port=knot.port, timeout=5)


def test_dns_answers_come_from_the_authoritative_server(plan_lab: tuple[Any, Path], knot: Any) -> None:
    lab, root = plan_lab
    address = lab.node("plann2").address
    _knot_update(knot, "planweb", address)
    try:
        _code, right, _err = plan_json(root, "--on", "plann2")
        _knot_update(knot, "planweb", address, ttl=600)  # the right address, held with another TTL
        _code, slow, _err = plan_json(root, "--on", "plann2")
        _knot_update(knot, "planweb", "10.99.99.99")
        _code, wrong, _err = plan_json(root, "--on", "plann2")
        # another hand made the name a CNAME, to a name that answers the node's address: the answer carries
        # that address, but it is the target's, and an A record cannot be added beside a CNAME
        _knot_update(knot, "planalias", address)
        _knot_update(knot, "planweb", None, cname=f"planalias.{knot.zone}.")
        alias_code, alias, _err = plan_json(root, "--on", "plann2")
    finally:
        _knot_update(knot, "planweb", None)
        _knot_update(knot, "planalias", None)
    assert not [a for a in right["actions"] if a["phase"] == "dns"]  # the server already answers the node
    [ttl] = [a for a in slow["actions"] if a["phase"] == "dns"]
    assert (ttl["kind"], ttl["before"]["ttl"], ttl["after"]["ttl"]) == ("update", 600, 60), ttl
    assert ttl["reason"] == "the server holds it with TTL 600 s, the fleet's is 60 s"
    dns = [a for a in wrong["actions"] if a["phase"] == "dns"]
    assert [(a["kind"], a["before"]) for a in dns] == [("update", {"type": "A", "value": "10.99.99.99"})]
    [refused] = [a for a in alias["actions"] if a["phase"] == "dns"]
    cname = {"type": "CNAME", "value": f"planalias.{knot.zone}"}
    assert (alias_code, refused["kind"], refused["before"]) == (1, "refuse", cname)
    assert refused["reason"].startswith(f"the DNS server holds a CNAME for it (to planalias.{knot.zone})")


def test_a_dns_key_the_server_rejects_makes_the_record_changes_refusals(
    plan_lab: tuple[Any, Path], knot: Any, tmp_path: Path
) -> None:
    """Planned as changes, apply made the certificate, the containers and the route, then failed at the
    record (seen on the demo lab with a rotated key); the plan now asks the server about the key."""
    _lab, root = plan_lab
    _code, good, _err = plan_json(root, "--on", "plann2")
    assert [a["kind"] for a in good["actions"] if a["phase"] == "dns"] == ["create"]
    poison = "UE9JU09OLWRucy1rZXktbmV2ZXItcHJpbnRlZA=="
    for case, secret, key_name, said in (
        ("badsig", poison, knot.key_name, "the secret does not match (BADSIG)"),
        ("badkey", knot.secret(), "nobody-key", "it does not know the key name (BADKEY)"),
    ):
        copy = tmp_path / case
        shutil.copytree(root, copy)
        (tmp_path / f"{case}.secret").write_text(secret + "\n")
        (tmp_path / f"{case}.secret").chmod(0o600)
        fleet = json.loads((copy / "fleet.json").read_text())
        fleet["providers"]["dns"] |= {"key_file": str(tmp_path / f"{case}.secret"), "key_name": key_name}
        (copy / "fleet.json").write_text(json.dumps(fleet))
        code, data, err = plan_json(copy, "--on", "plann2")
        [dns] = [a for a in data["actions"] if a["phase"] == "dns"]
        assert dns["kind"] == "refuse", dns
        assert f"rejected the TSIG key '{key_name}': {said}, so apply could not create it" in dns["reason"]
        assert poison not in json.dumps(data) + err
        assert code == 1  # a plan with a refusal
    # a key file beside the fleet files, named relative to the fleet folder: read from there, wherever
    # mcfleet runs (it was read from the current folder: this plan runs in the checkout)
    beside = tmp_path / "beside"
    shutil.copytree(root, beside)
    (beside / "keys").mkdir()
    (beside / "keys" / "tsig.secret").write_text(knot.secret() + "\n")
    (beside / "keys" / "tsig.secret").chmod(0o600)
    fleet = json.loads((beside / "fleet.json").read_text())
    fleet["providers"]["dns"]["key_file"] = "keys/tsig.secret"
    (beside / "fleet.json").write_text(json.dumps(fleet))
    _code, data, _err = plan_json(beside, "--on", "plann2")
    assert [a["kind"] for a in data["actions"] if a["phase"] == "dns"] == ["create"], data


def test_non_root_user_escalates_with_sudo_n(plan_lab: tuple[Any, Path], tmp_path: Path) -> None:
    assert shutil.which("sudo"), "sudo is not installed: scripts/setup.sh installs it (apt-get install -y sudo)"
    lab, root = plan_lab
    copy = tmp_path / "fleet"
    shutil.copytree(root, copy)
    host_file = copy / "hosts" / "plann3" / "host.json"
    data = json.loads(host_file.read_text())
    data["ssh"]["user"] = "deploy"
    host_file.write_text(json.dumps(data))
    rule = "/etc/sudoers.d/mcfleet-deploy"
    pub = Path(lab.client_key).with_suffix(".pub").read_text().strip()
    home = "/srv/deploy-home"  # the node's private /srv: sshd reads authorized_keys as the user
    setup = (
        f"useradd -U -m -d {home} deploy && usermod -p '*' deploy && "  # '*': sshd refuses a locked ('!') account
        f"mkdir -p {home}/.ssh && echo '{pub}' > {home}/.ssh/authorized_keys && chown -R deploy: {home} && "
        f"echo 'deploy ALL=(ALL) NOPASSWD: ALL' > {rule} && chmod 440 {rule}"
    )
    asyncio.run(lab.exec_in("plann3", ["sh", "-c", setup]))
    try:
        loaded = load_fleet(copy)
        facts = asyncio.run(gather(loaded, ["plann3"]))["plann3"]
        asyncio.run(lab.exec_in("plann3", ["rm", "-f", rule]))
        denied = asyncio.run(gather(loaded, ["plann3"]))["plann3"]
    finally:
        asyncio.run(lab.exec_in("plann3", ["sh", "-c", f"rm -f {rule}; userdel -r deploy"]))
    assert facts.kind == "facts", facts
    assert facts.euid == 0  # the script ran as root through `sudo -n`
    assert denied.kind == "unreachable" and denied.cause == "escalation"  # reached; the sudo rule is missing
    assert "password is required" in denied.reason  # sudo -n fails fast instead of prompting


def _caddy(caddy: Any, method: str, path: str, body: object = None) -> None:
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{caddy.admin_url}{path}", data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=5):
        pass


def test_route_drift_is_seen_at_the_proxy(plan_lab: tuple[Any, Path], caddy: Any) -> None:
    from mcfleet.fleet.desired import desired_state

    lab, root = plan_lab
    hostname = "planweb.svc.mcp.example.test"
    route = desired_state(load_fleet(root))["plann2"].routes[f"443/{hostname}"]
    manifest = {"routes": [{"hostname": hostname, "mode": "l7", "service": "planweb", "backend": route.backend}]}
    path = MANIFEST_PATH
    write = f"mkdir -p $(dirname {path}) && cat > {path}"
    asyncio.run(lab.exec_in("plann2", ["sh", "-c", write], input_=json.dumps(manifest).encode()))
    caddy_route = {
        "@id": "plan-test-planweb",
        "match": [{"host": [hostname]}],
        "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": route.backend}]}],
    }
    _caddy(caddy, "POST", f"/config/apps/http/servers/{caddy.server}/routes", caddy_route)
    try:
        _code, served, _err = plan_json(root, "--on", "plann2")
        _caddy(caddy, "DELETE", "/id/plan-test-planweb")
        _code, missing, _err = plan_json(root, "--on", "plann2")
    finally:
        asyncio.run(lab.exec_in("plann2", ["rm", "-f", path]))
        with contextlib.suppress(OSError):
            _caddy(caddy, "DELETE", "/id/plan-test-planweb")
    assert not [a for a in served["actions"] if a["phase"] == "route"]  # manifest and proxy agree
    drift = [a for a in missing["actions"] if a["phase"] == "route"]
    assert [(a["kind"], a["reason"]) for a in drift] == [("update", "drift: the proxy serves no route for it")]
