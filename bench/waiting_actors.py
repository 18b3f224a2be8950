"""Actors that only wait, for ``bench/consumption.py``: Dramatiq's (a thread each, as today's
quest step holds one through a Claude call) and the event-loop consumer's (a task each)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from redis.asyncio import BlockingConnectionPool, Redis

from messages.redis_keys import NAMESPACE
from workers.consumer import ActorSpec, Consumer
from workers.queue_protocol import QueueProtocol
from workers.refusals import DeadLetterBox

QUEUE = "bench_wait"
ACTOR = "wait"
DONE = "bench:wait:done"


def hold_s() -> float:
    return float(os.environ["BENCH_HOLD_S"])


def setup() -> None:
    """Dramatiq's CLI entry: a thread per waiting message."""
    url = os.environ["S2_REDIS_URL"]
    broker = RedisBroker(url=url, namespace=NAMESPACE)
    dramatiq.set_broker(broker)
    counter = redis.Redis.from_url(url)
    hold = hold_s()

    @dramatiq.actor(broker=broker, queue_name=QUEUE, actor_name=ACTOR, max_retries=0)
    def wait(n: int) -> None:
        time.sleep(hold)
        counter.incr(DONE)


async def consume(url: str, in_flight: int) -> None:
    # A blocking pool: past its size a call waits for a connection; redis-py's default pool
    # raises MaxConnectionsError instead, and a thousand tasks would fail their calls.
    client = Redis(connection_pool=BlockingConnectionPool.from_url(url, max_connections=20))
    hold = hold_s()

    async def wait(_: dramatiq.Message[Any]) -> None:
        await asyncio.sleep(hold)
        await client.incr(DONE)

    protocol = QueueProtocol(client, uuid.uuid4().hex, heartbeat_timeout_ms=60_000)
    spec = ActorSpec(ACTOR, QUEUE, wait, max_retries=0)
    await Consumer(
        protocol, [spec], DeadLetterBox(client, {ACTOR}), in_flight={QUEUE: in_flight}
    ).run()


if __name__ == "__main__":
    asyncio.run(consume(sys.argv[1], int(sys.argv[2])))
