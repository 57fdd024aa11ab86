"""Caddy (l7, :443) and HAProxy (l4 SNI, :8443) running INSIDE a lab node, as mc-proxy runs on a
real node: they listen on the node's address, read certificates from the node's own
/srv/mc-proxy/certs, and their admin sockets live under /srv/mc-proxy on the node, so mcfleet
reaches them through the node's SSH connection like any node-side proxy.

They run in the node's network namespace with this machine's programs (a full node's rootfs has
no caddy or haproxy) and a private mount namespace in which /srv/mc-proxy is a link to the
node's own folder, /proc/<node pid>/root/srv/mc-proxy (a bind mount across mount namespaces is
refused), so fast and full nodes work alike.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcfleet.errors import LabError
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.proc import alive, run_status, spawn, start_time, which
from mcfleet.lab.state import LabState, Resource

PROXY_DIR = "/srv/mc-proxy"
CADDY_ADMIN = f"{PROXY_DIR}/caddy-admin.sock"
HAPROXY_ADMIN = f"{PROXY_DIR}/haproxy.sock"
SNI_MAP = f"{PROXY_DIR}/sni.map"
L7_PORT = 443
L4_PORT = 8443
SLOTS = 8
SERVER = "edge"

HAPROXY_CFG = """\
global
    stats socket {sock} mode 600 level admin
    maxconn 256
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend sni_in
    bind {address}:{port}
    tcp-request inspect-delay 5s
    tcp-request content accept if {{ req_ssl_hello_type 1 }}
    use_backend %[req.ssl_sni,lower,map({map},be_reject)]
backend be_reject
    tcp-request content reject
{slots}
"""


@dataclass(frozen=True)
class NodeProxies:
    node: str
    address: str
    caddy_pid: int
    haproxy_pid: int
    caddy_admin: str = CADDY_ADMIN
    haproxy_admin: str = HAPROXY_ADMIN
    map_file: str = SNI_MAP
    l7_port: int = L7_PORT
    l4_port: int = L4_PORT
    backends: list[str] = field(default_factory=lambda: [f"be_slot{i}" for i in range(1, SLOTS + 1)])


def caddy_config(address: str, storage: Path) -> dict[str, Any]:
    return {
        "admin": {"listen": f"unix/{CADDY_ADMIN}"},
        "storage": {"module": "file_system", "root": str(storage)},
        "apps": {
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
            "tls": {"certificates": {"load_files": []}},
            "http": {
                "http_port": 18080,
                "https_port": L7_PORT,
                "servers": {
                    SERVER: {
                        "listen": [f"{address}:{L7_PORT}"],
                        "automatic_https": {"disable": True},
                        "tls_connection_policies": [{}],
                        "protocols": ["h1", "h2"],
                        "routes": [],
                    }
                },
            },
        },
    }


def _in_node_net(node: LabNode, argv: list[str]) -> list[str]:
    """argv run in the node's network namespace, with the node's /srv/mc-proxy at /srv/mc-proxy."""
    script = f'mount -t tmpfs mcfleet-proxy /srv && ln -s /proc/{node.ns_pid}/root{PROXY_DIR} {PROXY_DIR} && exec "$@"'
    return ["nsenter", "-t", str(node.ns_pid), "-n", "-u", "--", "unshare", "-m", "--propagation", "private",
            "sh", "-c", script, "node-proxy", *argv]  # fmt: skip


async def _in_node(node: LabNode, argv: list[str]) -> str:
    code, out, err = await run_status([*node.nsenter(), *argv])
    if code != 0:
        raise LabError(f"{' '.join(argv)} in {node.name} failed: {err.strip()[-300:]}")
    return out


async def _wait_socket(node: LabNode, path: str, what: str, log: Path) -> None:
    for _ in range(150):
        code, _out, _err = await run_status([*node.nsenter(), "test", "-S", path])
        if code == 0:
            return
        await asyncio.sleep(0.1)
    raise LabError(f"{what} in {node.name} did not open {path}", hint=f"see {log}")


def _running(state: LabState, name: str) -> int | None:
    found = next((r for r in state.resources if r.kind == "process" and r.name == name), None)
    return found.pid if found and found.pid and alive(found.pid, found.started) else None


async def start_node_proxies(state: LabState, base: Path, node: LabNode) -> NodeProxies:
    """Start them, or return the ones already running in that node (one pair per node)."""
    caddy, haproxy = _running(state, f"caddy@{node.name}"), _running(state, f"haproxy@{node.name}")
    if caddy and haproxy:
        return NodeProxies(node.name, node.address, caddy, haproxy)
    which("caddy")
    which("haproxy")
    d = base / "nodeproxy" / node.name
    d.mkdir(parents=True, exist_ok=True)
    await _in_node(node, ["sh", "-c", f"mkdir -p {PROXY_DIR}/certs && chmod 0750 {PROXY_DIR} && : > {SNI_MAP}"])
    conf = d / "caddy.json"
    conf.write_text(json.dumps(caddy_config(node.address, d / "storage"), indent=2))
    env = {"XDG_DATA_HOME": str(d / "data"), "XDG_CONFIG_HOME": str(d / "config"), "HOME": str(d)}
    caddy_log = d / "caddy.log"
    caddy_pid = spawn(_in_node_net(node, [which("caddy"), "run", "--config", str(conf)]), log=caddy_log, env=env)
    state.add(Resource("process", f"caddy@{node.name}", caddy_pid, start_time(caddy_pid), str(caddy_log)))
    slots = "".join(
        f"\nbackend be_slot{i}\n    server-template s 1 127.0.0.1:1 disabled\n" for i in range(1, SLOTS + 1)
    )
    cfg = d / "haproxy.cfg"
    text = HAPROXY_CFG.format(sock=HAPROXY_ADMIN, address=node.address, port=L4_PORT, map=SNI_MAP, slots=slots)
    cfg.write_text(text)
    ha_log = d / "haproxy.log"
    ha_pid = spawn(_in_node_net(node, [which("haproxy"), "-W", "-db", "-f", str(cfg)]), log=ha_log)
    state.add(Resource("process", f"haproxy@{node.name}", ha_pid, start_time(ha_pid), str(ha_log)))
    await _wait_socket(node, CADDY_ADMIN, "caddy", caddy_log)
    await _wait_socket(node, HAPROXY_ADMIN, "haproxy", ha_log)
    return NodeProxies(node.name, node.address, caddy_pid, ha_pid)


def providers_json(proxies: NodeProxies) -> dict[str, Any]:
    """fleet.json `providers.route` / `route_l4` for proxies started by `start_node_proxies`."""
    return {
        "route": {"kind": "caddy", "admin_url": f"unix:{CADDY_ADMIN}", "server": SERVER, "user": "root"},
        "route_l4": {
            "kind": "haproxy",
            "admin_socket": HAPROXY_ADMIN,
            "map_file": SNI_MAP,
            "listener": L4_PORT,
            "backends": proxies.backends,
        },
    }
