"""Worker start-up: settings, then the broker, then the process's resources, then the actors.

Dramatiq's CLI calls ``bootstrap`` in each worker process (``dramatiq workers.app:bootstrap``);
nothing happens at import time. The actors are thin: open the envelope (a bad one is
dead-lettered with its reason, never retried), bind the log context, hand over.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dramatiq
import redis
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage, Retries
from redis.asyncio import Redis as AsyncRedis

from guard import Admissions, Guard, PriceTable
from messages import (
    AUDIT,
    CONTROL,
    MAINTENANCE,
    QUESTS,
    AuditBatch,
    BadMessage,
    CancelQuest,
    Envelope,
    QuestStep,
    RewrapCredentials,
    open_envelope,
)
from messages.redis_keys import CLAUDE_WAIT_PREFIX
from messages.transport import Publisher, build_broker
from runtime import logs, sentry
from runtime.loop_thread import StoreRunner
from runtime.settings import Settings
from runtime.wiring import async_redis, maybe_vault
from store import Database
from vault import Vault
from workers import worker_metrics
from workers.audit import AuditWriter
from workers.call_loop import CallLoop
from workers.call_scope import CancelWatch
from workers.claude import Claude
from workers.control import QuestEnder
from workers.crashes import CrashCounter, CrashGuard, Isolation
from workers.dead_letters import DeadLetters, PoisonMessage, WorkerBroker
from workers.dramatiq_middleware import Beacon, LogContext, Metrics
from workers.errors import TryLater
from workers.events import QuestEvents
from workers.integrations.registry import integration_tools
from workers.lease import StepLeases
from workers.maintenance import Rewrapper
from workers.quest import QuestRunner
from workers.step import STEP_TIME_LIMIT, Outcome
from workers.step_budget import StepBudget
from workers.sweeper import Sweeper
from workers.tools import Toolbox, builtin_tools
from workers.waits import WaitClock

log = structlog.get_logger(__name__)
QUEST_STEP_RETRIES = 100


@dataclass
class Runtime:
    """What one worker process holds: pools and clients, built once, passed to the actors."""

    settings: Settings
    store: StoreRunner
    redis: redis.Redis
    publisher: Publisher
    quests: QuestRunner
    audit: AuditWriter
    rewrapper: Rewrapper | None
    ender: QuestEnder
    crashes: CrashGuard
    calls: CallLoop
    claude: Claude
    guard_redis: AsyncRedis

    @classmethod
    def build(cls, settings: Settings, broker: RedisBroker, *, threads: int = 8) -> Runtime:
        calls = CallLoop().start()
        db = Database(settings.database_url, min_size=1, max_size=threads + 2, name="worker")
        store = StoreRunner(db, calls)  # the pool is the loop's: the step threads use it there
        store.run(db.open(wait=False))
        client = redis.Redis.from_url(settings.redis_url)
        guard_redis = async_redis(settings, connections=threads + 2)  # used on the call loop
        publisher = Publisher(broker)
        vault = maybe_vault(settings, client)
        if vault is None:
            log.warning("no vault keys (S2_VAULT_KEYS): integrations are unavailable to quests")
        prices = PriceTable.load()
        watch = CancelWatch(client)
        watch.start()
        claude = Claude(loop=calls, timeout_s=settings.claude_timeout_s)
        runner = QuestRunner(
            store=store,
            publisher=publisher,
            claude=claude,
            toolbox=toolbox(settings, store, client, vault),
            prices=prices,
            budget=step_budget(settings, guard_redis, prices, claude),
            events=QuestEvents(client, maxlen=settings.events_maxlen),
            max_tokens=settings.max_tokens,
            max_steps=settings.max_steps,
            cancels=watch,
            leases=StepLeases(client),
            claude_outage_max=timedelta(seconds=settings.claude_outage_max_s),
            claude_waits=WaitClock(client, prefix=CLAUDE_WAIT_PREFIX),
        )
        audit = AuditWriter(store, max_batch=settings.audit_batch_max)
        rewrapper = Rewrapper(store, vault, publisher) if vault else None
        ender = QuestEnder(store, publisher, runner.events, runner.budget)
        Sweeper(
            store,
            publisher,
            client,
            interval_s=settings.sweep_interval_s,
            idle_s=settings.sweep_idle_s,
        ).start()
        crashes = CrashGuard(CrashCounter(client), Isolation(), settings.max_step_crashes)
        return cls(
            settings,
            store,
            client,
            publisher,
            runner,
            audit,
            rewrapper,
            ender,
            crashes,
            calls,
            claude,
            guard_redis,
        )

    def close(self) -> None:
        self.claude.close()
        self.store.run(self.store.db.close())
        self.store.run(self.guard_redis.aclose())
        self.calls.stop()
        self.redis.close()


def toolbox(
    settings: Settings, store: StoreRunner, client: redis.Redis, vault: Vault | None
) -> Toolbox:
    """Built-in tools, and the integrations' tools when the vault has keys to open credentials."""
    if vault is None:
        return Toolbox(builtin_tools(store))
    return Toolbox(builtin_tools(store), integration_tools(settings, store, client, vault))


