"""A company's quests, newest first, a page at a time: what an operator or the upstream API
sees without holding a quest's id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from store import cursors
from store.db import TenantTx

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "halted")


@dataclass(frozen=True)
class QuestSummary:
    id: UUID
    status: str
    goal: str
    model: str
    created_by: str
    steps_done: int
    cost_usd_micros: int
    max_usd_micros: int | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class QuestFilter:
    statuses: tuple[str, ...] = ()  # any of these; empty: every status
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    created_by: str | None = None  # only this submitter's (a member sees their own)


async def page(
    tx: TenantTx, filters: QuestFilter, *, cursor: str | None = None, limit: int = 50
) -> tuple[list[QuestSummary], str | None]:
    """Newest first (``quests_company_created`` serves it). Returns the rows and the cursor
    of the next page (None at the end)."""
    return await cursors.newest_first(
        tx,
        QuestSummary,
        "SELECT id, status, goal, model, created_by, steps_done, cost_usd_micros, "
        "max_usd_micros, created_at, finished_at FROM quests",
        [
            ("status = ANY(%s)", list(filters.statuses) or None),
            ("created_at >= %s", filters.since),
            ("created_at < %s", filters.until),
            ("created_by = %s", filters.created_by),
        ],
        at="created_at",
        parse_id=UUID,
        cursor=cursor,
        limit=limit,
    )
