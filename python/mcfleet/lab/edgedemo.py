"""Give a lab fleet an edge and three container services routed through it: `python -m mcfleet.lab.edgedemo DIR`.

The last full node becomes the edge (roles ["edge"]; it runs no containers: the lab's demo
services on it move to the first full node, the worker).  HAProxy and Caddy start inside both
nodes (lab/peers/nodeproxy.py) and become the fleet's route providers.  The worker runs three
services from the lab registry:

- `hello` — public l7: the edge's proxy ends TLS for `hello.<zone>` with a Pebble
  certificate and forwards to the container's port published on the worker's address (the
  name's A record leads to the edge);
- `api` — internal l7: the worker's own proxy ends TLS for `api.<zone>`;
- `sni` — l4 on listener 8443: HAProxy passes TLS through by SNI to the container, which ends
  TLS itself (demo/sni, Caddy in the image).  Its certificate is the service's own, not
  issued by the fleet's cert provider (that one issues for the routes a proxy ends): a
  certificate made here, delivered by the files kind into /srv/sni (mounted at /tls) — the
  certificate as a plain file of the fleet repository, the private key as an age-encrypted
  secret (secrets/sni-tls-key.age, to an operator key made here and the worker's host key).

The next `mcfleet apply` (with $MCFLEET_AGE_IDENTITY set to the printed identity) deploys the
containers, issues the certificates from Pebble, writes the A records into Knot and the
routes into the proxies.  Prints shell assignments for the curl lines: EDGE, WORKER, WORKER_NAME, PUB,
INT, SNI, PEBBLE_ROOT, SNI_CA, MCFLEET_AGE_IDENTITY, and KNOT, KNOT_PORT (the zone's server,
where the curl lines look the names up).  Every process started here is
recorded in the lab's state, so `mcfleet lab down` stops it.

Running the set-up again on the same lab keeps the proxies already running, the service files that
exist, and sni's certificate and key while they still serve (else the next apply would replace sni's
files and restart it); it sets the fleet's providers and the edge's roles again.  To get the
variables in another shell, `--values` reads them and writes nothing: an operator's own changes
since (a rotated sni key, a provider setting) stay as they are.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mcfleet.errors import LabError
from mcfleet.lab.fleetdir import DEMO_DESCRIPTION, demo_service
from mcfleet.lab.lab import Lab
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.peers.nodeproxy import providers_json, start_node_proxies
from mcfleet.lab.peers.pebble import PebbleInfo
from mcfleet.util.files import atomic_write_bytes, atomic_write_text

SNI_SECRET = "sni-tls-key"
SNI_PORT = 8443  # the port demo/sni listens on in its container, and its route's listener
SNI_CERT_SOURCE = "files/sni/tls.pem"


def self_signed(hostname: str, days: int = 365) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for `hostname`, self-signed: a client trusts exactly it."""
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
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), pem


def sni_service(image: str, address: str) -> dict[str, Any]:
    """demo/sni behind an l4 route on listener 8443; its certificate and key land in /srv/sni (-> /tls)."""
    return {
        "name": "sni",
        "description": DEMO_DESCRIPTION,
        "stage": "services",
        "files": [
            {"path": "tls.pem", "source": SNI_CERT_SOURCE, "mode": "0644"},
            {"path": "tls.key", "secret": SNI_SECRET, "mode": "0600"},
        ],
        "components": [
            {
                "name": "sni",
                "image": image,
                "volumes": ["/srv/sni:/tls:ro"],
                "routes": [{"port": SNI_PORT, "mode": "l4", "listener": SNI_PORT, "bind": ["127.0.0.1", address]}],
                "health": {"kind": "tcp", "port": SNI_PORT, "timeout_s": 5},
            }
        ],
    }


