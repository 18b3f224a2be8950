"""Dead letters and why each one died.

Dramatiq dead-letters a message (``<queue>.XQ``) when its actor refuses it or its retries run
out, but keeps no reason; ``DeadLetters`` records one per message for ``system2 dlq``.

Some entries never reach an actor. Dramatiq's Redis consumer decodes each fetched body in its
consumer thread; a body that is not a Dramatiq message raises there, the thread restarts,
and the entry and every message prefetched with it stay in the worker's acks set until the
process dies, when Dramatiq's maintenance puts them back on the queue for the next worker to
choke on. ``WorkerBroker`` is a ``RedisBroker`` whose consumer checks every fetched entry
before Dramatiq sees it, and moves a bad one straight to the dead letters (one Lua script:
out of the acks set and the queue's bodies, into ``<queue>.XQ`` with its reason), so it is
never redelivered, by maintenance or otherwise, and the queue keeps flowing:

- ``undecodable``: not a Dramatiq message of this queue (not UTF-8 JSON, not an object, a
  field missing or of the wrong type, addressed to another queue). Its body can never be
  run: the dead letter keeps its first ``RAW_KEPT`` bytes and its length, and the reason is
  recorded under its Redis id. ``system2 dlq replay`` refuses it.
- ``invalid_envelope``: a Dramatiq message for one of our actors whose argument is not a
  valid envelope (``messages.open_envelope``). The body is kept whole (a newer schema can be
  replayed once the newer consumer is deployed); the reason is recorded under its message id.
- ``unknown_actor``: a Dramatiq message for an actor this worker does not declare (kept
  whole, replayable after the deploy that adds the actor).

Each is counted (``s2_messages_rejected_total{queue, reason}``, and in
``s2_messages_dead_lettered_total``) and logged once, with its ids, queue and size, never
its body. The consumer also hands Dramatiq messages whose text
form is ``actor(message <id>)``: Dramatiq's own log lines (a failed or skipped message)
would otherwise print the whole envelope.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis
import structlog
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff, q_name
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Middleware

from messages import BadMessage, Payload, open_envelope
from workers import metrics

log = structlog.get_logger(__name__)

REASONS = "s2:dlq:reasons"

UNDECODABLE = "undecodable"
INVALID_ENVELOPE = "invalid_envelope"
UNKNOWN_ACTOR = "unknown_actor"

RAW_KEPT = 4096  # bytes of an undecodable body kept in its dead letter
ID_MAX = 200  # characters of a message id taken from a body we did not write


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


# --- entries that never reach an actor --------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    """Why a fetched entry is dead-lettered by the consumer. ``detail`` names fields and
    problems, never a value of the body."""

    reason: str
    detail: str
    message_id: str | None = None  # set when the body is a Dramatiq message
    actor: str | None = None
    redis_id: str | None = None  # what the body says its Redis id is


# Dramatiq's message fields, as its Redis broker writes them (JSON encoder).
_FIELDS: dict[str, tuple[type, ...]] = {
    "queue_name": (str,),
    "actor_name": (str,),
    "args": (list, tuple),
    "kwargs": (dict,),
    "options": (dict,),
    "message_id": (str,),
    "message_timestamp": (int,),
}


def envelope_types() -> dict[str, type[Payload]]:
    """Actor name -> the payload its envelope carries, for every payload with a route."""
    found: dict[str, type[Payload]] = {}
    todo = list(Payload.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.route is not None:
            found[cls.route.actor] = cls
    return found


def inspect(
    data: bytes,
    queue: str,
    actors: set[str] | dict[str, Any],
    envelopes: dict[str, type[Payload]],
) -> dramatiq.Message[Any] | Rejection:
    """The Dramatiq message in ``data`` fetched from ``queue``, or why it must not run."""
    message = decode(data, queue)
    if isinstance(message, Rejection):
        return message
    mid, actor = message.message_id[:ID_MAX], message.actor_name
    redis_id = message.options["redis_message_id"]
    if actor not in actors:
        why = "no actor of that name in this worker"
        return Rejection(UNKNOWN_ACTOR, why, mid, actor[:ID_MAX], redis_id)
    payload = envelopes.get(actor)
    if payload is None:
        return message
    if len(message.args) != 1 or message.kwargs:
        why = "expected one positional argument, the envelope"
        return Rejection(INVALID_ENVELOPE, why, mid, actor, redis_id)
    try:
        open_envelope(message.args[0], payload)
    except BadMessage as exc:
        return Rejection(INVALID_ENVELOPE, str(exc)[:1000], mid, actor, redis_id)
    return message


def decode(data: bytes, queue: str) -> dramatiq.Message[Any] | Rejection:
    """The Dramatiq message of ``queue`` in ``data``, or why it is not one (``undecodable``)."""
    try:
        fields = dramatiq.get_encoder().decode(data)
    except Exception:
        return Rejection(UNDECODABLE, _why_not_decodable(data))
    if not isinstance(fields, dict):
        return Rejection(UNDECODABLE, f"a JSON {_json_kind(fields)}, not a Dramatiq message")
    missing = [name for name in _FIELDS if name not in fields]
    wrong = [
        name
        for name, types in _FIELDS.items()
        if name in fields
        and (not isinstance(fields[name], types) or isinstance(fields[name], bool))
    ]
    extra = len(set(fields) - set(_FIELDS))
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if wrong:
        problems.append("wrong type: " + ", ".join(wrong))
    if extra:
        problems.append(f"{extra} unknown field{'s' if extra > 1 else ''}")
    if problems:
        return Rejection(UNDECODABLE, "not a Dramatiq message: " + "; ".join(problems))
    mid = fields["message_id"][:ID_MAX]
    redis_id = fields["options"].get("redis_message_id")
    if not isinstance(redis_id, str):
        why = "not a message of the Redis broker: no redis_message_id"
        return Rejection(UNDECODABLE, why, mid)
    if fields["queue_name"] != queue:
        return Rejection(UNDECODABLE, "addressed to another queue", mid, redis_id=redis_id)
    message: dramatiq.Message[Any] = dramatiq.Message(**{**fields, "args": tuple(fields["args"])})
    return message


def _why_not_decodable(data: bytes) -> str:
    if not data:
        return "empty"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except AttributeError:
        return f"a {type(data).__name__}, not bytes"
    try:
        json.loads(text)
    except ValueError:
        return "not JSON"
    return "not decodable by the message encoder"


def _json_kind(value: object) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


class QuietProxy(MessageProxy):
    """A fetched message whose text form names it without its arguments (the envelope)."""

    def __str__(self) -> str:
        return f"{self.actor_name}(message {self.message_id})"

    def __repr__(self) -> str:
        return f"<message {self.message_id} for {self.actor_name} on {self.queue_name}>"


# KEYS: acks set, queue bodies, dead-letter zset, dead-letter bodies, reasons hash.
# ARGV: sha1 of the body, the id the body claims ("" if none), bytes to keep (-1: all),
#       time (ms), reasons field ("" for the entry's Redis id), the reason record.
# Finds the fetched entry holding exactly this body (the id it claims first, else the acks
# set), takes it off the queue and onto the dead letters in one step; returns its Redis id,
# or false if this consumer holds no such entry.
_REJECT = """
local acks, bodies, xq, xq_bodies, reasons = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local sha, claimed, keep = ARGV[1], ARGV[2], tonumber(ARGV[3])
local found, body = false, false
if claimed ~= "" and redis.call("sismember", acks, claimed) == 1 then
    local b = redis.call("hget", bodies, claimed)
    if b and redis.sha1hex(b) == sha then found, body = claimed, b end
