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

A fair queue (``quests``: ``workers/fair_queue.py``) uses its list only as the intake: each
fetch sorts it into per-company lanes (``s2:fair:q:started:<company>`` and
``s2:fair:q:new:<company>``), and ``s2:fair:q:waiting`` counts each company's steps there.
So a queue's waiting messages are its list's and its lanes' (the hash's sum; the hash is
empty for a queue that is not fair), and its oldest is the older of the list's head and the
lanes' heads of the ``COMPANIES_SHOWN`` companies with the most steps waiting (a bound: the
oldest step of a company with fewer waiting is missed, rarely — a backlog's head is old
because the backlog is long). Those companies, their steps waiting and their oldest step's age
are ``QueueStats.companies`` (``system2 ops queues``).

Reading them at scrape time (three pipelined round trips at most) rather than sampling on a
timer means the numbers are never stale and nothing runs between scrapes. Both the ingress and
one process per worker machine export them; the values are global, so aggregate with
``max by (queue)``, not ``sum``. Only the worker machines' endpoint, on the private network,
exports the per-company gauge ``s2_fair_waiting_steps`` (``install(..., per_company=True)``):
the ingress's ``/metrics`` is on its public port, and a company id is no label for the
internet to read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

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
    fair_lane_key,
    fair_waiting_key,
    heartbeats_key,
    queue_key,
)

COMPANIES_SHOWN = 20  # per fair queue: the companies with the most steps waiting
LANES = ("started", "new")


@dataclass(frozen=True)
class CompanyWaiting:
    """A company's quest steps waiting in a fair queue's lanes."""

    company_id: str  # "-": bodies that are no quest step's (dead-lettered in their turn)
    waiting: int
    oldest_age_s: float | None  # its lanes' heads; None: fetched while we looked


@dataclass(frozen=True)
class QueueStats:
    queue: str
    ready: int  # waiting to be fetched: on the list, and in a fair queue's lanes
    delayed: int
    in_progress: int
    dead: int
    oldest_age_s: float
    companies: tuple[CompanyWaiting, ...] = ()  # a fair queue's, most waiting first (bounded)
    companies_waiting: int = 0  # how many companies have steps in its lanes, all of them


def read_stats(
    client: redis.Redis,
    queues: Sequence[str] = QUEUES,
    *,
    namespace: str = NAMESPACE,
    companies: int = COMPANIES_SHOWN,
) -> list[QueueStats]:
    """One ``QueueStats`` per queue, each with at most ``companies`` companies; raises
    ``redis.RedisError`` if Redis does not answer."""
    pipe = client.pipeline(transaction=False)
    pipe.zrange(heartbeats_key(namespace=namespace), 0, -1)
    for q in queues:
        pipe.llen(queue_key(q, namespace=namespace))
        pipe.llen(delayed_queue_key(q, namespace=namespace))
        pipe.zcard(dead_letters_key(q, namespace=namespace))
        pipe.lindex(queue_key(q, namespace=namespace), 0)
        pipe.hgetall(fair_waiting_key(q))
    first = pipe.execute()
    workers = [_text(w) for w in first[0]]
    per_queue = [first[1 + 5 * i : 6 + 5 * i] for i in range(len(queues))]
    waiting_of = [_waiting(found) for *_, found in per_queue]
    shown = [sorted(w.items(), key=lambda kv: (-kv[1], kv[0]))[:companies] for w in waiting_of]

    pipe = client.pipeline(transaction=False)
    for q, (_, _, _, oldest, _), top in zip(queues, per_queue, shown, strict=True):
        for w in workers:
            pipe.scard(acks_key(w, q, namespace=namespace))
            pipe.scard(acks_key(w, f"{q}.DQ", namespace=namespace))
        if oldest:
            pipe.hget(bodies_key(q, namespace=namespace), oldest)
        else:
            pipe.echo("")
        for company, _ in top:
            for lane in LANES:
                pipe.lindex(fair_lane_key(q, lane, company), 0)
    second = pipe.execute()

    held_of, intake_heads, lane_heads, at = [], [], [], 0
    for top in shown:
        held_of.append(second[at : at + 2 * len(workers)])
        at += 2 * len(workers)
        intake_heads.append(second[at])
        at += 1
        lane_heads.append(second[at : at + len(LANES) * len(top)])
        at += len(LANES) * len(top)

    head_bodies = _bodies_of(client, queues, lane_heads, namespace)
    now_ms = time.time() * 1000
    stats = []
    for i, (q, (ready, delayed, dead, _, _)) in enumerate(zip(queues, per_queue, strict=True)):
        held, bodies = held_of[i], head_bodies[i]
        shown_companies = tuple(
            CompanyWaiting(
                company_id=company,
                waiting=n,
                oldest_age_s=_oldest_age_s(bodies[len(LANES) * j : len(LANES) * (j + 1)], now_ms),
            )
            for j, (company, n) in enumerate(shown[i])
        )
        ages = [_age_s(intake_heads[i], now_ms)]
        ages += [c.oldest_age_s for c in shown_companies if c.oldest_age_s is not None]
        stats.append(
            QueueStats(
                queue=q,
                ready=int(ready) + sum(waiting_of[i].values()),
                delayed=int(delayed) + sum(int(n) for n in held[1::2]),
                in_progress=sum(int(n) for n in held[0::2]),
                dead=int(dead),
                oldest_age_s=max(ages),
                companies=shown_companies,
                companies_waiting=len(waiting_of[i]),
            )
        )
    return stats


