"""The lines `mcfleet logs` prints of a service, from what the node's log command writes.

With podman's journald log driver (its default under systemd) conmon stores each line of the
container's output in the journal *with* its newline, and `journalctl -o cat` ends every entry
with one more: every line came out followed by a blank one (seen with podman 4.3, systemd 252).
A long line is split into entries marked CONTAINER_PARTIAL_MESSAGE=true, all but the last without a
newline.  So the node sends the entries as JSON (`-o json`, two fields) and this joins them back
into the container's own lines.  The node's command says first which form follows.
"""

from __future__ import annotations

import json

JOURNAL_MARK = "@mcfleet-log journal-json"  # the node's first line: journal entries follow, as JSON
PLAIN_MARK = "@mcfleet-log plain"  # the node's first line: the output follows as it is (podman logs)


class LogLines:
    """Feed it the node's lines in order; each call returns the text to print (possibly "")."""

    def __init__(self) -> None:
        self.mode: str | None = None
        self.partial = ""  # the pieces of a long line so far: printed whole, one line (one --json record)

    def feed(self, line: str) -> str:
        if self.mode is None:
            mark = line.rstrip("\n")
            if mark in (JOURNAL_MARK, PLAIN_MARK):
                self.mode = mark
                return ""
            self.mode = PLAIN_MARK  # a node's command without the mark: its output as it is
        if self.mode == PLAIN_MARK:
            return line
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            return line  # not an entry (journalctl's own notice): as it is
        message = entry.get("MESSAGE", "") if isinstance(entry, dict) else ""
        if isinstance(message, list):  # journald's form for a message that is not UTF-8: its bytes
            message = bytes(b for b in message if isinstance(b, int) and 0 <= b < 256).decode("utf-8", "replace")
        if entry.get("CONTAINER_PARTIAL_MESSAGE") == "true":
            self.partial += str(message)
            return ""
        text, self.partial = self.partial + str(message), ""
        return text if text.endswith("\n") else text + "\n"

    def end(self) -> str:
        """What is left when the output ends: a long line whose last piece was not written yet."""
        text, self.partial = self.partial, ""
        return f"{text}\n" if text else ""
