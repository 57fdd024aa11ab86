"""`mcfleet lab up|status|down|reboot`: a real local fleet on this machine (root needed)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import typer

from mcfleet.cli.fleetdir import find_fleet
from mcfleet.cli.output import emit_json, table
from mcfleet.errors import InputError, LabError, Refused
from mcfleet.lab import arm64, rootfs
from mcfleet.lab.lab import Lab, lab_down
from mcfleet.lab.login import LOGINS, Login
from mcfleet.lab.proc import require_root
from mcfleet.lab.state import DirLock, LabState
from mcfleet.lab.status import lab_status

DIR_OPT = typer.Option(
    Path("lab-fleet"), "--dir", "-d", help="The lab's fleet directory (state in <dir>/.lab).", metavar="DIR"
)
JSON_OPT = typer.Option(False, "--json", help="Print the result as JSON.")


def _progress_printer() -> tuple[float, Callable[[str], None]]:
    started = time.monotonic()

    def show(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", file=sys.stderr, flush=True)

    return started, show


def refuse_nesting(directory: Path) -> None:
    """A lab is a fleet folder of its own: never inside another fleet's folder (nor in place of one).

    Inside a fleet checkout, `mcfleet` run in the lab would find the right fleet.json, but the lab's
    keys and state would sit in the other fleet's tree, and its hosts/ next to the real ones.
    """
    target = directory.resolve()
    if (target / "fleet.json").is_file() and not (target / ".lab").exists():
        raise Refused(
            f"{target} is a fleet folder (it has fleet.json) that no lab made",
            location=f"lab up --dir {directory}",
            hint="give the lab a folder of its own, e.g. --dir /var/tmp/mcfleet-lab",
        )
    outer = find_fleet(target.parent)
    if outer is not None:
        raise Refused(
            f"{target} is inside the fleet folder {outer}: a lab must not nest in a fleet",
            location=f"lab up --dir {directory}",
            hint="give the lab a folder outside any fleet checkout, e.g. --dir /var/tmp/mcfleet-lab",
        )


def up(  # noqa: PLR0917 (typer options)
    nodes: int = typer.Option(
        3,
        "--nodes",
        "-n",
        min=0,
        max=200,
        help="Fast nodes (netns + own sshd); at most 200: a lab has one /24.",
        metavar="N",
    ),
    full: int = typer.Option(
        0, "--full", min=0, max=8, help="Full nodes: Debian with systemd (systemd-nspawn).", metavar="N"
    ),
    arm64: bool = typer.Option(False, "--arm64", help="Add an arm64 node (needs binfmt qemu-aarch64)."),
    no_peers: bool = typer.Option(False, "--no-peers", help="Skip Knot, Pebble, Caddy, HAProxy and the registry."),
    login: str = typer.Option(
        "root",
        "--login",
        help="How mcfleet logs in to the full nodes: root, or the user kyle escalating with sudo or doas "
        "(one NOPASSWD rule, as on the real fleet); a comma list gives one per full node, the last repeats.",
        metavar="USER",
    ),
    directory: Path = DIR_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Bring up a lab fleet: nodes, peers, and a fleet directory for it (as root).

    A failed or interrupted `up` removes what it made; after a hard crash, run `lab down`.
    Fast nodes are network namespaces with their own sshd, hostname, /srv and copy-on-write
    /etc; full nodes boot Debian with systemd (the first one builds a rootfs with debootstrap,
    ~75 s, cached in /var/cache/mcfleet).  Peers: Knot (DNS), Pebble (ACME), Caddy, HAProxy, and an
    OCI registry (docker-registry, TLS) holding the demo images (demo/hello:1, demo/api:1, ...).
    With the registry, every full node gets the demo services and runs its own HAProxy + Caddy
    (on its address, listeners 443/8443/9443): the fleet's route providers.

    Examples:

      sudo mcfleet lab up                       # 3 nodes + peers, in ./lab-fleet

      sudo mcfleet lab up --nodes 3 --full 1    # plus a systemd node

      sudo mcfleet lab up --nodes 0 --full 2 --login doas   # reached as kyle with doas -n

      sudo mcfleet lab up --full 3 --login root,sudo,doas   # one node of each

      sudo mcfleet lab up -d /tmp/lab --json && mcfleet validate /tmp/lab
    """

    refuse_nesting(directory)
    logins = [part.strip() for part in login.split(",")]
    if not all(part in LOGINS for part in logins):
        raise InputError(
            f"--login takes {', '.join(LOGINS)} (or a comma list of them), not {login!r}", location="--login"
        )
    require_root()
    started, show = _progress_printer()
    with DirLock(directory.resolve() / ".lab" / "lock"):
        lab = Lab(directory, progress=show)
        if lab.state.resources:
            raise LabError(
                f"a lab is already up in {lab.root} ({len(lab.state.resources)} resources in its state file)",
                location=str(lab.state.path),
                hint=f"use it, or run `mcfleet lab down --dir {directory}` first",
            )
        try:
            asyncio.run(lab.up(fast=nodes, full=full, arm64=arm64, peers=not no_peers, login=cast(list[Login], logins)))
        except BaseException as exc:
            # A failed or interrupted `up` removes what it made (logs stay in <dir>/.lab);
            # only a hard crash leaves the state file for `lab down`.
            show("lab up failed: removing what it made")
            asyncio.run(lab_down(lab))
            if isinstance(exc, LabError) and exc.hint is None:
                exc.hint = f"the partial lab was removed; logs are in {lab.run_dir}"
            raise
        status = asyncio.run(lab_status(lab.state))
    elapsed = time.monotonic() - started
    if json_out:
        emit_json({"dir": str(lab.root), "seconds": round(elapsed, 2), **status})
        return
    typer.echo(f"lab up in {elapsed:.1f} s: {len(status['nodes'])} nodes, {len(status['peers'])} peers")
    typer.echo(f"fleet directory: {lab.root}  (client key {lab.client_key})")
    for node in status["nodes"]:
        typer.echo(f"  {node['name']:8} {node['kind']:5} {node['address']:15} ssh root@{node['address']}")
    typer.echo(f"next: mcfleet validate {directory}    ·    mcfleet lab down --dir {directory}")


