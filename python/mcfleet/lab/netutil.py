"""Small network helpers: free loopback ports."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1", *, udp_too: bool = False) -> int:
    """A port nothing listens on right now (bind 0); with udp_too, free for TCP and UDP."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            if not udp_too:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise OSError("no free port found")
