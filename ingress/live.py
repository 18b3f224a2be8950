"""Server-Sent Events from a quest's live stream in Redis: resumable by ``Last-Event-ID``
(the stream entry id), ending when the quest ends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, cast
from uuid import UUID

from redis.asyncio import Redis as AsyncRedis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from messages.notices import StreamReply, quest_stream_key
from store.quests import TERMINAL

BLOCK_MS = 1_000
PING_EVERY = 15  # blocks without events between keep-alive comments
CHECK_EVERY = 3  # blocks without events between checks that the quest is still going


def sse(entry_id: str, payload: dict[str, Any], issued_at: str) -> str:
    data = {
        "quest_id": payload["quest_id"],
        "kind": payload["kind"],
        "step": payload.get("step"),
        "data": payload.get("data", {}),
        "at": issued_at,
    }
    return f"id: {entry_id}\nevent: {payload['kind']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def sse_events(
    client: AsyncRedis, quest_id: UUID, after: str, request: Request, finished: Callable[[], bool]
) -> AsyncIterator[str]:
    key, last, quiet = quest_stream_key(quest_id), after, 0
    yield "retry: 1000\n\n"
    while not await request.is_disconnected():
        reply = cast(StreamReply, await client.xread({key: last}, block=BLOCK_MS, count=200))
        if not reply:
            quiet += 1
            if quiet % PING_EVERY == 0:
                yield ": keep-alive\n\n"
            if quiet % CHECK_EVERY == 0 and await run_in_threadpool(finished):
                return  # ended, and every event it left is delivered
            continue
        quiet = 0
        for _, entries in reply:
            for entry_id, fields in entries:
                last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                envelope = json.loads(fields[b"e"])
                payload = envelope["payload"]
                yield sse(last, payload, envelope["issued_at"])
                if (
                    payload["kind"] == "quest.state"
                    and payload.get("data", {}).get("status") in TERMINAL
                ):
                    return
