"""Progress: plain prefixed lines without a TTY, a live table on one, nothing when quiet."""

from __future__ import annotations

import io

from mcfleet.report.progress import LiveProgress, NullProgress, Progress, make_progress


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    with make_progress(out) as progress:
        assert type(progress) is Progress
        progress.update("rift", "connecting")
        progress.done("rift", ok=True, detail="debian 12")
        progress.done("orion", ok=False, detail="unreachable")
    assert out.getvalue() == "[rift] connecting\n[rift] ok: debian 12\n[orion] FAILED: unreachable\n"


def test_live_table_on_a_tty_names_every_host() -> None:
    out = FakeTty()
    with make_progress(out, title="gathering facts") as progress:
        assert isinstance(progress, LiveProgress)
        progress.update("rift", "connecting")
        progress.done("orion", ok=False, detail="unreachable")
    text = out.getvalue()
    assert "rift" in text and "orion" in text and "FAILED" in text


def test_quiet_prints_nothing() -> None:
    out = FakeTty()
    with make_progress(out, quiet=True) as progress:
        assert isinstance(progress, NullProgress)
        progress.done("rift", ok=True)
    assert out.getvalue() == ""
