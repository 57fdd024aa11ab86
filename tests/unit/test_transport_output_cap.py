"""Output from a command is read up to a cap: a flooding node costs bounded memory and fails alone."""

from __future__ import annotations

import asyncio
import resource

import pytest

from mcfleet.transport.base import OutputTooLarge
from mcfleet.transport.local import LocalNode


def test_endless_output_stops_at_the_cap_and_names_the_host() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(OutputTooLarge, match="printed more than 1024 KiB") as info:
        asyncio.run(LocalNode(name="flood").run("cat /dev/zero", timeout=60, max_output=1024 * 1024))
    assert info.value.location == "flood"
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024, f"reading a capped flood grew this process by {grown_kib} KiB"


def test_endless_stderr_is_capped_too() -> None:
    with pytest.raises(OutputTooLarge, match="stderr"):
        asyncio.run(LocalNode().run("cat /dev/zero >&2", timeout=60, max_output=256 * 1024))


def test_output_under_the_cap_is_whole_with_input_and_status() -> None:
    result = asyncio.run(LocalNode().run("cat; echo err >&2; exit 3", input="x" * 100_000, timeout=60))
    assert (result.exit_status, len(result.stdout), result.stderr) == (3, 100_000, "err\n")
