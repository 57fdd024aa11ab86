"""The cert, DNS and route steps with the seed-native backends, against their contract fakes:
Metacrypt issues, the cert lands on the (local) proxy node, mc-proxy gets the routes, MCNS the
records; a second run with no actions touches nothing; removal deletes only what was recorded;
a provider that is down fails the step with its message and what to do.  Every secret file
holds a poison value that must appear in no outcome message."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcfleet.fleet.load import load_fleet
from mcfleet.kinds.providers import record_routes
from mcfleet.plan.model import Action
from mcfleet.providers.steps import apply_certs, apply_dns, apply_routes, live_routes
from mcfleet.transport.local import LocalNode
from tests.contract_fakes.mcns import run_mcns
from tests.contract_fakes.mcproxy import start_mcproxy
from tests.contract_fakes.metacrypt import run_metacrypt

ZONE = "svc.mcp.example.test"
POISON = "POISON-7f3a9c-secret-never-printed"
HELPER_SOURCE = Path(__file__).resolve().parents[2] / "python" / "mcfleet" / "apply" / "node_helper.py"


@dataclass(frozen=True)
class Cert:
    name: str
    path: str
    sans: tuple[str, ...]


@dataclass(frozen=True)
class Record:
    name: str
    value: str
    type: str = "A"


@dataclass(frozen=True)
class Route:
    hostname: str
    mode: str
    service: str | None
    backend: str
    listener: int = 443


@dataclass
class Desired:
    name: str = "rift"
    certs: dict[str, Cert] = field(default_factory=dict)
    records: dict[str, Record] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)


def _fleet(root: Path, mcns: str, metacrypt: str, sock: str) -> None:
    token = root / "mcias-token"
    token.write_text(POISON + "\n")
    token.chmod(0o600)
    fleet = {
        "zone": ZONE,
        "providers": {
            "dns": {"kind": "mcns", "url": mcns, "token_file": str(token)},
            "cert": {"kind": "metacrypt", "url": metacrypt, "token_file": str(token)},
            "route": {"kind": "mc-proxy", "socket": sock, "user": str(os.getuid())},
        },
    }
    (root / "fleet.json").write_text(json.dumps(fleet))
    (root / "hosts").mkdir()


def _act(phase: str, kind: str, subject: str, before: object = None) -> Action:
    return Action(host="rift", phase=phase, kind=kind, subject=subject, before=before)  # type: ignore[arg-type]


def test_native_steps_issue_route_register_and_remove(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    web, api = f"mcr.{ZONE}", f"mcr.{ZONE}"
    desired = Desired(
        certs={"mcr": Cert("mcr", str(certs / "mcr.pem"), (web,))},
        records={web: Record(web, "10.0.0.1")},
        routes={
            f"443/{web}": Route(web, "l7", "mcr", "127.0.0.1:28080"),
            f"8443/{api}": Route(api, "l4", "mcr", "127.0.0.1:28443", 8443),
            f"9443/{api}": Route(api, "l4", "mcr", "127.0.0.1:29443", 9443),
        },
    )
    node = HelperFromSource(tmp_path / "store")  # root's store: a scratch folder, not this machine's
    sock = str(tmp_path / "mc-proxy.sock")

    async def scenario() -> None:
        server, proxy = await start_mcproxy(sock)
        try:
            with run_mcns(ZONE, POISON) as (mcns_url, mcns), run_metacrypt(POISON, (f".{ZONE}",)) as (mc_url, ca):
                _fleet(tmp_path, mcns_url, mc_url, sock)
                loaded = load_fleet(tmp_path)
                cert = await apply_certs(loaded, node, desired, [_act("cert", "create", "cert mcr")])
                assert cert.status == "changed", cert.message
                assert ca.issued == [web]
                assert (certs / "mcr.key").stat().st_mode & 0o777 == 0o600
                route_actions = [_act("route", "create", f"route {k}") for k in desired.routes]
                routes = await apply_routes(loaded, node, desired, route_actions)
                assert routes.status == "changed", routes.message
                live = await live_routes(loaded, node)
                assert {k: (r.backend, r.mode) for k, r in live.items()} == {
                    k: (r.backend, r.mode) for k, r in desired.routes.items()
                }
                assert live[f"443/{web}"].cert == str(certs / "mcr.pem")
                dns = await apply_dns(loaded, desired, [_act("dns", "create", f"dns {web}")])
                assert dns.status == "changed", dns.message
                assert [r["value"] for r in mcns.records.values()] == ["10.0.0.1"]

                # converged: no actions -> no provider call that writes
                writes = (len(proxy.calls), len(ca.issued), mcns.serial)
                for step in (
                    apply_certs(loaded, node, desired, []),
                    apply_routes(loaded, node, desired, []),
                    apply_dns(loaded, desired, []),
                ):
                    assert (await step).status == "unchanged"
                assert (len(proxy.calls), len(ca.issued), mcns.serial) == writes

                # removal: DNS, then routes, then (the deploy step) containers; only recorded names
                mcns.records[99] = {"id": 99, "name": f"manual.{ZONE}", "type": "A", "value": "10.9.9.9", "ttl": 60}
                gone = Desired()
                assert (await apply_dns(loaded, gone, [_act("dns", "delete", f"dns {web}")])).status == "changed"
                recorded = {f"{r.listener}/{r.hostname}": r for r in record_routes(desired)}
                deletes = [_act("route", "delete", f"route {k}", {"mode": r.mode}) for k, r in recorded.items()]
                assert (await apply_routes(loaded, node, gone, deletes)).status == "changed"
                assert await live_routes(loaded, node) == {}
                assert [r["name"] for r in mcns.records.values()] == [f"manual.{ZONE}"]  # never created by us

                # down: the step fails with the provider's message and what to do, no secret in it
                mcns.down = True
                failed = await apply_dns(loaded, desired, [_act("dns", "create", f"dns {web}")])
                assert failed.status == "failed" and "503" in failed.message and "what to do" in failed.message
                assert POISON not in failed.message + cert.message + routes.message + dns.message
        finally:
            await server.stop(None)

    asyncio.run(scenario())


def test_a_dns_server_that_keeps_its_own_ttl_fails_the_step_with_what_to_set(tmp_path: Path) -> None:
    """Written with providers.dns.ttl, held with another: every plan would list the record again (the TTL
    differs), and every apply write it again.  The step says so once, with the TTL to configure."""
    web = f"mcr.{ZONE}"
    desired = Desired(records={web: Record(web, "10.0.0.1")})

    async def scenario() -> None:
        with run_mcns(ZONE, POISON) as (mcns_url, mcns):
            mcns.min_ttl = 3600
            _fleet(tmp_path, mcns_url, "http://127.0.0.1:9", str(tmp_path / "none.sock"))
            loaded = load_fleet(tmp_path)
            step = await apply_dns(loaded, desired, [_act("dns", "create", f"dns {web}")])
            assert step.status == "failed", step.message
            assert f"{web} has TTL 3600 s, not providers.dns.ttl 300 s" in step.message
            mcns.min_ttl = 0
            assert (await apply_dns(loaded, desired, [_act("dns", "update", f"dns {web}")])).status == "changed"

    asyncio.run(scenario())


def test_an_aaaa_record_leading_elsewhere_is_planned_and_removed_and_the_hosts_own_kept(tmp_path: Path) -> None:
    """IPv6 clients take a name's AAAA record over its A: one another hand put there (not an IPv6 address of
    the host in host.json) sends them elsewhere.  Read from MCNS (its contract fake) into the plan's facts,
    listed by the DNS kind, and removed by apply's step, which leaves the host's own AAAA and checks."""
    from mcfleet.fleet.desired import DesiredRecord
    from mcfleet.kinds.providers import dns_diff
    from mcfleet.observe.facts import Facts
    from mcfleet.observe.manifest import Manifest
    from mcfleet.providers.read import dns_answers
    from tests.unit.test_served_certs import _host

    web = f"mcr.{ZONE}"
    record = DesiredRecord(web, "10.0.0.1", v6=("2001:db8::1",))  # the host's own IPv6 address in host.json
    host = _host()
    host.records[web] = record

    async def scenario() -> None:
        with run_mcns(ZONE, POISON) as (mcns_url, mcns):
            _fleet(tmp_path, mcns_url, "http://127.0.0.1:9", str(tmp_path / "none.sock"))
            loaded = load_fleet(tmp_path)
            for value, rtype in (("10.0.0.1", "A"), ("2001:db8::1", "AAAA"), ("2001:0db8::66", "AAAA")):
                mcns.records[len(mcns.records) + 1] = {"id": len(mcns.records) + 1, "name": web, "type": rtype,
                                                       "value": value, "ttl": 300}  # fmt: skip
            read = await dns_answers(loaded, [web])
            assert read.v6 == {web: ["2001:0db8::66", "2001:db8::1"]}
            facts = Facts(host="n1").model_copy(update=read.facts_update({web}))
            [act] = dns_diff(host, facts, Manifest())
            assert (act.kind, act.subject, act.before) == (
                "update",
                f"dns {web}",
                {"type": "A", "value": "10.0.0.1", "aaaa": ["2001:0db8::66"]},
            )
            assert act.reason.startswith("drift: the server also holds AAAA 2001:0db8::66 at it, which IPv6 clients")
            asked = len(mcns.calls)
            step = await apply_dns(loaded, Desired(records={web: Record(web, "10.0.0.1")}), [act])
            assert step.status == "changed", step.message
            assert "AAAA 2001:0db8::66 removed" in step.message and "->" not in step.message
            # the A record, already right, is not sent again: one read to find the AAAA, its delete, the check
            assert [c.split()[0] for c in mcns.calls[asked:]] == ["GET", "DELETE", "GET"]
            assert sorted((r["type"], r["value"]) for r in mcns.records.values()) == [
                ("A", "10.0.0.1"),
                ("AAAA", "2001:db8::1"),
            ]
            after = Facts(host="n1").model_copy(update=(await dns_answers(loaded, [web])).facts_update({web}))
            assert dns_diff(host, after, Manifest()) == []  # the host's own AAAA is no drift

    asyncio.run(scenario())


class HelperFromSource(LocalNode):
    """A local node whose root store is a scratch folder and whose helper is the package's own source."""

    def __init__(self, store: Path) -> None:
        self.store = str(store)

    async def run(self, command: Any, **kw: Any) -> Any:
        if isinstance(command, list) and command[:1] == ["python3"]:
            command = ["python3", str(HELPER_SOURCE), *command[2:]]
        return await super().run(command, **kw)


