"""What one plan's reads of a provider learned that the credential check made right after would ask again.

A plan with record changes checks the DNS credential (a TSIG-signed query, a GET of MCNS's zone) right after
reading the same server: when that read just answered with the same token, or got no answer at all, the
check asking again adds nothing but a second wait.  Notes live as long as one plan (`one_plan()`), and a
check takes its note once: a check outside a plan, or a second one, always asks.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# asyncio tasks and asyncio.to_thread copy the context: the read and the check, each in its own thread, see
# the plan's one set.
_NOTES: ContextVar[set[Hashable] | None] = ContextVar("mcfleet_plan_notes", default=None)


@contextmanager
def one_plan() -> Iterator[None]:
    """The span of one plan: notes made in it are gone after it."""
    token = _NOTES.set(set())
    try:
        yield
    finally:
        _NOTES.reset(token)


def note(key: Hashable) -> None:
    """Keep `key` for the plan's next check (nothing outside a plan)."""
    notes = _NOTES.get()
    if notes is not None:
        notes.add(key)


def take(key: Hashable) -> bool:
    """Whether this plan's reads left `key`, removing it (the next check asks)."""
    notes = _NOTES.get()
    if notes is None or key not in notes:
        return False
    notes.discard(key)
    return True
