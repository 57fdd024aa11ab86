"""`mcfleet init DIR`: a new fleet folder that validates, with editor schemas wired in."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import typer

from mcfleet.cli.output import emit_json
from mcfleet.errors import InputError
from mcfleet.util.files import atomic_write_text, file_in_the_way

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
    directory: Path = typer.Argument(
        ..., help="The new fleet folder (created; must be empty if it exists).", metavar="DIR"
    ),
    host: str = typer.Option("node1", "--host", help="The first host's name.", metavar="HOST"),
    address: str = typer.Option("192.0.2.10", "--address", help="The first host's SSH address.", metavar="ADDRESS"),
    os_name: str = typer.Option("debian", "--os", help="debian or nixos.", metavar="OS"),
    arch: str = typer.Option("amd64", "--arch", help="amd64 or arm64.", metavar="ARCH"),
    host_key: str | None = typer.Option(
        None, "--host-key", help="Pin this host key ('ssh-ed25519 AAAA…').", metavar="KEY"
    ),
    user: str = typer.Option(
        "root", "--user", help="The SSH user; a user other than root runs commands with sudo.", metavar="USER"
    ),
    zone: str = typer.Option("svc.example.test", "--zone", help="The fleet's internal DNS zone.", metavar="ZONE"),
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
    from mcfleet.fleet.models_base import NAME_RE

    if not re.match(NAME_RE, host):  # it names a folder: "../x" would write outside the fleet
        raise InputError(f"{host!r} is not a host name", location="--host",
                         hint="lower-case letters, digits and '-', starting with a letter (e.g. rift)")  # fmt: skip
    free_folder(directory)
    made = missing_parents(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.init-"))
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it 0700; a fleet folder is made as mkdir would
        data = host_file(host, os_name=os_name, arch=arch, address=address, host_key=host_key, user=user)
        written = [directory / p.relative_to(staging) for p in write_fleet(staging, host, zone, data, directory)]
        if directory.exists():
            directory.rmdir()  # empty (free_folder): the staged fleet takes its place
        os.rename(staging, directory)  # same folder, so the whole fleet appears at once
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for parent in made:  # the folders init made above it, if nothing else was put there
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    if json_out:
        emit_json({"dir": str(directory), "written": [str(p) for p in written], "valid": True})
        return
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"ok: a fleet with one host ({host}); next: cd {directory} && mcfleet validate && mcfleet plan")


def free_folder(directory: Path) -> None:
    """The new fleet's folder: absent, or an empty folder; never a file or a folder with files in it, and
    never inside another fleet (a folder under its hosts/ is read as a host, and breaks that fleet)."""
    outer = next((p for p in directory.absolute().parents if (p / "fleet.json").is_file()), None)
    if outer is not None:
        raise InputError(f"{directory} is inside the fleet {outer} (it has a fleet.json)",
                         location=f"mcfleet init {directory}",
                         hint="pick a folder outside that fleet; one fleet folder holds every host")  # fmt: skip
    if directory.is_dir() and any(directory.iterdir()):
        raise InputError(f"{directory} exists and is not empty", location=f"mcfleet init {directory}",
                         hint="pick a new folder; `mcfleet init` never overwrites files")  # fmt: skip
    blocking = file_in_the_way(directory, itself=True)
    if blocking is not None:
        raise InputError(f"{blocking} is a file, not a folder", location=f"mcfleet init {directory}",
                         hint="pick a new folder for the fleet")  # fmt: skip


def missing_parents(directory: Path) -> list[Path]:
    """The folders above `directory` that do not exist yet, deepest first."""
    return [p for p in directory.parents if not p.exists()]


def write_fleet(root: Path, host: str, zone: str, data: dict[str, Any], shown: Path) -> list[Path]:
    """fleet.json, the host's file, .gitignore and the schemas under `root`, checked as a fleet (named `shown`)."""
    from mcfleet.fleet.causes import root_causes
    from mcfleet.fleet.load import load_fleet
    from mcfleet.fleet.rules import check
    from mcfleet.fleet.schema import write_schemas

    hosts_dir = root / "hosts" / host
    hosts_dir.mkdir(parents=True)
    written = [root / "fleet.json", hosts_dir / "host.json", root / ".gitignore"]
    atomic_write_text(written[0], json.dumps(fleet_file(zone), indent=2) + "\n")
    atomic_write_text(written[1], json.dumps(data, indent=2) + "\n")
    atomic_write_text(written[2], GITIGNORE)
    written += write_schemas(root / "schemas")
    findings = root_causes(list(check(load_fleet(root)))).shown  # not the rules' knock-on findings
    if findings:
        listed = "; ".join(f.format().splitlines()[0] for f in findings[:3])
        raise InputError(
            f"the new fleet does not validate: {listed}",
            location=str(shown),
            hint="fix the option the finding names (e.g. --os, --arch, --host-key); nothing was written",
        )
    return written


def register(app: typer.Typer) -> None:
    app.command("init")(init)
