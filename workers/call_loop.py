"""An event loop in a thread of its own, where a worker process's async network calls and
store transactions run while the step that made them waits.

A step still runs in a Dramatiq worker thread; its Claude call is a coroutine handed to this
loop. What that buys now is the cut: a cancel cancels the call's task (``CallScope``), which
closes its connection at any point — before a socket exists, after the request was sent and
before the first byte, or mid-stream — where shutting a blocking call's socket could only
reach it once the response had begun. Started and stopped by the worker's runtime, never on
construction.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

from runtime.loop_thread import LoopThread
from workers.call_scope import current_scope

T = TypeVar("T")


class CallLoop(LoopThread):
    def __init__(self) -> None:
        super().__init__(name="s2-call-loop")

    def start(self) -> CallLoop:
        super().start()
        return self

    def call(self, call: Coroutine[Any, Any, T], *, timeout_s: float | None = None) -> T:
        """A network call the step's cancel may cut: as ``run``, and if the step's call scope
        is cancelled meanwhile, the call's task is cancelled and this raises
        ``concurrent.futures.CancelledError``. (Store work goes through ``run``: a cancel
        does not cut a transaction half way.)"""
        submitted = self.submit(call)
        scope = current_scope()
        if scope is not None:
            scope.track_future(submitted.future)
        return self.wait(submitted, timeout_s)


CancelledError = concurrent.futures.CancelledError
