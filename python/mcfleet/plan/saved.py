"""Saved plans: JSON on disk, with what they were made from, refused when stale.

    save_plan(plan, path)
    plan = load_plan(path, root=fleet_root)       # refuses if the fleet files changed
    ensure_fresh(plan, facts)                     # apply: refuses if a host's facts changed

`inputs` lists every file a plan is made from, with the sha256 of its content: fleet.json, every
file under hosts/ and secrets/, and each file a service takes a file's content from (`source`,
anywhere in the fleet folder).  A saved plan is stale when one of them changed, went or came:
apply would otherwise write content nobody reviewed (a source edited after the plan keeps the
plan's action, `~ file …`, and would carry the new content).  `fleet_hash` is one digest of them
all (the journal's record); `facts_digest` is the sha256 of a host's facts as canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections import Counter
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mcfleet.errors import InputError, Refused
from mcfleet.observe.facts import ContainerFacts, Facts, Unreachable
from mcfleet.plan.model import PLAN_FORMAT, Action, Plan
from mcfleet.util.files import atomic_write_text

if TYPE_CHECKING:
    from mcfleet.fleet.load import LoadedFleet

REPLAN_HINT = "run `mcfleet plan -o <file>` again and review the new plan"


INPUT_DIRS = ("hosts", "secrets")


def fleet_files(root: Path) -> list[str]:
    """fleet.json and every file under hosts/ and secrets/ (not hidden ones), relative to `root`."""
    files = ["fleet.json"] if (root / "fleet.json").is_file() else []
    for folder in INPUT_DIRS:
        if (root / folder).is_dir():
            found = (p for p in (root / folder).rglob("*") if p.is_file() and not p.name.startswith("."))
            files += sorted(p.relative_to(root).as_posix() for p in found)
    return files


def _digest(root: Path, rel: str) -> str:
    """sha256 of the file's content; "" when it cannot be read (gone: the plan is stale)."""
    try:
        return hashlib.sha256((root / rel).read_bytes()).hexdigest()
    except OSError:
        return ""


def fleet_inputs(loaded: LoadedFleet) -> dict[str, str]:
    """Every file the plan of `loaded` is made from -> the sha256 of its content."""
    names = set(fleet_files(loaded.root)) | set(loaded.sources())
    return {rel: _digest(loaded.root, rel) for rel in sorted(names)}


def inputs_hash(inputs: Mapping[str, str]) -> str:
    """One digest of all the inputs (names and contents)."""
    h = hashlib.sha256()
    for rel, digest in sorted(inputs.items()):
        h.update(f"{len(rel)}:{rel}:{digest}\n".encode())
    return h.hexdigest()


def _inside(rel: str) -> bool:
    """A name a plan file may list: relative, inside the fleet folder (a plan file is read back from disk)."""
    return bool(rel) and not rel.startswith("/") and ".." not in rel.split("/")


def changed_inputs(plan: Plan, root: Path) -> list[str]:
    """The plan's input files that changed since it was made, each with what happened to it."""
    now = {rel: _digest(root, rel) for rel in fleet_files(root)}
    now |= {rel: _digest(root, rel) for rel in plan.inputs if rel not in now and _inside(rel)}
    out = []
    for rel in sorted(set(plan.inputs) | set(now)):
        was, is_now = plan.inputs.get(rel), now.get(rel, "")
        if was == is_now:
            continue
        out.append(f"{rel} ({'added' if was is None else 'removed' if not is_now else 'changed'})")
    return out


# Not the node's state: which address answered, and why a backend did not (a message that may name a
# socket path made for this run): a saved plan is stale when the node changed, not when these did.
# Nor its IP addresses: temporary IPv6 addresses come and go by the hour (a plan checks binds with them).
# Nor a change the agent is making (it names how long it has run).
NOT_STATE = {"address", "services_error", "dns_error", "routes_error", "addresses", "agent_busy"}


def facts_digest(item: Facts | Unreachable) -> str:
    data = item.model_dump(mode="json", exclude=NOT_STATE if isinstance(item, Facts) else None)
    if isinstance(item, Facts) and item.containers:
        data["containers"] = [_container_state(c) for c in item.containers]
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _container_state(c: ContainerFacts) -> dict[str, Any]:
    """A container as the saved plan's staleness sees it: not its seconds since start (they grow between
    plan and apply) nor its restart count; a crash loop as one state (it reads running, then stopped)."""
    state: dict[str, Any] = c.model_dump(mode="json", exclude={"up_s", "restarts", "exit_code"})
    if c.crash_loop:
        state["state"] = "crash loop"
    return state


