"""The live stream of quest events, one bounded Redis stream per company.

Operators watch it (SSE, ``system2 quest watch``); it is for seeing, not for record-keeping —
``activity_log`` is the record. Publishing is best effort: a Redis hiccup must not fail a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import redis
import structlog

from messages import Envelope, QuestEvent

log = structlog.get_logger(__name__)


def stream_key(company_id: UUID) -> str:
    return f"s2:events:{company_id}"


class QuestEvents:
    def __init__(self, client: redis.Redis, *, maxlen: int) -> None:
        self._redis = client
        self._maxlen = maxlen

    def emit(self, envelopes: Sequence[Envelope[QuestEvent]]) -> None:
        if not envelopes:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for env in envelopes:
                pipe.xadd(
                    stream_key(env.company_id),
                    {"e": env.model_dump_json()},
                    maxlen=self._maxlen,
                    approximate=True,
                )
            pipe.execute()
        except redis.RedisError as exc:
            log.warning(
                "quest events not published", error=type(exc).__name__, count=len(envelopes)
            )


def summarize(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_data(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}
