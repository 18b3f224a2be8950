"""What the guard shows a company's admins and operators: spend, caps and tier, per running
quest and per budget window; and the company's place in fair dispatch of quest steps (its
weight, and how many of its steps wait in its lanes)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel

from guard import Admissions, Guard, Limits
from guard.spend import window_bounds
from ingress.schemas import TierName
from messages import QUESTS
from messages.redis_keys import fair_waiting_key
from runtime.settings import Settings
from store import TenantTx
from store import charges as charges_store
from store import limits as limits_store
from store import quests as quests_store


class SpendView(BaseModel):
    scope: Literal["quest", "day", "month"]
    window: str | None = None
    quest_id: UUID | None = None
    spent_usd_micros: int
    reserved_usd_micros: int
    cap_usd_micros: int
    tier: TierName


class GuardView(BaseModel):
    company_id: UUID
    limits: dict[str, int]
    windows: list[SpendView]
    running_quests: list[SpendView]
    # Fair dispatch (README, "Fair share"): the company's share of the worker fleet relative
    # to others with steps waiting, and its quest steps sorted into its lanes, waiting for
    # their turn (a step just sent, not sorted yet, is not counted).
    weight: int
    queued_steps: int


async def company_limits(tx: TenantTx, settings: Settings) -> Limits:
    return limits_of(await limits_store.get(tx), settings)


def limits_of(overrides: limits_store.LimitOverrides, settings: Settings) -> Limits:
    return replace(settings.default_limits(), **overrides.changes())


async def queued_steps(guard: Guard, company_id: UUID) -> int:
    """The company's quest steps waiting in its fair-dispatch lanes. Read on the guard's
    client: the guard's Redis is the queues' (``S2_REDIS_URL``)."""
    found = await guard.redis.hget(fair_waiting_key(QUESTS), str(company_id))
    return int(found or 0)


async def guard_view(
    tx: TenantTx, settings: Settings, guard: Guard, admissions: Admissions
) -> GuardView:
    """Read within ``tx``."""
    overrides = await limits_store.get(tx)
    limits = limits_of(overrides, settings)
    now = datetime.now(UTC)
    windows = []
    for scope in guard.scopes(tx.company_id, tx.company_id, limits.quest_cap, limits, now)[1:]:
        found = await guard.levels([scope])
        if found:
            _, spent, reserved = found[0]
        else:  # Redis has nothing (yet): read the ledger
            spent, reserved = await charges_store.window_totals(tx, *window_bounds(scope.name, now))
        windows.append(
            SpendView(
                scope=scope.name,
                window=scope.window,
                spent_usd_micros=spent,
                reserved_usd_micros=reserved,
                cap_usd_micros=scope.cap,
                tier=limits.tier_of(spent, scope.cap).name,
            )
        )
    running = []
    now_ms = int(time.time() * 1000)
    for quest_id in await admissions.running(tx.company_id, now_ms):
        quest = await quests_store.get(tx, UUID(quest_id))
        if quest is None:
            continue
        cap = limits.quest_cap_for(quest.max_usd_micros)
        scope = guard.scopes(tx.company_id, quest.id, cap, limits, now)[0]
        found = await guard.levels([scope])
        spent, reserved = (
            (found[0][1], found[0][2])
            if found
            else charges_store.totals(await charges_store.for_quest(tx, quest.id))
        )
        running.append(
            SpendView(
                scope="quest",
                quest_id=quest.id,
                spent_usd_micros=spent,
                reserved_usd_micros=reserved,
                cap_usd_micros=cap,
                tier=limits.tier_of(spent, cap).name,
            )
        )
    return GuardView(
        company_id=tx.company_id,
        limits=limits.__dict__,
        windows=windows,
        running_quests=running,
        weight=overrides.weight(settings.fair_default_weight),
        queued_steps=await queued_steps(guard, tx.company_id),
    )