def plan_json(plan: Plan) -> str:
    return plan.model_dump_json(indent=2) + "\n"


def missing_plan_folder(path: Path) -> Path | None:
    """The folder that should hold the plan file `path` when it does not exist, else None.

    A plan is written only into a folder that is there: a mistyped `-o` would otherwise leave a trail
    of new folders (the atomic write makes whatever folders are missing above its file).  A folder
    that cannot be looked at (no search permission above it) is left for the write to name."""
    folder = path.parent
    try:
        folder.stat()
    except FileNotFoundError:
        return folder
    except OSError:
        pass
    return None


def refuse_missing_plan_folder(path: Path) -> None:
    """Refuse to save a plan into a folder that does not exist (see `missing_plan_folder`)."""
    folder = missing_plan_folder(path)
    if folder is not None:
        raise InputError(
            f"no such folder: {folder} (a plan is saved only into a folder that exists)",
            location=str(path),
            hint=f"create it first (mkdir -p {shlex.quote(str(folder))}), or choose another path for -o",
        )


def save_plan(plan: Plan, path: Path) -> None:
    # checked again here, right before the write, for a folder removed while the hosts were observed
    refuse_missing_plan_folder(path)
    # 0600: a plan holds what it read on the nodes as root (a declared file's current text, for its diff),
    # which another user of this machine may not be allowed to read there
    atomic_write_text(path, plan_json(plan), mode=0o600)


@cache
def _plan_validator() -> Any:
    import jsonschema  # here: writing a plan (the common case) never pays for it

    schema = Plan.model_json_schema()
    return jsonschema.validators.validator_for(schema)(schema)


def read_plan(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read the plan: {exc.strerror}", location=str(path)) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not a plan file (invalid JSON: {exc})", location=str(path), hint=REPLAN_HINT) from exc
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise InputError(
            f"not a plan file of format {PLAN_FORMAT}", location=str(path), hint="make it with this mcfleet's `plan -o`"
        )
    import jsonschema

    problem = jsonschema.exceptions.best_match(_plan_validator().iter_errors(data))
    if problem is not None:  # a saved plan is read back from disk: checked against its schema first
        at = "/".join(str(p) for p in problem.absolute_path) or "(top)"
        raise InputError(f"the plan file is damaged at {at}: {problem.message}", location=str(path), hint=REPLAN_HINT)
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"the plan file is damaged: {str(exc).splitlines()[0]}", location=str(path)) from exc


def load_plan(path: Path, *, root: Path) -> Plan:
    """Read a saved plan and refuse it if the fleet files changed since it was made."""
    plan = read_plan(path)
    changed = changed_inputs(plan, root.resolve())
    if changed:
        listed = ", ".join(changed[:5]) + (f", … ({len(changed) - 5} more)" if len(changed) > 5 else "")
        raise Refused(
            f"stale plan: the fleet files under {root} changed since the plan was made ({plan.created_at}): {listed}",
            location=str(path),
            hint=REPLAN_HINT,
        )
    return plan


def ensure_fresh(plan: Plan, facts: Mapping[str, Facts | Unreachable]) -> None:
    """Refuse the plan if any of its hosts' facts differ now (apply calls this after gathering)."""
    changed = sorted(h for h in plan.hosts if h in facts and facts_digest(facts[h]) != plan.facts_digests.get(h))
    missing = sorted(h for h in plan.hosts if h not in facts)
    if changed or missing:
        what = ", ".join(changed + [f"{h} (not observed)" for h in missing])
        raise Refused(
            f"stale plan: what the nodes show changed since the plan was made ({plan.created_at}): {what}",
            hint=REPLAN_HINT,
        )


def _action_line(key: tuple[str, str, str, str]) -> str:
    host, phase, kind, subject = key
    return f"{host} {phase}: {kind} {subject}"


