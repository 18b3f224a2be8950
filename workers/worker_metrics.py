"""The workers' Prometheus metrics, and where a worker process's metrics are served.

The collectors are module-level (the prometheus-client norm): a worker process imports this
module once and the code at the instrumented points (``workers.quest``, ``workers.control``,
``workers.consumer``, ``workers.integrations.provider``) counts into them.

**One endpoint per machine.** ``system2 worker`` (``workers.fleet``) starts each of its worker
processes with ``PROMETHEUS_MULTIPROC_DIR`` in the environment, a fresh directory of the
group's, so from its first import prometheus-client keeps these collectors in memory-mapped
files there (multiprocess mode). The group's parent serves their sum on ``S2_METRICS_PORT``,
with the queue statistics and the breaker states once (``workers.metrics_endpoint``), and
``serve`` below serves nothing. Counters and histograms sum over every process the group has
run (a killed process's counts stay), so they only grow while the group runs. Each gauge
says how it combines: the messages in progress and the steps waiting are summed over the
live processes (``livesum``), the event-loop lag is the worst live process's (``livemax``);
a dead process's gauges are dropped at once. Prometheus-client's ``process_*`` and
``python_*`` metrics are not exported in multiprocess mode.

An update in multiprocess mode also writes the mapped page: about 0.5 µs more per ``inc()``
than in memory (0.25 µs), some 7 µs more for the fifteen or so updates of a step (17 µs in
memory), against the milliseconds of CPU a step costs.

**Alone** (``python -m workers.app`` outside a group, or given no directory), a process serves
its own registry on ``S2_METRICS_PORT + S2_WORKER_INDEX`` (the base port without an index;
the first free port above the base if that one is taken), with the queue statistics and the
breaker states when it has the base port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import redis
import structlog
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.registry import REGISTRY

from runtime.settings import Settings
from workers import metrics_endpoint

log = structlog.get_logger(__name__)

STEPS = Counter(
    "s2_quest_steps",
    "Quest step messages handled, by result: done (ran), skipped (a duplicate or a finished "
    "quest), resent (done before: its messages sent again), delayed (slowed or queued "
    'behind the company\'s limits). Retries and errors: s2_messages{actor="quest_step"}',
    ["result"],
)
QUEUE_WAIT = Histogram(
    "s2_queue_wait_seconds",
    "How long a message waited on its queue before a worker took it: from when it was sent "
    "(or came due, for a delayed one) to its fetch. Per company, while they wait: "
    "s2_fair_waiting_steps",
    ["queue"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
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
WEBHOOK_ATTEMPTS = Counter(
    "s2_webhook_attempts",
    "Webhook delivery attempts, by outcome: delivered, retry (failed, tried again later), "
    "given_up (failed after the last retry)",
    ["outcome"],
)
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "s2_webhook_endpoints_disabled", "Webhook endpoints disabled because they kept failing"
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
    "error (will be retried), dead (dead-lettered); a step the quest did not need is ok here "
    "and skipped in s2_quest_steps",
    ["queue", "actor", "result"],
)
MESSAGE_SECONDS = Histogram(
    "s2_message_duration_seconds",
    "Time an actor spent on a message",
    ["queue", "actor"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600),
)
IN_PROGRESS = Gauge(
    "s2_messages_in_progress",
    "Messages an actor is working on now",
    ["queue", "actor"],
    multiprocess_mode="livesum",
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
    multiprocess_mode="livesum",
)
LOOP_LAG = Gauge(
    "s2_event_loop_lag_seconds",
    "How late the worker process's event loop last woke a timer that was due (CPU-bound "
    "work on the loop delays every step); a group's endpoint shows its worst process",
    multiprocess_mode="livemax",
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


def serve(settings: Settings, client: redis.Redis) -> int | None:
    """Serve this process's metrics; returns the port, or None when ``S2_METRICS_PORT`` is 0,
    when no port is free, and when the process is one of a group whose parent serves them."""
    base = settings.metrics_port
    if not base:
        return None
    if settings.worker_index is not None and settings.prometheus_multiproc_dir:
        log.info("metrics written for the group", directory=settings.prometheus_multiproc_dir)
        return None
    preferred = base + (settings.worker_index or 0)
    found = metrics_endpoint.listen(settings.metrics_host, base, REGISTRY, preferred)
    if found is None:
        return None
    port, _server = found
    if port == base:
        metrics_endpoint.install_shared(client, REGISTRY)
    log.info("metrics served", port=port, host=settings.metrics_host)
    return port
