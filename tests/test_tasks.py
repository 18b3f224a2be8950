"""Ending tasks (``runtime.tasks.cancel_and_wait``): a task that loses its cancel (as redis-py
can make one lose it on Python 3.11) still ends, and a task whose cleanup awaits after its
cancel (taking back a count in Redis, say) is not cut short while it does."""

from __future__ import annotations

import asyncio
import contextlib

from runtime.tasks import cancel_and_wait


def test_a_task_that_swallows_its_cancel_is_ended_and_a_cleanup_is_let_finish() -> None:
    cleaned: list[str] = []

    async def swallows_once() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # a library losing the cancel
            await asyncio.sleep(10)
        await asyncio.sleep(10)

    async def cleans_up() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)  # a round trip that must not be cut
            cleaned.append("done")
            raise

    async def main() -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(swallows_once()), asyncio.create_task(cleans_up())]
        await asyncio.sleep(0.01)
        async with asyncio.timeout(10):
            await cancel_and_wait(tasks, grace_s=1.0)
        return tasks

    tasks = asyncio.run(main())
    assert all(t.done() for t in tasks)
    assert cleaned == ["done"]
