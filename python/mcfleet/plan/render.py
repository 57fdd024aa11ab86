"""Rendering a plan for people: `+ ~ - -/+ !` per host, grouped by phase, with a summary.

The JSON view is `plan.saved.plan_json` (the same data).  Example:

    rift
      host
        ! user mcp  user mcp on rift has UID 995 but the fleet pins UID 850: never change ...
      deploy
        + service web  declared in the files
    orion: unreachable: no address answered: 10.0.0.2: connection refused

    Plan: 1 to create, 0 to update, 0 to replace, 0 to delete, 1 refused; 1 host unreachable.
"""

from __future__ import annotations

import json
from typing import Any

from mcfleet.plan.model import PHASES, Action, Plan

SYMBOL = {"create": "+", "update": "~", "delete": "-", "replace": "-/+", "refuse": "!"}


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def render_action(a: Action, *, detailed: bool = False) -> list[str]:
    lines = [f"    {SYMBOL[a.kind]} {a.subject}  {a.reason}".rstrip()]
    if a.kind == "refuse" and a.hint and a.hint not in a.reason:
        lines.append(f"        hint: {a.hint}")
    if detailed:
        if a.before is not None:
            lines.append(f"        before: {_value(a.before)}")
        if a.after is not None:
            lines.append(f"        after:  {_value(a.after)}")
    return lines


def summary_line(plan: Plan) -> str:
    c = plan.counts()
    text = (
        f"Plan: {c['create']} to create, {c['update']} to update, {c['replace']} to replace, "
        f"{c['delete']} to delete, {c['refuse']} refused"
    )
    if plan.unreachable:
        n = len(plan.unreachable)
        text += f"; {n} host{'s' if n != 1 else ''} unreachable ({', '.join(sorted(plan.unreachable))})"
    return text + "."


def render_text(plan: Plan, *, detailed: bool = False) -> str:
    out: list[str] = []
    for host in plan.hosts:
        if host in plan.unreachable:
            item = plan.unreachable[host]
            out.append(f"{host}: unreachable: {item.reason}")
            if item.hint:
                out.append(f"  hint: {item.hint}")
            continue
        actions = plan.for_host(host)
        stuck = {b.phase: b.reason for b in plan.blocked if b.host == host}
        if not actions and not stuck:
            out.append(f"{host}: no changes")
            continue
        out.append(host)
        for phase in PHASES:
            in_phase = [a for a in actions if a.phase == phase]
            if in_phase or phase in stuck:
                out.append(f"  {phase}")
                if phase in stuck:
                    out.append(f"    blocked: {stuck[phase]}")
                for a in in_phase:
                    out += render_action(a, detailed=detailed)
    out += ["", summary_line(plan)]
    return "\n".join(out) + "\n"
