"""The NixOS system (the agent kind on NixOS hosts): `/run/current-system` vs the toplevel that would be built.

    ~ system 8f3k2a1b-nixos-system-rift → 0c9d7e6f-nixos-system-rift

When both closures are in the local store (the old one was built here before), the
action also lists `nix store diff-closures` package changes.  The toplevel is known only
when the flake could be built here (a real NixOS host needs nixpkgs); without it the
plan shows no system action (apply reports the build as blocked).  The agent is part of
the system closure, so an agent that is not active is a reason to switch again even
when the system is the same.
"""

from __future__ import annotations

import asyncio
import os

from mcfleet.errors import McfleetError
from mcfleet.fleet.desired import DesiredHost
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import OS
from mcfleet.observe.facts import Facts
from mcfleet.phase import Phase
from mcfleet.plan.model import Action, Plan


def short(path: str | None) -> str:
    """/nix/store/<hash>-name → <hash[:8]>-name."""
    if not path:
        return "none"
    base = path.rsplit("/", 1)[-1]
    digest, _, name = base.partition("-")
    return f"{digest[:8]}-{name}" if name else base


def system_diff(d: DesiredHost, f: Facts) -> list[Action]:
    if d.system is None:
        return []
    current = f.nixos_system
    unit = f.agent.unit_active if f.agent else None
    before = {"system": current, "agent_unit": unit}
    after = {"system": d.system}
    if current == d.system:
        if unit in (None, "active"):
            return []
        reason = f"{d.agent.unit} is {unit}"
    else:
        reason = f"system {short(current)} → {short(d.system)}"
    kind = "create" if current is None else "update"
    return [
        Action(host=d.name, phase=Phase.agent, kind=kind, subject="system", before=before, after=after, reason=reason)
    ]


def _both_local(action: Action) -> tuple[str, str] | None:
    """(old, new) when the action is a system change and both closures are in the local store."""
    if action.subject != "system" or not isinstance(action.before, dict) or not isinstance(action.after, dict):
        return None
    old, new = action.before.get("system"), action.after.get("system")
    if isinstance(old, str) and isinstance(new, str) and os.path.isdir(old) and os.path.isdir(new):
        return old, new
    return None


async def add_closure_diffs(plan: Plan, limit: int = 40) -> None:
    """`nix store diff-closures` package changes on each system action whose two closures are at hand."""
    for i, action in enumerate(plan.actions):
        pair = _both_local(action)
        if pair is None:
            continue
        from mcfleet.nix.closures import diff_closures  # here: only a NixOS system change needs nix

        try:
            lines = await diff_closures(*pair)
        except McfleetError:
            continue  # the diff is a courtesy: the plan stands without it
        more = [f"… {len(lines) - limit} more"] if len(lines) > limit else []
        plan.actions[i] = action.model_copy(update={"after": {**action.after, "packages": lines[:limit] + more}})


def _has_flake(loaded: LoadedFleet) -> bool:
    return os.path.isfile(loaded.root / "flake.nix")


async def evaluated_toplevels(loaded: LoadedFleet, hosts: list[str]) -> tuple[dict[str, str], str | None]:
    """The toplevel of each selected NixOS host, where the flake evaluates offline here; and a note
    naming the hosts where it does not (nixpkgs not in the local store), whose plan shows no system line."""
    nixos = [h for h in hosts if loaded.hosts[h].host.os == OS.nixos]
    if not nixos or not _has_flake(loaded):
        return {}, None
    from mcfleet.nix.closures import eval_toplevel  # here: a fleet without NixOS hosts never needs nix

    async def one(host: str) -> str | None:
        try:
            return await eval_toplevel(str(loaded.root), host)
        except McfleetError:
            return None

    paths = dict(zip(nixos, await asyncio.gather(*(one(h) for h in nixos)), strict=True))
    failed = [h for h, p in paths.items() if p is None]
    note = (
        f"note: the NixOS system of {', '.join(failed)} cannot be evaluated here (nixpkgs is not in the local "
        "store), so the plan shows no system change for it; `mcfleet apply` builds it where nixpkgs can be fetched"
        if failed
        else None
    )
    return {h: p for h, p in paths.items() if p is not None}, note
