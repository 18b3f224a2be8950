"""Dramatiq's Redis queue protocol, spoken from an event loop.

The queues stay Dramatiq's: the ingress publishes with Dramatiq's broker, and every state
change of a queue goes through Dramatiq's own ``dispatch.lua`` (fetch, ack, nack, requeue,
enqueue), loaded from the installed package and checked against the hash it was reviewed at,
so the layout of the keys (``messages.redis_keys``) and the delivery guarantees are Dramatiq's:

- a fetched message's id sits in this consumer's acks set until it is acked (its body goes),
  nacked (its body moves to ``<queue>.XQ``) or requeued;
- every call refreshes this consumer's heartbeat; when a consumer falls silent for the
  heartbeat timeout, another's maintenance (a fetch's chance, ``maintenance_chance`` per
  million, and every heartbeat) puts the ids in its acks sets back on their queues:
  ``kill -9`` loses nothing.

What differs from Dramatiq's ``_RedisConsumer`` is who waits: a coroutine, not a thread;
acks of many messages share one round trip (a pipeline of script calls); and a *fair* queue
(``quests``) is fetched, handed back and looked after by ``workers.fair_queue``, which takes
each company's steps in turn instead of in the order they came.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis

from messages.redis_keys import NAMESPACE
from workers.errors import WorkerError
from workers.fair_queue import FairQueue

# sha256 of the dispatch.lua of dramatiq 2.2.x (pyproject pins dramatiq below 2.3). A newer
# script may change what a command means; read it, then update the hash.
DISPATCH_SHA256 = "ba4d872e4fb204ebc3f73ca4719265a9946d70e847856c125314f01a8c90540c"
MAINTENANCE_SCALE = 1_000_000  # maintenance_chance is per million calls, as in Dramatiq
NO_MAINTENANCE = frozenset({"ack", "nack"})  # as Dramatiq: not on the hot path of a message


class ProtocolMismatch(WorkerError):
    """The installed Dramatiq's queue script is not the one this code was written against."""


def dispatch_script() -> bytes:
    script = (resources.files("dramatiq.brokers") / "redis" / "dispatch.lua").read_bytes()
    found = hashlib.sha256(script).hexdigest()
    if found != DISPATCH_SHA256:
        raise ProtocolMismatch(
            f"dramatiq's dispatch.lua has sha256 {found}, not the reviewed {DISPATCH_SHA256}: "
            "check what changed, then update workers/queue_protocol.py"
        )
    return script


def _max_stack() -> bytes:
    return (resources.files("dramatiq.brokers") / "redis" / "maxstack.lua").read_bytes()


class QueueProtocol:
    """One consumer's calls on Dramatiq's Redis queues. ``consumer_id`` names its acks sets
    and its heartbeat: unique per process, as Dramatiq's ``broker_id``."""

    def __init__(
        self,
        client: Redis,
        consumer_id: str,
        *,
        heartbeat_timeout_ms: int,
        dead_message_ttl_ms: int = 7 * 24 * 3600 * 1000,
        maintenance_chance: int = 1_000,
        namespace: str = NAMESPACE,
        fair_queues: Sequence[str] = (),
        default_weight: int = 1,
    ) -> None:
        self.client = client
        self.consumer_id = consumer_id
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.dead_message_ttl_ms = dead_message_ttl_ms
        self.maintenance_chance = maintenance_chance
        self.namespace = namespace
        self._dispatch = client.register_script(dispatch_script())
        self._unpack_max = 0
        self.fair = {
            q: FairQueue(
                client,
                q,
                consumer_id,
                heartbeat_timeout_ms=heartbeat_timeout_ms,
                default_weight=default_weight,
                namespace=namespace,
            )
            for q in fair_queues
        }

    async def start(self) -> None:
        """Ask the server how many values a script may unpack (half, as Dramatiq does)."""
        limit = await self.client.register_script(_max_stack())()
        self._unpack_max = max(1, int(limit) // 2)

    @property
    def fetch_max(self) -> int:
        """The most messages one fetch can return (the script's own bound)."""
        return self._unpack_max

    def _args(self, command: str, queue: str, *args: Any, maintain: bool = False) -> list[Any]:
        maintain = maintain or (
            command not in NO_MAINTENANCE
            and queue not in self.fair  # a fair queue's is fair.lua's: back into the lanes
            and random.randint(1, MAINTENANCE_SCALE) <= self.maintenance_chance
        )
        return [
            command,
            int(time.time() * 1000),
            queue,
            self.consumer_id,
            self.heartbeat_timeout_ms,
            self.dead_message_ttl_ms,
            int(maintain),
            self._unpack_max or 1,
            *args,
        ]

    async def call(self, command: str, queue: str, *args: Any) -> Any:
        return await self._dispatch(keys=[self.namespace], args=self._args(command, queue, *args))

    async def fetch(self, queue: str, count: int) -> list[bytes]:
        """Up to ``count`` bodies, moved into this consumer's acks set. A body Dramatiq could
        not find (its hash entry gone) comes back as nothing."""
        fair = self.fair.get(queue)
        bodies = await (fair.fetch(count) if fair else self.call("fetch", queue, count))
        return [b for b in bodies if b is not None]

    async def settle(self, outcomes: list[tuple[str, str, str]]) -> None:
        """Ack or nack many messages in one round trip: ``(command, queue, redis id)``."""
        if not outcomes:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for command, queue, redis_id in outcomes:
                await self._dispatch(
                    keys=[self.namespace], args=self._args(command, queue, redis_id), client=pipe
                )
            await pipe.execute()

    async def requeue(self, queue: str, redis_ids: list[str]) -> None:
        """Hand fetched messages back to their queue (at its tail, as Dramatiq does): at
        once, not after the heartbeat timeout."""
        fair = self.fair.get(queue)
        for start in range(0, len(redis_ids), max(1, self._unpack_max)):
            chunk = redis_ids[start : start + self._unpack_max]
            await (fair.requeue(chunk) if fair else self.call("requeue", queue, *chunk))

    async def enqueue(self, queue: str, redis_id: str, body: bytes) -> None:
        await self.call("enqueue", queue, redis_id, body)

    async def heartbeat(self, queues: Sequence[str] = ()) -> None:
        """Say this consumer lives (``qsize`` only reads), and look after ``queues``: what a
        consumer that fell silent held goes back on them. A process whose every slot is busy
        makes no fetch, and when every process is busy no fetch's one-in-a-thousand chance
        of maintenance may come for minutes: the heartbeat's always does, once per queue."""
        if not queues:
            await self.call("qsize", "__heartbeat__")
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for queue in queues:
                if (fair := self.fair.get(queue)) is not None:
                    await fair.maintain(client=pipe)
                    continue
                args = self._args("qsize", queue, maintain=True)
                await self._dispatch(keys=[self.namespace], args=args, client=pipe)
            await pipe.execute()
