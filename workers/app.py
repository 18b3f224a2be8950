"""One worker process: settings, then the process's resources, then its actors on the
consumer (``workers.consumer``), all on one event loop, with the process's background work
(cancel watching, step leases, the sweeper, transcript retention, support grant expiry,
the beacon, the loop-lag gauge) as supervised tasks beside it.

``python -m workers.app`` is what ``workers.fleet`` starts in each process; nothing happens at
import time. The actors are thin: open the envelope (a bad one is dead-lettered with its
reason, never retried), bind the log context, hand over.

What a process holds, whatever it runs: one Postgres pool (``S2_WORKER_DB_POOL_MAX``
connections), one Redis pool (``S2_WORKER_REDIS_CONNECTIONS``), one HTTP client per
service. A step takes a pooled connection only for a transaction or a round trip, never
across a Claude or provider call, so the pools are sized by how many of those run at the
same instant, not by the steps in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import redis
import structlog
from dramatiq import Message
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from guard import Admissions, Guard, PriceTable
from messages import (
    AUDIT,
    CONTROL,
    MAINTENANCE,
    QUESTS,
    QUEUES,
    WEBHOOKS,
    AuditBatch,
    BadMessage,
    CancelQuest,
    DispatchWebhooks,
    Envelope,
    QuestStep,
    RewrapCredentials,
    open_envelope,
)
from messages.redis_keys import CLAUDE_WAIT_PREFIX
from runtime import logs, sentry
from runtime.settings import Settings
from runtime.tasks import cancel_and_wait, supervised
from runtime.wiring import async_redis, maybe_vault
from store import Database
from store.webhooks import EVENT_OF_ACTION
from vault import Vault
from workers import worker_metrics
from workers.audit import AuditWriter
from workers.beacon import Beacon
from workers.call_scope import CancelWatch
from workers.claude import Claude
from workers.consumer import ActorSpec, Consumer
from workers.control import QuestEnder
from workers.control_loop import ControlDatabase, ControlLoop
from workers.crash_isolation import CrashGuard, Isolation, StartCounter
from workers.errors import TryLater
from workers.events import QuestEvents
from workers.fair_queue import FairQueue
from workers.integrations.registry import integration_tools, provider_http
from workers.lease import StepLeases
from workers.maintenance import Rewrapper
from workers.prompt import PromptPolicy, Prompts
from workers.publisher import QueuePublisher
from workers.quest import QuestRunner
from workers.queue_protocol import QueueProtocol
from workers.refusals import DeadLetterBox
from workers.retention import Retention
from workers.step import STEP_TIME_LIMIT, Outcome
from workers.step_budget import StepBudget
from workers.support_expiry import SupportExpiry
from workers.sweeper import Sweeper
from workers.tools import Toolbox, builtin_tools
from workers.waits import WaitClock
from workers.webhooks.dispatcher import WebhookDispatcher
from workers.webhooks.sender import webhook_http

log = structlog.get_logger(__name__)
QUEST_STEP_RETRIES = 100


@dataclass
class Runtime:
    """What one worker process holds: pools and clients, built once, passed to the actors."""

    settings: Settings
    db: Database
    control_db: Database  # cancels, on the control loop: never queued behind quest steps
    audit_db: Database  # the audit writer, the sweeper, retention, rewrap: apart from both
    redis: Redis
    protocol: QueueProtocol
    quests: QuestRunner
    ender: QuestEnder  # a quest step that gives up or keeps crashing ends its quest here
    control: QuestEnder  # a cancel, on the control pool
    audit: AuditWriter
    rewrapper: Rewrapper | None
    cancels: CancelWatch
    leases: StepLeases
    sweeper: Sweeper
    retention: Retention
    support_expiry: SupportExpiry
    claude: Claude
    http: httpx.AsyncClient
    webhooks: WebhookDispatcher  # its own HTTP client: endpoints are not providers
    counter_redis: SyncRedis  # the vault's encryption counter (sync: a call per block of them)
    control_loop: ControlLoop  # the control pool's own loop and thread

    @classmethod
    async def open(cls, settings: Settings) -> Runtime:
        # A burst of steps queues for the pool's few connections: a step waits its turn (up
        # to 30 s) rather than fail and be retried.
        db = Database(
            settings.database_url,
            min_size=1,
            max_size=settings.worker_db_pool_max,
            name="worker",
            timeout=30.0,
        )
        await db.open(wait=False)
        # Cancels have connections, and an event loop, of their own: a cancel never waits for
        # a connection nor for a loop's turn behind a thousand steps (fair share, issue 18).
        control_loop = ControlLoop()
        control_loop.start()
        control_db = ControlDatabase(
            control_loop,
            settings.database_url,
            min_size=1,
            max_size=settings.worker_control_db_pool_max,
            name="worker-control",
            timeout=30.0,
        )
        await control_db.open(wait=False)
        audit_db = Database(
            settings.database_url,
            min_size=1,
            max_size=settings.worker_audit_db_pool_max,
            name="worker-audit",
            timeout=30.0,
        )
        await audit_db.open(wait=False)
        client = async_redis(settings, connections=settings.worker_redis_connections, name="worker")
        protocol = QueueProtocol(
            client,
            f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            heartbeat_timeout_ms=settings.broker_heartbeat_ms,
            maintenance_chance=settings.broker_maintenance_chance,
            fair_queues=[QUESTS] if settings.fair_dispatch else [],
            default_weight=settings.fair_default_weight,
        )
        publisher = QueuePublisher(protocol)
        counter_redis = redis.Redis.from_url(  # sync, on the loop: bounded by its timeouts
            settings.redis_url,
            client_name="system2-worker",
            socket_timeout=2,
            socket_connect_timeout=2,
        )
        vault = maybe_vault(settings, counter_redis)
        if vault is None:
            log.warning("no vault keys (S2_VAULT_KEYS): integrations are unavailable to quests")
        http = provider_http(settings)
        prices = PriceTable.load()
        claude = Claude(timeout_s=settings.claude_timeout_s, in_flight=settings.worker_in_flight)
        cancels = CancelWatch(client)
        leases = StepLeases(client)
        events = QuestEvents(client, maxlen=settings.events_maxlen)
        budget = step_budget(settings, client, prices, claude)
        quests = QuestRunner(
            db=db,
            publisher=publisher,
            claude=claude,
            toolbox=toolbox(settings, db, client, vault, http),
            prices=prices,
            budget=budget,
            events=events,
            prompts=prompts(settings, prices, claude),
            max_steps=settings.max_steps,
            cancels=cancels,
            leases=leases,
            claude_outage_max=timedelta(seconds=settings.claude_outage_max_s),
            claude_waits=WaitClock(client, prefix=CLAUDE_WAIT_PREFIX),
            control_db=control_db,
        )
        return cls(
            settings=settings,
            db=db,
            control_db=control_db,
            audit_db=audit_db,
            redis=client,
            protocol=protocol,
            quests=quests,
            ender=QuestEnder(db, publisher, events, budget),
            control=QuestEnder(control_db, publisher, events, budget),
            audit=AuditWriter(audit_db, max_batch=settings.audit_batch_max),
            rewrapper=Rewrapper(audit_db, vault, publisher) if vault else None,
            cancels=cancels,
            leases=leases,
            retention=Retention(
                audit_db,
                client,
                days=settings.transcript_retention_days,
                interval_s=settings.retention_interval_s,
            ),
            support_expiry=SupportExpiry(audit_db, client),
            sweeper=Sweeper(
                audit_db,
                publisher,
                client,
                interval_s=settings.sweep_interval_s,
                idle_s=settings.sweep_idle_s,
            ),
            claude=claude,
            http=http,
            # Short transactions on the steps' pool: not queued behind the audit batches.
            webhooks=WebhookDispatcher(
                settings, db, publisher, client, vault, webhook_http(settings)
            ),
            counter_redis=counter_redis,
            control_loop=control_loop,
        )

    def background(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """The process's own work beside its messages, each run as a supervised task."""
        return {
            "cancel notices": self.cancels.listen,
            "cancel flags": self.cancels.poll,
            "step leases": self.leases.run,
            "sweeper": self.sweeper.run,
            "transcript retention": self.retention.run,
            "support grant expiry": self.support_expiry.run,
            "webhook sweeps": self.webhooks.run_sweeps,
            "loop lag": worker_metrics.watch_loop_lag,
        }

    async def close(self) -> None:
        await self.audit.close()
        await self.claude.close()
        await self.http.aclose()
        await self.webhooks.http.aclose()
        for pool in (self.db, self.control_db, self.audit_db):
            await pool.close()
        self.control_loop.stop()
        await self.redis.aclose()
        self.counter_redis.close()


