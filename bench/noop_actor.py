"""Raw Dramatiq for comparison: a no-op actor that only counts, on the same Redis."""

from __future__ import annotations

import os

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

QUEUE = "bench_noop"
COUNTER = "bench:noop:done"


def setup() -> None:
    url = os.environ["S2_REDIS_URL"]
    broker = RedisBroker(url=url)
    dramatiq.set_broker(broker)
    counter = redis.Redis.from_url(url)

    @dramatiq.actor(broker=broker, queue_name=QUEUE, actor_name="noop", max_retries=0)
    def noop(n: int) -> None:
        counter.incr(COUNTER)
