"""The dead letters, for the event-loop consumer (``workers.consumer``): what a fetched entry
is (``workers.dead_letters.inspect``), and where it goes with its reason when it must not
run. The scripts and the reasons' layout are those of ``workers.dead_letters``, so
``system2 dlq`` reads both alike.
"""

from __future__ import annotations

import json
import time
from typing import Any

import dramatiq
import structlog
from dramatiq.common import q_name
from redis.asyncio import Redis
from redis.exceptions import RedisError

from messages.redis_keys import (
    DEAD_LETTER_REASONS,
    DEAD_LETTER_REASONS_AT,
    DEAD_LETTER_REASONS_SCAN,
)
from workers import worker_metrics
from workers.dead_letters import (
    DEFAULT_TTL_MS,
    RECORD_SCRIPT,
    REJECT_SCRIPT,
    Rejection,
    envelope_types,
    inspect,
    reject_call,
    reported,
    uninspectable,
)
from workers.queue_protocol import QueueProtocol

log = structlog.get_logger(__name__)


class DeadLetterBox:
    """Checks each fetched entry, and dead-letters with a reason what must not run."""

    def __init__(self, client: Redis, actors: set[str], *, ttl_ms: int = DEFAULT_TTL_MS) -> None:
        self.actors = actors
        self.ttl_ms = ttl_ms
        self.envelopes = envelope_types()
        self._record = client.register_script(RECORD_SCRIPT)
        self._reject = client.register_script(REJECT_SCRIPT)

    def check(self, data: bytes, queue: str) -> dramatiq.Message[Any] | Rejection:
        """The message, or why not. Never raises: an entry whose inspection raised anything
        at all is dead-lettered as uninspectable, never left to stop the fetch loop."""
        try:
            return inspect(data, queue, self.actors, self.envelopes)
        except Exception as exc:
            return uninspectable(exc)

    async def record(self, message: dramatiq.Message[Any], exc: BaseException) -> None:
        now = time.time()
        record = {
            "queue": q_name(message.queue_name),
            "actor": message.actor_name,
            "reason": str(exc)[:1000] or type(exc).__name__,
            "error": type(exc).__name__,
            "at": now,
        }
        try:
            await self._record(
                keys=[DEAD_LETTER_REASONS, DEAD_LETTER_REASONS_AT, DEAD_LETTER_REASONS_SCAN],
                args=[message.message_id, json.dumps(record), int(now * 1000), self.ttl_ms],
            )
        except RedisError:
            log.warning("dead-letter reason not recorded", message_id=message.message_id)
        worker_metrics.DEAD_LETTERS.labels(record["queue"], message.actor_name).inc()

    async def reject(
        self, protocol: QueueProtocol, queue: str, data: bytes, why: Rejection
    ) -> None:
        keys, args = reject_call(
            protocol.consumer_id, queue, data, why, self.ttl_ms, protocol.namespace
        )
        try:
            found = await self._reject(keys=keys, args=args)
        except RedisError as exc:  # stays held by this process; back after a restart
            log.warning(
                "a bad message could not be dead-lettered",
                queue=q_name(queue),
                reason=why.reason,
                error=type(exc).__name__,
            )
            return
        reported(queue, data, why, found)