def step_budget(
    settings: Settings, client: AsyncRedis, prices: PriceTable, claude: Claude | None = None
) -> StepBudget:
    """``client``: the guard's, on the loop the budget's coroutines run on."""
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


def worker_broker(settings: Settings) -> RedisBroker:
    broker = build_broker(
        settings.redis_url,
        heartbeat_timeout_ms=settings.broker_heartbeat_ms,
        maintenance_chance=settings.broker_maintenance_chance,
        broker_class=WorkerBroker,  # dead-letters what no actor can run, before Dramatiq sees it
    )
    client = redis.Redis.from_url(settings.redis_url)
    broker.add_middleware(CurrentMessage())
    # Dramatiq runs the after-hooks last-added first; placed before Retries, these run after
    # it has decided, so ``message.failed`` says whether the message was dead-lettered.
    for middleware in (DeadLetters(client), LogContext(), Metrics()):
        broker.add_middleware(middleware, before=Retries)
    broker.add_middleware(Beacon(client))
    return broker


def declare_actors(broker: RedisBroker, rt: Runtime) -> dict[str, dramatiq.Actor[Any, Any]]:
    def quest_step(raw: Any) -> None:
        env = open_envelope(raw, QuestStep)
        _bind(env)
        message = _current_message()

        def poisoned(crashes: int) -> None:
            reason = f"step {env.payload.step} crashed its worker {crashes} times; the step was dead-lettered"
            rt.ender.end(env, env.payload.quest_id, lambda _: Outcome("failed", reason=reason))
            raise PoisonMessage(reason)

        with rt.crashes.watching(message, poisoned):
            try:
                rt.quests.run(env, holder=str(message.message_id))
            except TryLater as exc:
                if message.options.get("retries", 0) < QUEST_STEP_RETRIES:
                    raise
                # The last retry: end the quest with the reason rather than dead-letter a
                # step and leave its quest running with nothing in flight.
                reason = (
                    f"step {env.payload.step} gave up after {QUEST_STEP_RETRIES} retries: {exc}"
                )
                rt.ender.end(env, env.payload.quest_id, lambda _: Outcome("failed", reason=reason))

    def write_audit(raw: Any) -> None:
        env = open_envelope(raw, AuditBatch)
        _bind(env)

        def poisoned(crashes: int) -> None:
            raise PoisonMessage(f"this audit batch crashed its worker {crashes} times")

        with rt.crashes.watching(_current_message(), poisoned):
            rt.audit.write(env.company_id, env.payload.events)

    def cancel_quest(raw: Any) -> None:
        env = open_envelope(raw, CancelQuest)
        _bind(env)
        rt.ender.cancel(env)

    def rewrap_credentials(raw: Any) -> None:
        env = open_envelope(raw, RewrapCredentials)
        _bind(env)
        if rt.rewrapper is None:
            raise dramatiq.Retry("this worker has no vault keys (S2_VAULT_KEYS)", delay=60_000)
        rt.rewrapper.run(env)

    retrying = {"min_backoff": 500, "max_backoff": 60_000, "throws": (BadMessage,)}
    return {
        "quest_step": _actor(
            broker,
            quest_step,
            QUESTS,
            max_retries=QUEST_STEP_RETRIES,
            time_limit=int(STEP_TIME_LIMIT.total_seconds() * 1000),
            **retrying,
        ),
        "cancel_quest": _actor(
            broker, cancel_quest, CONTROL, max_retries=50, time_limit=60_000, **retrying
        ),
        "rewrap_credentials": _actor(
            broker, rewrap_credentials, MAINTENANCE, max_retries=50, time_limit=600_000, **retrying
        ),
        "write_audit": _actor(
            broker, write_audit, AUDIT, max_retries=50, time_limit=120_000, **retrying
        ),
    }


def _actor(
    broker: RedisBroker, fn: Callable[[Any], None], queue: str, **options: Any
) -> dramatiq.Actor[Any, Any]:
    """``fn`` as an actor; a dependency that asks to be tried later (``TryLater``) gets the
    message retried by the broker after the delay it named."""

    @functools.wraps(fn)
    def run(raw: Any) -> None:
        try:
            fn(raw)
        except TryLater as exc:
            raise dramatiq.Retry(str(exc), delay=exc.retry_after_ms) from exc

    declare = dramatiq.actor(broker=broker, queue_name=queue, actor_name=fn.__name__, **options)
    return declare(run)


def _bind(env: Envelope[Any]) -> None:
    logs.bind(
        company_id=str(env.company_id),
        message_id=str(env.message_id),
        correlation_id=str(env.correlation_id),
    )


def _current_message() -> dramatiq.Message[Any]:
    message = CurrentMessage.get_current_message()
    if message is None:
        raise RuntimeError("the CurrentMessage middleware is not installed")
    return message


def bootstrap() -> None:
    """Dramatiq's entry point in each worker process."""
    settings = Settings()
    logs.configure(settings)
    sentry.init(settings, component="worker")  # before the broker: it patches Broker.__init__
    broker = worker_broker(settings)
    dramatiq.set_broker(broker)
    rt = Runtime.build(settings, broker, threads=settings.worker_threads)
    declare_actors(broker, rt)
    worker_metrics.serve(settings, rt.redis)
    log.info("worker process ready", queues=sorted(broker.get_declared_queues()))