def _json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _operator_identity(d: Path) -> tuple[Path, str]:
    """The lab operator's age identity (made once): its file and public key."""
    import pyrage  # type: ignore[import-untyped]  # no type information shipped

    path = d / "age.key"
    if not path.exists():
        atomic_write_text(path, f"{pyrage.x25519.Identity.generate()}\n", mode=0o600)
    identity = pyrage.x25519.Identity.from_str(path.read_text().strip())
    return path, str(identity.to_public())


def _worker_services(root: Path, worker: LabNode, edge: LabNode, registry: str) -> None:
    """Move the edge's services to the worker; hello public, api internal (kept or made), sni made."""
    services = root / "hosts" / worker.name / "services"
    for svc in sorted((root / "hosts" / edge.name / "services").glob("*.json")):
        text = svc.read_text().replace(f'"{edge.address}"', f'"{worker.address}"')  # its publish address
        atomic_write_text(services / svc.name, text)
        svc.unlink()
    for name, public in (("hello", True), ("api", False)):
        path = services / f"{name}.json"
        data = _json(path) if path.exists() else demo_service(name, "services", f"{registry}/demo/{name}:1",
                                                              worker.address)  # fmt: skip
        for comp in data["components"]:
            for route in comp.get("routes", []):
                route["public"] = public
        _write(path, data)
    sni = services / "sni.json"
    if not sni.exists():  # kept as the operator may have changed it (e.g. its image tag)
        _write(sni, sni_service(f"{registry}/demo/sni:1", worker.address))


# A certificate this close to its end is made anew (the demo's run would otherwise outlive it).
SNI_CERT_MIN_LEFT = dt.timedelta(days=30)