def status(directory: Path = DIR_OPT, json_out: bool = JSON_OPT) -> None:
    """Show every node and peer of the lab with its PID and health.

    Exit 0 when everything is healthy, 1 otherwise (or when no lab is up).

    Examples:

      mcfleet lab status

      mcfleet lab status --dir /tmp/lab --json | jq '.nodes[] | {name, healthy}'
    """

    state = LabState.load(directory.resolve() / ".lab" / "state.json")
    result = asyncio.run(lab_status(state))
    if json_out:
        emit_json({"dir": str(directory.resolve()), **result})
    elif not result["up"]:
        typer.echo(f"no lab is up in {directory}")
    else:
        net = result["network"] or {}
        typer.echo(f"lab in {directory.resolve()}  bridge {net.get('bridge')}  gateway {net.get('gateway')}")
        rows: list[list[object]] = []
        for n in result["nodes"]:
            sshd = "answers" if n["ssh"] else "no answer"
            rows.append(["ok" if n["healthy"] else "DOWN", "node", n["name"], n["kind"], n["address"], n["pid"], sshd])
        for p in result["peers"]:
            rows.append(["ok" if p["healthy"] else "DOWN", "peer", p["name"], "", p["endpoint"], p["pid"], ""])
        typer.echo(table(["STATE", "WHAT", "NAME", "KIND", "ADDRESS", "PID", "SSH"], rows), nl=False)
    if not result["healthy"]:
        raise typer.Exit(1)


