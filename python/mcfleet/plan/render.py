"""Rendering a plan for people: `+ ~ - -/+ > !` per host (`>`: a service moved here), grouped by phase in the
order apply runs them (a phase's removals after every change, in reverse phase order: `dns removals`,
`route removals`, `deploy removals`; a service made inactive is stopped there too, `deploy stops`), with
summaries.

The JSON view is `plan.saved.plan_json` (the same data).  An update shows the fields that change
as `old → new` (hashes shortened, nested values by dotted path); `--values` adds the whole
before/after.  Colour (symbols, host names) only when asked for: the CLI asks on a terminal
without NO_COLOR.  Text a node may have written (a file's diff, reasons, notes) has its control
characters escaped (util/terminal_text.py: `\\x1b`), so only these colours reach a terminal.  Example:

    rift
      host
        ! user mcp  user mcp on rift has UID 995 but the fleet pins UID 850: never change ...
      deploy
        ~ service web  image web: reg/web:v1 → reg/web:v2
            images.web: reg/web:v1 → reg/web:v2
      rift: 0 to create, 1 to update, 0 to delete, 1 refused
    orion: unreachable: no address answered: 10.0.0.2: connection refused

    Plan: 0 to create, 1 to update, 0 to replace, 0 to delete, 1 refused; 1 host unreachable (orion).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from mcfleet.phase import Phase
from mcfleet.plan.model import PHASES, RECORD_ONLY, Action, Plan, apply_passes, pass_key
from mcfleet.util.terminal_text import terminal_safe as _safe

SYMBOL = {"create": "+", "update": "~", "delete": "-", "replace": "-/+", "move": ">", "refuse": "!"}
COLOUR = {
    "create": "32",
    "update": "33",
    "delete": "31",
    "replace": "35",
    "move": "36",
    "refuse": "1;31",
}  # ANSI SGR codes
ARROW = "→"
MAX_CHANGED_LINES = 8
_HEX = re.compile(r"\b(?:sha256:)?([0-9a-f]{12})[0-9a-f]{20,}\b")


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def _short(v: Any) -> str:
    """A value on one line: hashes cut to 12 hex digits, lists comma-separated, absent as '(none)'."""
    if v is None:
        return "(none)"
    if isinstance(v, list) and all(not isinstance(x, dict | list) for x in v):
        text = ", ".join(str(x) for x in v) or "[]"
    elif isinstance(v, str):
        text = v
    else:
        text = json.dumps(v, sort_keys=True, ensure_ascii=False)
    text = _HEX.sub(lambda m: m.group(1) + "…", text)
    return text if len(text) <= 100 else text[:99] + "…"


def changed_fields(before: Any, after: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted path, old, new) for every leaf that differs; dicts are walked, other values compared whole."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(set(before) | set(after), key=str):
            if before.get(key) != after.get(key):
                out += changed_fields(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [(path, before, after)] if before != after else []


def change_lines(a: Action) -> list[str]:
    """`field: old → new` lines for an update or replace that has both values."""
    if a.kind not in ("update", "replace") or a.before is None or a.after is None:
        return []
    fields = [f for f in changed_fields(a.before, a.after) if f[0] not in ("diff", RECORD_ONLY)]  # diff: below
    pairs = [(p, f"{_short(old)} {ARROW} {_short(new)}") for p, old, new in fields]
    lines = [f"{p + ': ' if p else ''}{change}" for p, change in pairs if change not in a.reason]  # said already
    if len(lines) > MAX_CHANGED_LINES:
        lines = [*lines[:MAX_CHANGED_LINES], f"… and {len(lines) - MAX_CHANGED_LINES} more (--values shows all)"]
    return lines


def file_diff_lines(a: Action) -> list[str]:
    """The unified diff of a file's content (the files kind puts it in `after.diff`; never for a secret)."""
    diff = a.after.get("diff") if isinstance(a.after, dict) else None
    return [str(line) for line in diff] if isinstance(diff, list) else []


def render_action(a: Action, *, detailed: bool = False, color: bool = False) -> list[str]:
    """An action's lines.  What a node may have written (a file's diff, a reason quoting the node) is shown
    with its control characters escaped (util/terminal_text.py): only mcfleet's own colours reach the terminal."""
    symbol = _paint(SYMBOL[a.kind], COLOUR[a.kind], color)
    lines = [f"    {symbol} {_safe(a.subject)}  {_safe(a.reason)}".rstrip()]
    if a.kind == "refuse" and a.hint and a.hint not in a.reason:
        lines.append(f"        hint: {_safe(a.hint)}")
    lines += [f"        {_safe(line)}" for line in change_lines(a)]
    lines += [f"        {_safe(line)}" for line in file_diff_lines(a)]
    if detailed and a.before is not None and a.before == a.after:
        # the summary these values give does not hold what changed (a service's env): the reason says it
        lines.append(f"        before = after: {_safe(_value(a.before))}")
    elif detailed:
        if a.before is not None:
            lines.append(f"        before: {_safe(_value(a.before))}")
        if a.after is not None:
            lines.append(f"        after:  {_safe(_value(a.after))}")
    return lines


