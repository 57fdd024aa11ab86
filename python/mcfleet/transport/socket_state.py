"""Why nothing answered at a unix socket on a node, asked after a failure only.

A connection forwarded to a node's socket that cannot be made is closed without an answer: sshd says only
"open failed", and the relay that reaches the socket as root (transport.relay) closes a connection to a
path that is no socket, or a link.  The client then sees "Socket closed" or "UNAVAILABLE"; one command on
the node says which it was.  Asked only when a call failed, so a run that reaches the socket pays nothing.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from mcfleet.errors import McfleetError
from mcfleet.transport.base import Node

# `link` first: `-S` follows a link.  /proc/net/unix lists every unix socket of the node's network namespace
# under the name it was bound to (lines that name the path are printed, read by `listened`); without it a
# socket that is there counts as listened on.
SOCKET_STATE = (
    "if [ -L {path} ]; then echo link; elif [ ! -S {path} ]; then echo none; "
    "elif [ -r /proc/net/unix ]; then echo listed; grep -F -- {path} /proc/net/unix || true; "
    "else echo there; fi"
)

# __SO_ACCEPTCON in /proc/net/unix's Flags column: the socket listens
_ACCEPTCON = 0x10000


def listened(path: str, proc_net_unix: str) -> bool:
    """Whether a line of /proc/net/unix (`Num RefCount Protocol Flags Type St Inode Path`) is a socket
    that listens at `path`.  The kernel keeps the name a socket was bound to: HAProxy binds
    `<path>.<pid>.tmp` and renames it to `<path>`, so its listener is listed under that name."""
    renamed = re.compile(re.escape(path) + r"\.[0-9]+\.tmp")
    for line in proc_net_unix.splitlines():
        fields = line.split(maxsplit=7)
        if len(fields) < 8:
            continue
        try:
            flags = int(fields[3], 16)
        except ValueError:  # the header line
            continue
        name = fields[7]
        if flags & _ACCEPTCON and (name == path or renamed.fullmatch(name)):
            return True
    return False


@dataclass(frozen=True)
class SocketProblem:
    state: str  # link | none | idle
    text: str
    fix: str = ""  # what makes it right, where the caller knows

    @property
    def said(self) -> str:
        """The problem and its fix, on one line."""
        return f"{self.text}; {self.fix}" if self.fix else self.text


async def socket_problem(node: Node, path: str, owner: str) -> SocketProblem | None:
    """What is wrong at `path` on the node (`owner`: who should listen there, e.g. "HAProxy"); None when a
    process listens there, or when the node could not be asked (the first error then says it all)."""
    try:
        res = await node.run(SOCKET_STATE.format(path=shlex.quote(path)), timeout=10)
    except McfleetError:
        return None
    state, _, listing = res.stdout.partition("\n")
    state = state.strip()
    if state == "listed":
        state = "there" if listened(path, listing) else "idle"
    if state == "link":
        why = f"{path} is a link, and root does not follow a link to a socket (another account may have put it there)"
    elif state == "none":
        why = f"there is no socket at {path}"
    elif state == "idle":
        why = f"{path} is there, but no process listens on it (left behind by a {owner} that stopped)"
    else:
        return None
    return SocketProblem(state, why)
