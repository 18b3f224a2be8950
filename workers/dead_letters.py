"""Dead letters and why each one died.

Dramatiq dead-letters a message (``<queue>.XQ``) when its actor refuses it or its retries run
out, but keeps no reason; ``DeadLetters`` records one per message for ``system2 dlq``.
"""

from __future__ import annotations

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


class PoisonMessage(BadMessage):
    """The message crashed its worker too many times (see ``workers.crashes``)."""


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
        if exception is None or not message.failed:
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
