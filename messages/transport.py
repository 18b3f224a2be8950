"""The broker and the publisher: how a message gets onto a queue.

The broker is built here, from explicit arguments, in one place at start-up. The ingress and
the operators' tools use it only to publish; the workers publish from their event loop
through the same queue script (``workers.publisher``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from dramatiq import Message, Middleware
from dramatiq.brokers.redis import RedisBroker

from messages.envelope import Envelope
from messages.errors import PublishFailed
from messages.redis_keys import NAMESPACE


def build_broker(
    redis_url: str,
    *,
    heartbeat_timeout_ms: int = 60_000,
    maintenance_chance: int = 0,
    middleware: Sequence[Middleware] | None = None,
    client: redis.Redis | None = None,
    broker_class: type[RedisBroker] = RedisBroker,
) -> RedisBroker:
    """A Redis broker. ``middleware=None`` gives Dramatiq's defaults; ``client`` (with its
    timeouts) instead of a connection pool of its own; ``broker_class`` ``RedisBroker`` or a
    subclass (the workers' checks every entry it fetches). A publisher does no maintenance
    by default: the workers' heartbeats put a dead worker's messages back, a fair queue's at
    the head of their company's lane (``workers.fair_queue``), where Dramatiq's maintenance
    would put them at the intake's tail."""
    return broker_class(
        url=None if client is not None else redis_url,
        client=client,
        namespace=NAMESPACE,
        heartbeat_timeout=heartbeat_timeout_ms,
        maintenance_chance=maintenance_chance,
        middleware=list(middleware) if middleware is not None else None,
    )


def to_message(envelope: Envelope[Any]) -> Message[Any]:
    """The Dramatiq message carrying ``envelope``; its id is the envelope's id."""
    route = envelope.payload.route
    if route is None:
        raise TypeError(f"{type(envelope.payload).__name__} does not travel on a queue")
    return Message(
        queue_name=route.queue,
        actor_name=route.actor,
        args=(envelope.model_dump(mode="json"),),
        kwargs={},
        options={},
        message_id=str(envelope.message_id),
    )


class Publisher:
    """Publishes envelopes by queue and actor name, without importing any actor."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker

    def publish(self, envelope: Envelope[Any], *, delay_ms: int | None = None) -> None:
        try:
            self.broker.enqueue(to_message(envelope), delay=delay_ms)
        except redis.RedisError as exc:
            raise PublishFailed(
                f"the queue did not take the message: {type(exc).__name__}"
            ) from exc


@contextmanager
def publisher(redis_url: str) -> Iterator[Publisher]:
    """A publisher on a broker of its own, closed when the block ends (for one-off work such
    as a command; a long-lived process builds its broker once instead)."""
    broker = build_broker(redis_url)
    try:
        yield Publisher(broker)
    finally:
        broker.close()
