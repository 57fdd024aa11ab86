"""HAProxy: L4 SNI passthrough, changed at runtime through its admin socket.

The config (`sni_config`, also used by the proxies inside lab nodes) keeps every route in one
map file, `<listener>/<sni-name> <address>:<port>` a line, looked up with the port a
connection arrived on: the connection goes, TLS untouched, to that address (`set-dst` on a
server `0.0.0.0:0`, so no backend has to be declared per route).  A name the map does not
hold goes to `be_l7_<port>` when the config has one (the TLS-ending proxy of that listener),
else it is refused.  `mcfleet.providers.route.haproxy` writes the map.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from mcfleet.lab.netutil import free_port
from mcfleet.lab.proc import run, spawn, start_time, which
from mcfleet.lab.sshd import wait_port
from mcfleet.lab.state import LabState, Resource

CONFIG = """\
global
    stats socket {sock} mode 600 level admin
    maxconn 512

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend tls_in
{binds}
    tcp-request inspect-delay 5s
    tcp-request content reject unless {{ req_ssl_hello_type 1 }}
    tcp-request content set-var(sess.sni) req.ssl_sni,lower
    tcp-request content set-var(sess.to) dst_port,concat(/,sess.sni),map({map})
    tcp-request content set-dst var(sess.to),field(1,:) if {{ var(sess.to) -m found }}
    tcp-request content set-dst-port var(sess.to),field(2,:) if {{ var(sess.to) -m found }}
    use_backend be_pass if {{ var(sess.to) -m found }}
    use_backend be_l7_%[dst_port]
    default_backend be_reject

backend be_pass
    server pass 0.0.0.0:0

backend be_reject
    tcp-request content reject
{l7}"""


def sni_config(sock: str, binds: list[str], map_file: str, l7: dict[int, str] | None = None) -> str:
    """HAProxy's config: the SNI frontend on `binds` (address:port); `l7`: listener -> address:port
    of the TLS-ending proxy that serves that listener's names the map does not hold."""
    return CONFIG.format(
        sock=sock,
        binds="".join(f"    bind {b}\n" for b in binds).rstrip("\n"),
        map=map_file,
        l7="".join(f"\nbackend be_l7_{port}\n    server l7 {to}\n" for port, to in sorted((l7 or {}).items())),
    )


@dataclass(frozen=True)
class HaproxyInfo:
    pid: int  # the master process (-W)
    admin_socket: str
    map_file: str
    port: int  # SNI frontend on 127.0.0.1:<port>: routes on listener <port>
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
    conf = d / "haproxy.cfg"
    conf.write_text(sni_config(str(sock), [f"127.0.0.1:{port}"], str(map_file)))
    await run(["haproxy", "-c", "-q", "-f", str(conf)])
    log = d / "haproxy.log"
    pid = spawn(["haproxy", "-W", "-db", "-f", str(conf)], log=log)
    state.add(Resource("process", "haproxy", pid, start_time(pid), str(log)))
    await wait_port("127.0.0.1", port, limit_s=10, what="haproxy", pid=pid, log=log)
    return HaproxyInfo(pid, str(sock), str(map_file), port, str(log))
