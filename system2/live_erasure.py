"""What an erasure reaches outside Postgres: the quests' live events in Redis.

The erased quests' own streams are deleted; their entries in the company's stream are deleted
one by one (a user's erasure), or the whole stream is (a company's). The quests it cancelled
are announced, so a step that runs one now stops at once. Run after the erasure commits, and
safe to run again (``system2 privacy erase`` does each time: it finds the same quests).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import cast
from uuid import UUID

import redis

from messages.notices import announce_cancel
from messages.redis_keys import company_stream_key, quest_stream_key

_PAGE = 1_000
Entries = list[tuple[bytes, dict[bytes, bytes]]]  # XRANGE's answer, without decode_responses


def forget_live_events(
    client: redis.Redis,
    company_id: UUID,
    quests: Sequence[UUID],
    cancelled: Sequence[UUID],
    *,
    whole_company: bool = False,
) -> int:
    """Delete the quests' live events; returns how many streams and entries went."""
    for quest in cancelled:
        announce_cancel(client, quest)
    gone = int(client.delete(*[quest_stream_key(q) for q in quests])) if quests else 0
    stream = company_stream_key(company_id)
    if whole_company:
        return gone + int(client.delete(stream))
    wanted = {str(q) for q in quests}
    start = "-"
    while wanted:
        entries = cast(Entries, client.xrange(stream, min=start, max="+", count=_PAGE) or [])
        doomed = [eid for eid, fields in entries if _quest_of(fields) in wanted]
        if doomed:
            gone += int(client.xdel(stream, *doomed))
        if len(entries) < _PAGE:
            break
        start = "(" + entries[-1][0].decode()
    return gone


def _quest_of(fields: dict[bytes, bytes]) -> str | None:
    try:
        quest = json.loads(fields.get(b"e", b"{}"))["payload"]["quest_id"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(quest)
