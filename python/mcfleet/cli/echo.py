"""`typer.echo` for text, without importing typer (~45 M instructions, ~8 ms) on the commands that run without it.

typer 0.29's echo (its vendored click.echo) does, for a `str` message on Linux: append the
newline, flush and stop when there is nothing to write, remove ANSI style codes when the stream
is not a terminal (nor a Jupyter kernel's), write, flush.  That is done here for a standard text
stream click would use as it is (an `encoding` and an `errors` attribute, the encoding not ASCII);
any other stream (a StringIO, an ASCII-configured terminal: click re-wraps those) is handed to
typer.echo itself, so the output is the same in every case (tests/unit/test_plan_fast.py compares).
"""

from __future__ import annotations

import codecs
import re
import sys
from typing import IO, Any

# click's own pattern (typer/_click/_compat.py: _ansi_re)
ANSI_RE = re.compile(r"\033\[[;?0-9]*[a-zA-Z]")


def click_uses_as_is(stream: IO[Any]) -> bool:
    """True when click would write to `stream` itself (no re-wrapping): encoding and errors set, not ASCII."""
    encoding = getattr(stream, "encoding", None)
    if not encoding or not getattr(stream, "errors", None):
        return False
    try:
        return codecs.lookup(encoding).name != "ascii"
    except LookupError:
        return True  # click: an unknown encoding is not ASCII, so not misconfigured


def _is_terminal(stream: IO[Any]) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:  # click's isatty(): a stream that cannot say is not a terminal
        return False


def echo(message: str = "", *, err: bool = False, nl: bool = True) -> None:
    stream = sys.stderr if err else sys.stdout
    if stream is None:
        return
    if not click_uses_as_is(stream):
        import typer

        typer.echo(message, err=err, nl=nl)
        return
    out = message + "\n" if nl else message
    if not out:
        stream.flush()
        return
    if not _is_terminal(stream) and not type(stream).__module__.startswith("ipykernel."):
        out = ANSI_RE.sub("", out)
    stream.write(out)
    stream.flush()
