"""Steps that take their worker process down with them (out of memory, a crash, kill -9).

Dramatiq redelivers every message a dead worker had in flight without counting a retry, so a
poison step would kill worker after worker forever. We count each message's starts in Redis:
a start that ended neither in success (the count is dropped) nor in an exception (Dramatiq
counts a retry) was a crash. Past the bound the step is dead-lettered.

A crash is charged to every step that was in flight in the process, the innocent with the
guilty. So a step that has been in a crash (a suspect) runs alone in its process: it waits for
the steps in flight to finish and holds new ones back, and a step only counts its start once
it runs. A suspect that crashes again has nobody to share the blame with, and the steps that
merely stood beside a poison step once are never dead-lettered for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import dramatiq
import redis

from messages.redis_keys import starts_key

STARTS_TTL_S = 2 * 86_400


class CrashCounter:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def start(self, message: dramatiq.Message[Any]) -> int:
        """Count a start of the message; returns how many of its earlier starts ended with
        its worker gone (0 if Redis does not answer: counted again at the next delivery)."""
        key = starts_key(message.message_id)
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, STARTS_TTL_S)
            starts = int(pipe.execute()[0])
        except redis.RedisError:
            return 0
        return max(0, starts - 1 - int(message.options.get("retries", 0)))

    def unstart(self, message: dramatiq.Message[Any]) -> None:
        """Take back a start counted before the message could run."""
        with suppress(redis.RedisError):
            self.redis.decr(starts_key(message.message_id))

    def survived(self, message: dramatiq.Message[Any]) -> None:
        with suppress(redis.RedisError):
            self.redis.delete(starts_key(message.message_id))


class Isolation:
    """A readers-writer lock for one process's steps: many run side by side, a suspect alone.
    A waiting suspect goes first, so a busy process cannot starve it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running = 0
        self._alone = False
        self._waiting_alone = 0

    @contextmanager
    def beside_others(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(self._free)
            self._running += 1
        try:
            yield
        finally:
            self.leave()

    def enter_if_free(self) -> bool:
        """Join the steps running side by side if that needs no wait; ``leave()`` after."""
        with self._changed:
            if not self._free():
                return False
            self._running += 1
            return True

    def leave(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()

    def _free(self) -> bool:
        return not (self._alone or self._waiting_alone)

    @contextmanager
    def alone(self) -> Iterator[None]:
        with self._changed:
            self._waiting_alone += 1
            self._changed.wait_for(lambda: not (self._alone or self._running))
            self._waiting_alone -= 1
            self._alone = True
        try:
            yield
        finally:
            with self._changed:
                self._alone = False
                self._changed.notify_all()


class CrashGuard:
    """What an actor wraps its work in: the crash count before, isolation and counting during."""

    def __init__(self, counter: CrashCounter, isolation: Isolation, bound: int) -> None:
        self.counter = counter
        self.isolation = isolation
        self.bound = bound

    @contextmanager
    def watching(
        self, message: dramatiq.Message[Any], poisoned: Callable[[int], None]
    ) -> Iterator[None]:
        """Run the work, alone if it is a suspect; past the bound, ``poisoned(crashes)`` is
        called instead, and must raise."""
        crashes = self.counter.start(message)  # one round trip on the common path
        if crashes >= self.bound:
            poisoned(crashes)
            raise RuntimeError("poisoned() must raise")
        if not crashes and self.isolation.enter_if_free():
            try:
                yield
            finally:
                self.isolation.leave()
        else:  # it has to wait, and a start counts only once the step runs
            self.counter.unstart(message)
            with self.isolation.alone() if crashes else self.isolation.beside_others():
                self.counter.start(message)
                yield
        self.counter.survived(message)