def _bodies_of(
    client: redis.Redis,
    queues: Sequence[str],
    heads: Sequence[Sequence[bytes | None]],
    namespace: str,
) -> list[list[bytes | None]]:
    """The bodies of each queue's lane heads (None where a lane was empty), in one round trip;
    none when no lane has a head."""
    found: list[list[bytes | None]] = [[None] * len(h) for h in heads]
    asked = [i for i, h in enumerate(heads) if any(h)]
    if not asked:
        return found
    pipe = client.pipeline(transaction=False)
    for i in asked:  # an empty lane asks for a field no hash has
        pipe.hmget(bodies_key(queues[i], namespace=namespace), [h or "" for h in heads[i]])
    for i, got in zip(asked, pipe.execute(), strict=True):
        found[i] = [b if h else None for h, b in zip(heads[i], got, strict=True)]
    return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _waiting(found: dict[bytes | str, bytes | str]) -> dict[str, int]:
    """A fair queue's waiting hash as company -> steps (a field at 0 or below is none)."""
    counts = {}
    for company, n in found.items():
        try:
            count = int(n)
        except ValueError:
            continue
        if count > 0:
            counts[_text(company)] = count
    return counts


def _oldest_age_s(bodies: Sequence[bytes | str | None], now_ms: float) -> float | None:
    """The age of the older of a company's lanes' heads; None if neither is there now."""
    ages = [_age_s(b, now_ms) for b in bodies if b]
    return max(ages) if ages else None


def _due_ms(message: dict[str, Any], now_ms: float) -> float:
    """When a message began to wait: sent, its eta passed, or put back on its queue when its
    delay ended (``ready_ms``, as ``s2_queue_wait_seconds`` measures it)."""
    options = message.get("options") or {}
    return max(
        float(message.get("message_timestamp", now_ms)),
        float(options.get("eta") or 0),
        float(options.get("ready_ms") or 0),
    )


def _age_s(body: bytes | str | None, now_ms: float) -> float:
    """How long a waiting message has been due (0 for none, or one that does not parse)."""
    if not body:
        return 0.0
    try:
        due = _due_ms(json.loads(body), now_ms)
    except (ValueError, KeyError, TypeError, AttributeError):
        return 0.0
    return max(0.0, (now_ms - due) / 1000)


class QueueCollector(Collector):
    """Prometheus collector of ``read_stats``; ``s2_queue_stats_up`` is 0 when Redis failed.
    ``per_company``: also ``s2_fair_waiting_steps`` by company — for an endpoint on the private
    network only (a worker machine's), never the ingress's public ``/metrics``."""

    def __init__(
        self, client: redis.Redis, queues: Sequence[str] = QUEUES, *, per_company: bool = False
    ) -> None:
        self.client = client
        self.queues = tuple(queues)
        self.per_company = per_company

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
        if self.per_company:
            waiting = GaugeMetricFamily(
                "s2_fair_waiting_steps",
                f"Quest steps waiting in a company's lanes of a fair queue, for the "
                f"{COMPANIES_SHOWN} companies with the most (none waiting: no series)",
                labels=["queue", "company"],
            )
            for s in stats:
                for c in s.companies:
                    waiting.add_metric([s.queue, c.company_id], float(c.waiting))
            yield waiting


_installed: dict[int, QueueCollector] = {}


def install(
    client: redis.Redis, registry: CollectorRegistry = REGISTRY, *, per_company: bool = False
) -> QueueCollector:
    """Register the collector once per registry (a later call points it at ``client``).
    ``per_company``: see ``QueueCollector`` — True only where the endpoint is private."""
    existing = _installed.get(id(registry))
    if existing is not None:
        existing.client = client
        existing.per_company = per_company
        return existing
    collector = QueueCollector(client, per_company=per_company)
    registry.register(collector)
    _installed[id(registry)] = collector
    return collector
