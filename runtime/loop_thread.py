"""An event loop in a thread of its own, for code that has no loop but must use an async
resource (the store's pool, an async client): the CLI's commands, tests.

The resource belongs to this loop (open it through ``run``); any thread hands it work with
``run`` and waits for the result. Started and stopped by its owner, never on construction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import UUID

from store import Database, TenantTx

T = TypeVar("T")
WAIT_SLICE_S = 0.1
UNWIND_WAIT_S = 5.0


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
        return self.wait(self.submit(call), timeout_s)

    def submit(self, call: Coroutine[Any, Any, T]) -> Submitted[T]:
        """Start ``call`` on the loop."""
        if self._thread is None:
            call.close()
            raise RuntimeError(f"the loop thread {self.name} is not started")
        if threading.current_thread() is self._thread:
            call.close()  # waiting here for the loop's own work would never end
            raise RuntimeError(f"run() called from the loop thread {self.name} itself")
        ended = threading.Event()

        async def tracked() -> T:
            try:
                return await call
            finally:
                ended.set()

        # The task runs in a copy of this thread's context (call_soon_threadsafe takes it):
        # the step's log bindings reach what the call logs.
        return Submitted(asyncio.run_coroutine_threadsafe(tracked(), self._loop), ended)

    def wait(self, submitted: Submitted[T], timeout_s: float | None = None) -> T:
        """The call's result. Waited for in short slices, so that an exception raised into
        this thread (Dramatiq's time limit, a signal) lands within one: the call is then
        cancelled and has ended — a transaction rolled back, not committed behind the
        caller's back — before the exception goes on."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while True:
                left = WAIT_SLICE_S if deadline is None else deadline - time.monotonic()
                try:
                    return submitted.future.result(max(0.0, min(WAIT_SLICE_S, left)))
                except concurrent.futures.TimeoutError:
                    if submitted.future.done():  # the call's own TimeoutError
                        raise
                    if deadline is not None and time.monotonic() >= deadline:
                        raise
        except BaseException:
            submitted.future.cancel()
            submitted.ended.wait(UNWIND_WAIT_S)
            raise

    def stop(self) -> None:
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._thread = None


@dataclass(frozen=True)
class Submitted(Generic[T]):
    """A call started on the loop: its result, and when it has ended (unwound, if cut)."""

    future: concurrent.futures.Future[T]
    ended: threading.Event


class StoreRunner:
    """The store from code that has no event loop (a CLI command, a test): each
    call is one transaction of one company, run on the loop that owns the pool."""

    def __init__(self, db: Database, loop: LoopThread) -> None:
        self.db = db
        self.loop = loop

    def __call__(self, company_id: UUID, work: Callable[[TenantTx], Awaitable[T]]) -> T:
        return self.loop.run(self.db.in_tenant(company_id, work))

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        """Any other coroutine on the pool's loop."""
        return self.loop.run(call)
