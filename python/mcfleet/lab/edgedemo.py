"""Give a lab with two or more full nodes an edge, for the demo: `python -m mcfleet.lab.edgedemo DIR`.

The last full node becomes the edge (roles ["edge"]); Caddy (:443) and HAProxy (:8443) start
inside the full nodes (lab/peers/nodeproxy.py) and become the fleet's route providers; the
first full node runs three host-native programs, declared as routes in its host.json:
`pub.<zone>` (public l7, served by the edge's Caddy), `int.<zone>` (internal l7, served by the
node's own Caddy) and `sni.<zone>` (l4 on :8443: HAProxy passes TLS through to the program,
which has its own certificate).  The next `mcfleet apply` issues their certificates from Pebble,
writes their A records into Knot and their routes into the proxies.

Prints shell assignments (EDGE, WORKER, PUB, INT, SNI, PEBBLE_ROOT, SNI_CA) for the curl lines.
Every process started here is recorded in the lab's state, so `mcfleet lab down` stops it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shlex
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mcfleet.errors import LabError
from mcfleet.lab.lab import Lab
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.peers.nodeproxy import providers_json, start_node_proxies
from mcfleet.lab.peers.pebble import PebbleInfo
from mcfleet.lab.proc import spawn, start_time
from mcfleet.lab.state import Resource

PORTS = {"pub": 18181, "int": 18182, "sni": 18443}


def _self_signed(hostname: str, out: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crt, k = out / "sni.pem", out / "sni.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    k.chmod(0o600)
    return crt, k


def _programs(lab: Lab, node: LabNode, d: Path, zone: str) -> Path:
    """The worker's three programs, in its network namespace; returns the TLS server's certificate."""
    net = ["nsenter", "-t", str(node.ns_pid), "-n", "--"]
    for name in ("pub", "int"):
        (d / name).mkdir(parents=True, exist_ok=True)
        (d / name / "index.html").write_text(f"this is the {name} page, served on {node.name}\n")
        argv = [*net, "/usr/bin/python3", "-m", "http.server", str(PORTS[name]), "--directory", str(d / name)]
        pid = spawn(argv, log=d / f"{name}.log")
        lab.state.add(Resource("process", f"edgedemo-{name}@{node.name}", pid, start_time(pid), str(d / f"{name}.log")))
    crt, key = _self_signed(f"sni.{zone}", d)
    argv = [*net, "/usr/bin/openssl", "s_server", "-accept", str(PORTS["sni"]), "-cert", str(crt), "-key", str(key),
            "-www", "-quiet"]  # fmt: skip
    pid = spawn(argv, log=d / "sni.log")
    lab.state.add(Resource("process", f"edgedemo-sni@{node.name}", pid, start_time(pid), str(d / "sni.log")))
    return crt


def _edit(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2) + "\n")


async def setup(directory: Path) -> dict[str, str]:
    lab = Lab(directory)
    full = sorted((n for n in lab.nodes.values() if n.kind == "full"), key=lambda n: n.index)
    if len(full) < 2:
        raise LabError("the edge demo needs two full nodes", hint="mcfleet lab up --full 2 --dir DIR")
    worker, edge = full[0], full[-1]
    d = lab.run_dir / "edgedemo"
    d.mkdir(parents=True, exist_ok=True)
    zone = lab.zone
    sni_ca = _programs(lab, worker, d, zone)
    proxies = await asyncio.gather(*(start_node_proxies(lab.state, lab.run_dir, n) for n in (worker, edge)))
    fleet_file = lab.root / "fleet.json"
    fleet = json.loads(fleet_file.read_text())
    fleet["public_domains"] = sorted({*fleet.get("public_domains", []), zone})
    fleet.setdefault("providers", {}).update(providers_json(proxies[0]))
    fleet_file.write_text(json.dumps(fleet, indent=2) + "\n")
    _edit(lab.root / "hosts" / edge.name / "host.json", roles=["edge"])
    # An edge node runs no containers: its services (the lab's demo services) move to the worker.
    for svc in sorted((lab.root / "hosts" / edge.name / "services").glob("*.json")):
        target = lab.root / "hosts" / worker.name / "services" / svc.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(svc.read_text().replace(f'"{edge.address}"', f'"{worker.address}"'))  # its publish address
        svc.unlink()
    routes = [
        {"hostname": f"pub.{zone}", "mode": "l7", "backend": f"{worker.address}:{PORTS['pub']}", "public": True},
        {"hostname": f"int.{zone}", "mode": "l7", "backend": f"127.0.0.1:{PORTS['int']}"},
        {"hostname": f"sni.{zone}", "mode": "l4", "listener": 8443, "backend": f"127.0.0.1:{PORTS['sni']}"},
    ]
    _edit(lab.root / "hosts" / worker.name / "host.json", routes=routes)
    root_pem = d / "pebble-root.pem"
    if "pebble" in lab.peers:
        root_pem.write_text(PebbleInfo(**lab.peers["pebble"]).root_pem())
    return {
        "EDGE": edge.address,
        "WORKER": worker.address,
        "PUB": f"pub.{zone}",
        "INT": f"int.{zone}",
        "SNI": f"sni.{zone}",
        "PEBBLE_ROOT": str(root_pem),
        "SNI_CA": str(sni_ca),
    }


def main() -> None:
    if len(sys.argv) != 2:
        print("usage: python -m mcfleet.lab.edgedemo LAB_DIR", file=sys.stderr)
        raise SystemExit(2)
    try:
        values = asyncio.run(setup(Path(sys.argv[1])))
    except LabError as exc:
        print(exc.format(), file=sys.stderr)
        raise SystemExit(1) from None
    for key, value in values.items():
        print(f"{key}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
