"""Write the lab's fleet directory: fleet.json (providers = the lab peers) and hosts/<node>/host.json.

Secrets are referenced by file path only (TSIG key, ACME account key), as in a real fleet.
The result is checked with the same loader and rules as `mcfleet validate`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcfleet.errors import LabError
from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.rules import check
from mcfleet.fleet.sshfiles import write_ssh_files
from mcfleet.lab.login import ssh_fields
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.peers.nodeproxy import providers_json as node_providers
from mcfleet.util.files import atomic_write_text

FALLBACK_RESOLVERS = ["1.1.1.1", "9.9.9.9"]


def fleet_json(zone: str, peers: dict[str, dict[str, Any]], account_key: Path | None) -> dict[str, Any]:
    providers: dict[str, Any] = {}
    if "knot" in peers:
        k = peers["knot"]
        providers["dns"] = {
            "kind": "rfc2136",
            "server": k["server"],
            "port": k["port"],
            "key_name": k["key_name"],
            "key_file": k["key_file"],
            "algorithm": k["algorithm"],
            "ttl": 60,
        }
    if "pebble" in peers and account_key is not None:
        p = peers["pebble"]
        providers["cert"] = {
            "kind": "acme",
            "directory": p["directory"],
            "account_key_file": str(account_key),
            "ca_file": p["ca_file"],
        }
    if "caddy" in peers:
        providers["route"] = {"kind": "caddy", "admin_url": peers["caddy"]["admin_url"], "server": "edge"}
    if "haproxy" in peers:
        h = peers["haproxy"]
        providers["route_l4"] = {"kind": "haproxy", "admin_socket": h["admin_socket"], "map_file": h["map_file"]}
    return {
        "name": "lab",
        "zone": zone,
        "pins": {"mcp": {"uid": 850, "gid": 850, "reason": "the platform's pinned mcp account (lab copy)"}},
        "providers": providers,
    }


def host_json(node: LabNode, client_key: Path, nameserver: str, *, master: bool) -> dict[str, Any]:
    roles = ["master"] if master else ["worker"]
    return {
        "name": node.name,
        "description": f"lab {node.kind} node in netns {node.netns}",
        "os": "debian",
        "arch": node.arch,
        "roles": roles,
        "tags": ["lab", node.kind],
        "ssh": {
            **ssh_fields(node.login),
            "port": node.ssh_port,
            "host_key": node.host_key,
            "identity_file": str(client_key),
        },
        "addresses": [node.address],
        "users": {"mcp": {"uid": 850, "gid": 850}},
        "dns": {"nameservers": [nameserver], "fallback": FALLBACK_RESOLVERS},
    }


# Marks the service files mcfleet lab writes (it rewrites or removes only those).
DEMO_DESCRIPTION = "mcfleet lab demo: busybox httpd from the lab registry, answers with its name and version"


def demo_service(name: str, stage: str, image: str, address: str, *, volume: str | None = None) -> dict[str, Any]:
    """One demo service: the image answers HTTP on $PORT; published on the node's loopback and
    its lab address (so the edge and a curl from this machine reach it); an http health check."""
    component: dict[str, Any] = {
        "name": name,
        "image": image,
        "routes": [{"port": 8080, "mode": "l7", "bind": ["127.0.0.1", address]}],
        "health": {"kind": "http", "port": 8080, "path": "/", "timeout_s": 2},
    }
    if volume:
        component["volumes"] = [f"{volume}:/data"]
    return {"name": name, "description": DEMO_DESCRIPTION, "stage": stage, "components": [component]}


def volume_service(name: str, stage: str, image: str) -> dict[str, Any]:
    """A demo-image service with its data in /srv/<name> (mounted at /data), published on the
    node's default address, with an http health check: what the deploy tests and bench use."""
    component: dict[str, Any] = {
        "name": name,
        "image": image,
        "volumes": [f"/srv/{name}:/data"],
        "routes": [{"port": 8080, "mode": "l7"}],
        "health": {"kind": "http", "port": 8080, "path": "/", "timeout_s": 2},
    }
    return {"name": name, "stage": stage, "components": [component]}


def demo_services(full_nodes: list[LabNode], registry: str) -> dict[str, list[dict[str, Any]]]:
    """host -> its demo services: three services over (at most) the first two full nodes, in two
    boot stages (db in foundation; hello and api in services), images from the lab registry."""
    if not full_nodes:
        return {}
    first, second = full_nodes[0], full_nodes[1] if len(full_nodes) > 1 else full_nodes[0]
    plan: dict[str, list[dict[str, Any]]] = {first.name: [], second.name: []}
    plan[first.name].append(demo_service("db", "foundation", f"{registry}/demo/db:1", first.address,
                                         volume="/srv/db"))  # fmt: skip
    plan[first.name].append(demo_service("hello", "services", f"{registry}/demo/hello:1", first.address))
    plan[second.name].append(demo_service("api", "services", f"{registry}/demo/api:1", second.address))
    return plan


