"""A consumer on a scratch queue, for tests that run it in this process or in another one
(``python -m tests.consumer_support hold REDIS_URL QUEUE CONSUMER_ID``: holds every message
until killed, so that a test can kill it with messages in flight; ``... crash REDIS_URL QUEUE
IN_FLIGHT``: message 0 takes the process down)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
import redis
from redis.asyncio import Redis

from messages.redis_keys import acks_key, bodies_key, fair_waiting_key, queue_key
from messages.transport import build_broker
from workers.consumer import ActorSpec, Consumer
from workers.crash_isolation import CrashGuard, Isolation, StartCounter
from workers.queue_protocol import QueueProtocol
from workers.refusals import DeadLetterBox

ACTOR = "test_job"
FAIR_PREFIX = "fair-"  # a scratch queue named so is dispatched fairly (workers.fair_queue)


def is_fair(queue: str) -> bool:
    return queue.startswith(FAIR_PREFIX)


def publish(redis_url: str, queue: str, count: int, *, actor: str = ACTOR) -> list[str]:
    """``count`` messages onto ``queue`` through Dramatiq's own broker; their message ids."""
    broker = build_broker(redis_url, middleware=[])
    broker.declare_queue(queue)
    ids = []
    for n in range(count):
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue, actor_name=actor, args=(n,), kwargs={}, options={}
        )
        broker.enqueue(message)
        ids.append(message.message_id)
    broker.close()
    return ids


def held(redis_url: str, queue: str, consumer_id: str) -> int:
    return int(redis.Redis.from_url(redis_url).scard(acks_key(consumer_id, queue)))


def waiting(redis_url: str, queue: str) -> int:
    """Messages waiting to be fetched: in the queue's list, and a fair queue's lanes."""
    client = redis.Redis.from_url(redis_url)
    lanes = sum(int(n) for n in client.hvals(fair_waiting_key(queue))) if is_fair(queue) else 0
    return int(client.llen(queue_key(queue))) + lanes


def bodies(redis_url: str, queue: str) -> int:
    return int(redis.Redis.from_url(redis_url).hlen(bodies_key(queue)))


def consumer(
    client: Redis,
    queue: str,
    run: Callable[[dramatiq.Message[Any]], Awaitable[None]],
    *,
    consumer_id: str | None = None,
    in_flight: int = 1_000,
    heartbeat_timeout_ms: int = 60_000,
    maintenance_chance: int = 1_000,
    grace_s: float = 5.0,
    guard: CrashGuard | None = None,
    protocol_class: type[QueueProtocol] = QueueProtocol,
    poll_ms: int = 100,
    **actor_options: Any,
) -> Consumer:
    protocol = protocol_class(
        client,
        consumer_id or uuid.uuid4().hex,
        heartbeat_timeout_ms=heartbeat_timeout_ms,
        maintenance_chance=maintenance_chance,
        fair_queues=[queue] if is_fair(queue) else [],
    )
    spec = ActorSpec(ACTOR, queue, run, crash_guarded=guard is not None, **actor_options)
    return Consumer(
        protocol,
        [spec],
        DeadLetterBox(client, {ACTOR}),
        in_flight={queue: in_flight},
        poll_ms=poll_ms,
        grace_s=grace_s,
        guard=guard,
    )


async def _hold_forever(redis_url: str, queue: str, consumer_id: str) -> None:
    async def hold(_: dramatiq.Message[Any]) -> None:
        await asyncio.Event().wait()

    await consumer(
        Redis.from_url(redis_url), queue, hold, consumer_id=consumer_id, heartbeat_timeout_ms=1_000
    ).run()


DONE = "test:consumer:done"


async def _crash_on_zero(redis_url: str, queue: str, in_flight: str) -> None:
    """Message 0 takes the process down; the others take a moment and count themselves."""
    client = Redis.from_url(redis_url)

    async def job(message: dramatiq.Message[Any]) -> None:
        if message.args[0] == 0:
            os._exit(1)
        await asyncio.sleep(0.3)
        await client.sadd(f"{DONE}:{queue}", message.args[0])

    limit = int(in_flight)
    guard = CrashGuard(StartCounter(client), Isolation(limit), bound=2)
    await consumer(
        client,
        queue,
        job,
        in_flight=limit,
        heartbeat_timeout_ms=1_000,
        maintenance_chance=1_000_000,
        guard=guard,
    ).run()


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        asyncio.run(_hold_forever(*sys.argv[2:5]))
    else:
        asyncio.run(_crash_on_zero(*sys.argv[2:5]))
