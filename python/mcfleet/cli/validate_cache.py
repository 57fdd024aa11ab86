"""A remembered "valid" for `mcfleet validate`: unchanged files and code give the same answer.

Validating imports pydantic and builds the fleet's models (most of the command's time); an
editor, a pre-commit hook or a shell prompt runs it again and again on files that did not
change.  After a run that found nothing, the answer is kept in the user's cache folder
(`$XDG_CACHE_HOME/mcfleet/validate/`, never in the fleet checkout) under a key made of:

- every file the loader reads (fleet.json, hosts/**, secrets/**), and every file a service takes a
  file's content from (`source`, which the source-unreadable rule reads; listed in the entry by the
  valid run): its path, size and CRC-32 of its content (so an edit within the file system's
  timestamp granularity still counts; a source that is gone is never a hit);
- the code that decides: mcfleet's version and the size and mtime of every module of
  mcfleet.fleet, the validate command's modules and errors.py; Python's and pydantic's versions.

Only a valid result is kept (findings are always computed afresh), and a fleet tree with a
symbolic link or any other non-regular file is never cached: those are exactly the cases the
loader treats specially.  `mcfleet validate --no-cache` ignores and rewrites the entry; a cache
folder that cannot be written is not used (validate works as without it).
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any

INPUT_DIRS = ("hosts", "secrets")
CODE_DIRS = ("fleet",)
CODE_FILES = ("errors.py", "cli/validate_report.py", "cli/validate_cache.py", "__init__.py")


def _cache_file(root: Path) -> Path | None:
    """Where the result for `root` is kept; None without a cache folder (no $XDG_CACHE_HOME, no home)."""
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except (RuntimeError, KeyError):  # Path.home() without $HOME nor a passwd entry
        return None
    name = f"{zlib.crc32(str(root).encode()):08x}.json"
    return base / "mcfleet" / "validate" / name


def _file_entry(path: Path, rel: str) -> list[Any] | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return [rel, len(data), zlib.crc32(data)]


def _walk(root: Path, rel: str, out: list[list[Any]]) -> bool:
    """Append every file under root/rel; False when something is not a plain file or folder."""
    try:
        entries = sorted(os.scandir(root / rel), key=lambda e: e.name)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    for entry in entries:
        child = f"{rel}/{entry.name}"
        if entry.is_symlink():
            return False
        if entry.is_dir(follow_symlinks=False):
            if not _walk(root, child, out):
                return False
        elif entry.is_file(follow_symlinks=False):
            item = _file_entry(Path(entry.path), child)
            if item is None:
                return False
            out.append(item)
        else:
            return False
    return True


def _code_key() -> list[Any]:
    import mcfleet

    package = Path(mcfleet.__file__).parent
    files = [package / f for f in CODE_FILES]
    for folder in CODE_DIRS:
        files += sorted((package / folder).glob("*.py"))
    stats = []
    for path in files:
        st = path.stat()
        stats.append([str(path), st.st_size, st.st_mtime_ns])
    pydantic_version = ""
    for entry in sys.path:
        candidate = Path(entry or ".") / "pydantic" / "version.py"
        if candidate.is_file():
            st = candidate.stat()
            pydantic_version = f"{candidate}:{st.st_size}:{st.st_mtime_ns}"
            break
    return [mcfleet.__version__, sys.version, pydantic_version, stats]


def cache_key(root: Path, sources: list[str] | tuple[str, ...] = ()) -> list[Any] | None:
    """The key of a validation of `root` whose services read `sources`, or None when this tree must not
    be cached (or a source cannot be read: validating tells why)."""
    fleet = root / "fleet.json"
    if fleet.is_symlink() or not fleet.is_file():
        return None
    inputs: list[list[Any]] = []
    item = _file_entry(fleet, "fleet.json")
    if item is None:
        return None
    inputs.append(item)
    for folder in INPUT_DIRS:
        if (root / folder).is_symlink() or not _walk(root, folder, inputs):
            return None
    for rel in sources:
        if rel.startswith("/") or ".." in rel.split("/") or (entry := _file_entry(root / rel, rel)) is None:
            return None
        inputs.append(entry)
    return [_code_key(), inputs]


def remembered(root: Path) -> dict[str, Any] | None:
    """The remembered valid result for `root`, if its key still matches, else None."""
    path = _cache_file(root)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    sources = data.get("sources", []) if isinstance(data, dict) else None
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        return None
    key = cache_key(root, sources)
    if key is None or data.get("key") != json.loads(json.dumps(key)):
        return None
    result = data.get("result")
    return result if isinstance(result, dict) else None


def remember(root: Path, result: dict[str, Any], sources: list[str] | tuple[str, ...] = ()) -> None:
    """Keep a valid result (its services read `sources`); a cache that cannot be written is simply not used."""
    key = cache_key(root, sources)
    path = _cache_file(root)
    if key is None or path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "result": result, "sources": list(sources)}))
        tmp.replace(path)
    except OSError:
        return
