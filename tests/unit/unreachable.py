"""A fleet whose one host cannot be reached: `mcfleet init`'s fleet pointed at a closed port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: connections are refused


def init_unreachable_fleet(root: Path) -> Path:
    """`mcfleet init root`, its node1 at 127.0.0.1 on a closed port (plan reports it unreachable)."""
    subprocess.run([sys.executable, "-m", "mcfleet", "init", str(root)], check=True, capture_output=True)
    host_file = root / "hosts" / "node1" / "host.json"
    host = json.loads(host_file.read_text())
    host["addresses"] = ["127.0.0.1"]
    host["ssh"]["port"] = closed_port()
    host_file.write_text(json.dumps(host))
    return root