def toolbox(
    settings: Settings,
    db: Database,
    client: Redis,
    vault: Vault | None,
    http: httpx.AsyncClient,
) -> Toolbox:
    """Built-in tools, and the integrations' tools when the vault has keys to open credentials."""
    if vault is None:
        return Toolbox(builtin_tools(db))
    return Toolbox(builtin_tools(db), integration_tools(settings, db, client, vault, http))


def prompts(settings: Settings, prices: PriceTable, claude: Claude | None = None) -> Prompts:
    """How steps build their Claude requests (``workers.prompt``); a transcript that may
    outgrow the model's window is fitted by the API's count of its tokens."""
    policy = PromptPolicy(
        max_tokens=settings.max_tokens,
        cache=settings.prompt_cache,
        elide=settings.transcript_elision,
        tool_result_max_chars=settings.tool_result_max_chars,
    )
    return Prompts(prices, policy, claude.count_input_tokens if claude else None)


def step_budget(
    settings: Settings, client: Redis, prices: PriceTable, claude: Claude | None = None
) -> StepBudget:
    return StepBudget(
        Guard(client),
        Admissions(client),
        prices,
        defaults=settings.default_limits(),
        slot_ttl_ms=settings.guard_slot_ttl_s * 1000,
        slow_min_ms=settings.guard_slow_min_ms,
        slow_max_ms=settings.guard_slow_max_ms,
        count_tokens=claude.count_input_tokens if claude and settings.guard_count_tokens else None,
    )


