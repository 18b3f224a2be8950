"""Dead letters and why each one died.

Dramatiq dead-letters a message (``<queue>.XQ``) when its actor refuses it or its retries run
out, but keeps no reason; ``DeadLetters`` records one per message for ``system2 dlq``.

Dramatiq drops a dead letter once it is older than the broker's ``dead_message_ttl`` (7 days);
its reason goes too. Each reason (``DEAD_LETTER_REASONS``, a hash) is indexed by the time it
was written (``DEAD_LETTER_REASONS_AT``, a sorted set; both in ``messages.redis_keys``), and every
write of a reason removes up to ``PRUNED`` reasons older than the TTL, and indexes a few
reasons found without a time (written before the index existed), in the same Redis script:
bounded work, nothing to schedule.

Some entries never reach an actor. Dramatiq's Redis consumer decodes each fetched body in its
consumer thread; a body that is not a Dramatiq message raises there, the thread restarts,
and the entry and every message prefetched with it stay in the worker's acks set until the
process dies, when Dramatiq's maintenance puts them back on the queue for the next worker to
choke on. ``WorkerBroker`` is a ``RedisBroker`` whose consumer checks every fetched entry
before Dramatiq sees it, and moves a bad one straight to the dead letters (one Lua script:
out of the acks set and the queue's bodies, into ``<queue>.XQ`` with its reason), so it is
never redelivered, by maintenance or otherwise, and the queue keeps flowing:

- ``undecodable``: not a Dramatiq message of this queue (not UTF-8 JSON, nested too deeply,
  not an object, a field missing or of the wrong type, an id longer than ``ID_MAX``,
  addressed to another queue), or a body whose inspection raised anything at all
  (``uninspectable: <exception type>``: inspecting an entry never stops the consumer). Its
  body can never be run: the dead letter keeps its first ``RAW_KEPT`` bytes and its length,
  and the reason is recorded under its Redis id. ``system2 dlq replay`` refuses it.
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
from messages.redis_keys import (
    DEAD_LETTER_REASONS,
    DEAD_LETTER_REASONS_AT,
    DEAD_LETTER_REASONS_SCAN,
    acks_key,
    bodies_key,
    dead_bodies_key,
    dead_letters_key,
)
from workers import worker_metrics
from workers.errors import WorkerError

log = structlog.get_logger(__name__)

PRUNED = 100  # reasons past the TTL removed, at most, per reason written
SWEPT = 20  # fields of the reasons looked at for a missing time, about, per reason written
DEFAULT_TTL_MS = 7 * 24 * 3600 * 1000  # Dramatiq's dead_message_ttl, for a broker without one

UNDECODABLE = "undecodable"
INVALID_ENVELOPE = "invalid_envelope"
UNKNOWN_ACTOR = "unknown_actor"

RAW_KEPT = 4096  # bytes of an undecodable body kept in its dead letter
ID_MAX = 200  # characters of an id (message, Redis, actor) a body may carry


class PoisonMessage(BadMessage, WorkerError):
    """The message crashed its worker too many times (see ``workers.crashes``)."""


# keep_reason(reasons, index, cursor, field, record, now_ms, ttl_ms): records the reason
# ``field`` -> ``record`` at ``now_ms``; removes up to PRUNED reasons older than ``ttl_ms``,
# after giving a time to the few fields of one HSCAN step that have none (their record's
# ``at``, else now).
_KEEP_REASON = f"""
local function keep_reason(reasons, index, cursor, field, record, now, ttl)
    redis.call("hset", reasons, field, record)
    redis.call("zadd", index, now, field)
    local step = redis.call("hscan", reasons, redis.call("get", cursor) or "0", "count", {SWEPT})
    redis.call("set", cursor, step[1])
    local seen = step[2]
    for i = 1, #seen, 2 do
        if not redis.call("zscore", index, seen[i]) then
            local ok, old = pcall(cjson.decode, seen[i + 1])
            local at = now
            if ok and type(old) == "table" and type(old.at) == "number"
                and old.at > 0 and old.at < 1e11 then
                at = math.floor(old.at * 1000)
            end
            redis.call("zadd", index, at, seen[i])
        end
    end
    local expired = redis.call("zrangebyscore", index, "-inf", "(" .. (now - ttl),
        "limit", 0, {PRUNED})
    if #expired > 0 then
        redis.call("hdel", reasons, unpack(expired))
        redis.call("zrem", index, unpack(expired))
    end
