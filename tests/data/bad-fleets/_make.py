"""Regenerate tests/data/fleets/minimal/ and one bad fleet per rule code from it.

Each bad fleet is the minimal fleet with ONE defect, plus `expect.json` naming the code
and the file + JSON pointer the finding must point at.  Run from the repo root:

    .venv/bin/python tests/data/bad-fleets/_make.py
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MINIMAL = HERE.parent / "fleets" / "minimal"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Qta2V5LW9ubHktZm9yLXRoZS1taW5pbWFsLWZsZWV0"

Files = dict[str, Any]  # relative path -> JSON data (or raw text for a str)


def _host(name: str, os: str, roles: list[str], address: str, **extra: Any) -> dict[str, Any]:
    return {
        "$schema": "../../../../../schemas/host.schema.json",
        "name": name,
        "os": os,
        "arch": "amd64",
        "roles": roles,
        "ssh": {"user": "root", "host_key": KEY},
        "addresses": [address],
        "users": {"mcp": {"uid": 850, "gid": 850}},
        "dns": {"nameservers": ["10.0.0.1"], "fallback": ["1.1.1.1"]},
        **extra,
    }


def _service(name: str, stage: str, image: str, **component: Any) -> dict[str, Any]:
    return {
        "$schema": "../../../../../../schemas/service.schema.json",
        "name": name,
        "stage": stage,
        "components": [{"name": name, "image": image, **component}],
    }


def minimal() -> Files:
    return {
        "fleet.json": {
            "$schema": "../../../../schemas/fleet.schema.json",
            "zone": "svc.example.test",
            "public_domains": ["example.test"],
            "pins": {"mcp": {"uid": 850, "gid": 850, "reason": "checked free on every node"}},
        },
        "hosts/alpha/host.json": _host(
            "alpha",
            "nixos",
            ["master", "worker"],
            "10.0.0.1",
            users={
                "mcp": {"uid": 850, "gid": 850},
                "deploy": {"uid": 30000, "gid": 30000},
            },
        ),
        "hosts/alpha/services/dns.json": _service("dns", "foundation", "registry.example.test:5000/dns:v1.0.0"),
        "hosts/alpha/services/web.json": {
            **_service(
                "web",
                "services",
                "registry.example.test:5000/web:v1.0.0",
                volumes=["/srv/web:/srv/web"],
                cmd=["server", "--config", "/srv/web/web.toml"],
                routes=[
                    {
                        "port": 8080,
                        "mode": "l7",
                        "hostname": "www.example.test",
                        "public": True,
                        "bind": ["127.0.0.1", "10.0.0.1"],
                    }
                ],
            ),
            "depends_on": ["dns"],
        },
        "hosts/beta/host.json": _host("beta", "nixos", ["worker"], "10.0.0.3"),
        "hosts/edge1/host.json": _host(
            "edge1",
            "debian",
            ["edge"],
            "10.0.0.2",
            routes=[{"hostname": "git.example.test", "mode": "l7", "backend": "127.0.0.1:3000", "public": True}],
        ),
    }


def _set(files: Files, path: str, pointer: list[Any], value: Any) -> None:
    node = files[path]
    for part in pointer[:-1]:
        node = node[part]
    node[pointer[-1]] = value


WEB = "hosts/alpha/services/web.json"
Defect = tuple[Callable[[Files], None], str, str]


def _add(path: str, data: Any) -> Callable[[Files], None]:
    return lambda f: f.__setitem__(path, data)


DEFECTS: dict[str, Defect] = {
    "json-syntax": (_add(WEB, '{"name": "web",\n  "components": [],\n}\n'), WEB, ""),
    "schema": (
        lambda f: _set(f, WEB, ["components", 0, "routes", 0, "mode"], "l9"),
        WEB,
        "/components/0/routes/0/mode",
    ),
    "missing-file": (_add("hosts/gamma/configuration.nix", "{ ... }: { }\n"), "hosts/gamma/host.json", ""),
    "unreadable": (_add("hosts/gamma", "a file where a host folder belongs\n"), "hosts/gamma", ""),
    "duplicate-key": (lambda f: _as_text(f, "hosts/beta/host.json", '{\n  "os": "nixos",'), "hosts/beta/host.json", ""),
    "file-too-large": (
        lambda f: _as_text(f, "hosts/beta/host.json", "{" + " " * 256 * 1024),
        "hosts/beta/host.json",
        "",
    ),
    "name-mismatch": (lambda f: _set(f, "hosts/edge1/host.json", ["name"], "edge2"), "hosts/edge1/host.json", "/name"),
    "pin-mismatch": (
        lambda f: _set(f, "hosts/edge1/host.json", ["users", "mcp", "uid"], 851),
        "hosts/edge1/host.json",
        "/users/mcp/uid",
    ),
    "pin-missing": (lambda f: _set(f, "hosts/edge1/host.json", ["users"], {}), "hosts/edge1/host.json", "/users"),
    "id-duplicate": (
        lambda f: _set(f, "hosts/alpha/host.json", ["users", "backup"], {"uid": 30001, "gid": 30000}),
        "hosts/alpha/host.json",
        "/users/backup/gid",
    ),
    "id-dynamic-range": (lambda f: f["fleet.json"]["pins"]["mcp"].pop("reason"), "fleet.json", "/pins/mcp/uid"),
    "id-system-collision": (
        lambda f: _set(f, "hosts/alpha/host.json", ["system_accounts"], {"sshd": {"uid": 850}}),
        "hosts/alpha/host.json",
        "/users/mcp/uid",
    ),
    "subid-overlap": (
        lambda f: (
            _set(f, "hosts/alpha/host.json", ["ssh"], {"user": "kyle", "sudo": True, "host_key": KEY}),
            _set(f, "hosts/alpha/host.json", ["users", "mcp", "subuid"], {"start": 100000, "count": 65536}),
        ),
        "hosts/alpha/host.json",
        "/users/mcp/subuid",
    ),
    "dns-no-fallback": (
        lambda f: _set(f, "hosts/beta/host.json", ["dns", "fallback"], ["10.0.0.2"]),
        "hosts/beta/host.json",
        "/dns/fallback",
    ),
    "dns-fallback-unused": (
        lambda f: _set(
            f,
            "hosts/beta/host.json",
            ["dns"],
            {"resolver": "systemd-resolved", "nameservers": ["10.0.0.1"], "fallback_dns": ["1.1.1.1"]},
        ),
        "hosts/beta/host.json",
        "/dns/fallback_dns",
    ),
    "dns-fallback-internal": (
        lambda f: _set(f, "hosts/beta/host.json", ["dns", "fallback"], ["10.0.0.2", "1.1.1.1"]),
        "hosts/beta/host.json",
        "/dns/fallback/0",
    ),
    "dns-fallback-unreached": (
        lambda f: _set(f, "hosts/beta/host.json", ["dns", "nameservers"], ["10.0.0.1", "10.0.0.53", "10.0.1.53"]),
        "hosts/beta/host.json",
        "/dns/fallback/0",
    ),
    "dns-unreachable": (
        lambda f: _set(f, "hosts/beta/host.json", ["tags"], ["tailnet"]),
        "hosts/beta/host.json",
        "/dns/nameservers/0",
    ),
    "image-unpinned": (
        lambda f: _set(f, WEB, ["components", 0, "image"], "registry.example.test:5000/web"),
        WEB,
        "/components/0/image",
    ),
    "address-duplicate": (
        lambda f: _set(f, "hosts/edge1/host.json", ["addresses"], ["10.0.0.1"]),
        "hosts/edge1/host.json",
        "/addresses/0",
    ),
    "route-duplicate": (
        lambda f: f[WEB]["components"][0]["routes"].append({"name": "alt", "port": 8080, "mode": "l4"}),
        WEB,
        "/components/0/routes/1/port",
    ),
    "public-no-edge": (
        lambda f: _set(f, "hosts/edge1/host.json", ["roles"], ["worker"]),
        WEB,
        "/components/0/routes/0/public",
    ),
    "route-listener-duplicate": (
        lambda f: f[WEB]["components"][0]["routes"].append(
            {"name": "api", "port": 8081, "mode": "l4", "hostname": "www.example.test"}
        ),
        WEB,
        "/components/0/routes/1/listener",
    ),
    "route-name-split": (
        lambda f: f[WEB]["components"][0]["routes"].extend(
            [
                {"name": "app", "port": 8081, "mode": "l7", "listener": 8443},
                {"name": "site", "port": 8082, "mode": "l7", "public": True, "bind": ["10.0.0.1"]},
            ]
        ),
        WEB,
        "/components/0/routes/2/public",
    ),
    "public-loopback": (
        lambda f: _set(f, WEB, ["components", 0, "routes", 0, "bind"], ["127.0.0.1"]),
        WEB,
        "/components/0/routes/0/bind",
    ),
    "bind-other-host": (
        lambda f: (
            _set(f, WEB, ["components", 0, "routes", 0, "bind"], ["127.0.0.1", "10.0.0.3"]),
            # loopback and wildcards stay every node's, even listed by a host (no finding for web's 127.0.0.1)
            _set(f, "hosts/edge1/host.json", ["addresses"], ["10.0.0.2", "127.0.0.1", "0.0.0.0"]),
            # a publish on edge1's address, one on alpha's own and one on the wildcard (no finding)
            _set(
                f,
                "hosts/alpha/services/dns.json",
                ["components", 0, "publish"],
                [
                    {"host_ip": "10.0.0.2", "host_port": 53, "container_port": 53, "protocol": "udp"},
                    {"host_ip": "10.0.0.1", "host_port": 5353, "container_port": 53},
                    {"host_ip": "0.0.0.0", "host_port": 5354, "container_port": 53},
                ],
            ),
        ),
        WEB,
        "/components/0/routes/0/bind/1",
    ),
    "public-domain": (
        lambda f: _set(f, WEB, ["components", 0, "routes", 0, "hostname"], "www.example.org"),
        WEB,
        "/components/0/routes/0/hostname",
    ),
    "edge-containers": (
        _add(
            "hosts/edge1/services/cache.json",
            _service("cache", "services", "registry.example.test:5000/cache:v2.1.0"),
        ),
        "hosts/edge1/services/cache.json",
        "/components",
    ),
    "firewall-unmanaged": (
        lambda f: _set(f, "hosts/edge1/host.json", ["firewall_ports"], [8443]),
        "hosts/edge1/host.json",
        "/firewall_ports",
    ),
    "master-count": (
        lambda f: _set(f, "hosts/beta/host.json", ["roles"], ["master", "worker"]),
        "hosts/beta/host.json",
        "/roles",
    ),
    "core-off-master": (
        _add("hosts/beta/services/cache.json", _service("cache", "core", "registry.example.test:5000/cache:v2.1.0")),
        "hosts/beta/services/cache.json",
        "/stage",
    ),
    "name-claimed-twice": (
        lambda f: (
            f.__setitem__("hosts/beta/services/web.json", copy.deepcopy(f[WEB])),
            # the copy publishes on beta's own address (alpha's would be a bind-other-host)
            _set(f, "hosts/beta/services/web.json", ["components", 0, "routes", 0, "bind"], ["127.0.0.1", "10.0.0.3"]),
            # and a host route on a service's name (another listener: not a route-listener-duplicate)
            _set(
                f,
                "hosts/beta/host.json",
                ["routes"],
                [{"hostname": "dns.svc.example.test", "listener": 9443, "mode": "l7", "backend": "127.0.0.1:3000"}],
            ),
        ),
        "hosts/beta/services/web.json",
        "/name",
    ),
    "unknown-reference": (lambda f: _set(f, WEB, ["depends_on"], ["dns", "nosuch"]), WEB, "/depends_on/1"),
    "host-port-duplicate": (
        lambda f: (
            _set(
                f,
                "hosts/alpha/services/dns.json",
                ["components", 0, "publish"],
                [{"host_port": 20080, "container_port": 8053}],
            ),
            _set(f, WEB, ["components", 0, "routes", 0, "host_port"], 20080),
        ),
        WEB,
        "/components/0/routes/0/host_port",
    ),
    "port-range-exhausted": (
        lambda f: (
            _set(f, "fleet.json", ["ports"], {"min": 20000, "max": 20000}),
            _set(
                f,
                "hosts/alpha/services/dns.json",
                ["components", 0, "publish"],
                [{"host_port": 20000, "container_port": 53, "protocol": "udp"}],
            ),
        ),
        "fleet.json",
        "/ports",
    ),
    "secret-recipient-missing": (
        lambda f: _set(f, WEB, ["files"], [{"path": "token", "secret": "web-token", "mode": "0600"}]),
        WEB,
        "/files/0/secret",
    ),
    "source-unreadable": (
        # a source beside it that exists and one that does not: one finding, for the missing one
        lambda f: (
            _set(
                f,
                WEB,
                ["files"],
                [
                    {"path": "motd", "source": "files/web/motd"},
                    {"path": "web.toml", "source": "files/web/web.toml", "template": True},
                ],
            ),
            f.__setitem__("files/web/motd", "hello\n"),
        ),
        WEB,
        "/files/1/source",
    ),
    "template-unknown": (
        # {{ port.web/0 }} and {{ zone }} are filled; {{ port.web/9 }} (no such route) and {{ nope }} are not
        lambda f: (
            _set(f, WEB, ["files"], [{"path": "web.toml", "source": "files/web/web.toml", "template": True}]),
            f.__setitem__(
                "files/web/web.toml",
                "listen = {{ port.web/0 }}\nzone = {{zone}}\nadmin = {{ port.web/9 }}\nx = {{ nope }}\n",
            ),
        ),
        WEB,
        "/files/0/source",
    ),
    "stage-cycle": (
        lambda f: _set(f, "hosts/alpha/services/dns.json", ["depends_on"], ["web"]),
        "hosts/alpha/services/dns.json",
        "/depends_on/0",
    ),
    "jump-loop": (
        lambda f: _set(f, "hosts/alpha/host.json", ["ssh", "jump"], "alpha"),
        "hosts/alpha/host.json",
        "/ssh/jump",
    ),
    "secret-recipient-invalid": (
        lambda f: _set(f, "fleet.json", ["secret_recipients"], ["age1invalidrecipient"]),
        "fleet.json",
        "/secret_recipients/0",
    ),
}


def _as_text(files: Files, rel: str, opening: str) -> None:
    """Replace a JSON file by its text with `opening` in place of its first `{` (a repeated key, padding)."""
    files[rel] = opening + (json.dumps(files[rel], indent=2) + "\n")[1:]


def write(root: Path, files: Files) -> None:
    if root.exists():
        shutil.rmtree(root)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = data if isinstance(data, str) else json.dumps(data, indent=2) + "\n"
        path.write_text(text)


def main() -> None:
    write(MINIMAL, minimal())
    for code, (apply, file, pointer) in DEFECTS.items():
        files = copy.deepcopy(minimal())
        apply(files)
        # bad-fleets/<code>/ sits as deep as fleets/minimal/, so the $schema links stay right
        files["expect.json"] = {"code": code, "file": file, "pointer": pointer}
        write(HERE / code, files)


if __name__ == "__main__":
    main()
