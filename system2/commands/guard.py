"""The guard: spend, caps, budgets and limits, and a company's weight in fair dispatch."""

from __future__ import annotations

import asyncio
from typing import Annotated
from uuid import UUID

import typer
from redis.asyncio import Redis as AsyncRedis

from system2.cli_support import app_db, company_tx, emit, settings
from system2.errors import System2Error

app = typer.Typer(help="The guard: spend, caps, budgets and limits.", no_args_is_help=True)


@app.command("status")
def guard_status(company: Annotated[UUID, typer.Option(help="company id")]) -> None:
    """Spend, caps and tier per running quest and per budget window; the company's weight in
    fair dispatch and its quest steps waiting their turn (JSON)."""
    from guard import Admissions, Guard
    from ingress.guard_view import GuardView, guard_view

    s = settings()

    async def read() -> GuardView:
        async with (
            AsyncRedis.from_url(s.redis_url) as client,
            app_db(s) as db,
            company_tx(db, company) as tx,
        ):
            return await guard_view(tx, s, Guard(client), Admissions(client))

    emit(asyncio.run(read()).model_dump(mode="json"))


@app.command("set")
def guard_set(
    company: Annotated[UUID, typer.Option(help="company id")],
    quest_cap_usd: Annotated[str | None, typer.Option(help="a quest's default cap")] = None,
    quest_ceiling_usd: Annotated[str | None, typer.Option(help="the most a quest may ask")] = None,
    daily_usd: Annotated[str | None, typer.Option(help="the daily budget")] = None,
    monthly_usd: Annotated[str | None, typer.Option(help="the monthly budget")] = None,
    warn_pct: Annotated[int | None, typer.Option(min=1, max=100)] = None,
    slow_pct: Annotated[int | None, typer.Option(min=1, max=100)] = None,
    halt_pct: Annotated[int | None, typer.Option(min=1, max=100)] = None,
    per_minute: Annotated[int | None, typer.Option(min=1, help="quest starts a minute")] = None,
    running: Annotated[int | None, typer.Option(min=1, help="quests running at once")] = None,
    weight: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1_000,
            help="share of the worker fleet relative to other companies with quest steps "
            "waiting (default S2_FAIR_DEFAULT_WEIGHT)",
        ),
    ] = None,
) -> None:
    """Set a company's own limits and weight (the others keep the defaults)."""
    from dataclasses import replace

    from ingress.guard_view import limits_of
    from ingress.schemas import usd_to_micros
    from messages.redis_keys import FAIR_WEIGHTS
    from store import limits as limits_store

    def money(flag: str, value: str | None) -> int | None:
        try:
            return usd_to_micros(value) if value is not None else None
        except ValueError as exc:
            raise System2Error(f"--{flag} {exc}") from None

    overrides = limits_store.LimitOverrides(
        quest_cap_micros=money("quest-cap-usd", quest_cap_usd),
        quest_ceiling_micros=money("quest-ceiling-usd", quest_ceiling_usd),
        daily_budget_micros=money("daily-usd", daily_usd),
        monthly_budget_micros=money("monthly-usd", monthly_usd),
        warn_pct=warn_pct,
        slow_pct=slow_pct,
        halt_pct=halt_pct,
        quests_per_minute=per_minute,
        max_running_quests=running,
        fair_weight=weight,
    )
    s = settings()

    async def put() -> limits_store.LimitOverrides:
        async with app_db(s) as db, company_tx(db, company) as tx:
            try:
                replace(limits_of(await limits_store.get(tx), s), **overrides.changes())
            except ValueError as exc:  # the limits together make no sense
                raise System2Error(str(exc)) from None
            await limits_store.put(tx, overrides)
            kept = await limits_store.get(tx)
        if weight is not None:
            # Postgres keeps it (committed above); the dispatch script reads it from Redis.
            # Redis unreachable: the command fails, and running it again puts it there.
            async with AsyncRedis.from_url(s.redis_url, socket_timeout=5) as client:
                await client.hset(FAIR_WEIGHTS, str(company), str(weight))
        return kept

    found = asyncio.run(put())
    emit({**limits_of(found, s).__dict__, "weight": found.weight(s.fair_default_weight)})