def test_an_exposed_key_is_made_0600_even_when_the_new_one_cannot_be_issued(tmp_path: Path) -> None:
    """The plan replaces a key readable by others; the CA does not answer: the step fails, and the old key
    is no longer readable by others meanwhile.  Root's helper does it through the file's descriptor: a
    link in the key's place (which the proxy's user could plant) is left alone, as is its target."""
    import subprocess

    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
         "/CN=web", "-days", "90", "-keyout", str(certs / "web.key"), "-out", str(certs / "web.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    (certs / "web.key").chmod(0o644)
    os.chown(certs / "web.key", 4242, 4242)
    (certs / "other.pem").write_text((certs / "web.pem").read_text())
    victim = tmp_path / "victim"
    victim.write_text("not a key")
    victim.chmod(0o644)
    (certs / "other.key").symlink_to(victim)
    desired = Desired(certs={n: Cert(n, str(certs / f"{n}.pem"), (f"{n}.{ZONE}",)) for n in ("web", "other")})
    _fleet(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", str(tmp_path / "none.sock"))  # nothing answers
    loaded = load_fleet(tmp_path)
    acts = [_act("cert", "replace", "cert web"), _act("cert", "replace", "cert other")]
    step = asyncio.run(apply_certs(loaded, HelperFromSource(tmp_path / "store"), desired, acts))
    assert step.status == "failed", step.message
    key = (certs / "web.key").stat()
    assert (key.st_mode & 0o777, key.st_uid) == (0o600, os.getuid())  # the route provider's user (this test's)
    assert victim.stat().st_mode & 0o777 == 0o644 and victim.stat().st_uid == os.getuid()  # through a link: never


def test_a_certificate_is_never_installed_through_a_linked_certificates_folder(tmp_path: Path) -> None:
    """The certificates' folder may be the proxy's account's to write (mc-proxy's /srv/mc-proxy): root's
    install goes through its node helper, which refuses a link on the way instead of writing the new key
    wherever it points (a shell `mkdir -p`, `> file`, `chown` all follow it)."""
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    (tmp_path / "certs").symlink_to(elsewhere)
    web = f"mcr.{ZONE}"
    desired = Desired(certs={"mcr": Cert("mcr", str(tmp_path / "certs" / "mcr.pem"), (web,))})

    async def scenario() -> None:
        with run_metacrypt(POISON, (f".{ZONE}",)) as (mc_url, ca):
            _fleet(tmp_path, "http://127.0.0.1:9", mc_url, str(tmp_path / "none.sock"))
            step = await apply_certs(load_fleet(tmp_path), HelperFromSource(tmp_path / "store"), desired,
                                     [_act("cert", "create", "cert mcr")])  # fmt: skip
            assert step.status == "failed" and "refusing to follow it" in step.message, step.message
            assert ca.issued == [web]  # issued, then refused on the node

    asyncio.run(scenario())
    assert list(elsewhere.iterdir()) == []


def test_a_dns_step_cut_by_ctrl_c_still_leaves_what_the_server_took_for_the_manifest(tmp_path: Path) -> None:
    """Ctrl-C while the second record is on its way: the first was taken, the second may be, so the host's
    manifest must list both (the second with its value unknown), or a later removal of their declaration
    would leave them in the zone with nothing saying they are mcfleet's."""
    from mcfleet.fleet.desired import DesiredRecord
    from mcfleet.kinds.base import MADE, ApplyContext
    from mcfleet.kinds.providers import DnsKind
    from mcfleet.observe.manifest import NO_ANSWER
    from mcfleet.phase import Phase
    from mcfleet.providers.steps import StepCancelled

    first, second = f"mcr.{ZONE}", f"mcq.{ZONE}"
    records = {first: DesiredRecord(first, "10.0.0.1"), second: DesiredRecord(second, "10.0.0.2")}
    desired = Desired(records=records)  # type: ignore[arg-type]
    actions = [_act("dns", "create", f"dns {first}"), _act("dns", "create", f"dns {second}")]

    async def scenario() -> None:
        with run_mcns(ZONE, POISON) as (mcns_url, mcns):
            release = mcns.hold.setdefault(second, threading.Event())
            try:
                _fleet(tmp_path, mcns_url, "http://127.0.0.1:9", str(tmp_path / "none.sock"))
                ctx = ApplyContext(loaded=load_fleet(tmp_path), entry=None, node=None, desired=desired,  # type: ignore[arg-type]
                                   manifest=None)  # type: ignore[arg-type]  # fmt: skip
                task = asyncio.ensure_future(DnsKind().apply(ctx, actions))
                assert await asyncio.to_thread(mcns.holding.wait, 10), "the second record never reached the server"
                task.cancel()
                try:
                    await task
                except StepCancelled as cut:
                    assert (cut.partial.made, cut.partial.unsure) == ({first, second}, {second})
                else:
                    raise AssertionError("the step was not cancelled")
                assert task.cancelled()  # still a cancellation to asyncio: the run stops as after any Ctrl-C
                made = ctx.data[MADE][Phase.dns].records
                assert {n: r.value for n, r in made.items()} == {first: "10.0.0.1", second: NO_ANSWER}
            finally:
                release.set()

    asyncio.run(scenario())


def test_a_dns_step_ended_by_an_error_still_leaves_what_the_server_took_and_raises_the_error(tmp_path: Path) -> None:
    """Not only Ctrl-C: any error that ends the step mid-way (here a record the host does not declare, as a
    lost connection would) keeps what the server took for the manifest, and the error itself goes on."""
    from mcfleet.fleet.desired import DesiredRecord
    from mcfleet.kinds.base import MADE, ApplyContext
    from mcfleet.kinds.providers import DnsKind
    from mcfleet.phase import Phase

    first = f"mcr.{ZONE}"
    desired = Desired(records={first: DesiredRecord(first, "10.0.0.1")})  # type: ignore[dict-item]
    actions = [_act("dns", "create", f"dns {first}"), _act("dns", "create", f"dns undeclared.{ZONE}")]

    async def scenario() -> None:
        with run_mcns(ZONE, POISON) as (mcns_url, mcns):
            _fleet(tmp_path, mcns_url, "http://127.0.0.1:9", str(tmp_path / "none.sock"))
            ctx = ApplyContext(loaded=load_fleet(tmp_path), entry=None, node=None, desired=desired,  # type: ignore[arg-type]
                               manifest=None)  # type: ignore[arg-type]  # fmt: skip
            try:
                await DnsKind().apply(ctx, actions)
            except KeyError as exc:
                assert exc.args == (f"undeclared.{ZONE}",)
            else:
                raise AssertionError("the error did not go on")
            assert [r["name"] for r in mcns.records.values()] == [first]
            assert {n: r.value for n, r in ctx.data[MADE][Phase.dns].records.items()} == {first: "10.0.0.1"}

    asyncio.run(scenario())
