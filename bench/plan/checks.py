"""Did a run gather every host's facts?  Pure checks of each tool's output (no I/O, no mcfleet).

Exit 0 is not enough: a tool could succeed having reached fewer hosts (e.g. a deploy that skips
a host, or a callback that counts an unreachable host as done), so every run's output must name
all N hosts, each with the whole facts script's output (its last line is `end`).
"""

from __future__ import annotations

import json
import re


class Incomplete(Exception):
    """A run exited 0 but did not bring back the facts of every host."""


def _missing(tool: str, got: set[str], want: set[str]) -> None:
    if got != want:
        lost = sorted(want - got)
        raise Incomplete(f"{tool}: facts of {len(got & want)}/{len(want)} hosts (missing: {', '.join(lost[:5])}"
                         f"{' ...' if len(lost) > 5 else ''})")  # fmt: skip


def check_floor(stdout: str, hosts: set[str]) -> None:
    """floor.py prints {address: bytes of output} for the hosts whose output ended with `end`."""
    lengths = dict(json.loads(stdout))
    _missing("floor", {h for h, n in lengths.items() if n > 0}, hosts)


def check_mcfleet(stdout: str, hosts: set[str]) -> None:
    """`mcfleet plan --json` has a facts digest for every host whose facts it gathered and parsed."""
    _missing("mcfleet", set(json.loads(stdout).get("facts_digests", {})), hosts)


def check_done(files: dict[str, str], hosts: set[str]) -> None:
    """The pyinfra deploy writes one file per host, named after it, holding its output's length in bytes."""
    _missing("pyinfra", {h for h, text in files.items() if text.strip().isdigit() and int(text) > 0}, hosts)


RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def check_ansible(stdout: str, hosts: set[str]) -> None:
    """Ansible's PLAY RECAP: every host ok=1 (its one raw task, which fails unless the output ends with `end`)."""
    ok = {m[1] for m in RECAP.finditer(stdout.split("PLAY RECAP", 1)[-1]) if (m[2], m[3], m[4]) == ("1", "0", "0")}
    _missing("ansible", ok, hosts)
