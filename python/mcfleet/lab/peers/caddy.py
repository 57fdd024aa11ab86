"""Caddy: L7 routes through its admin API, HTTPS on a loopback port."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcfleet.lab.netutil import free_port
from mcfleet.lab.proc import spawn, start_time, which
from mcfleet.lab.sshd import wait_port
from mcfleet.lab.state import LabState, Resource

SERVER = "edge"


@dataclass(frozen=True)
class CaddyInfo:
    pid: int
    admin_url: str
    server: str
    https_port: int  # the "edge" server listens on 127.0.0.1:<https_port>
    http_port: int
    config_file: str
    log: str

    def base_config(self) -> dict[str, Any]:
        return dict(json.loads(Path(self.config_file).read_text()))


def base_config(d: Path, admin: int, https: int, http: int) -> dict[str, Any]:
    return {
        "admin": {"listen": f"127.0.0.1:{admin}"},
        "storage": {"module": "file_system", "root": str(d / "storage")},
        "apps": {
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
            "tls": {"certificates": {"load_files": []}},
            "http": {
                "http_port": http,
                "https_port": https,
                "servers": {
                    SERVER: {
                        "listen": [f"127.0.0.1:{https}"],
                        "automatic_https": {"disable": True},
                        "tls_connection_policies": [{}],
                        "protocols": ["h1", "h2"],
                        "routes": [],
                    }
                },
            },
        },
    }


async def start_caddy(state: LabState, base: Path) -> CaddyInfo:
    which("caddy")
    d = base / "caddy"
    d.mkdir(parents=True, exist_ok=True)
    admin, https, http = free_port(), free_port(), free_port()
    conf = d / "base.json"
    conf.write_text(json.dumps(base_config(d, admin, https, http), indent=2))
    env = {"XDG_DATA_HOME": str(d / "data"), "XDG_CONFIG_HOME": str(d / "config"), "HOME": str(d)}
    log = d / "caddy.log"
    pid = spawn(["caddy", "run", "--config", str(conf)], log=log, env=env)
    state.add(Resource("process", "caddy", pid, start_time(pid), str(log)))
    await wait_port("127.0.0.1", admin, limit_s=15, what="caddy admin API", pid=pid, log=log)
    return CaddyInfo(pid, f"http://127.0.0.1:{admin}", SERVER, https, http, str(conf), str(log))
