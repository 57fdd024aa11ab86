"""Text from a node made safe to print for a person: no terminal control sequence reaches the terminal.

What a node sends (a declared file's content in a plan's diff, a container's log line, an agent's
error, a journal line) can be written by the node's unprivileged `mcp` account; printed as it is,
`\\x1b]0;title\\x07` would set the terminal's title, `\\x1b[2J` clear it, and worse sequences exist.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, and the C1 controls (U+0080-U+009F: U+009B is a one-character CSI)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(found: re.Match[str]) -> str:
    return f"\\x{ord(found.group()):02x}"


def terminal_safe(text: str) -> str:
    """`text` with each control character shown as Python's repr shows it in a string: `\\x` and two
    lower-case hex digits (ESC is `\\x1b`, BEL `\\x07`, CR `\\x0d`, DEL `\\x7f`, U+009B `\\x9b`).

    Escaped: the C0 controls U+0000-U+001F except tab and newline, DEL (U+007F), and the C1 controls
    U+0080-U+009F.  Tab and newline stay as they are, and so does every other character (a backslash
    too: `\\x1b` in the output may also have been those four characters in the text; this is for
    reading, not for reversing).  Text without such a character is returned unchanged.
    """
    return _CONTROL.sub(_escaped, text)