end
"""

# KEYS: DEAD_LETTER_REASONS, _AT, _SCAN. ARGV: field, record, time (ms), TTL (ms).
RECORD_SCRIPT = (
    _KEEP_REASON
    + """
keep_reason(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
"""
)


class DeadLetters(Middleware):
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self.record = client.register_script(RECORD_SCRIPT)

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
        now = time.time()
        record = {
            "queue": message.queue_name.removesuffix(".DQ"),
            "actor": message.actor_name,
            "reason": str(exception)[:1000] or type(exception).__name__,
            "error": type(exception).__name__,
            "at": now,
        }
        ttl = getattr(broker, "dead_message_ttl", DEFAULT_TTL_MS)
        try:
            self.record(
                keys=[DEAD_LETTER_REASONS, DEAD_LETTER_REASONS_AT, DEAD_LETTER_REASONS_SCAN],
                args=[message.message_id, json.dumps(record), int(now * 1000), ttl],
            )
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
    """The Dramatiq message in ``data`` fetched from ``queue``, or why it must not run.
    Never raises: a body whose inspection raises is ``uninspectable``."""
    try:
        return _inspect(data, queue, actors, envelopes)
    except Exception as exc:
        return uninspectable(exc)


def uninspectable(exc: Exception) -> Rejection:
    """The verdict on an entry whose inspection raised ``exc`` (named by its type only: its
    text may quote the body)."""
    return Rejection(UNDECODABLE, f"uninspectable: {type(exc).__name__}")


def _inspect(
    data: bytes,
    queue: str,
    actors: set[str] | dict[str, Any],
    envelopes: dict[str, type[Payload]],
) -> dramatiq.Message[Any] | Rejection:
    message = decode(data, queue)
    if isinstance(message, Rejection):
        return message
    mid, actor = message.message_id, message.actor_name
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
    except Exception:  # RecursionError included: a body nested deeper than the decoder goes
        return Rejection(UNDECODABLE, _why_not_decodable(data))
    problems = not_a_message(fields)
    if problems:
        return Rejection(UNDECODABLE, problems)
    mid, redis_id = fields["message_id"], fields["options"].get("redis_message_id")
    ids = {"message_id": mid, "redis_message_id": redis_id}
    if not isinstance(redis_id, str) or len(redis_id) > ID_MAX:
        redis_id = None
    too_long = [
        name for name, value in ids.items() if isinstance(value, str) and len(value) > ID_MAX
    ]
    if too_long:
        why = f"{' and '.join(too_long)} longer than {ID_MAX} characters"
        return Rejection(UNDECODABLE, why, redis_id=redis_id)
    if redis_id is None:
        why = "not a message of the Redis broker: no redis_message_id"
        return Rejection(UNDECODABLE, why, mid)
    if fields["queue_name"] != queue:
        return Rejection(UNDECODABLE, "addressed to another queue", mid, redis_id=redis_id)
    message: dramatiq.Message[Any] = dramatiq.Message(**{**fields, "args": tuple(fields["args"])})
    return message


def not_a_message(fields: object) -> str | None:
    """Why decoded ``fields`` are not a Dramatiq message (field names, never values), or
    None if they are one."""
    if not isinstance(fields, dict):
        return f"a JSON {_json_kind(fields)}, not a Dramatiq message"
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
    return "not a Dramatiq message: " + "; ".join(problems) if problems else None


def _why_not_decodable(data: bytes) -> str:
    """Why the encoder refused ``data``. Never raises: whatever it meets is an answer."""
    if not isinstance(data, bytes) or not data:
        return "empty" if data == b"" else f"a {type(data).__name__}, not bytes"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    try:
        json.loads(text)
    except RecursionError:
        return "JSON nested too deeply"
    except ValueError:
        return "not JSON"
    except Exception as exc:
        return f"not JSON ({type(exc).__name__})"
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


# KEYS: acks set, queue bodies, dead-letter zset, dead-letter bodies, DEAD_LETTER_REASONS,
#       _AT, _SCAN.
# ARGV: sha1 of the body, the id the body claims ("" if none), bytes to keep (-1: all),
#       time (ms), reasons field ("" for the entry's Redis id), the reason record, TTL (ms).
# Finds the fetched entry holding exactly this body (the id it claims first, else the acks
# set), takes it off the queue and onto the dead letters in one step; returns its Redis id,
# or false if this consumer holds no such entry.
REJECT_SCRIPT = (
    _KEEP_REASON
    + """
local acks, bodies, xq, xq_bodies = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
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
keep_reason(KEYS[5], KEYS[6], KEYS[7], field, ARGV[6], tonumber(ARGV[4]), tonumber(ARGV[7]))
return found
"""
)


class WorkerBroker(RedisBroker):
    """The workers' Redis broker: its consumers dead-letter what no actor can run."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.reject_script = self.client.register_script(REJECT_SCRIPT)
        self.envelopes = envelope_types()

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return CheckedConsumer

    def reject(self, queue: str, data: bytes, rejection: Rejection) -> str | None:
        """Move the entry of ``queue`` this process fetched with body ``data`` to the dead
        letters; returns its Redis id (None if no such entry is held)."""
        keys, args = reject_call(
            self.broker_id, queue, data, rejection, self.dead_message_ttl, self.namespace
        )
        found = self.reject_script(keys=keys, args=args)
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
                try:  # inspect never raises; if it ever did, the entry would strand the batch
                    verdict = inspect(
                        data, self.queue_name, self.broker.actors, self.broker.envelopes
                    )
                except Exception as exc:
                    verdict = uninspectable(exc)
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
        reported(self.queue_name, data, rejection, found)


def reject_call(
    consumer_id: str, queue: str, data: bytes, rejection: Rejection, ttl_ms: int, namespace: str
) -> tuple[list[str], list[Any]]:
    """The keys and arguments of ``REJECT_SCRIPT`` moving the entry of ``queue`` that
    ``consumer_id`` fetched with body ``data`` to the dead letters, with its reason."""
    canonical = q_name(queue)
    undecodable = rejection.reason == UNDECODABLE
    now = time.time()
    record: dict[str, Any] = {
        "queue": canonical,
        "actor": rejection.actor,
        "reason": rejection.reason,
        "detail": rejection.detail,
        "at": now,
        "raw_bytes": len(data),
    }
    if undecodable:
        record["kept_bytes"] = min(len(data), RAW_KEPT)
    keys = [
        acks_key(consumer_id, queue, namespace=namespace),
        bodies_key(queue, namespace=namespace),
        dead_letters_key(canonical, namespace=namespace),
        dead_bodies_key(canonical, namespace=namespace),
        DEAD_LETTER_REASONS,
        DEAD_LETTER_REASONS_AT,
        DEAD_LETTER_REASONS_SCAN,
    ]
    args: list[Any] = [
        hashlib.sha1(data).hexdigest(),  # noqa: S324 - matches Redis's sha1hex, not security
        rejection.redis_id or "",
        RAW_KEPT if undecodable else -1,
        int(now * 1000),
        "" if undecodable else (rejection.message_id or ""),
        json.dumps(record),
        ttl_ms,
    ]
    return keys, args


def reported(queue: str, data: bytes, rejection: Rejection, found: str | bytes | None) -> None:
    """Count and log a rejection's outcome (``found``: the Redis id dead-lettered, or None
    when the entry was no longer held). Never the body."""
    canonical = q_name(queue)
    if not found:
        log.warning("a bad message was no longer held", queue=canonical, reason=rejection.reason)
        return
    worker_metrics.REJECTED.labels(canonical, rejection.reason).inc()
    # One of our actors, or "" (a name from a body we did not write is no label value).
    actor = rejection.actor if rejection.reason == INVALID_ENVELOPE else ""
    worker_metrics.DEAD_LETTERS.labels(canonical, actor or "").inc()
    log.error(
        "message dead-lettered before delivery",
        queue=canonical,
        reason=rejection.reason,
        detail=rejection.detail,
        redis_message_id=found.decode() if isinstance(found, bytes) else found,
        dramatiq_message_id=rejection.message_id,
        actor=rejection.actor,
        bytes=len(data),
    )