def actors(rt: Runtime) -> list[ActorSpec]:
    """Every actor a worker process runs, with its queue and its failure policy."""

    async def quest_step(message: Message[Any]) -> None:
        env = _opened(message, QuestStep)
        try:
            await rt.quests.run(env, holder=str(message.message_id))
        except TryLater as exc:
            if message.options.get("retries", 0) < QUEST_STEP_RETRIES:
                raise
            # The last retry: end the quest with the reason rather than dead-letter a step
            # and leave its quest running with nothing in flight.
            reason = f"step {env.payload.step} gave up after {QUEST_STEP_RETRIES} retries: {exc}"
            await _fail(env, reason)

    async def quest_step_poisoned(message: Message[Any], crashes: int) -> None:
        env = _opened(message, QuestStep)
        await _fail(
            env,
            f"step {env.payload.step} crashed its worker {crashes} times; "
            "the step was dead-lettered",
        )

    async def _fail(env: Envelope[QuestStep], reason: str) -> None:
        await rt.ender.end(env, env.payload.quest_id, lambda _: Outcome("failed", reason=reason))

    async def write_audit(message: Message[Any]) -> None:
        env = _opened(message, AuditBatch)
        await rt.audit.write(env.company_id, env.payload.events)
        if any(e.action in EVENT_OF_ACTION for e in env.payload.events):
            # Committed, so its webhook deliveries exist: send them now, not at the sweep.
            await rt.webhooks.nudge(env.company_id)

    async def dispatch_webhooks(message: Message[Any]) -> None:
        env = _opened(message, DispatchWebhooks)
        await rt.webhooks.dispatch(env.company_id)

    async def cancel_quest(message: Message[Any]) -> None:
        await rt.control.cancel(_opened(message, CancelQuest))

    async def rewrap_credentials(message: Message[Any]) -> None:
        env = _opened(message, RewrapCredentials)
        if rt.rewrapper is None:
            raise TryLater("this worker has no vault keys (S2_VAULT_KEYS)", retry_after_ms=60_000)
        await rt.rewrapper.run(env)

    policy: dict[str, Any] = {"min_backoff_ms": 500, "max_backoff_ms": 60_000}
    policy["throws"] = (BadMessage,)
    return [
        ActorSpec(
            "quest_step",
            QUESTS,
            quest_step,
            max_retries=QUEST_STEP_RETRIES,
            time_limit_ms=int(STEP_TIME_LIMIT.total_seconds() * 1000),
            crash_guarded=True,
            on_poison=quest_step_poisoned,
            **policy,
        ),
        ActorSpec(
            "cancel_quest", CONTROL, cancel_quest, max_retries=50, time_limit_ms=60_000, **policy
        ),
        ActorSpec(
            "rewrap_credentials",
            MAINTENANCE,
            rewrap_credentials,
            max_retries=50,
            time_limit_ms=600_000,
            **policy,
        ),
        ActorSpec(
            "dispatch_webhooks",
            WEBHOOKS,
            dispatch_webhooks,
            max_retries=20,
            time_limit_ms=600_000,
            **policy,
        ),
        ActorSpec(
            "write_audit",
            AUDIT,
            write_audit,
            max_retries=50,
            time_limit_ms=120_000,
            crash_guarded=True,
            **policy,
        ),
    ]


