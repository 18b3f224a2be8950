"""The live stream of quest events: one bounded Redis stream per company, and one per quest
for the quest's watchers.

Operators watch it (SSE, ``system2 quest watch``); it is for seeing, not for record-keeping —
``activity_log`` is the record. Publishing is best effort: a Redis hiccup must not fail a step.
"""

from __future__ import annotations

from collections import defaultdict
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

# One quest's events, added to its company's stream and its own (both trimmed), and the
# quest's stream given its lifetime again: one command instead of three per event, since a
# step emits a handful of events a few times and each command costs the worker's loop more
# to pack and parse than Redis spends on it.
# KEYS: company stream, quest stream. ARGV: company maxlen, quest maxlen, quest ttl, entry...
_EMIT = """
for i = 4, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[i])
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
return #ARGV - 3
"""


class QuestEvents:
    def __init__(self, client: Redis, *, maxlen: int) -> None:
        self._maxlen = maxlen
        self._emit = client.register_script(_EMIT)

    async def emit(self, envelopes: Sequence[Envelope[QuestEvent]]) -> None:
        if not envelopes:
            return
        by_quest: dict[tuple[str, str], list[str]] = defaultdict(list)
        for env in envelopes:
            streams = company_stream_key(env.company_id), quest_stream_key(env.payload.quest_id)
            by_quest[streams].append(env.model_dump_json())
        try:
            for streams, entries in by_quest.items():
                bounds = [self._maxlen, QUEST_STREAM_MAXLEN, QUEST_STREAM_TTL_S]
                await self._emit(keys=list(streams), args=[*bounds, *entries])
        except RedisError as exc:
            log.warning(
                "quest events not published", error=type(exc).__name__, count=len(envelopes)
            )


def summarize(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_data(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}
