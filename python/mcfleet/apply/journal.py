"""The apply journal: one JSON line per apply, appended to `<fleet>/.mcfleet/journal.jsonl`.

Who, when, what (command, selection, plan digest) and the result per host and
phase.  Lines are appended with a single write on an O_APPEND descriptor so a
crash never leaves half a record in the middle of the file.  Secrets never get
here: every record goes through `redact()` first.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mcfleet.errors import Interrupted, McfleetError
from mcfleet.util.statedir import state_dir

SECRET_KEYS = re.compile(r"(secret|token|password|private|tsig|key_material|privkey)", re.IGNORECASE)
PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL)
REDACTED = "***"


def redact(value: Any) -> Any:
    """Blank values under secret-looking keys and any PEM private key block, recursively."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if SECRET_KEYS.search(str(k)) and not str(k).endswith(("_file", "_path")) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return PEM_BLOCK.sub(REDACTED, value)
    return value


class Report(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Report)


def run_journalled(fleet_root: Path, command: str, run: Callable[[], R], hosts: list[str] | None = None) -> R:
    """Run a one-host operation (snapshot, restore, agent recover …) and journal it: its report, its
    error, or that Ctrl-C stopped it (a restore cut short is what the journal must show).  `hosts`: the
    hosts it works on, recorded with an error or an interruption too (`journal --on HOST` finds them)."""
    record: dict[str, Any] = {"command": command, "argv": sys.argv[1:], **({"hosts": hosts} if hosts else {})}
    try:
        report = run()
    except McfleetError as exc:
        append(fleet_root, {**record, "error": exc.as_dict()})
        raise
    except KeyboardInterrupt:
        append(fleet_root, {**record, "error": Interrupted("stopped at Ctrl-C (what finished is kept)").as_dict()})
        raise
    append(fleet_root, {**record, "result": report.as_dict()})
    return report


def journal_path(fleet_root: Path) -> Path:
    return fleet_root / ".mcfleet" / "journal.jsonl"


def append(fleet_root: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append one record (who/when filled in) and return it as written."""
    full = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "who": f"{getpass.getuser()}@{socket.gethostname()}",
        **record,
    }
    line = (json.dumps(redact(full), sort_keys=True, default=str) + "\n").encode()
    path = state_dir(fleet_root) / journal_path(fleet_root).name
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return full


def read(fleet_root: Path) -> list[dict[str, Any]]:
    return read_counting(fleet_root)[0]


def read_counting(fleet_root: Path) -> tuple[list[dict[str, Any]], int]:
    """The records, and how many lines were not one (a torn last line after a crash, an edit gone
    wrong, bytes that are not UTF-8): those are skipped, the rest kept."""
    path = journal_path(fleet_root)
    if not path.exists():
        return [], 0
    records, unreadable = [], 0
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError is a ValueError too
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif line.strip():
            unreadable += 1
    return records, unreadable
