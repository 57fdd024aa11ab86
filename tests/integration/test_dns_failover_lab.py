"""The incident's DNS collapse, reproduced: the fleet's resolvers are silent, the fallback must answer.

In the lab, a node's two MCNS addresses are routed to a neighbour that does not exist (a
permanent ARP entry with an unused MAC), so queries to them vanish without any error, as
when rift went down.  A real BIND on another lab address plays the public fallback
(recursion on, so it answers like 1.1.1.1 would).  The node is configured by mcfleet's
provisioning script from its host.json, then names under the fallback's zone are looked up
through the C library:

- glibc reading resolv.conf (a netns node): today's configuration (4 nameservers, no
  options) answers only after ~8 s; mcfleet's (3 servers, `timeout:1 attempts:2`) < 3 s.
- systemd-resolved (a systemd-nspawn node, systemd 252): with every server in `DNS=` (what
  mcfleet wrote before) resolved waits ~5 s on each silent server, so the first lookup after
  MCNS went silent takes ~10 s.  mcfleet's configuration gives the global `DNS=` the public
  fallbacks and routes only the fleet's zone to MCNS per link (mcfleet-dns-zone.service:
  `resolvectl dns/domain ~<zone>/default-route no`), so every public lookup, the first
  included, is answered < 3 s with MCNS silent.  A second BIND on MCNS's first address plays
  MCNS: the zone is answered by it before, fails while it is silent (nobody else knows the
  zone), and is answered again once it is back.

The figures are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcfleet.apply.provision import provision_host
from mcfleet.fleet.load import load_fleet
from mcfleet.lab.lab import Lab
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.proc import spawn, start_time
from mcfleet.lab.sshd import wait_port
from mcfleet.lab.state import Resource
from mcfleet.transport.ssh import SshPool

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ZONE = "fallback.example.test"
# TEST-NET addresses standing in for rift's LAN and Tailnet addresses (MCNS)
MCNS = ["192.0.2.53", "198.51.100.53"]
DEAD_MAC = "02:00:00:00:de:ad"  # nobody on the lab bridge has it: frames to it are dropped silently
LIMIT_S = 3.0

NAMED_CONF = """\
options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    listen-on port 53 {{ {address}; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-query {{ any; }};
    allow-recursion {{ any; }};
    dnssec-validation no;
}};
zone "{zone}" {{ type master; file "{dir}/{zone}.zone"; }};
"""
ZONE_FILE = """\
$TTL 60
@   SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 60
@   NS  ns1
ns1 A   {address}
*   A   203.0.113.80
"""

# What mcfleet wrote before: every server in order, no options (glibc asks only the first 3,
# 5 s each), and for resolved every server in DNS= (resolved waits ~5 s on each silent one).
TODAY_RESOLV_CONF = "nameserver {0}\nnameserver {1}\nnameserver {2}\nnameserver 1.1.1.1\n"
TODAY_RESOLVED = "[Resolve]\nDNS={0} {1} {2} 1.1.1.1\n"

LOOKUP = """\
import socket, sys, time
for name in sys.argv[1:]:
    t = time.monotonic()
    try:
        socket.getaddrinfo(name, 443)
        ok = True
    except OSError:
        ok = False
    print(name, ok, round(time.monotonic() - t, 3), flush=True)
"""


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@dataclass(frozen=True)
class Named:
    address: str
    pid: int


def _named(lab: Lab, d: Path, address: str, zone: str, what: str) -> Iterator[Named]:
    """A BIND on `address` (an extra address on the lab bridge), authoritative for `zone`."""
    net = _run(lab.network())
    (d / "named.conf").write_text(NAMED_CONF.format(dir=d, address=address, zone=zone))
    (d / f"{zone}.zone").write_text(ZONE_FILE.format(zone=zone, address=address))
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", net.bridge], check=True)
    pid = spawn(["named", "-g", "-u", "root", "-c", str(d / "named.conf")], log=d / "named.log")
    lab.state.add(Resource("process", f"named-{what}", pid, start_time(pid), str(d / "named.log")))
    try:
        _run(wait_port(address, 53, limit_s=20, what=f"named ({what})", pid=pid, log=d / "named.log"))
        yield Named(address, pid)
    finally:
        subprocess.run(["kill", "-TERM", str(pid)], check=False)
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", net.bridge], check=False)


@pytest.fixture(scope="module")
def fallback(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Named]:
    """The public fallback: BIND on <lab prefix>.2, authoritative for ZONE (recursion on)."""
    address = _run(lab.network()).gateway.rsplit(".", 1)[0] + ".2"
    yield from _named(lab, tmp_path_factory.mktemp("named"), address, ZONE, "the public fallback")


@pytest.fixture(scope="module")
def mcns(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Named]:
    """MCNS: BIND on MCNS[0], authoritative for the lab fleet's zone (a node reaches it via the gateway)."""
    yield from _named(lab, tmp_path_factory.mktemp("mcns"), MCNS[0], lab.zone, "MCNS")


