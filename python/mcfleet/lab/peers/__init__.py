"""The lab's peers: Knot (DNS), Pebble (ACME), Caddy (L7 routes), HAProxy (L4 SNI routes), and an OCI
registry with the demo images (plays the platform's MCR)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcfleet.errors import LabError
from mcfleet.lab.state import LabState

PEERS = ("knot", "pebble", "caddy", "haproxy", "registry")


async def start_one(
    peer: str,
    state: LabState,
    run_dir: Path,
    *,
    zone: str,
    gateway: str | None,
    knot_port: int | None,
    sock_dir: Path | None,
) -> Any:
    """Start one peer; return its info dataclass (KnotInfo, PebbleInfo, CaddyInfo, HaproxyInfo, RegistryInfo)."""
    if peer == "knot":
        from mcfleet.lab.peers.knot import start_knot

        return await start_knot(state, run_dir, zone, gateway)
    if peer == "pebble":
        from mcfleet.lab.peers.pebble import start_pebble

        return await start_pebble(state, run_dir, knot_port)
    if peer == "caddy":
        from mcfleet.lab.peers.caddy import start_caddy

        return await start_caddy(state, run_dir)
    if peer == "haproxy" and sock_dir is not None:
        from mcfleet.lab.peers.haproxy import start_haproxy

        return await start_haproxy(state, run_dir, sock_dir)
    if peer == "registry" and gateway is not None and sock_dir is not None:
        from mcfleet.lab.peers.registry import start_registry

        return await start_registry(state, run_dir, gateway, sock_dir)
    raise LabError(f"unknown peer {peer!r}", hint=f"one of: {', '.join(PEERS)}")
