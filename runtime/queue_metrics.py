"""Queue depth, delay, age and dead letters, read from Redis when Prometheus scrapes.

Dramatiq's Redis broker keeps, per queue ``q`` (namespace ``dramatiq``; the builders of these
names are in ``messages.redis_keys``):

- ``dramatiq:q`` — a list of message ids waiting for a worker (oldest first);
- ``dramatiq:q.DQ`` — the same for delayed messages (a list too, not a sorted set: a worker
  fetches a delayed message early and holds it in memory until its ``eta``);
- ``dramatiq:q.msgs`` — the message bodies by id;
- ``dramatiq:q.XQ`` — dead-lettered message ids, a sorted set by time of death;
- ``dramatiq:__acks__.<worker>.q`` — ids a worker process fetched and has not acked yet
  (running, or prefetched), one set per worker listed in ``dramatiq:__heartbeats__``.

Reading them at scrape time (two pipelined round trips) rather than sampling on a timer
means the numbers are never stale and nothing runs between scrapes. Both the ingress and
one process per worker machine export them; the values are global, so aggregate with
``max by (queue)``, not ``sum``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from messages import QUEUES
from messages.redis_keys import (
    NAMESPACE,
    acks_key,
    bodies_key,
    dead_letters_key,
    delayed_queue_key,
    heartbeats_key,
    queue_key,
)


@dataclass(frozen=True)
class QueueStats:
    queue: str
    ready: int
    delayed: int
    in_progress: int
    dead: int
    oldest_age_s: float


def read_stats(
    client: redis.Redis, queues: Sequence[str] = QUEUES, *, namespace: str = NAMESPACE
) -> list[QueueStats]:
    """One ``QueueStats`` per queue; raises ``redis.RedisError`` if Redis does not answer."""
    pipe = client.pipeline(transaction=False)
    pipe.zrange(heartbeats_key(namespace=namespace), 0, -1)
    for q in queues:
        pipe.llen(queue_key(q, namespace=namespace))
        pipe.llen(delayed_queue_key(q, namespace=namespace))
        pipe.zcard(dead_letters_key(q, namespace=namespace))
        pipe.lindex(queue_key(q, namespace=namespace), 0)
    first = pipe.execute()
    workers = [w.decode() if isinstance(w, bytes) else str(w) for w in first[0]]
    per_queue = [first[1 + 4 * i : 5 + 4 * i] for i in range(len(queues))]

    pipe = client.pipeline(transaction=False)
    for q, (_, _, _, oldest) in zip(queues, per_queue, strict=True):
        for w in workers:
            pipe.scard(acks_key(w, q, namespace=namespace))
            pipe.scard(acks_key(w, f"{q}.DQ", namespace=namespace))
        if oldest:
            pipe.hget(bodies_key(q, namespace=namespace), oldest)
        else:
            pipe.echo("")
    second = pipe.execute()

    now_ms = time.time() * 1000
    stats, at = [], 0
    for q, (ready, delayed, dead, _) in zip(queues, per_queue, strict=True):
        held = second[at : at + 2 * len(workers)]
        oldest_body = second[at + 2 * len(workers)]
        at += 2 * len(workers) + 1
        stats.append(
            QueueStats(
                queue=q,
                ready=int(ready),
                delayed=int(delayed) + sum(int(n) for n in held[1::2]),
                in_progress=sum(int(n) for n in held[0::2]),
                dead=int(dead),
                oldest_age_s=_age_s(oldest_body, now_ms),
            )
        )
    return stats


def _age_s(body: bytes | str | None, now_ms: float) -> float:
    """How long the oldest waiting message has been due (enqueued, or its eta passed)."""
    if not body:
        return 0.0
    try:
        message = json.loads(body)
        due = max(
            float(message.get("message_timestamp", now_ms)), float(message["options"].get("eta", 0))
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return 0.0
    return max(0.0, (now_ms - due) / 1000)


class QueueCollector(Collector):
    """Prometheus collector of ``read_stats``; ``s2_queue_stats_up`` is 0 when Redis failed."""

    def __init__(self, client: redis.Redis, queues: Sequence[str] = QUEUES) -> None:
        self.client = client
        self.queues = tuple(queues)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("s2_queue_stats_up", "1 if the queue statistics could be read")
        try:
            stats = read_stats(self.client, self.queues)
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        families = {
            "ready": GaugeMetricFamily(
                "s2_queue_depth",
                "Messages waiting for a worker (not yet fetched)",
                labels=["queue"],
            ),
            "delayed": GaugeMetricFamily(
                "s2_queue_delayed",
                "Delayed messages (retries, slowed steps), queued or held until due",
                labels=["queue"],
            ),
            "in_progress": GaugeMetricFamily(
                "s2_queue_in_progress",
                "Messages fetched by a worker and not acknowledged (running or prefetched)",
                labels=["queue"],
            ),
            "dead": GaugeMetricFamily(
                "s2_queue_dead_letters", "Dead-lettered messages kept (7 days)", labels=["queue"]
            ),
            "oldest_age_s": GaugeMetricFamily(
                "s2_queue_oldest_age_seconds",
                "How long the oldest waiting message has been due (0 when none waits)",
                labels=["queue"],
            ),
        }
        for s in stats:
            for field, family in families.items():
                family.add_metric([s.queue], float(getattr(s, field)))
        yield from families.values()


_installed: dict[int, QueueCollector] = {}


def install(client: redis.Redis, registry: CollectorRegistry = REGISTRY) -> QueueCollector:
    """Register the collector once per registry (a later call points it at ``client``)."""
    existing = _installed.get(id(registry))
    if existing is not None:
        existing.client = client
        return existing
    collector = QueueCollector(client)
    registry.register(collector)
    _installed[id(registry)] = collector
    return collector
