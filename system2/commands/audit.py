"""The audit trail."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated
from uuid import UUID

import typer

from system2.cli_support import emit, operator_db, settings, support_read

app = typer.Typer(help="The audit trail (activity_log).", no_args_is_help=True)


@app.command("list")
def audit_list(
    company: Annotated[UUID, typer.Option(help="company id")],
    quest: Annotated[UUID | None, typer.Option(help="only this quest")] = None,
    actor: Annotated[str | None, typer.Option(help="only this actor id (e.g. ted, alice)")] = None,
    action: Annotated[str | None, typer.Option(help="only this action (e.g. task.created)")] = None,
    since: Annotated[datetime | None, typer.Option(help="from this time (ISO 8601)")] = None,
    until: Annotated[datetime | None, typer.Option(help="before this time (ISO 8601)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="the next_cursor of the previous page")] = None,
) -> None:
    """The company's audit trail, newest first, as JSON (filter, then page with --cursor);
    needs a support grant."""
    from store import activity as activity_store
    from store.activity import Activity, ActivityFilter

    filters = ActivityFilter(
        quest_id=quest, actor_id=actor, action=action, since=since, until=until
    )
    s = settings()

    async def page() -> tuple[list[Activity], str | None]:
        async with (
            operator_db(s) as db,
            support_read(db, company, "audit list") as tx,
        ):
            return await activity_store.page(tx, filters, cursor=cursor, limit=limit)

    rows, next_cursor = asyncio.run(page())
    emit({"items": [r.__dict__ for r in rows], "next_cursor": next_cursor})
