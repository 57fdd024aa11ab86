"""HAProxy: L4 SNI passthrough, changed at runtime through its admin socket.

HAProxy 2.6 cannot add backends at runtime, so the config pre-declares `be_slot1..N`, each
with one disabled server `s1`; a route claims a slot (`set server … addr`, `state ready`)
and maps its SNI name to it in the map file (`add map`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from mcfleet.lab.netutil import free_port
from mcfleet.lab.proc import run, spawn, start_time, which
from mcfleet.lab.sshd import wait_port
from mcfleet.lab.state import LabState, Resource

SLOTS = 8

CONFIG = """\
global
    stats socket {sock} mode 600 level admin expose-fd listeners
    maxconn 512

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend sni_in
    bind 127.0.0.1:{port}
    tcp-request inspect-delay 5s
    tcp-request content accept if {{ req_ssl_hello_type 1 }}
    use_backend %[req.ssl_sni,lower,map({map},be_reject)]

backend be_reject
    tcp-request content reject
{slots}
"""


@dataclass(frozen=True)
class HaproxyInfo:
    pid: int  # the master process (-W)
    admin_socket: str
    map_file: str
    port: int  # SNI frontend on 127.0.0.1:<port>
    backends: list[str] = field(default_factory=list)
    log: str = ""

    async def admin(self, command: str) -> str:
        """One runtime-API command; returns HAProxy's answer."""
        reader, writer = await asyncio.open_unix_connection(self.admin_socket)
        writer.write(command.encode() + b"\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
        return answer.decode()


async def start_haproxy(state: LabState, base: Path, sock_dir: Path) -> HaproxyInfo:
    which("haproxy")
    d = base / "haproxy"
    d.mkdir(parents=True, exist_ok=True)
    sock, map_file, port = sock_dir / "haproxy.sock", d / "sni.map", free_port()
    map_file.write_text("")
    backends = [f"be_slot{i}" for i in range(1, SLOTS + 1)]
    slots = "".join(f"\nbackend {b}\n    server-template s 1 127.0.0.1:1 disabled\n" for b in backends)
    conf = d / "haproxy.cfg"
    conf.write_text(CONFIG.format(sock=sock, port=port, map=map_file, slots=slots))
    await run(["haproxy", "-c", "-q", "-f", str(conf)])
    log = d / "haproxy.log"
    pid = spawn(["haproxy", "-W", "-db", "-f", str(conf)], log=log)
    state.add(Resource("process", "haproxy", pid, start_time(pid), str(log)))
    await wait_port("127.0.0.1", port, limit_s=10, what="haproxy", pid=pid, log=log)
    return HaproxyInfo(pid, str(sock), str(map_file), port, backends, str(log))
