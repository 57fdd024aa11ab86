"""Running a command's coroutine from synchronous code."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`, with the result handed back outside the main task.

    Python 3.11's asyncio.run formats the main task's repr, result included, twice as it ends:
    restoring the SIGINT handler asks `signal.getsignal`, which builds the message of a
    ValueError from the repr of asyncio's handler (a partial holding the task).  A plan's result
    holds every host's facts as pydantic models, whose repr costs ~0.3 ms per host; a main
    task that returns None makes that repr cost nothing.
    """
    box: list[T] = []

    async def main() -> None:
        box.append(await coro)

    asyncio.run(main())
    return box[0]
