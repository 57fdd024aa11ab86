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

from pydantic import BaseModel, Field

from mcfleet.fleet.models_base import FROZEN

TEXT_CAP = 64 * 1024  # bytes of each file's current text read for the plan's diff


class FileFacts(BaseModel):
    model_config = FROZEN
    path: str
    present: bool = True
    uid: int | None = None
    gid: int | None = None
    mode: str | None = Field(default=None, description="octal permission bits, e.g. 640")
    sha256: str | None = None
    text: str | None = Field(default=None, description="the first bytes as text, for the plan's diff")


# How root reads a file in a folder another account owns (the agent's account owns /srv/<svc>), without
# reading what that account points it at, even while it swaps names during the read:
# - a subshell moves into the file's folder and checks that the folder's real path (`pwd -P`) is the one
#   asked for: a link anywhere on the way leads elsewhere and reads as absent; once there, the subshell
#   stays in that folder whatever is renamed around it;
# - the file is opened by its last name only, by `dd iflag=nofollow,nonblock` (O_NOFOLLOW: a link swapped
#   in after the checks is not followed; O_NONBLOCK: a FIFO swapped in does not hang the facts script);
#   nothing else that account can make there (it cannot make a device node, and the kernel's
#   protected_hardlinks keeps it from linking a root file) has an effect when opened or holds root's data;
# - a file's text is read only where fs.protected_hardlinks is 1 and the file has one name: where it is 0,
#   that account can give a root file (/etc/shadow) a second name in its folder, and a shell cannot fstat
#   what dd opened to tell (the stat and the hash are still taken: they show none of the file's bytes).
# The text and the hash are two opens of that one name: a swap between them shows that account's own
# content, which it could write anyway.
READ_NO_LINK = "dd iflag=nofollow,nonblock,fullblock status=none 2>/dev/null"  # + if=NAME bs=… [count=…]


def files_probe_body(paths: tuple[str, ...], texts: tuple[str, ...] = ()) -> str:
    """Stat and hash `paths`; read the text of those also in `texts` (never a secret's)."""
    q = " ".join(shlex.quote(p) for p in paths)
    t = " ".join(shlex.quote(p) for p in texts)
    read = READ_NO_LINK
    # ${d:-/}: a file at the root (no folder part) is looked for in /
    return (
        "ph=; { read -r ph < /proc/sys/fs/protected_hardlinks; } 2>/dev/null; "  # a builtin: no process
        f"for f in {q}; do "
        '( d=${f%/*}; n=${f##*/}; cd -P "${d:-/}" 2>/dev/null && [ "$(pwd -P)" = "${d:-/}" ] '
        '&& [ -f "$n" ] && [ ! -L "$n" ] || exit 1; text=; '
        f'for x in {t}; do [ "$x" = "$f" ] && [ "$ph" = 1 ] && [ "$(stat -c %h "$n")" = 1 ] '
        f'&& text=$({read} if="$n" bs={TEXT_CAP} count=1 | base64 | tr -d "\\n"); '
        "done; "
        'printf "F %s %s %s %s\\n" "$f" "$(stat -c "%u %g %a" "$n")" '
        f'"$({read} if="$n" bs=65536 | sha256sum | cut -d" " -f1)" "$text" ) || echo "- $f"; done'
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
