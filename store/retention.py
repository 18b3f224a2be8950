"""Transcript retention: a finished quest's steps keep their content and tool results for
the retention period, then both are redacted in place.

What is redacted is the conversation: Claude's text and the tools' inputs and answers. Which
tools a step called (their names and ids), the quest's goal and result, each step's usage,
cost and audit events, and the audit trail stay: they are the record of what was done and
what it cost. A batch is one short transaction over at
most ``limit`` steps, taken oldest first with ``SKIP LOCKED``, so it never waits on a step a
worker holds and never holds many rows for long.
"""

from __future__ import annotations

from datetime import datetime

from psycopg.types.json import Jsonb

from store.db import TenantTx

REDACTED = [{"type": "text", "text": "[removed: older than the transcript retention period]"}]


async def redact_before(tx: TenantTx, cutoff: datetime, limit: int) -> int:
    """Redact up to ``limit`` of the company's steps that finished before ``cutoff`` (of
    quests that have ended); returns how many."""
    cur = await tx.execute(
        "UPDATE quest_steps s SET content = %s::jsonb || COALESCE(("
        "  SELECT jsonb_agg(jsonb_build_object('type', 'tool_use', 'id', b->'id', "
        "  'name', b->'name', 'input', '{}'::jsonb)) "
        "  FROM jsonb_array_elements(CASE jsonb_typeof(s.content) WHEN 'array' THEN s.content "
        "  ELSE '[]' END) b WHERE b->>'type' = 'tool_use'), '[]'), "
        "tool_results = '[]', redacted_at = now() "
        "FROM (SELECT st.quest_id, st.step FROM quest_steps st "
        "      JOIN quests q ON q.company_id = st.company_id AND q.id = st.quest_id "
        "      WHERE st.company_id = %s AND st.redacted_at IS NULL "
        "        AND st.finished_at IS NOT NULL AND st.finished_at < %s "
        "        AND q.finished_at IS NOT NULL AND q.finished_at < %s "
        "      ORDER BY st.finished_at LIMIT %s FOR UPDATE OF st SKIP LOCKED) old "
        "WHERE s.quest_id = old.quest_id AND s.step = old.step",
        (Jsonb(REDACTED), tx.company_id, cutoff, cutoff, limit),
    )
    return cur.rowcount
