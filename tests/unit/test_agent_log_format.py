"""The agent's log lines: to the journal with their syslog priority and without a second timestamp."""

from __future__ import annotations

import logging
import os
import tempfile

from mcfleet.agent.main import log_formatter, stderr_is_journal


def _record(level: int) -> logging.LogRecord:
    return logging.LogRecord("mcfleet.agent", level, __file__, 1, "stage-start [%s]", ("core",), None)


def test_to_the_journal_a_line_carries_its_priority_and_no_timestamp() -> None:
    journal = log_formatter(journal=True)
    assert journal.format(_record(logging.INFO)) == "<6>INFO mcfleet.agent: stage-start [core]"
    assert journal.format(_record(logging.WARNING)).startswith("<4>WARNING ")
    assert journal.format(_record(logging.ERROR)).startswith("<3>ERROR ")
    plain = log_formatter(journal=False).format(_record(logging.INFO))
    assert plain.endswith(" INFO mcfleet.agent: stage-start [core]") and plain[:4].isdigit()  # the time first


def test_journal_stream_counts_only_when_it_is_the_file_stderr_is() -> None:
    """systemd's JOURNAL_STREAM is inherited by children whose stderr is a terminal or a file: only the
    device and inode of the file descriptor itself say it is the journal."""
    with tempfile.TemporaryFile() as mine, tempfile.TemporaryFile() as other:
        st = os.fstat(mine.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(env, fd=mine.fileno())
        assert not stderr_is_journal(env, fd=other.fileno())
        assert not stderr_is_journal({}, fd=mine.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": "junk"}, fd=mine.fileno())
