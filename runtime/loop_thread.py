"""An event loop in a thread of its own, for code that has no loop but must use an async
resource (the store's pool, an async client): the worker's step threads, the CLI, tests.

The resource belongs to this loop (open it through ``run``); any thread hands it work with
``run`` and waits for the result. Started and stopped by its owner, never on construction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from uuid import UUID

from store import Database, TenantTx

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "s2-loop") -> None:
        self.name = name
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    def start(self) -> LoopThread:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop.run_forever, name=self.name, daemon=True
            )
            self._thread.start()
        return self

    def run(self, call: Coroutine[Any, Any, T], *, timeout_s: float | None = None) -> T:
        """Run ``call`` on the loop and wait for it (at most ``timeout_s``: then the call is
        cancelled and this raises ``TimeoutError``)."""
        future = self.submit(call)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    def submit(self, call: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._thread is None:
            call.close()
            raise RuntimeError(f"the loop thread {self.name} is not started")
        if threading.current_thread() is self._thread:
            call.close()  # waiting here for the loop's own work would never end
            raise RuntimeError(f"run() called from the loop thread {self.name} itself")
        return asyncio.run_coroutine_threadsafe(call, self._loop)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._thread = None


class StoreRunner:
    """The store from code that has no event loop (a Dramatiq step thread, a test): each
    call is one transaction of one company, run on the loop that owns the pool."""

    def __init__(self, db: Database, loop: LoopThread) -> None:
        self.db = db
        self.loop = loop

    def __call__(self, company_id: UUID, work: Callable[[TenantTx], Awaitable[T]]) -> T:
        return self.loop.run(self.db.in_tenant(company_id, work))

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        """Any other coroutine on the pool's loop."""
        return self.loop.run(call)
