"""The ledger of Claude charges: one row per call attempt, the durable side of the guard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from store.db import TenantTx

_COLUMNS = "charge_key, step, model, reserved_micros, cost_micros, status, created_at"


@dataclass(frozen=True)
class Charge:
    charge_key: str
    step: int
    model: str
    reserved_micros: int
    cost_micros: int | None
    status: str  # open | settled | kept
    created_at: datetime

    @property
    def spent(self) -> int:
        """What this charge counts as spent: the settled cost, or the kept reservation."""
        if self.status == "open":
            return 0
        return self.cost_micros if self.cost_micros is not None else self.reserved_micros


async def for_quest(tx: TenantTx, quest_id: UUID) -> list[Charge]:
    return await tx.rows(
        Charge,
        f"SELECT {_COLUMNS} FROM charges WHERE company_id = %s AND quest_id = %s ORDER BY created_at",
        (tx.company_id, quest_id),
    )


def totals(charges: list[Charge]) -> tuple[int, int]:
    """(spent, reserved) of a set of charges."""
    spent = sum(c.spent for c in charges)
    reserved = sum(c.reserved_micros for c in charges if c.status == "open")
    return spent, reserved


async def window_totals(tx: TenantTx, start: datetime, end: datetime) -> tuple[int, int]:
    """(spent, reserved) of the company's charges made in [start, end)."""
    row = await tx.one(
        "SELECT coalesce(sum(CASE WHEN status = 'open' THEN 0 ELSE coalesce(cost_micros, reserved_micros) END), 0), "
        "coalesce(sum(CASE WHEN status = 'open' THEN reserved_micros ELSE 0 END), 0) "
        "FROM charges WHERE company_id = %s AND created_at >= %s AND created_at < %s",
        (tx.company_id, start, end),
    )
    assert row is not None
    return int(row[0]), int(row[1])


async def open_charge(
    tx: TenantTx,
    quest_id: UUID,
    step: int,
    charge_key: str,
    model: str,
    reserved: int,
    *,
    created_at: datetime,
) -> None:
    """``created_at`` is the time the guard used to pick the budget windows."""
    await tx.execute(
        "INSERT INTO charges (company_id, quest_id, charge_key, step, model, reserved_micros, "
        "status, created_at) VALUES (%s, %s, %s, %s, %s, %s, 'open', %s) "
        "ON CONFLICT (company_id, charge_key) DO NOTHING",
        (tx.company_id, quest_id, charge_key, step, model, reserved, created_at),
    )


async def settle(tx: TenantTx, charge_key: str, cost: int, usage: dict[str, Any] | None) -> bool:
    """Record the call's real cost; False if it was already settled or kept."""
    cur = await tx.execute(
        "UPDATE charges SET status = 'settled', cost_micros = %s, usage = %s, settled_at = now() "
        "WHERE company_id = %s AND charge_key = %s AND status = 'open'",
        (cost, Jsonb(usage) if usage is not None else None, tx.company_id, charge_key),
    )
    return cur.rowcount == 1


async def keep(tx: TenantTx, charge_key: str) -> bool:
    """The call's outcome is unknown: count its whole reservation as spent."""
    cur = await tx.execute(
        "UPDATE charges SET status = 'kept', cost_micros = reserved_micros, settled_at = now() "
        "WHERE company_id = %s AND charge_key = %s AND status = 'open'",
        (tx.company_id, charge_key),
    )
    return cur.rowcount == 1
