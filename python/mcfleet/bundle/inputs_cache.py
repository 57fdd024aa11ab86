"""Remember the agent's inputs hash between runs, keyed by the package files' stat results.

Hashing the inputs means walking the agent's import closure (parsing each source for its
imports) and reading every file: tens of milliseconds on every `mcfleet plan`.  A stat of
every file in the package costs well under a millisecond, and any edit, added or removed file
changes it (size, mtime and ctime in nanoseconds; ctime moves on every write and on a
rename into place), so the hash is only recomputed when something could have changed it.
The requirement pins, the platform files and pex's version are part of the stored key, so a
reinstall of a dependency is noticed too.  The index lives in the bundle cache, one file per
package location (several checkouts may share the cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

INDEX_VERSION = 1


def tree_stamp(package: Path, extra: list[Path]) -> str:
    """One digest of (path, size, mtime_ns, ctime_ns) of every file under `package` and of `extra`."""
    rows: list[str] = []

    def walk(folder: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        walk(entry.path)
                elif not entry.name.endswith(".pyc"):
                    st = entry.stat(follow_symlinks=False)
                    rows.append(f"{entry.path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}")

    walk(str(package))
    for path in extra:
        st = path.stat()
        rows.append(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}")
    rows.sort()
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def index_path(cache: Path, package: Path) -> Path:
    where = hashlib.sha256(str(package.resolve()).encode()).hexdigest()[:16]
    return cache / f"inputs-index-{where}.json"


def cached_inputs_hash(cache: Path, package: Path, extra: list[Path], salt: str, compute: Callable[[], str]) -> str:
    """`compute()`, or the value it returned last time when no file and not `salt` changed since."""
    stamp = f"{INDEX_VERSION}:{salt}:{tree_stamp(package, extra)}"
    index = index_path(cache, package)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads(index.read_text())
        if data["stamp"] == stamp and isinstance(data["hash"], str):
            return str(data["hash"])
    value = compute()
    with contextlib.suppress(OSError):  # a read-only cache only costs the recomputation
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_name(f".{index.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"stamp": stamp, "hash": value}))
        os.replace(tmp, index)
    return value
