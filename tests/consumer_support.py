"""A consumer on a scratch queue, for tests that run it in this process or in another one
(``python -m tests.consumer_support REDIS_URL QUEUE CONSUMER_ID``: holds every message until
killed, so that a test can kill it with messages in flight)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
import redis
from redis.asyncio import Redis

from messages.redis_keys import acks_key, bodies_key, queue_key
from messages.transport import build_broker
from workers.consumer import ActorSpec, Consumer
from workers.queue_protocol import QueueProtocol
from workers.refusals import DeadLetterBox

ACTOR = "test_job"


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
    return int(redis.Redis.from_url(redis_url).llen(queue_key(queue)))


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
    **actor_options: Any,
) -> Consumer:
    protocol = QueueProtocol(
        client,
        consumer_id or uuid.uuid4().hex,
        heartbeat_timeout_ms=heartbeat_timeout_ms,
        maintenance_chance=maintenance_chance,
    )
    spec = ActorSpec(ACTOR, queue, run, **actor_options)
    return Consumer(
        protocol,
        [spec],
        DeadLetterBox(client, {ACTOR}),
        in_flight={queue: in_flight},
        poll_ms=100,
        grace_s=grace_s,
    )


async def _hold_forever(redis_url: str, queue: str, consumer_id: str) -> None:
    async def hold(_: dramatiq.Message[Any]) -> None:
        await asyncio.Event().wait()

    await consumer(
        Redis.from_url(redis_url), queue, hold, consumer_id=consumer_id, heartbeat_timeout_ms=1_000
    ).run()


if __name__ == "__main__":
    asyncio.run(_hold_forever(*sys.argv[1:4]))
