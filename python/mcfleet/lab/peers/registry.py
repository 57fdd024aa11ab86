"""The lab's OCI registry (plays the platform's MCR): Debian's `docker-registry` with TLS from a lab CA.

It listens on the lab bridge's gateway address, which every node reaches, with a certificate
for that address; nodes trust the CA through /etc/containers/certs.d/<host:port>/ca.crt.
The demo images (lab/images.py) are built on this machine and pushed here, so no image
is ever fetched from outside.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from mcfleet.errors import LabError
from mcfleet.lab.certs import make_ca_and_leaf
from mcfleet.lab.netutil import free_port
from mcfleet.lab.proc import log_tail, spawn, start_time, which
from mcfleet.lab.sshd import wait_port
from mcfleet.lab.state import LabState, Resource


@dataclass(frozen=True)
class RegistryInfo:
    pid: int
    address: str  # host:port, the registry part of every image reference (e.g. 10.77.3.1:40123)
    ca_file: str  # the CA of the registry's listener certificate (what podman must trust)
    storage: str
    log: str
    images: list[str] = field(default_factory=list)  # full references pushed by `lab up`

    def _get(self, path: str) -> bytes:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(f"https://{self.address}{path}", context=ctx, timeout=10) as resp:
            return bytes(resp.read())

    def catalog(self) -> list[str]:
        """Repository names the registry holds (GET /v2/_catalog)."""
        return list(json.loads(self._get("/v2/_catalog")).get("repositories", []))

    def tags(self, repository: str) -> list[str]:
        return list(json.loads(self._get(f"/v2/{repository}/tags/list")).get("tags") or [])


def registry_config(storage: Path, address: str, cert: Path, key: Path) -> str:
    """docker-registry's config (JSON is valid YAML, and quoting is then never a question)."""
    config = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": address, "tls": {"certificate": str(cert), "key": str(key)}},
    }
    return json.dumps(config, indent=2) + "\n"


async def start_registry(state: LabState, base: Path, gateway: str, sock_dir: Path) -> RegistryInfo:
    """Start the registry on the lab gateway, then build and push the demo images into it."""
    from dataclasses import replace

    from mcfleet.lab.images import build_and_push

    info = await _serve(state, base, gateway)
    run_root = sock_dir / "img"  # podman's runroot for the image builds: must be short
    refs = await build_and_push(base / "registry" / "build", run_root, info.address, Path(info.ca_file))
    return replace(info, images=refs)


async def _serve(state: LabState, base: Path, gateway: str) -> RegistryInfo:
    which("docker-registry")
    d = base / "registry"
    ca, leaf, key = make_ca_and_leaf(d / "tls", "mcfleet lab registry CA", extra_ips=(gateway,))
    port = free_port(gateway)
    address = f"{gateway}:{port}"
    storage = d / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    conf = d / "config.yml"
    conf.write_text(registry_config(storage, address, leaf, key))
    log = d / "registry.log"
    pid = spawn(["docker-registry", "serve", str(conf)], log=log)
    state.add(Resource("process", "registry", pid, start_time(pid), str(log)))
    await wait_port(gateway, port, limit_s=20, what="docker-registry", pid=pid, log=log)
    info = RegistryInfo(pid, address, str(ca), str(storage), str(log))
    try:
        info._get("/v2/")
    except OSError as exc:
        raise LabError(f"the lab registry does not answer /v2/: {exc}; {log_tail(log)}", location=str(log)) from None
    return info
