"""Secret poison: find every secret file a fleet references, know its content as a needle, and
look for it in everything mcfleet shows or leaves behind.

    needles = secret_needles(fleet_root)          # field path -> the text that must never appear
    leaks = find_leaks(needles, {"plan --json": out, "ps": local_ps()}) + tree_leaks(needles, root / ".mcfleet")
    assert leaks == [], leaks

A secret file that does not exist yet (a provider the lab does not run) gets a poison value
written into it, so a code path that reads it still carries a recognisable needle.

Extending (new providers, new secret fields): a provider model field that names a file is
classified below, in SECRET_FILE_FIELDS or NOT_SECRET_FILE_FIELDS; tests/unit/test_secret_poison_fields.py
fails for a `*_file` field in neither, so a new secret cannot be forgotten.  Providers that
put secrets elsewhere (e.g. a key written onto a node) add its text to the needles with
`needles["<what>"] = text`, and what the node shows (its files, its journal) to the sources.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

# Fields of the provider models (fleet/models_providers.py) that hold the path of a secret.
SECRET_FILE_FIELDS = {"key_file", "token_file", "account_key_file"}
# Fields that hold the path of a file that is not secret (CA bundles are public; a map is routing).
NOT_SECRET_FILE_FIELDS = {"ca_file", "map_file"}
MIN_NEEDLE = 16  # shorter text could appear by chance


def _secret_paths(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SECRET_FILE_FIELDS and isinstance(value, str):
                yield f"{where}/{key}", value
            else:
                yield from _secret_paths(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _secret_paths(value, f"{where}/{i}")


def _needle(text: str) -> str:
    """The most telling part of a secret: a PEM's longest base64 line, else the whole stripped text."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("-----")]
    return max(lines, key=len) if len(lines) > 1 else text.strip()


def secret_needles(fleet_root: Path) -> dict[str, str]:
    """`fleet.json#/providers/.../<field>` -> the secret's needle (a poison written where the file is missing)."""
    data = json.loads((fleet_root / "fleet.json").read_text())
    needles: dict[str, str] = {}
    for where, name in _secret_paths(data.get("providers", {}), "fleet.json#/providers"):
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = fleet_root / path
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"mcfleet-poison-{secrets.token_hex(16)}\n")
            path.chmod(0o600)
        needle = _needle(path.read_text())
        assert len(needle) >= MIN_NEEDLE, f"{where}: the secret in {path} is too short to search for"
        needles[where] = needle
    needles.update(fleet_secret_needles(fleet_root))
    return needles


def fleet_secret_needles(fleet_root: Path) -> dict[str, str]:
    """`secrets/<name>.age` -> its value, decrypted with the operator's identity ($MCFLEET_AGE_IDENTITY),
    for every age-encrypted secret of the fleet (files a service declares with `"secret": NAME`)."""
    from mcfleet.fleet.secrets import SECRETS_DIR, decrypt_secret

    needles = {}
    for age in sorted((fleet_root / SECRETS_DIR).glob("*.age")):
        needle = _needle(decrypt_secret(fleet_root, age.stem).decode())
        assert len(needle) >= MIN_NEEDLE, f"secret {age.stem} is too short to search for"
        needles[f"{SECRETS_DIR}/{age.name}"] = needle
    return needles


def _forms(needle: str) -> list[str]:
    """The needle as is and base64-encoded at each of the 3 alignments (the facts wire format and
    --debug dumps carry node values in base64): a secret must not appear in either form."""
    forms = [needle]
    for skip in range(3):
        encoded = base64.b64encode(needle[skip:].encode()).decode().rstrip("=")
        forms.append(encoded[: len(encoded) - 2])  # the last characters depend on what follows
    return [f for f in forms if len(f) >= MIN_NEEDLE]


def find_leaks(needles: Mapping[str, str], sources: Mapping[str, str]) -> list[str]:
    """`<secret> in <source>` for each needle found (plain or base64) in a source."""
    return [
        f"{what} in {src}"
        for what, needle in needles.items()
        for src, text in sources.items()
        if any(form in text for form in _forms(needle))
    ]


def secret_paths(fleet_root: Path) -> set[Path]:
    """The secret files themselves (left out when a folder holding them is searched)."""
    data = json.loads((fleet_root / "fleet.json").read_text())
    return {Path(name).expanduser().resolve() for _, name in _secret_paths(data.get("providers", {}), "")}


# Trees are searched a chunk at a time: a lab's run folder holds every full node's root file
# system (~7 GB with a dozen nodes), which read whole into memory took a worker to 13 GB.
CHUNK = 4 * 1024 * 1024


def tree_leaks(needles: Mapping[str, str], root: Path, *, skip: Iterable[Path] = ()) -> list[str]:
    """`<secret> in <file>` for each needle found (plain or base64) in a regular file under root but `skip`.

    Every file is searched whatever its size or content, as bytes (a needle is ASCII, so it is in
    a file's bytes exactly when it is in its text), in chunks that overlap by one needle's length;
    the tree is walked a folder at a time (symlinks never followed), so memory stays near CHUNK
    however large the tree.
    """
    skipped = {p.resolve() for p in skip}
    forms = {what: [f.encode() for f in _forms(needle)] for what, needle in needles.items()}
    overlap = max((len(f) for fs in forms.values() for f in fs), default=1) - 1
    leaks: list[str] = []
    for folder, subfolders, names in os.walk(root):
        subfolders.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file() or path.resolve() in skipped:
                continue
            found = _found_in_file(path, forms, overlap)
            leaks += [f"{what} in {path}" for what in forms if what in found]
    return leaks


def _found_in_file(path: Path, forms: Mapping[str, list[bytes]], overlap: int) -> set[str]:
    found: set[str] = set()
    tail = b""
    try:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                window = tail + chunk
                found |= {what for what, fs in forms.items() if what not in found and any(x in window for x in fs)}
                tail = window[-overlap:] if overlap else b""
    except FileNotFoundError:  # a running node removed it (a temp file): nothing is left behind there
        pass
    return found


def local_ps() -> str:
    """Every process's command line on this machine (a secret passed as an argument shows here)."""
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
