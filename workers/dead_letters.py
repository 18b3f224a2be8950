"""Dead letters and why each one died.

A message is dead-lettered (``<queue>.XQ``, Dramatiq's layout) when its actor refuses it or
its retries run out; Dramatiq keeps no reason, so the consumer records one per message for
``system2 dlq`` (``workers.refusals.DeadLetterBox``, with the scripts here).

Dramatiq drops a dead letter once it is older than the broker's ``dead_message_ttl`` (7 days);
its reason goes too. Each reason (``DEAD_LETTER_REASONS``, a hash) is indexed by the time it
was written (``DEAD_LETTER_REASONS_AT``, a sorted set; both in ``messages.redis_keys``), and every
write of a reason removes up to ``PRUNED`` reasons older than the TTL, and indexes a few
reasons found without a time (written before the index existed), in the same Redis script:
bounded work, nothing to schedule.

Some entries never reach an actor: a body that is not a Dramatiq message, or not one we can
run, would sit in a consumer's acks set until its process died and then be redelivered to the
next one to choke on. The consumer checks every fetched entry (``inspect``) before any actor
sees it, and moves a bad one straight to the dead letters (one Lua script: out of the acks
set and the queue's bodies, into ``<queue>.XQ`` with its reason), so it is never
redelivered, by maintenance or otherwise, and the queue keeps flowing:

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
its body.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import dramatiq
import structlog
from dramatiq.common import q_name

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
    """The message crashed its worker too many times (see ``workers.crash_isolation``)."""


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