def down(directory: Path = DIR_OPT, json_out: bool = JSON_OPT) -> None:
    """Stop everything the lab started (by PID) and remove its namespaces, bridge, mounts.

    Idempotent; works after a crashed `lab up` (it reads the state file written as `up` went).
    The fleet files stay; `lab up` on the same directory makes a fresh lab.

    Examples:

      sudo mcfleet lab down

      sudo mcfleet lab down --dir /tmp/lab --json
    """

    require_root()
    root = directory.resolve()
    if not (root / ".lab").is_dir():
        # `lab up` makes <dir>/.lab (its lock, then its state file) before anything else, so without
        # it no lab was ever up here: taking the lock would only leave an empty .lab/ behind.
        removed: list[str] = []
    else:
        with DirLock(root / ".lab" / "lock"):
            removed = asyncio.run(lab_down(Lab(directory)))
    if json_out:
        emit_json({"dir": str(root), "removed": removed})
    elif removed:
        typer.echo(f"lab down: removed {len(removed)} resources")
    else:
        typer.echo(f"no lab was up in {directory}")


def reboot(
    node: str = typer.Argument(..., help="The full node to reboot (see `mcfleet lab status`).", metavar="NODE"),
    directory: Path = DIR_OPT,
    within: float = typer.Option(
        90.0, "--within", min=1, help="Seconds to wait for the node to be back.", metavar="SECONDS"
    ),
    json_out: bool = JSON_OPT,
) -> None:
    """Reboot a full node (`systemctl reboot` inside it) and wait until it is back, sshd answering.

    The node gets a new /run, as a real machine does: podman's runtime state and mcp's user session
    start afresh, and the agent's boot sequence brings its services back by itself, stage by stage
    (`mcfleet status` shows when they are up).

    Examples:

      sudo mcfleet lab reboot full1

      sudo mcfleet lab reboot full1 --dir /tmp/lab --json
    """

    require_root()
    state = LabState.load(directory.resolve() / ".lab" / "state.json")
    if not state.resources:
        raise LabError(f"no lab is up in {directory}", hint=f"mcfleet lab up --dir {directory}")
    _started, show = _progress_printer()
    lab = Lab(directory, progress=show if not json_out else lambda _line: None)
    took = asyncio.run(lab.reboot(node, within_s=within))
    if json_out:
        emit_json({"node": node, "rebooted": True, "seconds": round(took, 1)})
    else:
        typer.echo(f"{node} rebooted and back in {took:.1f} s; its agent brings its services back: mcfleet status")


def build_rootfs(
    arch: str = typer.Option("amd64", "--arch", help="amd64 (full nodes) or arm64 (the arm64 node).", metavar="ARCH"),
    json_out: bool = JSON_OPT,
) -> None:
    """Build and cache a node root filesystem now (debootstrap; else the first `lab up` does it).

    amd64: ~75-110 s, for full nodes; arm64: ~6 min under qemu-user (binfmt must be enabled).
    Cached in /var/cache/mcfleet (override with MCFLEET_LAB_CACHE).

    Examples:

      sudo mcfleet lab build-rootfs

      sudo mcfleet lab build-rootfs --arch arm64
    """

    require_root()
    if arch not in ("amd64", "arm64"):
        raise LabError(f"unknown arch {arch!r}", hint="use --arch amd64 or --arch arm64")
    if arch == "arm64" and (reason := arm64.unavailable_reason()):
        raise LabError(f"cannot build the arm64 rootfs: {reason}")
    started, show = _progress_printer()
    include = rootfs.PACKAGES if arch == "amd64" else arm64.PACKAGES
    base = asyncio.run(rootfs.ensure_rootfs(show, arch=arch, include=include))
    result = {"arch": arch, "rootfs": str(base), "tarball": str(rootfs.tarball_path(arch=arch))}
    if json_out:
        emit_json({**result, "seconds": round(time.monotonic() - started, 1)})
    else:
        typer.echo(f"{arch} node rootfs ready: {base} (cached as {result['tarball']})")


def register(app: typer.Typer) -> None:
    lab = typer.Typer(help="A real local fleet to try mcfleet on (root needed).", no_args_is_help=True)
    lab.command("up")(up)
    lab.command("status")(status)
    lab.command("down")(down)
    lab.command("reboot")(reboot)
    lab.command("build-rootfs")(build_rootfs)
    app.add_typer(lab, name="lab")
