"""Data rights: a company's or a user's data, exported for an access request or erased for a
deletion request."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID, uuid4

import typer

from runtime.settings import Settings
from system2.cli_support import actor, app_db, company_tx, emit, say, settings
from system2.errors import System2Error

if TYPE_CHECKING:
    from store.privacy import Erasure

app = typer.Typer(
    help="Data rights (GDPR, CCPA): export a company's or a user's data, or erase a user's."
)
FORMAT = "system2-export/1"


@app.command("export")
def privacy_export(
    company: Annotated[UUID, typer.Option(help="company id")],
    user: Annotated[str | None, typer.Option(help="only this user's data (their user id)")] = None,
    out: Annotated[
        Path | None, typer.Option(help="write the archive to this new file (default: stdout)")
    ] = None,
    operator: Annotated[
        str | None, typer.Option(help="who exports, for the audit trail (default: S2_OPERATOR)")
    ] = None,
) -> None:
    """Write a JSON archive of the company's data (or one user's): quests with transcripts
    and results, notes, audit rows, memberships, integrations (names and dates, never
    tokens). The export is itself an audit row of the company's."""
    from store import activity as activity_store
    from store import privacy as privacy_store
    from store.activity import NewActivity

    s = settings()
    operator = actor(s, operator)
    if out is not None and out.exists():
        raise System2Error(f"{out} already exists: name a new file")
    now = datetime.now(UTC)

    async def gather() -> dict[str, Any]:
        async with app_db(s) as db, company_tx(db, company) as tx:
            data = await privacy_store.export(tx, user)
            counts = {kind: len(rows) for kind, rows in data.items()}
            row = NewActivity(
                idempotency_key=f"privacy.exported:{uuid4()}",
                occurred_at=now,
                actor_type="operator",
                actor_id=operator,
                action="privacy.exported",
                target=f"user:{user}" if user else f"company:{company}",
                rationale=None,
                originating_message_id=None,
                quest_id=None,
                payload={"counts": counts},
            )
            await activity_store.append(tx, [row])
        return {
            "format": FORMAT,
            "exported_at": now,
            "company_id": company,
            "user_id": user,
            **data,
        }

    archive = json.dumps(asyncio.run(gather()), indent=2, default=str, ensure_ascii=False)
    if out is None:
        typer.echo(archive)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # content: owner only
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(archive + "\n")
    say(f"wrote {out}")


@app.command("erase")
def privacy_erase(
    company: Annotated[UUID, typer.Option(help="company id")],
    user: Annotated[str, typer.Option(help="the user whose content to erase (their user id)")],
    operator: Annotated[
        str | None, typer.Option(help="who erases, for the audit trail (default: S2_OPERATOR)")
    ] = None,
) -> None:
    """Erase a user's content in a company, irreversibly: their quests' goals, results and
    transcripts, those quests' notes and tool results, the free text of the audit rows by them
    or about their quests, and their membership. The audit skeleton (who, what, when, ids)
    stays; the erasure is itself an audit row. Their open quests are cancelled. Prints the
    rows changed, by kind (all zero when run again)."""
    from store import privacy as privacy_store

    s = settings()
    operator = actor(s, operator)

    async def erase() -> privacy_store.Erasure:
        async with app_db(s) as db, company_tx(db, company) as tx:
            return await privacy_store.erase_user(tx, user, operator)

    emit(erased_everywhere(s, company, asyncio.run(erase())))


def erased_everywhere(
    s: Settings, company: UUID, erasure: Erasure, *, whole_company: bool = False
) -> dict[str, int]:
    """After the erasure committed: its quests' live events too; the counts to print."""
    import redis

    from system2.live_erasure import forget_live_events

    client = redis.Redis.from_url(s.redis_url)
    try:
        live = forget_live_events(
            client, company, erasure.quests, erasure.cancelled, whole_company=whole_company
        )
    except redis.RedisError as exc:
        raise System2Error(
            f"erased in Postgres, but the live events in Redis were not: {type(exc).__name__}; "
            "run it again"
        ) from None
    finally:
        client.close()
    return {**erasure.counts, "live_events": live}