def _sni_material_serves(root: Path, hostname: str, identity: Path) -> bool:
    """Whether an earlier run's sni certificate and key still serve: the certificate names `hostname`
    and has 30 days or more left, the secret decrypts with this lab's operator identity to the key of
    that certificate, and it is encrypted to exactly the recipients the fleet wants now (a lab brought
    up again gives the worker a new host key)."""
    from mcfleet.errors import InputError
    from mcfleet.fleet.load import load_fleet
    from mcfleet.fleet.secrets import decrypt_secret, identities, recorded_recipients, wanted_recipients

    try:
        cert = x509.load_pem_x509_certificate((root / SNI_CERT_SOURCE).read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
        pem = decrypt_secret(root, SNI_SECRET, identities(identity))
        key = serialization.load_pem_private_key(pem, password=None)
    except (OSError, ValueError, x509.ExtensionNotFound, InputError):
        return False
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return (
        names == [hostname]
        and cert.not_valid_after_utc - dt.datetime.now(dt.UTC) >= SNI_CERT_MIN_LEFT
        and key.public_key().public_bytes(*public) == cert.public_key().public_bytes(*public)
        and recorded_recipients(root, SNI_SECRET) == wanted_recipients(load_fleet(root), SNI_SECRET)
    )


def sni_material(root: Path, hostname: str, identity: Path) -> bool:
    """sni's certificate (a plain file of the fleet) and its key (an age secret to the operator and the
    worker): kept when an earlier run's still serve, so running the demo's set-up again changes
    nothing; else made anew.  True when made."""
    from mcfleet.fleet.load import load_fleet
    from mcfleet.fleet.secrets import encrypt_secret

    if _sni_material_serves(root, hostname, identity):
        return False
    cert, key = self_signed(hostname)
    atomic_write_bytes(root / SNI_CERT_SOURCE, cert, mode=0o644)
    encrypt_secret(load_fleet(root), SNI_SECRET, key)  # to the operator key and the worker's host key
    return True


async def edge_fleet(lab: Lab, root: Path, worker: LabNode, edge: LabNode) -> dict[str, str]:
    """Make the fleet at `root` (whose hosts include `worker` and `edge`) the edge demo; return the values."""
    registry = lab.peers.get("registry", {}).get("address")
    if not registry:
        raise LabError("the edge demo needs the lab registry (its demo images)", hint="mcfleet lab up (with peers)")
    d = lab.run_dir / "edgedemo" / root.name
    d.mkdir(parents=True, exist_ok=True)
    zone = lab.zone
    await asyncio.gather(*(start_node_proxies(lab.state, lab.run_dir, n) for n in (worker, edge)))
    identity, public_key = _operator_identity(d)
    fleet = _json(root / "fleet.json")
    fleet["public_domains"] = sorted({*fleet.get("public_domains", []), zone})
    fleet["secret_recipients"] = sorted({*fleet.get("secret_recipients", []), public_key})
    fleet.setdefault("providers", {}).update(providers_json())
    _write(root / "fleet.json", fleet)
    edge_file = root / "hosts" / edge.name / "host.json"
    _write(edge_file, {**_json(edge_file), "roles": ["edge"]})
    _worker_services(root, worker, edge, registry)
    sni_material(root, f"sni.{zone}", identity)
    if "pebble" in lab.peers:
        atomic_write_text(d / "pebble-root.pem", PebbleInfo(**lab.peers["pebble"]).root_pem())
    return demo_values(lab, root, worker, edge)


def demo_values(lab: Lab, root: Path, worker: LabNode, edge: LabNode) -> dict[str, str]:
    """The demo's variables, read from the lab and the folder its set-up made: nothing is written."""
    d = lab.run_dir / "edgedemo" / root.name
    knot = lab.peers.get("knot", {})
    zone = lab.zone
    return {
        "KNOT": str(knot.get("server", "")),
        "KNOT_PORT": str(knot.get("port", "")),
        "EDGE": edge.address,
        "WORKER": worker.address,
        "WORKER_NAME": worker.name,
        "PUB": f"hello.{zone}",
        "INT": f"api.{zone}",
        "SNI": f"sni.{zone}",
        "PEBBLE_ROOT": str(d / "pebble-root.pem"),
        "SNI_CA": str(root / SNI_CERT_SOURCE),
        "MCFLEET_AGE_IDENTITY": str(d / "age.key"),
    }


def _demo_nodes(lab: Lab) -> tuple[LabNode, LabNode]:
    """(the worker, the edge): the first and the last full node."""
    full = sorted((n for n in lab.nodes.values() if n.kind == "full"), key=lambda n: n.index)
    if len(full) < 2:
        raise LabError("the edge demo needs two full nodes", hint="mcfleet lab up --full 2 --dir DIR")
    return full[0], full[-1]


async def setup(directory: Path) -> dict[str, str]:
    lab = Lab(directory)
    return await edge_fleet(lab, lab.root, *_demo_nodes(lab))


def values_only(directory: Path) -> dict[str, str]:
    """The variables of a demo set up earlier, changing nothing: not the fleet's files (providers, the
    edge's roles, service files), not sni's certificate and key (an operator may have rotated them)."""
    lab = Lab(directory)
    worker, edge = _demo_nodes(lab)
    found = demo_values(lab, lab.root, worker, edge)
    if not Path(found["MCFLEET_AGE_IDENTITY"]).is_file():
        raise LabError(f"the edge demo is not set up in {directory}", hint="run scripts/lab-demo.sh first")
    return found


USAGE = """usage: python -m mcfleet.lab.edgedemo [--values] LAB_DIR

Sets the lab fleet in LAB_DIR up as the edge demo (scripts/lab-demo.sh runs it), then prints the
demo's variables as shell assignments.  --values prints them only, changing nothing."""


def main() -> None:
    args = sys.argv[1:]
    only = args[:1] == ["--values"]
    if only:
        args = args[1:]
    if len(args) != 1 or args[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    try:
        values = values_only(Path(args[0])) if only else asyncio.run(setup(Path(args[0])))
    except LabError as exc:
        print(exc.format(), file=sys.stderr)
        raise SystemExit(1) from None
    for key, value in values.items():
        print(f"{key}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
