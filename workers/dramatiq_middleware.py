"""Dramatiq middleware of our own, as explicit hook methods."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

import dramatiq
import redis
import structlog
from dramatiq.middleware import Middleware

from messages import BadMessage
from messages.redis_keys import WORKER_BEACON_PREFIX, worker_beacon_key
from runtime import logs
from workers import worker_metrics

log = structlog.get_logger(__name__)


class LogContext(Middleware):
    """Each message is logged with its own context, and a dead-letter says why. The actor
    binds the envelope's ids (company, message, correlation) and the quest runner the quest
    id; ``logs.bind`` puts them on the Sentry scope too."""

    def before_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy
    ) -> None:
        structlog.contextvars.clear_contextvars()
        logs.bind(actor=message.actor_name, dramatiq_message_id=message.message_id)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is not None:
            if message.failed:
                after = "" if isinstance(exception, BadMessage) else " after retries"
                log.error(
                    f"message dead-lettered{after}",
                    error=type(exception).__name__,
                    reason=str(exception),
                )
            else:
                log.warning(
                    "step will be retried", error=type(exception).__name__, reason=str(exception)
                )
        structlog.contextvars.clear_contextvars()

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        structlog.contextvars.clear_contextvars()


class Metrics(Middleware):
    """Messages processed, their duration and result, and the ones dead-lettered."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def before_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy
    ) -> None:
        self._started[message.message_id] = time.perf_counter()
        worker_metrics.IN_PROGRESS.labels(_queue(message), message.actor_name).inc()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        queue, actor = _queue(message), message.actor_name
        started = self._started.pop(message.message_id, None)
        if started is not None:
            worker_metrics.MESSAGE_SECONDS.labels(queue, actor).observe(
                time.perf_counter() - started
            )
            worker_metrics.IN_PROGRESS.labels(queue, actor).dec()
        if exception is None:
            outcome = "ok"
        elif message.failed:
            outcome = "dead"
        elif isinstance(exception, dramatiq.Retry):
            outcome = "retry"
        else:
            outcome = "error"
        worker_metrics.MESSAGES.labels(queue, actor, outcome).inc()

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        queue, actor = _queue(message), message.actor_name
        if self._started.pop(message.message_id, None) is not None:
            worker_metrics.IN_PROGRESS.labels(queue, actor).dec()
        worker_metrics.MESSAGES.labels(queue, actor, "skipped").inc()

    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        worker_metrics.DEAD_LETTERS.labels(_queue(message), message.actor_name).inc()


def _queue(message: dramatiq.MessageProxy) -> str:
    return str(message.queue_name).removesuffix(".DQ")


class Beacon(Middleware):
    """Each worker process says it is alive *and consuming*: every ``interval`` seconds it
    writes ``s2:workers:<id>`` (expiring) with its queues, pid and messages processed.

    A health check reads these keys; the demo and the tests wait for them before submitting.
    """

    def __init__(self, client: redis.Redis, *, interval: float = 2.0) -> None:
        self._redis = client
        self._interval = interval
        self._processed = 0
        self._last_at = 0.0
        self._stop = threading.Event()
        self._key = worker_beacon_key(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:6])
        self._queues: list[str] = []

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._queues = sorted(worker.consumer_whitelist or broker.get_declared_queues())
        threading.Thread(target=self._beat, name="s2-beacon", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            self._redis.delete(self._key)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._processed += 1
        self._last_at = time.time()

    def _beat(self) -> None:
        while not self._stop.is_set():
            state = {
                "pid": os.getpid(),
                "queues": self._queues,
                "processed": self._processed,
                "last_message_at": self._last_at,
                "at": time.time(),
            }
            with contextlib.suppress(redis.RedisError):
                self._redis.set(self._key, json.dumps(state), ex=max(5, int(self._interval * 3)))
            self._stop.wait(self._interval)


def live_workers(client: redis.Redis) -> list[dict[str, Any]]:
    """The beacons of worker processes alive now."""
    keys = list(client.scan_iter(match=f"{WORKER_BEACON_PREFIX}*", count=500))
    values = client.mget(keys) if keys else []
    return [json.loads(v) for v in values if v]
