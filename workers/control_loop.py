"""A cancel's Postgres work on an event loop of its own, in a thread of the worker process.

A worker process's main loop runs up to a thousand quest steps. Each round trip a coroutine
there makes waits for the loop's next turn, and when the steps keep the CPU busy a turn takes
tens of milliseconds. A cancel makes several round trips, so on that loop it would wait
behind the steps it is meant to stop. ``ControlDatabase`` runs its transactions on the
``ControlLoop`` instead: there a round trip waits at most the interpreter's switch interval
(5 ms) for the thread's turn, whatever the steps do. Only a transaction's store work crosses
over: a transaction's ``work`` touches nothing of the main loop's (no Redis client, no task).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg.rows import TupleRow

from store import Database, TenantTx

T = TypeVar("T")


class ControlLoop:
    """An event loop running in a daemon thread, started and stopped by its owner."""

    def __init__(self, name: str = "s2-control") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._loop is not None:
            raise RuntimeError("the control loop is already running")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread

    def owns(self, loop: asyncio.AbstractEventLoop) -> bool:
        return loop is self._loop

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """``work`` run to its end on the control loop; cancelling the caller cancels it."""
        if self._loop is None:
            work.close()
            raise RuntimeError("the control loop is not running")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None


class ControlDatabase(Database):
    """A pool that lives on a ``ControlLoop``: opened, closed and used in transactions
    (``in_tenant``) there, whichever loop asks."""

    def __init__(self, loop: ControlLoop, conninfo: str, **options: Any) -> None:
        super().__init__(conninfo, **options)
        self.loop = loop

    async def open(self, *, wait: bool = True, timeout: float = 10.0) -> ControlDatabase:
        await self.loop.run(super().open(wait=wait, timeout=timeout))
        return self

    async def close(self) -> None:
        await self.loop.run(super().close())

    async def in_tenant(self, company_id: UUID, work: Callable[[TenantTx], Awaitable[T]]) -> T:
        return await self.loop.run(super().in_tenant(company_id, work))

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        if not self.loop.owns(asyncio.get_running_loop()):
            raise RuntimeError("the control pool is used through in_tenant, from any loop")
        async with super().connection() as conn:
            yield conn