def ensure_same_actions(saved: Plan, now: Plan) -> None:
    """Refuse a saved plan whose actions are not the ones the same files and facts give now.

    With the files and every host's facts unchanged, planning again gives the same actions; a
    difference means the file was edited (an action added, say a deploy of a service no file
    declares) or the plan depends on something its staleness check does not see.  Apply carries
    out the actions of the plan it was given: never one the fleet's files and nodes do not call for."""

    def keys(plan: Plan) -> Counter[tuple[str, str, str, str]]:
        return Counter((a.host, str(a.phase), a.kind, a.subject) for a in plan.actions)

    was, is_now = keys(saved), keys(now)
    if was == is_now:
        _ensure_same_values(saved, now)
        return
    only_saved = sorted((was - is_now).elements())
    only_now = sorted((is_now - was).elements())
    planned = {(host, phase, subject) for host, phase, _kind, subject in only_saved}
    refused = [a for a in now.actions if a.kind == "refuse" and (a.host, str(a.phase), a.subject) in planned]
    if refused and len(refused) == len(only_now):  # changes the plan made that are refused now (a key broke)
        first = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise Refused(
            f"stale plan: {first.host}: {first.subject} is refused now{more}: {first.reason}",
            hint=first.hint or REPLAN_HINT,
        )
    parts = []
    for label, found in (("in the file only", only_saved), ("planned now only", only_now)):
        if found:
            listed = "; ".join(_action_line(k) for k in found[:3]) + (
                f"; … ({len(found) - 3} more)" if len(found) > 3 else ""
            )
            parts.append(f"{label}: {listed}")
    raise Refused(
        f"the plan's actions are not the ones its fleet files and the nodes give now ({', '.join(parts)}); "
        "was the file edited?",
        hint=REPLAN_HINT,
    )


# A number in a reason may count days from now ("expires in 12 days"): applied a day later, the same plan
# reads one less, and that is no edit.
_COUNT = re.compile(r"\d+")


def _content(a: Action) -> dict[str, Any]:
    return {**a.model_dump(mode="json"), "reason": _COUNT.sub("#", a.reason)}


def _ensure_same_values(saved: Plan, now: Plan) -> None:
    """Refuse a saved plan whose actions are the same ones but say other values (`before`, `after`, the
    reason or hint): what `mcfleet show` displays of the file is what a reviewer approves, and it must be
    what a plan of the same files and nodes says now (apply changes the nodes to what the files declare,
    whatever the file's values say)."""
    given: dict[str, list[dict[str, Any]]] = {}
    for a in saved.actions:
        given.setdefault(a.id, []).append(_content(a))
    for a in now.actions:
        mine = given.get(a.id) or []
        content = _content(a)
        if content in mine:
            mine.remove(content)
            continue
        differ = sorted(k for k in content if all(m.get(k) != content[k] for m in mine)) or ["its values"]
        raise Refused(
            f"the plan's action {a.host} {a.phase}: {a.kind} {a.subject} does not say what its fleet files and the "
            f"nodes give now ({', '.join(differ)} differ); was the file edited?",
            hint=REPLAN_HINT,
        )


def _systems(plan: Plan) -> dict[str, str]:
    """host -> the NixOS system toplevel the plan switches it to."""
    return {
        a.host: str(a.after["system"])
        for a in plan.actions
        if a.subject == "system" and isinstance(a.after, dict) and a.after.get("system")
    }


def ensure_same_systems(saved: Plan, now: Plan) -> None:
    """Refuse a saved plan whose NixOS system differs from the one built now.

    The system is built from the flake: flake.nix, flake.lock and the Nix modules it imports may lie
    outside the files a plan lists (`inputs`), and a change there keeps the action (`~ system`) while
    it changes the toplevel: apply would switch the node to a system nobody reviewed."""
    from mcfleet.kinds.system import short  # here: only a plan with a NixOS system refers to one

    was, is_now = _systems(saved), _systems(now)
    for host in sorted(set(was) & set(is_now)):
        if was[host] != is_now[host]:
            raise Refused(
                f"stale plan: it switches {host} to {short(was[host])} but the system built now is "
                f"{short(is_now[host])} (the flake or its Nix files changed since the plan was made)",
                location=host,
                hint=REPLAN_HINT,
            )


def ensure_same_agent_sources(saved: Plan, inputs_now: Callable[[], str]) -> None:
    """Refuse a saved plan made against another agent bundle than the one this mcfleet builds, before it builds.

    The plan compared its Debian hosts with the bundle built for mcfleet's sources then
    (`agent_inputs`).  When those sources changed since (mcfleet upgraded, a checkout edited), the
    bundle built now differs and the plan is stale whatever the nodes say; building it first costs
    ~20 s for a refusal.  `inputs_now()` hashes the sources (a stat of each file when unchanged)."""
    if not saved.agent_inputs:
        return
    now = inputs_now()
    if now != saved.agent_inputs:
        raise Refused(
            f"stale plan: mcfleet's agent sources changed since the plan was made (bundle inputs "
            f"{saved.agent_inputs[:12]} then, {now[:12]} now): the plan compared the Debian hosts' agent "
            "with a bundle apply would no longer push",
            hint=REPLAN_HINT,
        )