def _is_demo(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text()).get("description") == DEMO_DESCRIPTION)
    except (OSError, ValueError, AttributeError):
        return False


def _write_services(folder: Path, services: list[dict[str, Any]]) -> None:
    """Write this host's demo services; remove demo files it no longer has (a user's files stay)."""
    target = folder / "services"
    wanted = {svc["name"] for svc in services}
    if target.is_dir():
        for old in target.glob("*.json"):
            if old.stem not in wanted and _is_demo(old):
                old.unlink()
    for svc in services:
        path = target / f"{svc['name']}.json"
        if path.exists() and not _is_demo(path):
            continue  # the user's own file of that name wins
        target.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(svc, indent=2) + "\n")


def _drop_stale_hosts(hosts: Path, keep: set[str]) -> None:
    """Remove lab hosts of an earlier `lab up` that this lab does not have (their keys are dead).

    Only host folders mcfleet lab wrote (tag "lab") that hold nothing but host.json and demo
    services: a user's services are never deleted.
    """
    for host_file in hosts.glob("*/host.json"):
        folder = host_file.parent
        services = sorted((folder / "services").glob("*")) if (folder / "services").is_dir() else []
        others = [p.name for p in folder.iterdir() if p.name not in ("host.json", "services")]
        if folder.name in keep or others or not all(p.suffix == ".json" and _is_demo(p) for p in services):
            continue
        try:
            tags = json.loads(host_file.read_text()).get("tags", [])
        except (OSError, ValueError):
            continue
        if "lab" in tags:
            for svc in services:
                svc.unlink()
            if (folder / "services").is_dir():
                (folder / "services").rmdir()
            host_file.unlink()
            folder.rmdir()


def write_fleet_dir(
    dest: Path,
    *,
    zone: str,
    nodes: list[LabNode],
    peers: dict[str, dict[str, Any]],
    client_key: Path,
    account_key: Path | None,
    nameserver: str,
    services: bool = False,
    node_proxies: bool = False,
) -> Path:
    """Write (or rewrite) a complete fleet directory; raise if `validate` would not accept it.

    With `services` and a lab registry, the full nodes get the demo services (demo_services).
    With `node_proxies` (HAProxy + Caddy run inside every full node), they are the route providers."""
    dest.mkdir(parents=True, exist_ok=True)
    registry = peers.get("registry", {}).get("address")
    demo = demo_services([n for n in nodes if n.kind == "full"], registry) if services and registry else {}
    fleet = fleet_json(zone, peers, account_key)
    if node_proxies:
        fleet["providers"].update(node_providers())  # the proxies inside the nodes serve the routes
    elif demo:
        # The lab's own Caddy and HAProxy run on this machine, not on a fleet host, so they cannot
        # read the certificates the cert step installs on the nodes: without proxies in the nodes,
        # the route kind stays "blocked" (no route provider).
        for key in ("route", "route_l4"):
            fleet["providers"].pop(key, None)
    atomic_write_text(dest / "fleet.json", json.dumps(fleet, indent=2) + "\n")
    hosts = dest / "hosts"
    hosts.mkdir(exist_ok=True)
    _drop_stale_hosts(hosts, {n.name for n in nodes})
    for i, node in enumerate(nodes):  # the first node of a fleet is its (one) master
        text = json.dumps(host_json(node, client_key, nameserver, master=i == 0), indent=2) + "\n"
        atomic_write_text(hosts / node.name / "host.json", text)
        _write_services(hosts / node.name, demo.get(node.name, []))
    loaded = load_fleet(dest)
    findings = check(loaded)
    if findings:
        first = findings[0]
        # the lab leaves a service file it did not write (one a person edited) as it is: that one is theirs
        own = [f.file for f in findings if f.file.endswith(".json") and "/services/" in f.file
               and (dest / f.file).is_file() and not _is_demo(dest / f.file)]  # fmt: skip
        hint = (
            f"{own[0]} is not the lab's demo file (the lab leaves it as it is): fix it, or move it out of {dest}"
            if own
            else "this is a bug in mcfleet lab; please report it"
        )
        raise LabError(f"the lab fleet directory does not validate: {first.format()}", location=str(dest), hint=hint)
    write_ssh_files(loaded)  # .mcfleet/known_hosts + ssh_config: plain `ssh -F` reaches the nodes, strictly
    return dest
