"""Running a command's coroutine from synchronous code; awaiting two at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
U = TypeVar("U")


async def both(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    """Both results, the two running at once.  A failure is raised as it is, as when they were awaited one
    after the other: the first's at once (the second is then cancelled), the second's once the first is done."""
    one, two = asyncio.ensure_future(first), asyncio.ensure_future(second)
    try:
        return await one, await two
    finally:
        one.cancel()  # no-ops for a task that is done
        two.cancel()
        await asyncio.gather(one, two, return_exceptions=True)


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
