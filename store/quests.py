"""Quests and their steps: the state a worker loads, claims and advances one step at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from store.db import TenantTx

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "halted"})

_QUEST_COLUMNS = (
    "id, company_id, status, goal, model, max_usd_micros, created_by, correlation_id, "
    "origin_message_id, first_step_enqueued_at, "
    "steps_done, step_claimed, step_holder, step_claimed_at, cost_usd_micros, result, reason, "
    "created_at, started_at, finished_at, cancel_requested_at, cancel_reason, cancelled_by"
)
_STEP_COLUMNS = (
    "step, status, model, stop_reason, content, tool_results, usage, cost_usd_micros, events, "
    "started_at, finished_at"
)


@dataclass(frozen=True)
class Quest:
    id: UUID
    company_id: UUID
    status: str
    goal: str
    model: str
    max_usd_micros: int | None
    created_by: str
    correlation_id: UUID
    origin_message_id: UUID
    first_step_enqueued_at: datetime | None
    steps_done: int
    step_claimed: int
    step_holder: str | None
    step_claimed_at: datetime | None
    cost_usd_micros: int
    result: str | None
    reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None = None
    cancel_reason: str | None = None
    cancelled_by: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def needs_first_step(self) -> bool:
        """Queued, and its first step never confirmed on the queue (the submitter died
        between the commit and the publish, or the publish failed)."""
        return (
            self.status == "queued"
            and self.step_claimed == 0
            and self.first_step_enqueued_at is None
        )


@dataclass(frozen=True)
class Step:
    step: int
    status: str
    model: str
    stop_reason: str | None
    content: list[dict[str, Any]] | None
    tool_results: list[dict[str, Any]]
    usage: dict[str, Any] | None
    cost_usd_micros: int
    events: list[dict[str, Any]]
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class NewQuest:
    id: UUID
    goal: str
    model: str
    max_usd_micros: int | None
    created_by: str
    correlation_id: UUID
    origin_message_id: UUID
    idempotency_key: str | None = None
    request_hash: str | None = None


async def create(tx: TenantTx, new: NewQuest) -> tuple[Quest, str | None, bool]:
    """Insert a queued quest. With an idempotency key already used, return that quest.

    Returns the quest, the stored request hash, and whether this call created it.
    """
    row = await tx.one(
        "INSERT INTO quests (id, company_id, goal, model, max_usd_micros, created_by, "
        "correlation_id, origin_message_id, idempotency_key, request_hash) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (company_id, idempotency_key) DO NOTHING RETURNING id",
        (
            new.id,
            tx.company_id,
            new.goal,
            new.model,
            new.max_usd_micros,
            new.created_by,
            new.correlation_id,
            new.origin_message_id,
            new.idempotency_key,
            new.request_hash,
        ),
    )
    if row is not None:
        quest = await get(tx, new.id)
        assert quest is not None
        return quest, new.request_hash, True
    existing = await tx.one(
        "SELECT id, request_hash FROM quests WHERE company_id = %s AND idempotency_key = %s",
        (tx.company_id, new.idempotency_key),
    )
    assert existing is not None
    quest = await get(tx, existing[0])
    assert quest is not None
    return quest, existing[1], False


async def delete_unstarted(tx: TenantTx, quest_id: UUID) -> None:
    """Forget a quest whose first step could not be enqueued (the caller was told so)."""
    await tx.execute(
        "DELETE FROM quests WHERE company_id = %s AND id = %s AND status = 'queued' "
        "AND step_claimed = 0 AND first_step_enqueued_at IS NULL",
        (tx.company_id, quest_id),
    )


async def mark_first_step_enqueued(tx: TenantTx, quest_id: UUID) -> None:
    await tx.execute(
        "UPDATE quests SET first_step_enqueued_at = now() "
        "WHERE company_id = %s AND id = %s AND first_step_enqueued_at IS NULL",
        (tx.company_id, quest_id),
    )


async def get(tx: TenantTx, quest_id: UUID, *, for_update: bool = False) -> Quest | None:
    lock = " FOR UPDATE" if for_update else ""
    return await tx.first(
        Quest,
        f"SELECT {_QUEST_COLUMNS} FROM quests WHERE company_id = %s AND id = %s{lock}",
        (tx.company_id, quest_id),
    )


async def request_cancel(tx: TenantTx, quest_id: UUID, *, by: str, reason: str) -> Quest | None:
    """Record a cancel request (the first one wins). Returns the quest as it now stands."""
    await tx.execute(
        "UPDATE quests SET cancel_requested_at = now(), cancel_reason = %s, cancelled_by = %s "
        "WHERE company_id = %s AND id = %s AND cancel_requested_at IS NULL "
        "AND status IN ('queued', 'running')",
        (reason, by, tx.company_id, quest_id),
    )
    return await get(tx, quest_id)


async def touch(tx: TenantTx, quest_id: UUID) -> None:
    """The quest is alive though idle (e.g. put back to wait for a slot)."""
    await tx.execute(
        "UPDATE quests SET touched_at = now() WHERE company_id = %s AND id = %s",
        (tx.company_id, quest_id),
    )


@dataclass(frozen=True)
class Stuck:
    id: UUID
    steps_done: int
    correlation_id: UUID
    created_by: str


async def stuck(tx: TenantTx, idle_s: int, limit: int = 100) -> list[Stuck]:
    """Open quests that made no progress for ``idle_s`` (their next message may be lost)."""
    return await tx.rows(
        Stuck,
        "SELECT id, steps_done, correlation_id, created_by FROM quests WHERE company_id = %s "
        "AND status IN ('queued', 'running') AND first_step_enqueued_at IS NOT NULL "
        "AND touched_at < now() - make_interval(secs => %s) ORDER BY touched_at LIMIT %s",
        (tx.company_id, idle_s, limit),
    )


async def company_of(conn: psycopg.AsyncConnection[Any], quest_id: UUID) -> UUID | None:
    """The company a quest belongs to (for operators' commands given only a quest id)."""
    row = await (await conn.execute("SELECT quest_company(%s)", (quest_id,))).fetchone()
    return row[0] if row and row[0] else None


async def claim_step(tx: TenantTx, quest_id: UUID, step: int, holder: str) -> None:
    """Record that ``holder`` (a message id) runs ``step`` now; starts a queued quest."""
    await tx.execute(
        "UPDATE quests SET step_claimed = %s, step_holder = %s, step_claimed_at = now(), "
        "status = 'running', started_at = coalesce(started_at, now()), touched_at = now() "
        "WHERE company_id = %s AND id = %s",
        (step, holder, tx.company_id, quest_id),
    )


async def steps(tx: TenantTx, quest_id: UUID) -> list[Step]:
    return await tx.rows(
        Step,
        f"SELECT {_STEP_COLUMNS} FROM quest_steps WHERE company_id = %s AND quest_id = %s "
        "ORDER BY step",
        (tx.company_id, quest_id),
    )


async def save_reply(
    tx: TenantTx,
    quest_id: UUID,
    step: int,
    *,
    model: str,
    content: list[dict[str, Any]],
    stop_reason: str | None,
    usage: dict[str, Any],
    cost_usd_micros: int,
) -> None:
    """Persist Claude's reply before any tool runs, so a redelivered step resumes from it."""
    await tx.execute(
        "INSERT INTO quest_steps (company_id, quest_id, step, status, model, stop_reason, content, "
        "usage, cost_usd_micros) VALUES (%s, %s, %s, 'replied', %s, %s, %s, %s, %s) "
        "ON CONFLICT (quest_id, step) DO UPDATE SET status = 'replied', model = EXCLUDED.model, "
        "stop_reason = EXCLUDED.stop_reason, content = EXCLUDED.content, usage = EXCLUDED.usage, "
        "cost_usd_micros = EXCLUDED.cost_usd_micros",
        (
            tx.company_id,
            quest_id,
            step,
            model,
            stop_reason,
            Jsonb(content),
            Jsonb(usage),
            cost_usd_micros,
        ),
    )
    await tx.execute(
        "UPDATE quests SET cost_usd_micros = cost_usd_micros + %s, touched_at = now() "
        "WHERE company_id = %s AND id = %s",
        (cost_usd_micros, tx.company_id, quest_id),
    )


async def add_cost(tx: TenantTx, quest_id: UUID, micros: int) -> None:
    """Count spend that no stored reply accounts for (a kept reservation)."""
    await tx.execute(
        "UPDATE quests SET cost_usd_micros = cost_usd_micros + %s WHERE company_id = %s AND id = %s",
        (micros, tx.company_id, quest_id),
    )


async def finish_step(
    tx: TenantTx,
    quest_id: UUID,
    step: int,
    *,
    model: str,
    tool_results: list[dict[str, Any]],
    events: list[dict[str, Any]],
) -> None:
    """Mark the step done with what it sent. A step that ended before any reply still gets
    a row, so its events can be re-sent on redelivery."""
    await tx.execute(
        "INSERT INTO quest_steps (company_id, quest_id, step, status, model, tool_results, events, "
        "finished_at) VALUES (%s, %s, %s, 'done', %s, %s, %s, now()) "
        "ON CONFLICT (quest_id, step) DO UPDATE SET status = 'done', "
        "tool_results = EXCLUDED.tool_results, events = EXCLUDED.events, finished_at = now()",
        (tx.company_id, quest_id, step, model, Jsonb(tool_results), Jsonb(events)),
    )
    await tx.execute(
        "UPDATE quests SET steps_done = %s, touched_at = now() WHERE company_id = %s AND id = %s",
        (step, tx.company_id, quest_id),
    )


async def finish(
    tx: TenantTx,
    quest_id: UUID,
    status: str,
    *,
    result: str | None = None,
    reason: str | None = None,
) -> None:
    if status not in TERMINAL:
        raise ValueError(f"{status} is not a final state")
    await tx.execute(
        "UPDATE quests SET status = %s, result = %s, reason = %s, finished_at = now() "
        "WHERE company_id = %s AND id = %s AND status IN ('queued', 'running')",
        (status, result, reason, tx.company_id, quest_id),
    )