def _opened(message: Message[Any], payload: type[Any]) -> Envelope[Any]:
    env = open_envelope(message.args[0] if message.args else None, payload)
    logs.bind(
        company_id=str(env.company_id),
        message_id=str(env.message_id),
        correlation_id=str(env.correlation_id),
    )
    return env


def in_flight(settings: Settings) -> dict[str, int]:
    return {
        QUESTS: settings.worker_in_flight,
        CONTROL: settings.worker_control_in_flight,
        MAINTENANCE: settings.worker_control_in_flight,
        AUDIT: settings.worker_audit_in_flight,
        WEBHOOKS: settings.worker_webhooks_in_flight,
    }


async def serve(settings: Settings, queues: list[str]) -> None:
    """Consume ``queues`` until SIGTERM or SIGINT, then hand back what is left."""
    rt = await Runtime.open(settings)
    if QUESTS in queues and not settings.fair_dispatch:
        await _unsort_quests(rt, settings)
    specs = [a for a in actors(rt) if a.queue in queues]
    limits = in_flight(settings)
    guarded = sum(limits[a.queue] for a in specs if a.crash_guarded)
    crashes = CrashGuard(
        StartCounter(rt.redis), Isolation(max(1, guarded)), settings.max_step_crashes
    )
    consumer = Consumer(
        rt.protocol,
        specs,
        DeadLetterBox(rt.redis, {a.name for a in actors(rt)}),
        in_flight=limits,
        poll_ms=settings.worker_poll_ms,
        grace_s=settings.shutdown_grace_s,
        guard=crashes,
    )
    rt.cancels.on_notice = functools.partial(consumer.wake, CONTROL)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.stop)
    beacon = Beacon(rt.redis, [a.queue for a in specs], consumer.activity)
    work = {**rt.background(), "beacon": beacon.run}
    if settings.worker_index is not None:  # under workers.fleet: stop if the parent is gone
        work["parent watch"] = functools.partial(_stop_when_orphaned, consumer, os.getppid())
    tasks = [asyncio.create_task(supervised(name, run), name=name) for name, run in work.items()]
    log.info("worker process ready", queues=sorted({a.queue for a in specs}), in_flight=limits)
    try:
        await consumer.run()
    finally:
        await cancel_and_wait(tasks)
        await rt.close()
    log.info("worker process stopped")


async def _unsort_quests(rt: Runtime, settings: Settings) -> None:
    """Steps a fair fleet left in their companies' lanes go back to the plain queue."""
    fair = FairQueue(
        rt.redis, QUESTS, rt.protocol.consumer_id, heartbeat_timeout_ms=settings.broker_heartbeat_ms
    )
    if moved := await fair.unsort():
        log.info("fair dispatch is off: waiting steps put back on the plain queue", count=moved)


async def _stop_when_orphaned(consumer: Consumer, parent: int) -> None:
    """A child whose group's parent died (``kill -9`` of the parent) hands its work back and
    stops, rather than run on unsupervised."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("the worker group's parent is gone; stopping")
    consumer.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m workers.app [--queues Q ...]``: one worker process."""
    parser = argparse.ArgumentParser(prog="workers.app")
    parser.add_argument("--queues", nargs="*", default=list(QUEUES))
    args = parser.parse_args(argv)
    settings = Settings()
    logs.configure(settings)
    sentry.init(settings, component="worker")
    unknown = sorted(set(args.queues) - set(QUEUES))
    if unknown:
        print(f"error: no such queue: {', '.join(unknown)}", file=sys.stderr)
        return 2
    metrics_redis = redis.Redis.from_url(settings.redis_url, client_name="system2-worker")
    worker_metrics.serve(settings, metrics_redis)
    asyncio.run(serve(settings, args.queues))
    return 0


if __name__ == "__main__":
    sys.exit(main())
