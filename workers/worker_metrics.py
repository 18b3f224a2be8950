"""The workers' Prometheus metrics, and the HTTP port each worker process serves them on.

The collectors are module-level (the prometheus-client norm): a worker process imports this
module once and the code at the instrumented points (``workers.quest``, ``workers.control``,
``workers.consumer``, ``workers.integrations.provider``) counts into them. They live in the
process's own default registry.

**One port per worker process.** Prometheus's multiprocess mode would need
``PROMETHEUS_MULTIPROC_DIR`` set before the first import of ``prometheus_client`` in every
process, a directory wiped at every start (stale files of dead pids are summed in), and a
separate exposition process. Instead each process serves its own registry on
``S2_METRICS_PORT + i``: ``i`` is the process's index in its group (``S2_WORKER_INDEX``, set
by ``workers.fleet``), and if that port is taken the process takes the first free port
above the base. Nothing is shared, a dead process's series
go with it, and a restarted pool starts its counters at zero (``rate()`` copes). Scrape
``base .. base+processes-1`` on every worker machine and ``sum`` the counters.

The process on the base port also exports the queue statistics (``runtime.queue_metrics``)
and each provider's circuit-breaker state, read from Redis at scrape time, so a machine
reports them once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import redis
import structlog
from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from runtime import queue_metrics
from runtime.catalog import INTEGRATIONS
from runtime.settings import Settings
from workers.integrations.breaker import Breaker

log = structlog.get_logger(__name__)

PORTS_TRIED = 64

STEPS = Counter(
    "s2_quest_steps",
    "Quest step messages handled, by result: done (ran), skipped (a duplicate or a finished "
    "quest), resent (done before: its messages sent again), delayed (slowed or queued "
    'behind the company\'s limits). Retries and errors: s2_messages{actor="quest_step"}',
    ["result"],
)
QUESTS = Counter("s2_quests_finished", "Quests that ended, by final status", ["status"])
CANCEL_LATENCY = Histogram(
    "s2_cancel_latency_seconds",
    "From a cancel request (the quest's cancel_requested_at) to the quest ending cancelled",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
TIER_CROSSINGS = Counter(
    "s2_guard_tier_crossings",
    "Guard tiers reached by a settled call, by scope (quest, day, month) and tier",
    ["scope", "tier"],
)
SPEND = Counter(
    "s2_guard_spend_usd_micros",
    "Micro-USD charged against budgets, by model (settled calls, and calls kept at their "
    "reservation because no answer came)",
    ["model"],
)
CLAUDE_CALLS = Counter(
    "s2_claude_calls",
    "Claude calls, by model and result: ok, unavailable (retried later), refused (the quest "
    "fails), halted, cancelled",
    ["model", "result"],
)
CLAUDE_TOKENS = Counter(
    "s2_claude_tokens",
    "Tokens Claude reported, by model and kind: input, output, cache_write, cache_read",
    ["model", "kind"],
)
CLAUDE_COST = Counter(
    "s2_claude_cost_usd_micros", "Priced cost of Claude's replies, by model", ["model"]
)
PROVIDER_CALLS = Counter(
    "s2_provider_calls",
    "Integration provider calls, by provider and result: answered (any status below 500 but "
    "429), unavailable (failed after retries), breaker_open (not made), cancelled",
    ["provider", "result"],
)
PROVIDER_ERRORS = Counter(
    "s2_provider_errors",
    "Failed provider attempts, by provider and error: http_5xx, http_429, transport",
    ["provider", "error"],
)
BREAKER_TRIPS = Counter(
    "s2_provider_breaker_trips", "Times a provider's circuit breaker opened", ["provider"]
)
MESSAGES = Counter(
    "s2_messages",
    "Messages processed, by queue, actor and result: ok, retry (asked to run later), "
    "error (will be retried), dead (dead-lettered), skipped",
    ["queue", "actor", "result"],
)
MESSAGE_SECONDS = Histogram(
    "s2_message_duration_seconds",
    "Time an actor spent on a message",
    ["queue", "actor"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600),
)
IN_PROGRESS = Gauge(
    "s2_messages_in_progress", "Messages an actor is working on now", ["queue", "actor"]
)
DEAD_LETTERS = Counter(
    "s2_messages_dead_lettered",
    "Messages this process dead-lettered, its consumer's refusals included (actor empty when "
    "the entry named none of ours)",
    ["queue", "actor"],
)
WAITING = Gauge(
    "s2_steps_waiting",
    "Quest steps waiting now on a network call, by what they wait on: claude, provider",
    ["on"],
)
LOOP_LAG = Gauge(
    "s2_event_loop_lag_seconds",
    "How late the worker process's event loop last woke a timer that was due (CPU-bound "
    "work on the loop delays every step)",
)
REJECTED = Counter(
    "s2_messages_rejected",
    "Queue entries dead-lettered by the consumer before any actor saw them, by queue and "
    "reason: undecodable (not a Dramatiq message), invalid_envelope, unknown_actor",
    ["queue", "reason"],
)


@contextlib.contextmanager
def waiting(on: str) -> Iterator[None]:
    """Count a step as waiting on ``on`` (claude, provider) for the block."""
    gauge = WAITING.labels(on)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


async def watch_loop_lag(every_s: float = 1.0) -> None:
    """Measure how late the loop wakes a timer, until cancelled (a supervised task)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + every_s
        await asyncio.sleep(every_s)
        LOOP_LAG.set(max(0.0, loop.time() - due))


