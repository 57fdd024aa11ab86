"""`mcfleet logs` of a service: the node's journal entries (JSON) joined back into the container's lines."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from mcfleet.cli.log_lines import JOURNAL_MARK, PLAIN_MARK, LogLines

MINIMAL = Path(__file__).resolve().parent.parent / "data" / "fleets" / "minimal"


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


def test_the_container_names_the_service_account_lists_are_never_globbed_by_root(tmp_path: Path) -> None:
    """`logs` runs as root a line that takes the container names from the service account's podman: a name
    such as `*` must reach `podman logs` as it is, not as the names of root's files (here: stand-ins for
    runuser/podman print what they were given; the line is the one `mcfleet logs` sends)."""
    from mcfleet.cli.commands_ops import logs_command
    from mcfleet.fleet.load import load_fleet

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "runuser"  # runuser -u USER -- env … podman ARGS: answers as that podman would
    stand_in.write_text(
        '#!/bin/sh\nwhile [ "$1" != podman ]; do shift; done; shift\n'
        'case "$1" in ps) echo "*";; container) echo k8s-file;; logs) shift; printf "logs:%s\\n" "$@";; esac\n'
    )
    stand_in.chmod(0o755)
    (tmp_path / "root-file").write_text("")
    entry = load_fleet(MINIMAL).hosts["alpha"]
    line = logs_command(entry, "web", lines=5, follow=False)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run(["sh", "-c", line.replace("cd / &&", f"cd {tmp_path} &&")], env=env,
                         capture_output=True, text=True, check=False, timeout=10).stdout  # fmt: skip
    assert out.splitlines()[1:] == ["logs:--tail", "logs:5", "logs:*"], out