def counts_text(actions: list[Action]) -> str:
    c = Counter(a.kind for a in actions)
    # the same words as the Plan: line, so the hosts' lines add up to it (a replace was counted as an update)
    text = f"{c['create']} to create, {c['update']} to update"
    text += f", {c['replace']} to replace" if c["replace"] else ""
    text += f", {c['delete']} to delete"
    text += f", {c['move']} to move here" if c["move"] else ""
    return text + (f", {c['refuse']} refused" if c["refuse"] else "")


def summary_line(plan: Plan) -> str:
    c = plan.counts()
    text = (
        f"Plan: {c['create']} to create, {c['update']} to update, {c['replace']} to replace, "
        f"{c['delete']} to delete, {c['refuse']} refused"
    )
    if c["move"]:
        text = text.replace(" to delete,", f" to delete, {c['move']} to move,")
    gone = sorted(h for h, u in plan.unreachable.items() if not u.escalation)
    rootless = sorted(h for h, u in plan.unreachable.items() if u.escalation)
    if gone:
        text += f"; {len(gone)} host{'s' if len(gone) != 1 else ''} unreachable ({', '.join(gone)})"
    if rootless:
        n = len(rootless)
        text += f"; {n} host{'s' if n != 1 else ''} without a sudo/doas rule ({', '.join(rootless)})"
    if plan.gone:
        n = len(plan.gone)
        text += f"; {n} host{'s' if n != 1 else ''} gone from hosts/ ({', '.join(plan.gone)})"
    return text + "."


def render_text(plan: Plan, *, detailed: bool = False, color: bool = False) -> str:
    out: list[str] = []
    for host in plan.hosts:
        name = _paint(host, "1", color)
        if host in plan.unreachable:
            item = plan.unreachable[host]
            label = "cannot run as root" if item.escalation else "unreachable"
            out.append(f"{name}: {_paint(label, '1;31', color)}: {_safe(item.reason)}")
            if item.hint:
                out.append(f"  hint: {_safe(item.hint)}")
            continue
        actions = plan.for_host(host)
        stuck = {b.phase: b.reason for b in plan.blocked if b.host == host}
        unread = {u.phase: u.reason for u in plan.unobserved if u.host == host}
        if not actions and not stuck and not unread:
            out.append(f"{name}: no changes")
            continue
        out.append(name)
        for phase, removal, in_pass in _passes(actions, set(stuck) | set(unread)):
            out.append(f"  {_paint(_pass_title(phase, removal, in_pass), '2', color)}")
            if phase in stuck and not removal:
                out.append(f"    {_paint('blocked', '33', color)}: {_safe(stuck[phase])}")
            if phase in unread and not removal:
                out.append(f"    {_paint('not read', '33', color)}: {_safe(unread[phase])}")
            for a in in_pass:
                out += render_action(a, detailed=detailed, color=color)
        out.append(f"  {host}: {counts_text(actions)}")
    out += gone_lines(plan, color=color)
    out += ["", _paint(summary_line(plan), "1", color)]
    return "\n".join(out) + "\n"


def _pass_title(phase: Phase, removal: bool, actions: list[Action]) -> str:
    """`deploy`, `deploy removals`, and `deploy stops` for services made inactive (they run where removals do)."""
    if not removal:
        return str(phase)
    stops = any(a.kind != "delete" for a in actions)
    deletes = any(a.kind == "delete" for a in actions)
    return f"{phase} " + ("stops and removals" if stops and deletes else "stops" if stops else "removals")


def _passes(actions: list[Action], noted: set[str]) -> list[tuple[Phase, bool, list[Action]]]:
    """The host's passes in the order apply runs them, with a phase that is only blocked or not read
    (no actions) at its changes pass's place."""
    passes = apply_passes(actions)
    shown = {p for p, removal, _acts in passes if not removal}
    passes += [(p, False, []) for p in PHASES if p in noted and p not in shown]
    return sorted(passes, key=lambda item: pass_key(item[0], item[1]))


def gone_lines(plan: Plan, *, color: bool = False) -> list[str]:
    """The hosts whose folder left hosts/ while their node held services, records or routes: a notice, with
    the removals of the DNS records such a host left at the server (plan.gone_records), the one thing of
    it apply can reach."""
    from mcfleet.plan.gone import listed

    out: list[str] = []
    for host, entry in plan.gone.items():
        when = f"; its manifest of {_safe(entry.applied_at)} lists" if entry.applied_at else ", and its manifest lists"
        out.append(f"{_paint(host, '1', color)}: {_paint('gone from hosts/', '1;33', color)}: nothing plans it "
                   f"any more{when} what stays on the node and at the servers:")  # fmt: skip
        out += [f"    {label}: {_safe(items)}" for label, items in listed(entry)]  # from the node's manifest
        removals = [a for a in plan.actions if a.host == host]  # its records the DNS server still holds
        if removals:
            out.append(f"  {_paint('dns removals', '2', color)}")
            for a in removals:
                out += render_action(a, color=color)
        if any(a.kind == "delete" for a in removals):
            first = "apply removes its DNS records listed above; to remove the rest"
        elif entry.records and not removals:  # a plan of some hosts, or one that did not read the server
            first = "an apply of the whole fleet removes its DNS records the server still holds; to remove the rest"
        else:
            first = "to remove them"
        out.append(f"  hint: {first}, restore hosts/{host}, take its services away, apply, then delete the folder; "
                   f"`mcfleet forget {host}` ends this notice and leaves them")  # fmt: skip
    if plan.gone_unknown:
        out.append(f"note: {_safe(plan.gone_unknown)}")
    return out
