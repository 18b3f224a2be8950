"""Dead letters: why each one died, and messages that keep killing their worker.

Dramatiq dead-letters a message (``<queue>.XQ``) when its actor refuses it or its retries run
out, but keeps no reason; ``DeadLetters`` records one per message for ``system2 dlq``.
A message whose step crashes the whole worker process (killed, out of memory) is redelivered
without Dramatiq counting a retry, forever; ``Crashes`` counts deliveries and, past the bound,
refuses the message so it is dead-lettered instead of taking worker after worker down.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import dramatiq
import redis
import structlog
from dramatiq.middleware import Middleware

from messages import BadMessage

log = structlog.get_logger(__name__)

REASONS = "s2:dlq:reasons"
DELIVERIES_TTL_S = 2 * 86_400


class PoisonMessage(BadMessage):
    """The message crashed its worker too many times; it is dead-lettered."""


class DeadLetters(Middleware):
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None or not (message.failed or isinstance(exception, BadMessage)):
            return
        record = {
            "queue": message.queue_name.removesuffix(".DQ"),
            "actor": message.actor_name,
            "reason": str(exception)[:1000] or type(exception).__name__,
            "error": type(exception).__name__,
            "at": time.time(),
        }
        try:
            self.redis.hset(REASONS, message.message_id, json.dumps(record))
        except redis.RedisError:
            log.warning("dead-letter reason not recorded", message_id=message.message_id)


class Crashes(Middleware):
    """Counts each delivery of a message; Dramatiq's own retries are not crashes."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def before_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy
    ) -> None:
        key = f"s2:deliveries:{message.message_id}"
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, DELIVERIES_TTL_S)
            deliveries = int(pipe.execute()[0])
        except redis.RedisError:
            return  # the next delivery counts again
        crashes = deliveries - 1 - int(message.options.get("retries", 0))
        message.options["s2_crashes"] = crashes

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            with contextlib.suppress(redis.RedisError):
                self.redis.delete(f"s2:deliveries:{message.message_id}")


def crashes_of(message: dramatiq.Message[Any] | dramatiq.MessageProxy | None) -> int:
    return int(message.options.get("s2_crashes", 0)) if message is not None else 0
