"""HAProxy (every listener: l4 SNI passthrough, other names to Caddy) and Caddy (l7) running
INSIDE a lab node, as mc-proxy runs on a real node: they listen on the node's address, read
certificates from the node's own /srv/mc-proxy/certs, and their admin sockets live under
/srv/mc-proxy on the node, so mcfleet reaches them through the node's SSH connection like any node-side proxy.

They run in the node's network namespace with this machine's programs (a full node's rootfs has
no caddy or haproxy) and a private mount namespace in which /srv/mc-proxy is a link to the
node's own folder, /proc/<node pid>/root/srv/mc-proxy (a bind mount across mount namespaces is
refused), so fast and full nodes work alike.

Both keep their routes on the node across a restart: HAProxy reads the map file mcfleet
rewrites (/srv/mc-proxy/sni.map); Caddy saves every admin-API change to
/srv/mc-proxy/caddy/caddy/autosave.json and starts with `--resume` (that config, when present).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcfleet.errors import LabError
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.peers.haproxy import sni_config
from mcfleet.lab.proc import alive, run_status, spawn, start_time, stop, which
from mcfleet.lab.state import LabState, Resource

PROXY_DIR = "/srv/mc-proxy"
CADDY_ADMIN = f"{PROXY_DIR}/caddy-admin.sock"
HAPROXY_ADMIN = f"{PROXY_DIR}/haproxy.sock"
SNI_MAP = f"{PROXY_DIR}/sni.map"
CADDY_CONFIG_HOME = f"{PROXY_DIR}/caddy"  # Caddy's XDG_CONFIG_HOME: its autosaved config lives on the node
# The listener ports of the route model (web, API, gRPC), all served on the node's address.
LISTENERS = (443, 8443, 9443)
# Caddy ends TLS for l7 routes behind HAProxy, on this loopback address (the same port numbers;
# containers publish on 127.0.0.1 and the node's address, so nothing else binds it).
CADDY_ADDRESS = "127.0.0.2"
SERVER = "edge"


@dataclass(frozen=True)
class NodeProxies:
    """HAProxy on <address>:443/8443/9443 takes every connection: a name in its map (an l4 route)
    goes, TLS untouched, to its backend; any other name goes to Caddy's server for that
    listener (`edge-<port>` on 127.0.0.2:<port>), which ends TLS for the l7 routes."""

    node: str
    address: str
    caddy_pid: int
    haproxy_pid: int
    caddy_admin: str = CADDY_ADMIN
    haproxy_admin: str = HAPROXY_ADMIN
    map_file: str = SNI_MAP
    listeners: tuple[int, ...] = LISTENERS


def caddy_config(storage: Path) -> dict[str, Any]:
    servers = {
        f"{SERVER}-{port}": {
            "listen": [f"{CADDY_ADDRESS}:{port}"],
            "automatic_https": {"disable": True},
            "tls_connection_policies": [{}],
            "protocols": ["h1", "h2"],
            "routes": [],
        }
        for port in LISTENERS
    }
    return {
        "admin": {"listen": f"unix/{CADDY_ADMIN}"},
        "storage": {"module": "file_system", "root": str(storage)},
        "apps": {
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
            "tls": {"certificates": {"load_files": []}},
            "http": {"http_port": 18080, "https_port": LISTENERS[0], "servers": servers},
        },
    }


def haproxy_config(address: str) -> str:
    return sni_config(
        HAPROXY_ADMIN,
        [f"{address}:{port}" for port in LISTENERS],
        SNI_MAP,
        {port: f"{CADDY_ADDRESS}:{port}" for port in LISTENERS},
    )


def _in_node_net(node: LabNode, argv: list[str]) -> list[str]:
    """argv run in the node's network namespace, with the node's /srv/mc-proxy at /srv/mc-proxy."""
    # a full node's root is its overlay (its init, and so /proc/<pid>/root, changes when it reboots)
    root = f"{node.dir}/merged" if node.kind == "full" else f"/proc/{node.ns_pid}/root"
    script = f'mount -t tmpfs mcfleet-proxy /srv && ln -s {root}{PROXY_DIR} {PROXY_DIR} && exec "$@"'
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
    # The map file and Caddy's autosave are the routes across restarts: kept when the proxies start again.
    prepare = f"mkdir -p {PROXY_DIR}/certs {CADDY_CONFIG_HOME} && chmod 0750 {PROXY_DIR} && touch {SNI_MAP}"
    await _in_node(node, ["sh", "-c", prepare])
    (d / "caddy.json").write_text(json.dumps(caddy_config(d / "storage"), indent=2))
    (d / "haproxy.cfg").write_text(haproxy_config(node.address))
    caddy_pid = _spawn(state, node, "caddy", d)
    ha_pid = _spawn(state, node, "haproxy", d)
    await _wait_socket(node, CADDY_ADMIN, "caddy", d / "caddy.log")
    await _wait_socket(node, HAPROXY_ADMIN, "haproxy", d / "haproxy.log")
    return NodeProxies(node.name, node.address, caddy_pid, ha_pid)


def _spawn(state: LabState, node: LabNode, program: str, d: Path) -> int:
    """Start caddy or haproxy in the node from the config in `d`; recorded in the lab's state."""
    log = d / f"{program}.log"
    if program == "caddy":
        argv = [which("caddy"), "run", "--config", str(d / "caddy.json"), "--resume"]
        env = {"XDG_DATA_HOME": str(d / "data"), "XDG_CONFIG_HOME": CADDY_CONFIG_HOME, "HOME": str(d)}
        pid = spawn(_in_node_net(node, argv), log=log, env=env)
    else:
        pid = spawn(_in_node_net(node, [which("haproxy"), "-W", "-db", "-f", str(d / "haproxy.cfg")]), log=log)
    state.add(Resource("process", f"{program}@{node.name}", pid, start_time(pid), str(log)))
    return pid


async def restart_proxy(state: LabState, base: Path, node: LabNode, program: str) -> int:
    """Stop the node's caddy or haproxy and start it again (from what it kept on the node)."""
    name = f"{program}@{node.name}"
    found = next((r for r in state.resources if r.kind == "process" and r.name == name), None)
    if found is None or not found.pid:
        raise LabError(f"no {program} runs in {node.name}", hint="start the node proxies first")
    await asyncio.to_thread(stop, found.pid, found.started)
    state.drop(found)
    sock = CADDY_ADMIN if program == "caddy" else HAPROXY_ADMIN
    await _in_node(node, ["rm", "-f", sock])
    d = base / "nodeproxy" / node.name
    pid = _spawn(state, node, program, d)
    await _wait_socket(node, sock, program, d / f"{program}.log")
    return pid


async def restart_haproxy(state: LabState, base: Path, node: LabNode) -> int:
    return await restart_proxy(state, base, node, "haproxy")


def providers_json(_proxies: NodeProxies | None = None) -> dict[str, Any]:
    """fleet.json `providers.route` / `route_l4` for proxies started by `start_node_proxies` (the same
    paths on every node; the argument is accepted for older callers)."""
    return {
        "route": {"kind": "caddy", "admin_url": f"unix:{CADDY_ADMIN}", "server": SERVER, "user": "root"},
        "route_l4": {"kind": "haproxy", "admin_socket": HAPROXY_ADMIN, "map_file": SNI_MAP},
    }