def _silence_mcns(lab: Lab, node: LabNode) -> None:
    """Route both MCNS addresses, in the node's netns, to a neighbour that never answers."""
    hole = node.address.rsplit(".", 1)[0] + ".250"
    ns = ["ip", "-n", node.netns]
    subprocess.run([*ns, "neigh", "replace", hole, "lladdr", DEAD_MAC, "dev", "eth0", "nud", "permanent"], check=True)
    for address in MCNS:
        subprocess.run([*ns, "route", "replace", f"{address}/32", "via", hole, "dev", "eth0"], check=True)


def _revive_mcns(lab: Lab, node: LabNode) -> None:
    """MCNS[0] answers again (routed to the lab bridge, where BIND listens); MCNS[1] stays silent."""
    gateway = _run(lab.network()).gateway
    subprocess.run(["ip", "-n", node.netns, "route", "replace", f"{MCNS[0]}/32", "via", gateway], check=True)


def _fleet_for(lab: Lab, node: LabNode, dest: Path, dns: dict[str, object]) -> Path:
    root = lab.write_fleet(dest, nodes=[node.name])
    path = root / "hosts" / node.name / "host.json"
    host = json.loads(path.read_text())
    host["dns"] = dns
    path.write_text(json.dumps(host, indent=2))
    return root


async def _provision(root: Path, name: str) -> str:
    loaded = load_fleet(root)
    assert not loaded.findings, [f.format() for f in loaded.findings]
    entry = loaded.hosts[name]
    async with SshPool() as pool:
        conn = await pool.connect(entry)
        changed, message = await provision_host(conn, entry, loaded.fleet)
    assert changed, message
    return message


def _lookups(lab: Lab, node: LabNode, names: list[str]) -> list[tuple[bool, float]]:
    code, out, err = _run(lab.exec_in(node.name, ["python3", "-c", LOOKUP, *names]))
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    return [(ok == "True", float(seconds)) for _name, ok, seconds in rows]


def _write_in(lab: Lab, node: LabNode, path: str, text: str) -> None:
    script = f"mkdir -p $(dirname {path}) && rm -f {path} && cat > {path}"
    code, _out, err = _run(lab.exec_in(node.name, ["sh", "-c", script], input_=text.encode()))
    assert code == 0, err


def _report(what: str, results: list[tuple[bool, float]]) -> str:
    return f"{what}: " + ", ".join(f"{s:.2f} s" + ("" if ok else " (failed)") for ok, s in results)


def test_glibc_node_reaches_the_fallback_within_3s(lab: Lab, fallback: Named, tmp_path: Path) -> None:
    node = _run(lab.add_fast_node("dnsg1", with_podman=False))
    _silence_mcns(lab, node)

    _write_in(lab, node, "/etc/resolv.conf", TODAY_RESOLV_CONF.format(*MCNS, fallback.address))
    before = _lookups(lab, node, [f"before.{ZONE}"])
    print("\n" + _report("glibc, today's resolv.conf (4 nameservers, no options)", before))
    assert before[0][1] >= LIMIT_S  # the measurement tells the two apart

    root = _fleet_for(lab, node, tmp_path / "fleet", {"nameservers": MCNS, "fallback": [fallback.address, "1.1.1.1"]})
    message = _run(_provision(root, node.name))
    assert "/etc/resolv.conf" in message
    _code, text, _err = _run(lab.exec_in(node.name, ["cat", "/etc/resolv.conf"]))
    assert [line.split()[1] for line in text.splitlines() if line.startswith("nameserver")] == [
        *MCNS,
        fallback.address,
    ]
    assert "options timeout:1 attempts:2" in text

    after = _lookups(lab, node, [f"n{i}.{ZONE}" for i in range(4)])
    print(_report("glibc, mcfleet's resolv.conf (3 servers, timeout:1 attempts:2)", after))
    assert all(ok for ok, _s in after), after
    assert max(s for _ok, s in after) < LIMIT_S, after

    # one fleet nameserver, as the real fleet's glibc hosts have: one silent server ahead of the fallback
    one = {"nameservers": MCNS[:1], "fallback": [fallback.address, "1.1.1.1"]}
    _run(_provision(_fleet_for(lab, node, tmp_path / "fleet1", one), node.name))
    single = _lookups(lab, node, [f"s{i}.{ZONE}" for i in range(3)])
    print(_report("glibc, mcfleet's resolv.conf with one fleet nameserver", single))
    assert all(ok for ok, _s in single), single
    assert max(s for _ok, s in single) < LIMIT_S, single


