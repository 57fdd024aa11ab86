"""mcfleet.util.aio.run: a command's coroutine result is handed back without ever being formatted."""

from __future__ import annotations

import asyncio

import pytest

from mcfleet.util.aio import run


class _Costly:
    """Counts how often it is formatted (a plan's result is every host's facts: formatting it costs)."""

    def __init__(self) -> None:
        self.reprs = 0

    def __repr__(self) -> str:
        self.reprs += 1
        return "<costly>"


async def _give(value: _Costly) -> _Costly:
    await asyncio.sleep(0)
    return value


def test_the_result_comes_back_and_is_never_formatted() -> None:
    value = _Costly()
    assert run(_give(value)) is value
    assert value.reprs == 0


def test_asyncio_run_itself_formats_the_main_task_s_result_on_this_python() -> None:
    """Why run() exists: asyncio.run formats its main task (result included) while it restores SIGINT."""
    value = _Costly()
    assert asyncio.run(_give(value)) is value
    assert value.reprs >= 1  # Python 3.11; once asyncio stops doing it, run() can be plain asyncio.run


def test_an_exception_from_the_coroutine_propagates() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run(fail())