def claude_reply(model: str, usage: dict[str, Any], cost: int) -> None:
    """Count one answered call: its tokens by kind and its priced cost."""
    CLAUDE_CALLS.labels(model, "ok").inc()
    for kind, field in (
        ("input", "input_tokens"),
        ("output", "output_tokens"),
        ("cache_write", "cache_creation_input_tokens"),
        ("cache_read", "cache_read_input_tokens"),
    ):
        tokens = usage.get(field)
        if isinstance(tokens, int) and tokens > 0:
            CLAUDE_TOKENS.labels(model, kind).inc(tokens)
    CLAUDE_COST.labels(model).inc(max(0, cost))


def spent(model: str, micros: int) -> None:
    if micros > 0:
        SPEND.labels(model).inc(micros)


def quest_ended(status: str, cancel_requested_at: datetime | None = None) -> None:
    QUESTS.labels(status).inc()
    if status == "cancelled" and cancel_requested_at is not None:
        waited = datetime.now(UTC) - cancel_requested_at
        CANCEL_LATENCY.observe(max(0.0, waited.total_seconds()))


class BreakerCollector(Collector):
    """Each provider's circuit-breaker state (shared in Redis), read at scrape time."""

    STATES = ("closed", "probing", "open")

    def __init__(self, breaker: Breaker) -> None:
        self.breaker = breaker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "s2_provider_breaker_state",
            "1 for the state each provider's circuit breaker is in (closed, probing, open)",
            labels=["provider", "state"],
        )
        for provider in INTEGRATIONS:
            try:
                now = self.breaker.state(provider)
            except redis.RedisError:
                continue
            for state in self.STATES:
                family.add_metric([provider, state], 1.0 if state == now else 0.0)
        yield family


def serve(settings: Settings, client: redis.Redis) -> int | None:
    """Serve this process's metrics; returns the port, or None when ``S2_METRICS_PORT`` is 0."""
    base = settings.metrics_port
    if not base:
        return None
    preferred = base + (settings.worker_index or 0)
    for port in [preferred, *(p for p in range(base, base + PORTS_TRIED) if p != preferred)]:
        try:
            start_http_server(port, addr=settings.metrics_host)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        if port == base:
            queue_metrics.install(client)
            REGISTRY.register(BreakerCollector(Breaker(client)))
        log.info("metrics served", port=port, host=settings.metrics_host)
        return port
    log.warning("no free metrics port", first=base, tried=PORTS_TRIED)
    return None
