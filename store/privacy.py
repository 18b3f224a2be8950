"""A company's or one of its users' data, for a data-rights request: gathered (GDPR access,
CCPA "right to know"), or erased (GDPR erasure, CCPA "right to delete"). Quests with their
transcripts and results, notes, audit rows, the user's memberships and the company's
integrations (names and dates, never tokens).

The export is one read transaction in the company's tenant, as the app role: row-level
security keeps it to that company. A user's data is what they submitted (quests
``created_by`` them, those quests' steps and notes) and what the audit trail says they did or
that concerns their quests. The erasure reaches the same rows (below).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from store.db import TenantTx

_QUESTS = (
    "SELECT id, goal, model, status, result, reason, cost_usd_micros, created_by, created_at, "
    "finished_at FROM quests WHERE (%(user)s::text IS NULL OR created_by = 'user:' || %(user)s) "
    "ORDER BY created_at, id"
)
_STEPS = (
    "SELECT quest_id, step, status, model, stop_reason, content, tool_results, usage, "
    "cost_usd_micros, started_at, finished_at, redacted_at FROM quest_steps "
    "WHERE quest_id = ANY(%(quests)s) ORDER BY quest_id, step"
)
_NOTES = (
    "SELECT id, quest_id, text, created_at FROM notes "
    "WHERE %(user)s::text IS NULL OR quest_id = ANY(%(quests)s) ORDER BY created_at, id"
)
_AUDIT = (
    "SELECT id, occurred_at, actor_type, actor_id, action, target, rationale, quest_id, payload "
    "FROM activity_log WHERE %(user)s::text IS NULL "
    "OR (actor_type = 'user' AND actor_id = %(user)s) OR quest_id = ANY(%(quests)s) "
    "ORDER BY occurred_at, id"
)
_MEMBERSHIPS = (
    "SELECT user_id, role, email, created_at FROM memberships "
    "WHERE %(user)s::text IS NULL OR user_id = %(user)s ORDER BY user_id"
)
_INTEGRATIONS = (
    "SELECT integration, account, scopes, connected_by, created_at, updated_at "
    "FROM integration_credentials ORDER BY integration"
)


async def export(tx: TenantTx, user_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The company's data (``user_id``: only that user's), as JSON-ready rows by kind."""
    quests = await _rows(tx, _QUESTS, {"user": user_id})
    found = {"user": user_id, "quests": [q["id"] for q in quests]}
    steps = await _rows(tx, _STEPS, found)
    for quest in quests:
        quest["steps"] = [s for s in steps if s["quest_id"] == quest["id"]]
    return {
        "quests": quests,
        "notes": await _rows(tx, _NOTES, found),
        "audit": await _rows(tx, _AUDIT, found),
        "memberships": await _rows(tx, _MEMBERSHIPS, found),
        "integrations": await _rows(tx, _INTEGRATIONS, found),
    }


async def _rows(tx: TenantTx, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cur = await tx.execute(sql, params)
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]


# -- erasure -------------------------------------------------------------------------------
#
# A data-rights erasure runs through erase_user() or erase_company() (migration 0015), which
# run as a role made for them: the app role may neither update nor delete audit rows, and the
# trigger admits only the erasure's exact redaction of one. Each counts what it changed (zero
# when run again) and writes the erasure's own audit row.

ERASED = "[erased]"


@dataclass(frozen=True)
class Erasure:
    counts: dict[str, int]  # rows changed, by kind
    quests: list[UUID]  # the quests erased (their live events are Redis's, not ours)
    cancelled: list[UUID]  # those that were still open, now cancelled


async def erase_user(tx: TenantTx, user_id: str, erased_by: str) -> Erasure:
    """Erase ``user_id``'s content in the transaction's company (see migration 0015)."""
    quests = await tx.all(
        "SELECT id, status IN ('queued', 'running') FROM quests "
        "WHERE company_id = %s AND created_by = 'user:' || %s ORDER BY id",
        (tx.company_id, user_id),
    )
    row = await tx.one("SELECT erase_user(%s, %s)", (user_id, erased_by))
    return _erasure(row, quests)


async def erase_company(tx: TenantTx, erased_by: str) -> Erasure:
    """Erase the transaction's company: every user's content, its credentials, webhooks and
    members; its name is replaced and ``deleted_at`` set (see migration 0015)."""
    quests = await tx.all(
        "SELECT id, status IN ('queued', 'running') FROM quests WHERE company_id = %s ORDER BY id",
        (tx.company_id,),
    )
    row = await tx.one("SELECT erase_company(%s)", (erased_by,))
    return _erasure(row, quests)


def _erasure(row: tuple[Any, ...] | None, quests: list[tuple[Any, ...]]) -> Erasure:
    assert row is not None
    counts = {str(k): int(v) for k, v in dict(row[0]).items()}
    return Erasure(counts, [q[0] for q in quests], [q[0] for q in quests if q[1]])
