"""`mcfleet init DIR`: a new fleet folder that validates, with editor schemas wired in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mcfleet.cli.output import emit_json
from mcfleet.errors import InputError
from mcfleet.util.files import atomic_write_text

GITIGNORE = "# mcfleet's local state (journal, apply lock, ssh files)\n.mcfleet/\n# saved plans\nplan*.json\n"
PIN_UID = 850  # the `mcp` account's pinned UID/GID: one value on every node, checked before any change


def fleet_file(zone: str) -> dict[str, Any]:
    return {
        "$schema": "schemas/fleet.schema.json",
        "zone": zone,
        "public_domains": [],
        "pins": {
            "mcp": {"uid": PIN_UID, "gid": PIN_UID, "reason": "check it is free on every node before the first apply"}
        },
    }


def host_file(name: str, *, os_name: str, arch: str, address: str, host_key: str | None, user: str) -> dict[str, Any]:
    ssh: dict[str, Any] = {"user": user}
    if host_key:
        ssh["host_key"] = host_key
    else:
        ssh["known_hosts"] = "~/.ssh/known_hosts"
    if user != "root":
        ssh["sudo"] = True
    return {
        "$schema": "../../schemas/host.schema.json",
        "name": name,
        "os": os_name,
        "arch": arch,
        "roles": ["master", "worker"],
        "ssh": ssh,
        "addresses": [address],
        "users": {"mcp": {"uid": PIN_UID, "gid": PIN_UID}},
        "dns": {"nameservers": ["1.1.1.1"], "fallback": ["9.9.9.9"]},
    }


def init(  # noqa: PLR0917 (typer maps parameters to options)
    directory: Path = typer.Argument(..., help="The new fleet folder (created; must be empty if it exists)."),
    host: str = typer.Option("node1", "--host", help="The first host's name."),
    address: str = typer.Option("192.0.2.10", "--address", help="The first host's SSH address."),
    os_name: str = typer.Option("debian", "--os", help="debian or nixos."),
    arch: str = typer.Option("amd64", "--arch", help="amd64 or arm64."),
    host_key: str | None = typer.Option(None, "--host-key", help="Pin this host key ('ssh-ed25519 AAAA…')."),
    user: str = typer.Option("root", "--user", help="The SSH user (not root: sudo is used)."),
    zone: str = typer.Option("svc.example.test", "--zone", help="The fleet's internal DNS zone."),
    json_out: bool = typer.Option(False, "--json", help="Print the written files as JSON."),
) -> None:
    """Create a new fleet folder: fleet.json, one host, schemas wired, .gitignore.

    The files validate as written; edit hosts/<host>/host.json (the editor completes fields
    from schemas/), then `mcfleet validate` and `mcfleet plan`.  Without --host-key the
    host is checked against ~/.ssh/known_hosts (strictly; never trust on first use).

    Examples:

      mcfleet init ~/fleet

      mcfleet init ~/fleet --host rift --address 10.0.0.5 --host-key "$(cut -d' ' -f1-2 rift_host_key.pub)"

      cd ~/fleet && mcfleet validate && mcfleet plan
    """
    from mcfleet.fleet.load import load_fleet
    from mcfleet.fleet.rules import check
    from mcfleet.fleet.schema import write_schemas

    if directory.exists() and any(directory.iterdir()):
        raise InputError(
            f"{directory} exists and is not empty",
            location=f"mcfleet init {directory}",
            hint="pick a new folder; `mcfleet init` never overwrites files",
        )
    hosts_dir = directory / "hosts" / host
    hosts_dir.mkdir(parents=True, exist_ok=True)
    written = [directory / "fleet.json", hosts_dir / "host.json", directory / ".gitignore"]
    atomic_write_text(written[0], json.dumps(fleet_file(zone), indent=2) + "\n")
    data = host_file(host, os_name=os_name, arch=arch, address=address, host_key=host_key, user=user)
    atomic_write_text(written[1], json.dumps(data, indent=2) + "\n")
    atomic_write_text(written[2], GITIGNORE)
    written += write_schemas(directory / "schemas")
    findings = check(load_fleet(directory))
    if findings:
        listed = "; ".join(f.format().splitlines()[0] for f in findings[:3])
        raise InputError(
            f"the new fleet does not validate: {listed}",
            location=str(directory),
            hint="fix the option the finding names (e.g. --os, --arch, --host-key); run init in a new folder",
        )
    if json_out:
        emit_json({"dir": str(directory), "written": [str(p) for p in written], "valid": True})
        return
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"ok: a fleet with one host ({host}); next: cd {directory} && mcfleet validate && mcfleet plan")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
