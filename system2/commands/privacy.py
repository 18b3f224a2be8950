"""Data rights: a company's or a user's data, exported for an access request."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID, uuid4

import typer

from system2.cli_support import app_db, company_tx, say, settings
from system2.errors import System2Error

app = typer.Typer(help="Data rights (GDPR, CCPA): export a company's or a user's data.")
FORMAT = "system2-export/1"


@app.command("export")
def privacy_export(
    company: Annotated[UUID, typer.Option(help="company id")],
    user: Annotated[str | None, typer.Option(help="only this user's data (their user id)")] = None,
    out: Annotated[
        Path | None, typer.Option(help="write the archive to this new file (default: stdout)")
    ] = None,
    operator: Annotated[str, typer.Option(help="who exports, for the audit trail")] = "cli",
) -> None:
    """Write a JSON archive of the company's data (or one user's): quests with transcripts
    and results, notes, audit rows, memberships, integrations (names and dates, never
    tokens). The export is itself an audit row of the company's."""
    from store import activity as activity_store
    from store import privacy as privacy_store
    from store.activity import NewActivity

    s = settings()
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
