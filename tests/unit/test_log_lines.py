"""`mcfleet logs` of a service: the node's journal entries (JSON) joined back into the container's lines."""

from __future__ import annotations

import json

from mcfleet.cli.log_lines import JOURNAL_MARK, PLAIN_MARK, LogLines


def _entry(message: object, partial: bool = False) -> str:
    fields: dict[str, object] = {"MESSAGE": message}
    if partial:
        fields["CONTAINER_PARTIAL_MESSAGE"] = "true"
    return json.dumps(fields) + "\n"


def _printed(lines: list[str]) -> str:
    feed = LogLines()
    return "".join(feed.feed(line) for line in lines)


def test_journal_entries_with_their_newline_print_one_line_each() -> None:
    """conmon stores each line with its newline: `-o cat` printed a blank line after every one."""
    got = _printed([f"{JOURNAL_MARK}\n", _entry("hello 1 listening on port 8080\n"), _entry("url:/\n")])
    assert got == "hello 1 listening on port 8080\nurl:/\n"


def test_a_blank_line_of_the_container_stays_and_an_entry_without_newline_gets_one() -> None:
    assert _printed([f"{JOURNAL_MARK}\n", _entry("a\n"), _entry("\n"), _entry("b")]) == "a\n\nb\n"


def test_a_long_line_split_into_partial_entries_is_one_line() -> None:
    feed = LogLines()
    lines = [f"{JOURNAL_MARK}\n", _entry("x" * 8, partial=True), _entry("y" * 8, partial=True), _entry("z\n")]
    assert [feed.feed(line) for line in lines] == ["", "", "", "x" * 8 + "y" * 8 + "z\n"]  # one --json record
    assert feed.end() == ""
    feed.feed(_entry("cut", partial=True))  # the output ended before the line's last piece
    assert feed.end() == "cut\n"


def test_a_message_that_is_not_utf8_comes_as_bytes() -> None:
    raw = list(b"caf\xe9\n")
    assert _printed([f"{JOURNAL_MARK}\n", _entry(raw)]) == "caf\ufffd\n"


def test_plain_output_and_journalctls_own_notices_pass_as_they_are() -> None:
    assert _printed([f"{PLAIN_MARK}\n", "a line\n", "\n", "{not json\n"]) == "a line\n\n{not json\n"
    assert _printed([f"{JOURNAL_MARK}\n", "-- No entries --\n"]) == "-- No entries --\n"
    assert _printed(["an older node's output\n", "b\n"]) == "an older node's output\nb\n"  # no mark: as it is
