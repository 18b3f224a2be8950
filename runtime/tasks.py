"""Ending asyncio tasks on Python 3.11, where a cancel can be lost.

``asyncio.wait_for`` on 3.11 returns its inner result and drops a cancel that lands as the
inner awaitable completes (CPython gh-86296, fixed in 3.12 by rebuilding it on
``asyncio.timeout``). redis-py wraps every command's send in it whenever a socket timeout
is set, and its default is 5 s, so a task cancelled while it talks to Redis may go on as if
nothing happened: a loop outlives its owner and ``asyncio.run`` never returns. A task that
lost its cancel is cancelled again until it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog

log = structlog.get_logger(__name__)

UNWIND_GRACE_S = 2.0
RECANCEL_EVERY_S = 0.1


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]],
    *,
    grace_s: float = UNWIND_GRACE_S,
    recancel_every_s: float = RECANCEL_EVERY_S,
) -> None:
    """Cancel ``tasks`` and return once every one has ended (their errors are theirs). A
    task gets ``grace_s`` to unwind from the first cancel — its cleanup may await, e.g. a
    Redis round trip that takes back a count — before it is cancelled again, and again."""
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    if pending:
        _, pending = await asyncio.wait(pending, timeout=grace_s)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=recancel_every_s)


async def supervised(
    name: str, run: Callable[[], Awaitable[None]], *, backoff_max_s: float = 30.0
) -> None:
    """Run ``run`` until cancelled, starting it again after any failure (backing off), so a
    process's background work outlives a bug or an outage that ends one run of it."""
    failures = 0
    while True:
        try:
            await run()
            failures = 0
        except Exception as exc:
            if (task := asyncio.current_task()) is not None and task.cancelling():
                raise asyncio.CancelledError from exc  # a cancel a library turned into an error
            failures += 1
            log.error("background task failed; restarting it", task=name, error=type(exc).__name__)
        await asyncio.sleep(min(backoff_max_s, 0.5 * 2 ** min(failures, 6)))
