"""Publishing from a worker's event loop: what ``messages.transport.Publisher`` does with
Dramatiq's broker, through the same queue script (``workers.queue_protocol``), awaited.

A message for later (``delay_ms``) goes to the queue's delayed queue with its ``eta``, as
Dramatiq's ``RedisBroker.enqueue`` puts it; every message gets a fresh Redis id, so a retry
or a re-send never collides with the message it follows.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from dramatiq.common import dq_name
from redis.exceptions import RedisError

from messages import Envelope
from messages.errors import PublishFailed
from messages.transport import to_message
from workers.queue_protocol import QueueProtocol


class QueuePublisher:
    def __init__(self, protocol: QueueProtocol) -> None:
        self.protocol = protocol

    async def publish(self, envelope: Envelope[Any], *, delay_ms: int | None = None) -> None:
        message = to_message(envelope)
        options: dict[str, Any] = {"redis_message_id": str(uuid.uuid4())}
        queue = message.queue_name
        if delay_ms is not None:
            queue = dq_name(queue)
            options["eta"] = int(time.time() * 1000) + delay_ms
        message = message.copy(queue_name=queue, options=options)
        try:
            await self.protocol.enqueue(queue, options["redis_message_id"], message.encode())
        except RedisError as exc:
            raise PublishFailed(
                f"the queue did not take the message: {type(exc).__name__}"
            ) from exc
