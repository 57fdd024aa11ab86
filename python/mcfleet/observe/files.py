"""Facts about the files services declare (`fleet/files.py`): owner, mode, sha256, and the text.

Read in the facts batch (one round trip) by the `files` probe: per file one line
`F <path> <uid> <gid> <mode> <sha256> <base64 of the first TEXT_CAP bytes>` (the text feeds
the plan's unified diff), or `- <path>` for a path that is absent or not a regular file (a
link is never followed: the files phase replaces it).
"""

# Annotations are evaluated when each class is created (no `from __future__ import annotations`):
# from strings, pydantic would compile every field's annotation again to build the model.

import base64
import binascii
import shlex

from pydantic import BaseModel, ConfigDict, Field

TEXT_CAP = 64 * 1024  # bytes of each file's current text read for the plan's diff


class FileFacts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    present: bool = True
    uid: int | None = None
    gid: int | None = None
    mode: str | None = Field(default=None, description="octal permission bits, e.g. 640")
    sha256: str | None = None
    text: str | None = Field(default=None, description="the first bytes as text, for the plan's diff")


def files_probe_body(paths: tuple[str, ...], texts: tuple[str, ...] = ()) -> str:
    """Stat and hash `paths`; read the text of those also in `texts` (never a secret's)."""
    q = " ".join(shlex.quote(p) for p in paths)
    t = " ".join(shlex.quote(p) for p in texts)
    return (
        f"for f in {q}; do "
        # a link, at the end or on the way (a folder the agent's account swapped for one), reads as absent:
        # root reads no file that account points it at
        'if [ -f "$f" ] && [ ! -L "$f" ] && [ "$(readlink -f -- "$f")" = "$f" ]; then text=; '
        f'for x in {t}; do [ "$x" = "$f" ] && text=$(head -c {TEXT_CAP} "$f" | base64 | tr -d "\\n"); done; '
        'printf "F %s %s %s %s\\n" "$f" "$(stat -c "%u %g %a" "$f")" "$(sha256sum < "$f" | cut -d" " -f1)" '
        '"$text"; '
        'else echo "- $f"; fi; done'
    )


def parse_files(text: str) -> list[FileFacts]:
    out = []
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) == 2 and parts[0] == "-":
            out.append(FileFacts(path=parts[1], present=False))
        elif len(parts) in (6, 7) and parts[0] == "F" and parts[2].isdecimal() and parts[3].isdecimal():
            try:
                body = base64.b64decode(parts[6]).decode(errors="replace") if len(parts) == 7 and parts[6] else None
            except binascii.Error:
                body = None
            out.append(
                FileFacts(path=parts[1], uid=int(parts[2]), gid=int(parts[3]), mode=parts[4], sha256=parts[5],
                          text=body)
            )  # fmt: skip
    return out
