"""A company's or one of its users' data, gathered for a data-rights request (GDPR access,
CCPA "right to know"): quests with their transcripts and results, notes, audit rows, the
user's memberships and the company's integrations (names and dates, never tokens).

One read transaction in the company's tenant, as the app role: row-level security keeps it to
that company. A user's data is what they submitted (quests ``created_by`` them, those quests'
steps and notes) and what the audit trail says they did or that concerns their quests.
"""

from __future__ import annotations

from typing import Any

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
    "SELECT user_id, role, created_at FROM memberships "
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
