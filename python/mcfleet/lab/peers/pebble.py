"""Pebble: a test ACME CA, with a listener certificate we make ourselves (Pebble ships none that our clients trust)."""

from __future__ import annotations

import json
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mcfleet.errors import LabError
from mcfleet.lab.certs import make_ca_and_leaf
from mcfleet.lab.netutil import free_port
from mcfleet.lab.proc import log_tail, spawn, start_time, which
from mcfleet.lab.sshd import wait_port
from mcfleet.lab.state import LabState, Resource


@dataclass(frozen=True)
class PebbleInfo:
    pid: int
    directory: str  # the ACME directory URL
    management: str  # base URL of the management API (/roots/0, /intermediates/0)
    ca_file: str  # CA of pebble's *listener* certificate (what an ACME client must trust)
    log: str

    def _get(self, path: str) -> str:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(self.management + path, context=ctx, timeout=10) as resp:
            return str(resp.read().decode())

    def root_pem(self) -> str:
        """The root that signs issued certificates: random per Pebble start, so fetch it."""
        return self._get("/roots/0")

    def intermediate_pem(self) -> str:
        return self._get("/intermediates/0")


async def start_pebble(state: LabState, base: Path, dns_port: int | None = None) -> PebbleInfo:
    which("pebble")
    d = base / "pebble"
    ca, leaf, key = make_ca_and_leaf(d / "tls", "mcfleet lab pebble listener CA")
    port, mgmt = free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{mgmt}",
            "certificate": str(leaf),
            "privateKey": str(key),
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    conf = d / "pebble-config.json"
    conf.write_text(json.dumps(config, indent=2))
    argv = ["pebble", "-config", str(conf)]
    if dns_port is not None:
        argv += ["-dnsserver", f"127.0.0.1:{dns_port}"]
    env = {"PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    log = d / "pebble.log"
    pid = spawn(argv, log=log, env=env)
    state.add(Resource("process", "pebble", pid, start_time(pid), str(log)))
    await wait_port("127.0.0.1", port, limit_s=20, what="pebble", pid=pid, log=log)
    await wait_port("127.0.0.1", mgmt, limit_s=20, what="pebble management", pid=pid, log=log)
    info = PebbleInfo(pid, f"https://localhost:{port}/dir", f"https://localhost:{mgmt}", str(ca), str(log))
    try:
        (d / "roots-0.pem").write_text(info.root_pem())
    except OSError as exc:
        raise LabError(f"pebble does not serve its roots: {exc}; {log_tail(log)}", location=str(log)) from None
    return info
