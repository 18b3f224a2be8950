"""Stopping a step at once when its quest is cancelled, even inside a network call.

A step runs each call a cancel may cut (Claude, a provider's tool) as a task of its
``CallScope`` (``cut``); a cancel cancels those tasks, which closes their connections
wherever the calls are: connecting, sent and waiting for the first byte, or mid-stream. Store
work is never run that way: a cancel does not cut a transaction half way, and the step sees
the cancel at its next boundary.

Cancels arrive by Redis pub/sub; a flag key, checked when a step starts and every second
while it runs, catches any notice the subscription missed. ``CancelWatch.listen`` and
``CancelWatch.poll`` are two of the worker process's supervised tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from messages.redis_keys import CANCEL_CHANNEL, cancel_flag_key
from workers.errors import WorkerError

log = structlog.get_logger(__name__)
T = TypeVar("T")


class Interrupted(WorkerError):
    """A network call was cut because its quest was cancelled."""


class CallScope:
    """The calls of one step that its quest's cancel cuts."""

    def __init__(self, quest_id: UUID) -> None:
        self.quest_id = quest_id
        self.cancelled = asyncio.Event()
        self._calls: set[asyncio.Task[Any]] = set()

    def cancel(self) -> None:
        self.cancelled.set()
        for task in self._calls:
            task.cancel()

    async def cut(self, call: Coroutine[Any, Any, T]) -> T:
        """``call``'s result; ``Interrupted`` if the quest is (or gets) cancelled first.
        A cancel of the step itself (a shutdown, its time limit) passes through."""
        if self.cancelled.is_set():
            call.close()
            raise Interrupted("the call was not made: the quest was cancelled")
        task = asyncio.create_task(call)
        self._calls.add(task)
        try:
            return await task
        except (asyncio.CancelledError, Exception) as exc:
            # A cut call may end in an error rather than a cancel (redis-py raises a connection
            # error when cut mid-command): while the quest is cancelled, either is the cut.
            step = asyncio.current_task()
            if self.cancelled.is_set() and step is not None and not step.cancelling():
                raise Interrupted("the call was cut: the quest was cancelled") from exc
            raise
        finally:
            self._calls.discard(task)


class CancelWatch:
    """One per worker process: the scopes of the steps it runs, cut when their quest is
    cancelled."""

    def __init__(self, client: Redis, *, poll_s: float = 1.0) -> None:
        self.redis = client
        self.poll_s = poll_s
        self._scopes: dict[UUID, list[CallScope]] = {}
        # Called on every notice: the process's consumer fetches the control queue at once.
        self.on_notice: Callable[[], None] | None = None

    @contextlib.asynccontextmanager
    async def watching(self, quest_id: UUID) -> AsyncIterator[CallScope]:
        scope = CallScope(quest_id)
        self._scopes.setdefault(quest_id, []).append(scope)
        try:
            if await self.is_cancelled(quest_id):
                scope.cancel()
            yield scope
        finally:
            scopes = self._scopes.get(quest_id, [])
            if scope in scopes:
                scopes.remove(scope)
            if not scopes:
                self._scopes.pop(quest_id, None)

    async def is_cancelled(self, quest_id: UUID) -> bool:
        try:
            return bool(await self.redis.exists(cancel_flag_key(quest_id)))
        except RedisError:
            return False  # Postgres still has the request; the next step boundary sees it

    def cancel(self, quest_id: UUID | str) -> None:
        try:
            qid = UUID(str(quest_id))
        except ValueError:
            return
        scopes = list(self._scopes.get(qid, []))
        for scope in scopes:
            scope.cancel()
        if scopes:
            log.info("cancel reached a running step", quest_id=str(qid))

    async def listen(self) -> None:
        """Cut the scopes of each quest a notice names, until cancelled (a supervised task,
        restarted when Redis goes away)."""
        async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(CANCEL_CHANNEL)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    data = message.get("data")
                    self.cancel(data.decode() if isinstance(data, bytes) else str(data))
                    if self.on_notice is not None:
                        self.on_notice()

    async def poll(self) -> None:
        """Every ``poll_s``, cut the scopes of quests whose cancel flag is set: the notices a
        subscription missed (a supervised task)."""
        while True:
            await asyncio.sleep(self.poll_s)
            quests = list(self._scopes)
            if not quests:
                continue
            flags = await self.redis.mget([cancel_flag_key(q) for q in quests])
            for quest_id, flag in zip(quests, flags, strict=True):
                if flag:
                    self.cancel(quest_id)
