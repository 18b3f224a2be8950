"""The live stream of quest events: one bounded Redis stream per company, and one per quest
for the quest's watchers.

Operators watch it (SSE, ``system2 quest watch``); it is for seeing, not for record-keeping —
``activity_log`` is the record. Publishing is best effort: a Redis hiccup must not fail a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from messages import Envelope, QuestEvent
from messages.redis_keys import company_stream_key, quest_stream_key

log = structlog.get_logger(__name__)


QUEST_STREAM_MAXLEN = 2_000
QUEST_STREAM_TTL_S = 7 * 86_400


class QuestEvents:
    def __init__(self, client: Redis, *, maxlen: int) -> None:
        self._redis = client
        self._maxlen = maxlen

    async def emit(self, envelopes: Sequence[Envelope[QuestEvent]]) -> None:
        if not envelopes:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for env in envelopes:
                entry: dict[Any, Any] = {"e": env.model_dump_json()}
                company_key = company_stream_key(env.company_id)
                pipe.xadd(company_key, entry, maxlen=self._maxlen, approximate=True)
                quest_key = quest_stream_key(env.payload.quest_id)
                pipe.xadd(quest_key, entry, maxlen=QUEST_STREAM_MAXLEN, approximate=True)
                pipe.expire(quest_key, QUEST_STREAM_TTL_S)
            await pipe.execute()
        except RedisError as exc:
            log.warning(
                "quest events not published", error=type(exc).__name__, count=len(envelopes)
            )


def summarize(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_data(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}
