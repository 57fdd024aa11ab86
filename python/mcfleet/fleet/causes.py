"""Findings for people: the root cause first, knock-on findings held back.

A file that does not load drops out of the fleet, and the fleet-wide rules then see a fleet
without it (a misspelt `roles` in the master's host.json also makes "no host has the master
role").  So when a file fails to load, its load findings are the ones to show; the rule
findings are counted and held back until the files load.  And a schema "unknown field" next to
a "required field is missing" at the same level with a similar name is one typo: reported once,
with "did you mean".
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

from mcfleet.fleet.findings import Finding

LOAD_CODES = frozenset({"json-syntax", "schema", "missing-file", "unreadable", "file-too-large", "duplicate-key"})
UNKNOWN = "unknown field"
MISSING = "required field is missing"


@dataclass(frozen=True)
class Causes:
    shown: list[Finding]
    held_back: list[Finding]  # rule findings that may follow from files that did not load


def _parent(pointer: str) -> str:
    return pointer.rsplit("/", 1)[0]


def _leaf(pointer: str) -> str:
    return pointer.rsplit("/", 1)[-1]


def merge_typos(findings: list[Finding]) -> list[Finding]:
    """One finding per misspelt key: the unknown field, with "did you mean" the missing one."""
    missing = {
        (f.file, _parent(f.pointer)): f for f in findings if f.code == "schema" and f.message.startswith(MISSING)
    }
    merged: list[Finding] = []
    used: set[int] = set()
    for f in findings:
        if f.code == "schema" and f.message.startswith(UNKNOWN):
            candidates = [m for (file, parent), m in missing.items() if file == f.file and parent == _parent(f.pointer)]
            names = {_leaf(m.pointer): m for m in candidates}
            close = difflib.get_close_matches(_leaf(f.pointer), list(names), n=1, cutoff=0.6)
            if close:
                typo, right = _leaf(f.pointer), close[0]
                used.add(id(names[right]))
                merged.append(
                    replace(
                        f,
                        message=f"unknown field {typo!r}: did you mean {right!r}? ({right} is required)",
                        hint=f"rename {typo!r} to {right!r}",
                    )
                )
                continue
        merged.append(f)
    return [f for f in merged if id(f) not in used]


def root_causes(findings: list[Finding]) -> Causes:
    """The findings to show (typos merged) and the rule findings held back behind load failures."""
    merged = merge_typos(list(findings))
    load = [f for f in merged if f.code in LOAD_CODES]
    if not load:
        return Causes(merged, [])
    return Causes(load, [f for f in merged if f.code not in LOAD_CODES])
