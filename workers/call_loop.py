"""An event loop in a thread of its own, where a worker process's async network calls run
while the step that made them waits.

A step still runs in a Dramatiq worker thread; its Claude call is a coroutine handed to this
loop. What that buys now is the cut: a cancel cancels the call's task (``CallScope``), which
closes its connection at any point — before a socket exists, after the request was sent and
before the first byte, or mid-stream — where shutting a blocking call's socket could only
reach it once the response had begun. Started and stopped by the worker's runtime, never on
construction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from workers.call_scope import current_scope

T = TypeVar("T")


class CallLoop:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    def start(self) -> CallLoop:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="s2-call-loop", daemon=True
            )
            self._thread.start()
        return self

    def run(self, call: Coroutine[Any, Any, T], *, timeout_s: float | None = None) -> T:
        """Run ``call`` on the loop and wait for it (at most ``timeout_s``: then the call is
        cancelled and this raises ``TimeoutError``). If the step's call scope is cancelled
        meanwhile, the call's task is cancelled and this raises
        ``concurrent.futures.CancelledError``."""
        if self._thread is None:
            call.close()
            raise RuntimeError("the call loop is not started")
        future = asyncio.run_coroutine_threadsafe(call, self._loop)
        scope = current_scope()
        if scope is not None:
            scope.track_future(future)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._thread = None


CancelledError = concurrent.futures.CancelledError
