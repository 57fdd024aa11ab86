"""Knot DNS: authoritative for the lab zone, RFC 2136 updates signed with a TSIG key."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from pathlib import Path

from mcfleet.lab.netutil import free_port
from mcfleet.lab.proc import run, spawn, start_time, which
from mcfleet.lab.sshd import wait_port
from mcfleet.lab.state import LabState, Resource
from mcfleet.util.files import atomic_write_text

KEY_NAME = "mcfleet-key"

CONFIG = """\
server:
    rundir: "{dir}/run"
    user: root:root
    listen: [{listen}]
    pidfile: "{dir}/run/knot.pid"

log:
  - target: stderr
    any: info

database:
    storage: "{dir}/db"

include: "{dir}/tsig.conf"

acl:
  - id: mcfleet-update
    key: {key}
    action: update
    update-type: [A, AAAA, TXT, CNAME]

template:
  - id: default
    storage: "{dir}/zones"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: difference-no-serial
    journal-content: all
    semantic-checks: on

zone:
  - domain: {zone}
    acl: mcfleet-update
"""

ZONE = """\
$ORIGIN {zone}.
$TTL 60
@   SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 60
@   NS  ns1
ns1 A   127.0.0.1
"""


@dataclass(frozen=True)
class KnotInfo:
    pid: int
    server: str
    port: int
    zone: str
    key_name: str
    key_file: str  # holds only the base64 secret (what the rfc2136 provider reads)
    algorithm: str
    log: str
    node_server: str | None = None  # also answers on <lab gateway>:53, the nodes' nameserver

    def secret(self) -> str:
        return Path(self.key_file).read_text().strip()


async def start_knot(state: LabState, base: Path, zone: str, gateway: str | None = None) -> KnotInfo:
    which("knotd")
    d = base / "knot"
    for sub in ("run", "db", "zones"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    key_file = d / "tsig.secret"
    atomic_write_text(key_file, secret + "\n", mode=0o600)
    # The secret goes in a separate 0600 include, never in a file we print.
    tsig = f"key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {secret}\n"
    atomic_write_text(d / "tsig.conf", tsig, mode=0o600)
    port = free_port(udp_too=True)
    conf = d / "knot.conf"
    listen = f"127.0.0.1@{port}" + (f", {gateway}@53" if gateway else "")
    conf.write_text(CONFIG.format(dir=d, listen=listen, key=KEY_NAME, zone=zone))
    (d / "zones" / f"{zone}.zone").write_text(ZONE.format(zone=zone))
    await run(["knotc", "-c", str(conf), "conf-check"])
    log = d / "knot.log"
    pid = spawn(["knotd", "-c", str(conf)], log=log)
    state.add(Resource("process", "knot", pid, start_time(pid), str(log)))
    await wait_port("127.0.0.1", port, limit_s=10, what="knotd", pid=pid, log=log)
    return KnotInfo(pid, "127.0.0.1", port, zone, KEY_NAME, str(key_file), "hmac-sha256", str(log), gateway)