@pytest.mark.full
def test_resolved_node_reaches_the_fallback_within_3s(lab: Lab, fallback: Named, mcns: Named, tmp_path: Path) -> None:
    node = _run(lab.add_full_node("dnsr1"))
    _silence_mcns(lab, node)
    _revive_mcns(lab, node)

    def sh(script: str) -> str:
        code, out, err = _run(lab.exec_in(node.name, ["sh", "-c", script]))
        assert code == 0, f"{script}: {err}"
        return out

    # the node runs systemd-resolved (installed, off by default in the lab rootfs)
    sh("systemctl enable --now systemd-resolved.service")
    sh("ln -sf ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf")
    dropin = "/etc/systemd/resolved.conf.d/mcfleet.conf"
    _write_in(lab, node, dropin, TODAY_RESOLVED.format(*MCNS, fallback.address))
    sh("systemctl restart systemd-resolved.service")
    [(ok, _s)] = _lookups(lab, node, [f"before.{lab.zone}"])
    assert ok  # MCNS answers the zone
    _silence_mcns(lab, node)
    before = _lookups(lab, node, [f"b{i}.{ZONE}" for i in range(3)])
    print("\n" + _report("resolved, before: every server in DNS=, MCNS silent", before))
    assert all(ok for ok, _s in before), before
    assert before[0][1] >= LIMIT_S  # the measurement tells the two apart: the first lookup waits on MCNS

    _revive_mcns(lab, node)
    dns = {"resolver": "systemd-resolved", "nameservers": MCNS, "fallback": [fallback.address, "1.1.1.1"]}
    root = _fleet_for(lab, node, tmp_path / "fleet", dns)
    message = _run(_provision(root, node.name))
    assert dropin in message and "mcfleet-dns-zone.service" in message, message
    assert f"DNS={fallback.address} 1.1.1.1" in sh(f"cat {shlex.quote(dropin)}")
    assert f"~{lab.zone}" in sh("resolvectl domain")
    assert sh("systemctl is-enabled mcfleet-dns-zone.service").strip() == "enabled"
    sh("systemctl restart systemd-resolved.service")  # forget which server answered last
    [(ok, zone_s)] = _lookups(lab, node, [f"up.{lab.zone}"])
    print(_report("resolved, mcfleet's: the zone with MCNS up", [(ok, zone_s)]))
    assert ok  # the zone goes to MCNS

    _silence_mcns(lab, node)
    start = time.monotonic()
    after = _lookups(lab, node, [f"n{i}.{ZONE}" for i in range(4)])
    print(
        _report("resolved, mcfleet's: public names, MCNS silent", after) + f" [{time.monotonic() - start:.2f} s in all]"
    )
    assert all(ok for ok, _s in after), after
    assert max(s for _ok, s in after) < LIMIT_S, after  # the first lookup included
    down = _lookups(lab, node, [f"down.{lab.zone}"])
    print(_report("resolved, mcfleet's: the zone, MCNS silent (nobody else knows it)", down))
    assert not down[0][0]

    _revive_mcns(lab, node)
    back = _lookups(lab, node, [f"back.{lab.zone}"])
    print(_report("resolved, mcfleet's: the zone, MCNS back", back))
    assert back[0][0]  # never stuck on a public server that does not know the zone
