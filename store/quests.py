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


@dataclass(frozen=True)
class NewCharge:
    """The ledger row a claimed step opens for its Claude call (see ``store.charges``)."""

    charge_key: str
    model: str
    reserved_micros: int
    created_at: datetime  # the time the guard used to pick the budget windows


# The quest as a step saw it (``seen``): the state its claim depends on. A cancel asked, a
# step ended or claimed elsewhere since, and the claim does not happen.
_AS_SEEN = (
    "company_id = %(company)s AND id = %(quest)s AND status = %(status)s"
    " AND steps_done = %(steps_done)s AND step_claimed = %(step_claimed)s"
    " AND step_holder IS NOT DISTINCT FROM %(step_holder)s"
    " AND step_claimed_at IS NOT DISTINCT FROM %(step_claimed_at)s"
    " AND cancel_requested_at IS NOT DISTINCT FROM %(cancel_requested_at)s"
)
_CLAIM = (
    "WITH claimed AS (UPDATE quests SET step_claimed = %(step)s, step_holder = %(holder)s,"
    " step_claimed_at = now(), status = 'running', started_at = coalesce(started_at, now()),"
    f" touched_at = now() WHERE {_AS_SEEN} RETURNING {_QUEST_COLUMNS}){{charge}}"
    f" SELECT {_QUEST_COLUMNS} FROM claimed"
)
_OPEN_CHARGE = (
    ", charge AS (INSERT INTO charges (company_id, quest_id, charge_key, step, model,"
    " reserved_micros, status, created_at) SELECT company_id, id, %(charge_key)s, %(step)s,"
    " %(model)s, %(reserved)s, 'open', %(charged_at)s FROM claimed"
    " ON CONFLICT (company_id, charge_key) DO NOTHING)"
)


def _seen(tx: TenantTx, seen: Quest) -> dict[str, Any]:
    return {
        "company": tx.company_id,
        "quest": seen.id,
        "status": seen.status,
        "steps_done": seen.steps_done,
        "step_claimed": seen.step_claimed,
        "step_holder": seen.step_holder,
        "step_claimed_at": seen.step_claimed_at,
        "cancel_requested_at": seen.cancel_requested_at,
    }


async def claim_step(
    tx: TenantTx, seen: Quest, step: int, holder: str, charge: NewCharge | None = None
) -> Quest | None:
    """Record that ``holder`` (a message id) runs ``step`` now, starting a queued quest, and
    open ``charge`` with it; only if the quest is still as ``seen`` (None if it moved). One
    statement, no lock held before it: the row's lock is taken by the update itself, which
    re-checks what it expects against the row as the last writer left it."""
    params = _seen(tx, seen) | {"step": step, "holder": holder}
    if charge is not None:
        params |= {
            "charge_key": charge.charge_key,
            "model": charge.model,
            "reserved": charge.reserved_micros,
            "charged_at": charge.created_at,
        }
    sql = _CLAIM.format(charge=_OPEN_CHARGE if charge is not None else "")
    return await tx.first(Quest, sql, params)


async def touch_as_seen(tx: TenantTx, seen: Quest) -> bool:
    """The quest is alive though idle (its step put back to wait), if it is still as
    ``seen``; False if it moved."""
    cur = await tx.execute(
        f"UPDATE quests SET touched_at = now() WHERE {_AS_SEEN}", _seen(tx, seen)
    )
    return cur.rowcount == 1


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


async def add_cost(tx: TenantTx, quest_id: UUID, micros: int) -> Quest | None:
    """Count spend that no stored reply accounts for (a kept reservation, a failed call's
    charge); the quest as it then stands, in the same round trip."""
    return await tx.first(
        Quest,
        "UPDATE quests SET cost_usd_micros = cost_usd_micros + %s "
        f"WHERE company_id = %s AND id = %s RETURNING {_QUEST_COLUMNS}",
        (micros, tx.company_id, quest_id),
    )


@dataclass(frozen=True)
class Reply:
    """Claude's reply to a step, not stored yet; ``charge_key``: its open ledger row, settled
    at ``cost_usd_micros`` with it."""

    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: dict[str, Any]
    cost_usd_micros: int
    charge_key: str | None = None


@dataclass(frozen=True)
class Final:
    """A quest's final state."""

    status: str
    result: str | None = None
    reason: str | None = None


_COMPLETE = (
    "WITH step AS ("
    " INSERT INTO quest_steps (company_id, quest_id, step, status, model, stop_reason, content,"
    "  usage, cost_usd_micros, tool_results, events, finished_at)"
    " VALUES (%(company)s, %(quest)s, %(step)s, 'done', %(model)s, %(stop_reason)s,"
    "  %(content)s, %(usage)s, %(cost)s, %(tool_results)s, %(events)s, now())"
    " ON CONFLICT (quest_id, step) DO UPDATE SET status = 'done',"
    "  tool_results = EXCLUDED.tool_results, events = EXCLUDED.events, finished_at = now(){reply})"
    "{charge}"
    " UPDATE quests SET cost_usd_micros = cost_usd_micros + %(cost)s, steps_done = %(step)s,"
    " touched_at = now(){final} WHERE company_id = %(company)s AND id = %(quest)s"
)
_REPLY_AGAIN = (
    ", model = EXCLUDED.model, stop_reason = EXCLUDED.stop_reason, content = EXCLUDED.content,"
    " usage = EXCLUDED.usage, cost_usd_micros = EXCLUDED.cost_usd_micros"
)
_SETTLE = (
    ", charge AS (UPDATE charges SET status = 'settled', cost_micros = %(cost)s,"
    " usage = %(usage)s, settled_at = now()"
    " WHERE company_id = %(company)s AND charge_key = %(charge_key)s AND status = 'open')"
)
_OPEN = "status IN ('queued', 'running')"
_FINAL = "".join(
    f", {col} = CASE WHEN {_OPEN} THEN {value} ELSE {col} END"
    for col, value in (
        ("status", "%(status)s"),
        ("result", "%(result)s"),
        ("reason", "%(reason)s"),
        ("finished_at", "now()"),
    )
)


async def complete_step(
    tx: TenantTx,
    quest_id: UUID,
    step: int,
    *,
    model: str,
    reply: Reply | None,
    tool_results: list[dict[str, Any]],
    events: list[dict[str, Any]],
    final: Final | None = None,
) -> None:
    """Mark the step done with what it sent, its ``reply`` if it was not saved before (its
    cost on the quest, its charge settled), and the quest's steps done; with ``final``, the
    quest's final state too (if it is still open). One statement, one round trip at the end
    of every step. A step that ended before any reply still gets a row, so its events can be
    re-sent on redelivery."""
    if final is not None and final.status not in TERMINAL:
        raise ValueError(f"{final.status} is not a final state")
    sql = _COMPLETE.format(
        reply=_REPLY_AGAIN if reply else "",
        charge=_SETTLE if reply and reply.charge_key else "",
        final=_FINAL if final else "",
    )
    await tx.execute(
        sql,
        {
            "company": tx.company_id,
            "quest": quest_id,
            "step": step,
            "model": model,
            "stop_reason": reply.stop_reason if reply else None,
            "content": Jsonb(reply.content) if reply else None,
            "usage": Jsonb(reply.usage) if reply else None,
            "cost": reply.cost_usd_micros if reply else 0,
            "tool_results": Jsonb(tool_results),
            "events": Jsonb(events),
            "charge_key": reply.charge_key if reply else None,
            "status": final.status if final else None,
            "result": final.result if final else None,
            "reason": final.reason if final else None,
        },
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
