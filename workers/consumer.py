"""How a worker process takes messages: many at once on one event loop, none holding a thread.

Dramatiq's own worker gives each message a thread for as long as its actor runs; its
``AsyncIO`` middleware runs ``async def`` actors on an event loop, but the worker thread that
took the message still blocks on the coroutine's result (``EventLoopThread.run_coroutine``),
so a process runs at most as many messages as it has threads, whatever the actors await.
A quest step waits seconds to minutes on Claude, so that model pays a thread (and the
connections it holds) per waiting quest.

Here a process runs one consumer per queue, all on one event loop:

- **Fetch under a bound.** Each queue's loop fetches only as many messages as its
  ``Capacity`` has free slots (``S2_WORKER_IN_FLIGHT`` for quest steps), so messages beyond
  the bound stay on the queue where another process can take them, never prefetched into
  this one's memory. An idle queue is polled with backoff up to ``poll_ms``.
- **Ack after the effects.** A message is acked only after its actor returned (its effects
  are durable: committed rows, published messages); a failure is retried through the
  delayed queue with Dramatiq's backoff and ``retries`` count, or dead-lettered with its
  reason once out of retries or when the actor declares the error final (``throws``). Acks
  and nacks of many messages share one round trip.
- **Delayed messages** (``<queue>.DQ``: retries, the slow tier) are held in a heap until
  their time, then moved to their queue, as Dramatiq does.
- **Crash safety is Dramatiq's.** Every fetched id sits in this process's acks set until it
  is settled; if the process dies, another's maintenance puts the ids back once the
  heartbeat falls silent (``workers.queue_protocol``).
- **Shutdown hands work back.** ``stop`` ends fetching; steps in flight get ``grace_s`` to
  finish (a second ``stop`` ends the grace at once); what is still running then is
  cancelled and its messages requeued at once, along with the delayed messages held in
  memory, without waiting for the heartbeat timeout.

One message's run costs a task and the actor's own state: a step waiting on Claude holds a
coroutine frame and an open HTTP stream, not a thread nor a pooled connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import sentry_sdk
import structlog
from dramatiq import Message
from dramatiq.common import compute_backoff, dq_name, q_name
from redis.exceptions import RedisError

from guard.errors import GuardUnavailable
from messages.errors import PublishFailed
from runtime import logs
from runtime.tasks import cancel_and_wait
from store.errors import StoreUnavailable
from workers import worker_metrics
from workers.crash_isolation import CrashGuard
from workers.dead_letters import PoisonMessage
from workers.errors import NotStarted, TryLater
from workers.queue_protocol import QueueProtocol

log = structlog.get_logger(__name__)

DEFAULT_MAX_BACKOFF_MS = 7 * 24 * 3600 * 1000  # Dramatiq's cap on a retry's delay
LOOP_GRACE_S = 0.2  # the fetch and settle loops have no cleanup to let finish


@dataclass(frozen=True)
class ActorSpec:
    """What runs a message and how its failures are treated (Dramatiq's actor options)."""

    name: str
    queue: str
    run: Callable[[Message[Any]], Awaitable[None]]
    max_retries: int = 20
    min_backoff_ms: int = 500
    max_backoff_ms: int = 60_000
    time_limit_ms: int = 600_000
    throws: tuple[type[BaseException], ...] = ()
    # Counted and isolated by the process's CrashGuard (steps that may crash their process).
    crash_guarded: bool = False
    # Called before a poison message is dead-lettered (a quest step ends its quest).
    on_poison: Callable[[Message[Any], int], Awaitable[None]] | None = None


class Refusals(Protocol):
    """Where messages that must not run go: the dead letters, each with its reason."""

    def check(self, data: bytes, queue: str) -> Message[Any] | Any:
        """The message in ``data``, or a rejection (anything that is not a ``Message``)."""

    async def reject(self, protocol: QueueProtocol, queue: str, data: bytes, why: Any) -> None:
        """Dead-letter an entry this consumer fetched that is no message it can run."""

    async def record(self, message: Message[Any], exc: BaseException) -> None:
        """Keep the reason a message is being dead-lettered."""


class Capacity:
    """A bound on messages in flight: taken when a message is fetched, given back when it
    is settled."""

    def __init__(self, limit: int, *, ceiling: Callable[[], int] | None = None) -> None:
        if limit < 1:
            raise ValueError("a capacity is at least 1")
        self.limit = limit
        self.used = 0
        self._ceiling = ceiling
        self._freed = asyncio.Event()

    @property
    def free(self) -> int:
        limit = min(self.limit, self._ceiling()) if self._ceiling else self.limit
        return max(0, limit - self.used)

    async def wait_free(self) -> int:
        while self.free <= 0:
            self._freed.clear()
            await self._freed.wait()
        return self.free

    def changed(self) -> None:
        self._freed.set()

    def take(self, n: int) -> None:
        self.used += n

    def give(self, n: int = 1) -> None:
        self.used -= n
        self._freed.set()


@dataclass(order=True)
class _Delayed:
    eta_ms: int
    redis_id: str = field(compare=False)
    message: Message[Any] = field(compare=False)


class Consumer:
    """Runs the actors of ``actors`` from their queues until ``stop`` is called."""

    def __init__(
        self,
        protocol: QueueProtocol,
        actors: list[ActorSpec],
        refusals: Refusals,
        *,
        in_flight: dict[str, int],
        poll_ms: int = 1_000,
        delay_held: int = 10_000,
        settle_every_ms: int = 5,
        grace_s: float = 30.0,
        guard: CrashGuard | None = None,
    ) -> None:
        self.protocol = protocol
        self.actors = {a.name: a for a in actors}
        self.refusals = refusals
        self.queues = sorted({a.queue for a in actors})
        self.guard = guard
        guarded = {a.queue for a in actors if a.crash_guarded}
        ceiling = guard.isolation.ceiling if guard is not None else None
        self.capacity = {
            q: Capacity(
                in_flight.get(q, in_flight.get("*", 1_000)),
                ceiling=ceiling if q in guarded else None,
            )
            for q in self.queues
        }
        if guard is not None:  # a suspect's group narrows what the guarded queues fetch
            guard.isolation.on_change = self._isolation_changed
        self.poll_ms = poll_ms
        self.delay_held = delay_held
        self.settle_every_ms = settle_every_ms
        self.grace_s = grace_s
        self.running: dict[str, dict[asyncio.Task[None], str]] = {q: {} for q in self.queues}
        self._delayed: dict[str, list[_Delayed]] = {dq_name(q): [] for q in self.queues}
        self._looked_after = [name for q in self.queues for name in (q, dq_name(q))]
        self._due = asyncio.Event()
        self._outcomes: list[tuple[str, str, str, asyncio.Future[None]]] = []
        self._unsettled = asyncio.Event()
        self._woken = {q: asyncio.Event() for q in self.queues}
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self.processed = 0
        self.last_message_at = 0.0

    def activity(self) -> dict[str, Any]:
        """What the process's beacon tells: messages done, the last one's time, in flight."""
        return {
            "processed": self.processed,
            "last_message_at": self.last_message_at,
            "in_flight": {q: len(tasks) for q, tasks in self.running.items()},
        }

    def wake(self, queue: str) -> None:
        """Fetch from ``queue`` now, not at the end of its idle poll's backoff: a cancel's
        notice is heard before its control message would be polled."""
        if (woken := self._woken.get(queue)) is not None:
            woken.set()

    # --- the process's lifecycle ----------------------------------------------------------

    def stop(self) -> None:
        """Take no more messages; ``run`` returns once in-flight work is done or handed back.
        A second call cuts the grace short: what still runs is handed back at once."""
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()

    async def run(self) -> None:
        await self.protocol.start()
        _raise_if_cancelled()  # a cancel redis-py lost in that call (see runtime.tasks)
        fetchers: list[asyncio.Task[None]] = []
        settler = asyncio.create_task(self._settle_loop(), name="settle")
        try:
            loops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                ("release delayed", self._release_due),
                ("heartbeat", self._heartbeat),
            ]
            for queue in self.queues:
                dq = dq_name(queue)
                loops.append((f"fetch {queue}", functools.partial(self._consume, queue)))
                loops.append((f"fetch {dq}", functools.partial(self._consume_delayed, dq)))
            fetchers = [asyncio.create_task(self._forever(*loop), name=loop[0]) for loop in loops]
            await self._stopping.wait()
        finally:
            await cancel_and_wait(fetchers, grace_s=LOOP_GRACE_S)
            await self._drain()
            await cancel_and_wait([settler], grace_s=LOOP_GRACE_S)
            await self._flush(last=True)

    async def _drain(self) -> None:
        tasks = [t for running in self.running.values() for t in running]
        if tasks:
            await self._until_done_or_hurried(tasks)
        late = {t for t in tasks if not t.done()}
        cut = {q: [ids[t] for t in late if t in ids] for q, ids in self.running.items()}
        await cancel_and_wait(late)
        await self._flush(last=True)
        for queue, redis_ids in cut.items():
            if redis_ids:  # cut at the grace's end: back on the queue for another process
                await self.protocol.requeue(queue, redis_ids)
                log.info("steps handed back at shutdown", queue=queue, count=len(redis_ids))
        for dq, held in self._delayed.items():
            if held:
                await self.protocol.requeue(dq, [d.redis_id for d in held])

    async def _until_done_or_hurried(self, tasks: list[asyncio.Task[None]]) -> None:
        """Wait for ``tasks`` for the grace at most, or until ``stop`` is called again."""
        finished = asyncio.ensure_future(asyncio.wait(tasks))
        hurried = asyncio.ensure_future(self._hurry.wait())
        try:
            await asyncio.wait(
                {finished, hurried}, timeout=self.grace_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            await cancel_and_wait([finished, hurried], grace_s=LOOP_GRACE_S)

    def _isolation_changed(self) -> None:
        for capacity in self.capacity.values():
            capacity.changed()

    async def _forever(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop`` again after any failure (Redis restarting, say), backing off."""
        failures = 0
        while True:
            try:
                await loop()
            except Exception as exc:
                _raise_if_cancelled(exc)
                failures, backoff_ms = compute_backoff(failures, max_backoff=self.poll_ms * 5)
                log.warning("consumer loop failed; restarting", loop=name, error=type(exc).__name__)
                await asyncio.sleep(backoff_ms / 1000)

    async def _heartbeat(self) -> None:
        """Say this process lives even while every slot is busy and no fetch is made, and
        put back on its queues what a process that fell silent held."""
        every = max(0.1, self.protocol.heartbeat_timeout_ms / 4000)
        while True:
            await asyncio.sleep(every)
            try:
                await self.protocol.heartbeat(self._looked_after)
            except Exception as exc:  # Redis away: the fetch loops see it too
                _raise_if_cancelled(exc)
                log.warning("heartbeat failed", error=type(exc).__name__)

    # --- fetching -------------------------------------------------------------------------

    async def _consume(self, queue: str) -> None:
        capacity = self.capacity[queue]
        misses = 0
        while True:
            free = await capacity.wait_free()
            capacity.take(free)  # reserve before the await: the fetch may return that many
            try:
                bodies = await self.protocol.fetch(queue, min(free, self.protocol.fetch_max))
            except BaseException:
                capacity.give(free)
                raise
            capacity.give(free - len(bodies))
            if not bodies:
                misses, backoff_ms = compute_backoff(misses, max_backoff=self.poll_ms)
                if await self._idle(queue, backoff_ms / 1000):
                    misses = 0  # woken: poll from the shortest backoff again
                continue
            misses = 0
            for data in bodies:
                await self._start(queue, data)

    async def _idle(self, queue: str, seconds: float) -> bool:
        """Sleep ``seconds``, or until ``wake(queue)``; whether it was woken."""
        woken = self._woken[queue]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await woken.wait()
        was = woken.is_set()
        woken.clear()
        return was

    async def _start(self, queue: str, data: bytes) -> None:
        verdict = self.refusals.check(data, queue)
        if not isinstance(verdict, Message):
            self.capacity[queue].give()
            await self.refusals.reject(self.protocol, queue, data, verdict)
            return
        redis_id = verdict.options["redis_message_id"]
        ready_ms = verdict.options.get("ready_ms") or verdict.message_timestamp
        waited_s = max(0.0, time.time() - int(ready_ms) / 1000)
        worker_metrics.QUEUE_WAIT.labels(q_name(queue)).observe(waited_s)
        task = asyncio.create_task(self._handle(queue, redis_id, verdict))
        self.running[queue][task] = redis_id
        task.add_done_callback(lambda t: self._done(queue, t))

    def _done(self, queue: str, task: asyncio.Task[None]) -> None:
        redis_id = self.running[queue].pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error(
                "a message could not be settled; it stays held until redelivered",
                queue=queue,
                redis_message_id=redis_id,
                error=type(exc).__name__,
            )

    async def _consume_delayed(self, dq: str) -> None:
        misses = 0
        held = self._delayed[dq]
        while True:
            room = self.delay_held - len(held)
            bodies = (
                await self.protocol.fetch(dq, min(room, self.protocol.fetch_max)) if room else []
            )
            for data in bodies:
                verdict = self.refusals.check(data, dq)
                if not isinstance(verdict, Message):
                    await self.refusals.reject(self.protocol, dq, data, verdict)
                    continue
                eta = int(verdict.options.get("eta") or 0)
                heapq.heappush(held, _Delayed(eta, verdict.options["redis_message_id"], verdict))
            if bodies:
                self._due.set()
                misses = 0
                continue
            misses, backoff_ms = compute_backoff(misses, max_backoff=self.poll_ms)
            await asyncio.sleep(backoff_ms / 1000)

    async def _release_due(self) -> None:
        """Move each delayed message to its queue once its time has come."""
        while True:
            now = int(time.time() * 1000)
            soonest: int | None = None
            for dq, held in self._delayed.items():
                while held and held[0].eta_ms <= now:
                    due = heapq.heappop(held)
                    try:
                        await self._requeue_due(dq, due)
                    except BaseException:  # Redis away: held again, moved on the next round
                        heapq.heappush(held, due)
                        raise
                if held:
                    soonest = held[0].eta_ms if soonest is None else min(soonest, held[0].eta_ms)
            self._due.clear()
            wait = self.poll_ms / 1000 if soonest is None else max(0, soonest - now) / 1000
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that
            # arrives as the event is set, and this loop would outlive its consumer.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._due.wait()

    async def _requeue_due(self, dq: str, due: _Delayed) -> None:
        message = due.message
        options = {k: v for k, v in message.options.items() if k != "eta"}
        options["redis_message_id"] = _new_redis_id()
        options["ready_ms"] = int(time.time() * 1000)  # its wait on the queue starts now
        moved = message.copy(queue_name=q_name(dq), options=options)
        await self.protocol.enqueue(moved.queue_name, options["redis_message_id"], moved.encode())
        await self._settle("ack", dq, due.redis_id)

    # --- running one message --------------------------------------------------------------

    async def _handle(self, queue: str, redis_id: str, message: Message[Any]) -> None:
        # Each message's log context and Sentry tags are its own: structlog's live in the
        # task's context; Sentry's scope is an object the tasks would share, so it is forked.
        with sentry_sdk.isolation_scope():
            await self._handle_isolated(queue, redis_id, message)

    async def _handle_isolated(self, queue: str, redis_id: str, message: Message[Any]) -> None:
        logs.bind(message_id=message.message_id, actor=message.actor_name)
        in_progress = worker_metrics.IN_PROGRESS.labels(q_name(queue), message.actor_name)
        in_progress.inc()
        started = time.monotonic()
        try:
            actor = self.actors.get(message.actor_name)
            if actor is None:  # refusals.check lets through only our actors; defensive
                raise LookupError(f"no actor {message.actor_name!r}")
            if self.guard is None or not actor.crash_guarded:
                failure = await self._run(actor, message)
            else:
                async with self.guard.watching(message) as run:
                    if run.crashes >= self.guard.poison_at():
                        await self._poisoned(queue, redis_id, message, actor, run.crashes)
                        return
                    failure = await self._run(actor, message)
                    if isinstance(failure, NotStarted):
                        run.not_started()
            self._count(actor, message, failure, time.monotonic() - started)
            if failure is None:
                await self._settle("ack", queue, redis_id)
            elif isinstance(failure, actor.throws):
                await self._dead_letter(queue, redis_id, message, failure)
            else:
                await self._retry(queue, redis_id, message, actor, failure)
        finally:
            in_progress.dec()
            self.capacity[queue].give()

    def _count(
        self, actor: ActorSpec, message: Message[Any], failure: Exception | None, took_s: float
    ) -> None:
        self.processed += 1
        self.last_message_at = time.time()
        if failure is None:
            result = "ok"
        elif isinstance(failure, actor.throws) or _out_of_retries(actor, message):
            result = "dead"
        else:
            result = "retry" if isinstance(failure, TryLater) else "error"
        worker_metrics.MESSAGES.labels(actor.queue, actor.name, result).inc()
        worker_metrics.MESSAGE_SECONDS.labels(actor.queue, actor.name).observe(took_s)
        if failure is None:
            return
        fields = {"error": type(failure).__name__, "reason": str(failure)[:1000]}
        if result == "dead":
            log.error("message dead-lettered", **fields)
        else:
            if result == "error" and _reportable(failure):  # a bug of ours, with its stack
                sentry_sdk.capture_exception(failure)
            log.warning("step will be retried", **fields)

    async def _run(self, actor: ActorSpec, message: Message[Any]) -> Exception | None:
        """The actor's failure, if it failed (a time limit is one); a cancel passes through."""
        try:
            async with asyncio.timeout(actor.time_limit_ms / 1000):
                await actor.run(message)
        except Exception as exc:
            return exc
        return None

    async def _poisoned(
        self, queue: str, redis_id: str, message: Message[Any], actor: ActorSpec, crashes: int
    ) -> None:
        why = PoisonMessage(f"this message crashed its worker {crashes} times")
        if actor.on_poison is not None:
            on_poison = actor.on_poison
            try:
                await self._through_outages(
                    "ending a poisoned step's quest", lambda: on_poison(message, crashes)
                )
            except Exception as exc:  # a bug of ours: the message is dead-lettered all the same
                _raise_if_cancelled(exc)
                if _reportable(exc):
                    sentry_sdk.capture_exception(exc)
                log.error("a poisoned step's quest could not be ended", error=type(exc).__name__)
        await self._dead_letter(queue, redis_id, message, why)

    async def _retry(
        self, queue: str, redis_id: str, message: Message[Any], actor: ActorSpec, exc: Exception
    ) -> None:
        retries = int(message.options.get("retries", 0))
        if _out_of_retries(actor, message):
            await self._dead_letter(queue, redis_id, message, exc)
            return
        if isinstance(exc, TryLater) and exc.retry_after_ms is not None:
            delay = exc.retry_after_ms
        else:
            cap = min(actor.max_backoff_ms, DEFAULT_MAX_BACKOFF_MS)
            _, delay = compute_backoff(retries, factor=actor.min_backoff_ms, max_backoff=cap)
        new_id = _new_redis_id()
        options = {
            **message.options,
            "retries": retries + 1,
            "redis_message_id": new_id,
            "eta": int(time.time() * 1000) + delay,
            "requeue_timestamp": int(time.time() * 1000),
        }
        options.pop("traceback", None)
        again = message.copy(queue_name=dq_name(q_name(queue)), options=options)
        log.info(
            "retrying",
            actor=actor.name,
            message_id=message.message_id,
            delay_ms=delay,
            error=type(exc).__name__,
        )
        body = again.encode()
        await self._through_outages(
            "retrying a message", lambda: self.protocol.enqueue(again.queue_name, new_id, body)
        )
        await self._settle("ack", queue, redis_id)

    async def _dead_letter(
        self, queue: str, redis_id: str, message: Message[Any], exc: BaseException
    ) -> None:
        await self._through_outages(
            "recording a dead letter's reason", lambda: self.refusals.record(message, exc)
        )
        await self._settle("nack", queue, redis_id)

    async def _through_outages(self, what: str, call: Callable[[], Awaitable[None]]) -> None:
        """``call`` again, backing off, while Redis or Postgres is away: the message it settles
        stays held by this process meanwhile (a shutdown hands it back), never stranded in
        its acks set for as long as the process lives."""
        failures = 0
        while True:
            try:
                return await call()
            except OUTAGES as exc:
                _raise_if_cancelled(exc)
                failures, backoff_ms = compute_backoff(failures, max_backoff=self.poll_ms * 5)
                log.warning(f"{what} failed; trying again", error=type(exc).__name__)
                await asyncio.sleep(backoff_ms / 1000)

    # --- settling in batches --------------------------------------------------------------

    async def _settle(self, command: str, queue: str, redis_id: str) -> None:
        """Ack or nack, batched with others settled within ``settle_every_ms``; returns
        once Redis has it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outcomes.append((command, queue, redis_id, done))
        self._unsettled.set()
        await done

    async def _settle_loop(self) -> None:
        """Wakes only when something waits to be settled (an idle process sleeps)."""
        while True:
            await self._unsettled.wait()
            await asyncio.sleep(self.settle_every_ms / 1000)  # others join the batch
            await self._flush()
            if not self._outcomes:
                self._unsettled.clear()

    async def _flush(self, *, last: bool = False) -> None:
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        try:
            await self.protocol.settle([(c, q, r) for c, q, r, _ in batch])
        except Exception as exc:
            _raise_if_cancelled(exc)
            if not last:  # Redis is away: keep the outcomes (and their slots) and try again
                log.warning("settling failed; retrying", count=len(batch), error=type(exc).__name__)
                self._outcomes[:0] = batch
                await asyncio.sleep(min(1.0, self.poll_ms / 1000))
                return
            for *_, done in batch:  # the messages stay held: redelivered after the heartbeat
                if not done.done():
                    done.set_exception(exc)
            return
        for *_, done in batch:
            if not done.done():
                done.set_result(None)


# A dependency that is down or saturated: retried, counted and logged, never one Sentry event
# per message (an outage would be thousands of them).
OUTAGES = (StoreUnavailable, GuardUnavailable, PublishFailed, RedisError)


def _reportable(failure: Exception) -> bool:
    return sentry_sdk.get_client().is_active() and not isinstance(failure, OUTAGES)


def _out_of_retries(actor: ActorSpec, message: Message[Any]) -> bool:
    retries = int(message.options.get("retries", 0))
    return retries >= int(message.options.get("max_retries", actor.max_retries))


def _new_redis_id() -> str:
    return str(uuid.uuid4())


def _raise_if_cancelled(cause: Exception | None = None) -> None:
    """Re-raise a cancel that a library lost (see ``runtime.tasks``) or turned into another
    error, ``cause`` (redis-py raises a connection error when a command is cancelled
    mid-read): a loop that went on would outlive its consumer."""
    if (task := asyncio.current_task()) is not None and task.cancelling():
        raise asyncio.CancelledError from cause
