"""Dead letters: what died, why, and sending it back once the cause is fixed."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import dramatiq
import redis
import typer

from messages import QUEUES
from messages.redis_keys import (
    DEAD_LETTER_REASONS,
    DEAD_LETTER_REASONS_AT,
    dead_bodies_key,
    dead_letters_key,
    starts_key,
)
from messages.transport import build_broker
from system2.cli_support import emit, say, settings
from system2.errors import System2Error
from workers.dead_letters import UNDECODABLE, not_a_message

app = typer.Typer(help="Dead-lettered messages: list and replay.", no_args_is_help=True)


def _dead(client: redis.Redis) -> list[dict[str, Any]]:
    found = []
    for queue in QUEUES:
        xq = dead_letters_key(queue)
        entries = cast(list[tuple[bytes, float]], client.zrange(xq, 0, -1, withscores=True))
        for raw_id, score in entries:
            body = cast(bytes | None, client.hget(dead_bodies_key(queue), raw_id))
            if body is None:
                continue
            dead = _entry(client, raw_id, body)
            found.append(
                {
                    "id": dead.pop("id"),
                    "queue": queue,
                    "actor": dead.pop("actor"),
                    "dead_lettered_at": _when(score),
                    **dead,
                    "_redis_id": raw_id,
                    "_body": body,
                }
            )
    return sorted(found, key=lambda d: d["dead_lettered_at"] or "")


def _when(score: float) -> str | None:
    try:
        return datetime.fromtimestamp(score / 1000, UTC).isoformat()
    except (OverflowError, ValueError, OSError):  # a score no Dramatiq wrote
        return None


def _entry(client: redis.Redis, raw_id: bytes, body: bytes) -> dict[str, Any]:
    """What is known of one dead letter. An entry the consumer refused as undecodable has its
    reason under its Redis id (it has no message id) and only the start of its body. Any
    body, and any record, is listed: a field of the wrong type is shown as missing."""
    redis_id = raw_id.decode(errors="backslashreplace")
    record = _record(client.hget(DEAD_LETTER_REASONS, raw_id))
    message = None if record.get("reason") == UNDECODABLE else _message(body)
    if message is None:
        return {
            "id": redis_id,
            "actor": None,
            "reason": record.get("reason", UNDECODABLE),
            "detail": record.get("detail", "its body is not a Dramatiq message"),
            "retries": 0,
            "company_id": None,
            "quest_id": None,
            "raw_bytes": record.get("raw_bytes", len(body)),
            "kept_bytes": len(body),
            "_undecodable": True,
        }
    record = record or _record(client.hget(DEAD_LETTER_REASONS, message["message_id"]))
    args, options = message.get("args"), _dict(message.get("options"))
    envelope = _dict(args[0] if isinstance(args, list) and args else None)
    return {
        "id": message["message_id"],
        "actor": message.get("actor_name"),
        "reason": record.get("reason", "(not recorded)"),
        **({"detail": record["detail"]} if "detail" in record else {}),
        "retries": options.get("retries", 0),
        "company_id": envelope.get("company_id"),
        "quest_id": _dict(envelope.get("payload")).get("quest_id"),
    }


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _record(raw: Any) -> dict[str, Any]:
    try:
        record = json.loads(raw) if raw else {}
    except Exception:  # not JSON, not UTF-8, nested too deeply: no record
        return {}
    return _dict(record)


def _message(body: bytes) -> dict[str, Any] | None:
    """The dead letter's Dramatiq message as a dict, or None if its body is not one."""
    try:
        message = json.loads(body)
    except Exception:  # not JSON, not UTF-8, nested too deeply (a kept start of one)
        return None
    if not isinstance(message, dict) or not isinstance(message.get("message_id"), str):
        return None
    return message


@app.command("list")
def dlq_list(
    raw: Annotated[
        bool, typer.Option("--raw", help="with the kept start of undecodable bodies (base64)")
    ] = False,
) -> None:
    """Every dead-lettered message with its queue, actor, time and reason (JSON).

    An undecodable entry (not a Dramatiq message) is listed by its Redis id, with its size
    and the number of its first bytes kept."""
    client = redis.Redis.from_url(settings().redis_url)
    listed = []
    for dead in _dead(client):
        shown = {k: v for k, v in dead.items() if not k.startswith("_")}
        if raw and dead.get("_undecodable"):
            shown["raw_base64"] = base64.b64encode(dead["_body"]).decode()
        listed.append(shown)
    emit(listed)


@app.command("replay")
def dlq_replay(message_id: str) -> None:
    """Send a dead-lettered message back to its queue (its retries start again)."""
    s = settings()
    client = redis.Redis.from_url(s.redis_url)
    match = [d for d in _dead(client) if d["id"] == message_id]
    if not match:
        raise System2Error(f"no dead-lettered message {message_id}")
    dead = match[0]
    if dead.get("_undecodable"):
        raise System2Error(
            f"{message_id} cannot be replayed: it was dead-lettered as undecodable "
            f"({dead['detail']}; {dead['raw_bytes']} bytes), so no worker can ever run it"
        )
    try:
        fields: Any = dramatiq.get_encoder().decode(dead["_body"])
        why = not_a_message(fields)
    except Exception:  # not JSON, not UTF-8, nested too deeply
        why = "its body is not a Dramatiq message"
    if why:
        raise System2Error(f"{message_id} cannot be replayed: {why}")
    message: dramatiq.Message[Any] = dramatiq.Message(**{**fields, "args": tuple(fields["args"])})
    options = {
        k: v
        for k, v in message.options.items()
        if k not in ("retries", "traceback", "redis_message_id")
    }
    broker = build_broker(s.redis_url)
    try:
        broker.enqueue(message.copy(queue_name=dead["queue"], options=options))
    finally:
        broker.close()
    pipe = client.pipeline()
    pipe.zrem(dead_letters_key(dead["queue"]), dead["_redis_id"])
    pipe.hdel(dead_bodies_key(dead["queue"]), dead["_redis_id"])
    pipe.hdel(DEAD_LETTER_REASONS, message_id)
    pipe.zrem(DEAD_LETTER_REASONS_AT, message_id)
    pipe.delete(starts_key(message_id))
    pipe.execute()
    say(f"replayed {message_id} onto {dead['queue']}")
