"""`mcfleet lab status`: every node and peer with its PID and whether it is healthy."""

from __future__ import annotations

import asyncio
from typing import Any

from mcfleet.lab import proc
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.state import LabState


async def _port_open(host: str, port: int, limit_s: float = 1.0) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), limit_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def _node_status(node: LabNode) -> dict[str, Any]:
    running = proc.alive(node.main_pid)
    ssh_ok = running and await _port_open(node.address, node.ssh_port)
    return {
        "name": node.name,
        "kind": node.kind,
        "address": node.address,
        "netns": node.netns,
        "pid": node.main_pid,
        "sshd_pid": node.sshd_pid,
        "running": running,
        "ssh": ssh_ok,
        "healthy": running and ssh_ok,
    }


async def _peer_status(name: str, info: dict[str, Any]) -> dict[str, Any]:
    running = proc.alive(int(info["pid"]))
    # where it listens: a port on 127.0.0.1 (Knot, HAProxy) or a host:port (the registry, on the bridge)
    if "port" in info:
        host, port = "127.0.0.1", str(info["port"])
    else:
        host, _, port = str(info.get("address", "")).rpartition(":")
    where = info.get("directory") or info.get("admin_url") or info.get("admin_socket")
    endpoint = where or (f"{host}:{port}" if port else "-")
    listening = running
    if running and port.isdecimal():
        listening = await _port_open(host, int(port))
    return {"name": name, "pid": info["pid"], "endpoint": endpoint, "running": running, "healthy": listening}


async def lab_status(state: LabState) -> dict[str, Any]:
    nodes = [LabNode.from_dict(d) for d in state.info.get("nodes", {}).values()]
    peers = state.info.get("peers", {})
    node_rows = await asyncio.gather(*(_node_status(n) for n in sorted(nodes, key=lambda n: n.index)))
    peer_rows = await asyncio.gather(*(_peer_status(n, i) for n, i in sorted(peers.items())))
    net = state.info.get("network")
    return {
        "up": bool(state.resources),
        "network": net,
        "nodes": list(node_rows),
        "peers": list(peer_rows),
        "healthy": bool(state.resources) and all(r["healthy"] for r in [*node_rows, *peer_rows]),
    }
