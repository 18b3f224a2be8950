"""Dead letters: what died, why, and sending it back once the cause is fixed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

import dramatiq
import redis
import typer

from messages import QUEUES
from messages.transport import NAMESPACE, build_broker
from system2.cli_support import emit, say, settings
from system2.errors import System2Error
from workers.crashes import starts_key
from workers.dead_letters import REASONS

app = typer.Typer(help="Dead-lettered messages: list and replay.", no_args_is_help=True)


def _dead(client: redis.Redis) -> list[dict[str, Any]]:
    found = []
    for queue in QUEUES:
        xq = f"{NAMESPACE}:{queue}.XQ"
        entries = cast(list[tuple[bytes, float]], client.zrange(xq, 0, -1, withscores=True))
        for raw_id, score in entries:
            redis_id = raw_id.decode()
            body = client.hget(f"{xq}.msgs", redis_id)
            if body is None:
                continue
            message = json.loads(body)
            reason = client.hget(REASONS, message["message_id"])
            envelope = (message.get("args") or [None])[0]
            found.append(
                {
                    "id": message["message_id"],
                    "queue": queue,
                    "actor": message.get("actor_name"),
                    "dead_lettered_at": datetime.fromtimestamp(score / 1000, UTC).isoformat(),
                    "reason": json.loads(reason)["reason"] if reason else "(not recorded)",
                    "retries": message.get("options", {}).get("retries", 0),
                    "company_id": envelope.get("company_id")
                    if isinstance(envelope, dict)
                    else None,
                    "quest_id": (envelope.get("payload") or {}).get("quest_id")
                    if isinstance(envelope, dict)
                    else None,
                    "_redis_id": redis_id,
                    "_body": body,
                }
            )
    return sorted(found, key=lambda d: d["dead_lettered_at"])


@app.command("list")
def dlq_list() -> None:
    """Every dead-lettered message with its queue, actor, time and reason (JSON)."""
    client = redis.Redis.from_url(settings().redis_url)
    emit([{k: v for k, v in d.items() if not k.startswith("_")} for d in _dead(client)])


@app.command("replay")
def dlq_replay(message_id: str) -> None:
    """Send a dead-lettered message back to its queue (its retries start again)."""
    s = settings()
    client = redis.Redis.from_url(s.redis_url)
    match = [d for d in _dead(client) if d["id"] == message_id]
    if not match:
        raise System2Error(f"no dead-lettered message {message_id}")
    dead = match[0]
    message = dramatiq.Message.decode(dead["_body"])
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
    xq = f"{NAMESPACE}:{dead['queue']}.XQ"
    pipe = client.pipeline()
    pipe.zrem(xq, dead["_redis_id"])
    pipe.hdel(f"{xq}.msgs", dead["_redis_id"])
    pipe.hdel(REASONS, message_id)
    pipe.delete(starts_key(message_id))
    pipe.execute()
    say(f"replayed {message_id} onto {dead['queue']}")
