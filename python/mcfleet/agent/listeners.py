"""The TCP ports something listens on in the agent's network namespace, from /proc/net/tcp{,6}.

Rootless podman publishes a container's port with a `rootlessport` process that listens on it in
the node's namespace from before the container's start returns until the container stops.  A
running container whose published port nothing listens on has lost that forwarder: seen after
podman restarted a crash-looping container (podman 4.3), its service unreachable while podman
said it ran.  Reading the kernel's socket table sees that without connecting to anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

TCP_LISTEN = "0A"  # the `st` column of /proc/net/tcp: TCP_LISTEN


def listening_ports(net: Path = Path("/proc/net")) -> set[int]:
    """Local ports of the listening TCP sockets (IPv4 and IPv6, any address)."""
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (net / table).read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6 in this kernel: no tcp6 table
        for line in lines:
            fields = line.split()  # sl local_address rem_address st ...
            if len(fields) > 3 and fields[3] == TCP_LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def host_ports(published: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, str, int]]:
    """(protocol, host address, port) of each host port podman's `Ports` of a container publish (a range
    counts each of its ports; an exposed port without a host port none)."""
    for p in published:
        if not isinstance(p.get("host_port"), int):
            continue
        first, count = int(p["host_port"]), int(p.get("range") or 1)
        for port in range(first, first + max(count, 1)):
            yield str(p.get("protocol") or "tcp"), str(p.get("host_ip") or "0.0.0.0"), port


def unforwarded(published: Iterable[Mapping[str, Any]], listening: set[int]) -> list[str]:
    """ "address:port" of each published TCP port (podman's `Ports` of a container) nothing listens on."""
    missing = {(address, port) for proto, address, port in host_ports(published) if proto == "tcp"}
    return [f"{address}:{port}" for address, port in sorted(missing) if port not in listening]


def published_ports(published: Iterable[Mapping[str, Any]]) -> list[str]:
    """ "protocol/port" of every host port a container publishes: the plan counts them as the service's own
    even when the agent's registry no longer lists it (a lost or reset registry)."""
    return [f"{proto}/{port}" for proto, port in sorted({(proto, port) for proto, _, port in host_ports(published)})]