end
if not found then
    for _, id in ipairs(redis.call("smembers", acks)) do
        local b = redis.call("hget", bodies, id)
        if b and redis.sha1hex(b) == sha then found, body = id, b break end
    end
end
if not found then return false end
redis.call("srem", acks, found)
redis.call("hdel", bodies, found)
redis.call("zadd", xq, ARGV[4], found)
if keep >= 0 and #body > keep then body = string.sub(body, 1, keep) end
redis.call("hset", xq_bodies, found, body)
local field = ARGV[5]
if field == "" then field = found end
redis.call("hset", reasons, field, ARGV[6])
return found
"""


class WorkerBroker(RedisBroker):
    """The workers' Redis broker: its consumers dead-letter what no actor can run."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.reject_script = self.client.register_script(_REJECT)
        self.envelopes = envelope_types()

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return CheckedConsumer

    def reject(self, queue: str, data: bytes, rejection: Rejection) -> str | None:
        """Move the entry of ``queue`` this process fetched with body ``data`` to the dead
        letters; returns its Redis id (None if no such entry is held)."""
        canonical = q_name(queue)
        xq = f"{self.namespace}:{canonical}.XQ"
        undecodable = rejection.reason == UNDECODABLE
        record = {
            "queue": canonical,
            "actor": rejection.actor,
            "reason": rejection.reason,
            "detail": rejection.detail,
            "at": time.time(),
            "raw_bytes": len(data),
        }
        if undecodable:
            record["kept_bytes"] = min(len(data), RAW_KEPT)
        found = self.reject_script(
            keys=[
                f"{self.namespace}:__acks__.{self.broker_id}.{queue}",
                f"{self.namespace}:{queue}.msgs",
                xq,
                f"{xq}.msgs",
                REASONS,
            ],
            args=[
                hashlib.sha1(data).hexdigest(),  # noqa: S324 - matches Redis's sha1hex, not security
                rejection.redis_id or "",
                RAW_KEPT if undecodable else -1,
                int(time.time() * 1000),
                "" if undecodable else (rejection.message_id or ""),
                json.dumps(record),
            ],
        )
        return found.decode() if isinstance(found, bytes) else found or None


class CheckedConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, but a fetched entry is checked (``inspect``) before it is
    handed over, and a bad one is dead-lettered instead of raising in the consumer thread."""

    broker: WorkerBroker

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                try:
                    data = self.message_cache.pop(0)
                except IndexError:
                    # Fewer messages outstanding than we may prefetch: fetch up to that many.
                    messages = []
                    if self.outstanding_message_count < self.prefetch:
                        self.message_cache = messages = self.broker.do_fetch(
                            self.queue_name, self.prefetch - self.outstanding_message_count
                        )
                    if not messages:  # nothing: long-poll, backing off up to the idle timeout
                        self.misses, backoff_ms = compute_backoff(
                            self.misses, max_backoff=self.timeout
                        )
                        time.sleep(backoff_ms / 1000)
                        return None
                    continue
                if data is None:  # an id whose body is gone (see Dramatiq's #266)
                    self.logger.warning("an entry of %r has no body", self.queue_name)
                    continue
                self.misses = 0
                verdict = inspect(data, self.queue_name, self.broker.actors, self.broker.envelopes)
                if isinstance(verdict, Rejection):
                    self._reject(data, verdict)
                    continue
                self.queued_message_ids.add(verdict.message_id)
                return QuietProxy(verdict)
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]

    def _reject(self, data: bytes, rejection: Rejection) -> None:
        queue = q_name(self.queue_name)
        try:
            found = self.broker.reject(self.queue_name, data, rejection)
        except redis.ConnectionError:
            raise
        except redis.RedisError as exc:  # stays held by this process; back after a restart
            log.warning(
                "a bad message could not be dead-lettered",
                queue=queue,
                reason=rejection.reason,
                error=type(exc).__name__,
            )
            return
        if found is None:
            log.warning("a bad message was no longer held", queue=queue, reason=rejection.reason)
            return
        metrics.REJECTED.labels(queue, rejection.reason).inc()
        # One of our actors, or "" (a name from a body we did not write is no label value).
        actor = rejection.actor if rejection.reason == INVALID_ENVELOPE else ""
        metrics.DEAD_LETTERS.labels(queue, actor or "").inc()
        log.error(
            "message dead-lettered before delivery",
            queue=queue,
            reason=rejection.reason,
            detail=rejection.detail,
            redis_message_id=found,
            dramatiq_message_id=rejection.message_id,
            actor=rejection.actor,
            bytes=len(data),
        )
