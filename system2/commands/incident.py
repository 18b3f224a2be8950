"""Incident response: record an incident, see whom it touched, email their admins within 72
hours of confirmation (security page), and watch the clock."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID, uuid4

import typer

from system2.cli_support import actor, app_db, company_tx, emit, say, settings
from system2.errors import System2Error

app = typer.Typer(
    help="Incident response: who was affected, their admins emailed within 72 hours.",
    no_args_is_help=True,
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # all but tab and newline


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 time; a naive one is UTC."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise System2Error(
            f"{option}: {text[:60]!r} is not an ISO 8601 time (e.g. 2026-11-28T14:00:00Z)"
        ) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


@app.command("open")
def incident_open(
    summary: Annotated[str, typer.Option(help="what happened, as the admins will read it")],
    since: Annotated[
        str, typer.Option(help="start of the affected window (ISO 8601; UTC if naive)")
    ],
    until: Annotated[str, typer.Option(help="end of the affected window (ISO 8601; UTC if naive)")],
    company: Annotated[
        list[UUID] | None,
        typer.Option(help="an affected company (repeat); default: every company active then"),
    ] = None,
    integration: Annotated[
        str | None,
        typer.Option(help="only companies whose credentials for it were decrypted in the window"),
    ] = None,
    confirmed_at: Annotated[
        str | None, typer.Option(help="when the incident was confirmed (default: now)")
    ] = None,
    operator: Annotated[
        str | None, typer.Option(help="who opens it (default: S2_OPERATOR)")
    ] = None,
) -> None:
    """Record an incident; its 72-hour clock runs from confirmation. Prints its id."""
    from integrations import provider
    from store import incidents as incidents_store

    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    if start >= end:
        raise System2Error("--since must be before --until")
    now = datetime.now(UTC)
    confirmed = parse_time(confirmed_at, "--confirmed-at") if confirmed_at else now
    if confirmed > now + timedelta(minutes=5):
        raise System2Error("--confirmed-at is in the future")
    summary = summary.strip()
    if not 1 <= len(summary) <= 4000 or _CONTROL.search(summary):
        raise System2Error("--summary: 1 to 4000 characters, no control characters but newlines")
    if integration is not None:
        provider(integration)  # UnknownIntegration names the ones there are
    s = settings()
    incident = incidents_store.Incident(
        id=uuid4(),
        summary=summary,
        since=start,
        until=end,
        confirmed_at=confirmed,
        company_ids=list(dict.fromkeys(company)) if company else None,
        integration=integration,
        opened_by=actor(s, operator),
    )

    async def record() -> None:
        async with app_db(s) as db:
            for cid in incident.company_ids or []:
                async with company_tx(db, cid):
                    pass  # System2Error if there is no such company
            async with db.connection() as conn:
                await incidents_store.add(conn, incident)

    asyncio.run(record())
    emit(incident.id)


@app.command("affected")
def incident_affected(
    incident_id: UUID,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV, one row per admin")] = False,
) -> None:
    """Each affected company with its admins (and their email, or "no email on file") and
    what of theirs the window touched: quests run, credentials decrypted (per integration),
    audit rows. Counts and ids only, never content."""
    from system2 import incident_notices as notices

    s = settings()

    async def gather() -> tuple[Any, list[notices.Affected]]:
        async with app_db(s) as db:
            incident = await notices.find(db, incident_id)
            return incident, await notices.affected(db, incident)

    incident, found = asyncio.run(gather())
    if as_csv:
        typer.echo(affected_csv(found), nl=False)
        return
    emit(
        {
            "incident_id": incident.id,
            "since": incident.since.isoformat(),
            "until": incident.until.isoformat(),
            "companies": [
                {
                    "company_id": a.touched.company_id,
                    "name": a.touched.company_name,
                    "quests": a.touched.quests,
                    "credentials_decrypted": {
                        "total": sum(a.touched.credentials_decrypted.values()),
                        "by_integration": a.touched.credentials_decrypted,
                    },
                    "audit_rows": a.touched.audit_rows,
                    "admins": [
                        {"user_id": m.user_id, "email": m.email or notices.NO_EMAIL}
                        for m in a.admins
                    ],
                }
                for a in found
            ],
        }
    )


def affected_csv(found: list[Any]) -> str:
    from system2.incident_notices import NO_EMAIL

    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        ["company_id", "company_name", "quests", "credentials_decrypted",
         "credentials_by_integration", "audit_rows", "admin_user_id", "admin_email"]
    )  # fmt: skip
    for a in found:
        t = a.touched
        by = ";".join(f"{k}={v}" for k, v in t.credentials_decrypted.items())
        head = [t.company_id, t.company_name, t.quests, sum(t.credentials_decrypted.values()), by,
                t.audit_rows]  # fmt: skip
        for m in a.admins or [None]:
            w.writerow([*head, m.user_id if m else "", (m.email or NO_EMAIL) if m else "no admin"])
    return out.getvalue()


@app.command("notify")
def incident_notify(
    incident_id: UUID,
    template: Annotated[
        Path, typer.Option(help="the email: 'Subject: …', a blank line, the body; $placeholders")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="build every email and show whom, send none")
    ] = False,
    operator: Annotated[
        str | None, typer.Option(help="who notifies, for the audit trail (default: S2_OPERATOR)")
    ] = None,
) -> None:
    """Email each affected admin once (a re-run emails nobody twice), recording every send;
    prints a report and exits 1 if any notice failed or is uncertain."""
    from system2 import incident_notices as notices

    s = settings()
    operator = actor(s, operator)
    notice = notices.load_template(template)
    server = s.mail_server()
    if not s.mail_from:
        raise System2Error("set S2_MAIL_FROM: the address incident notices come from")
    if server is None and not dry_run:
        raise System2Error("set S2_SMTP_URL: the mail server incident notices go out through")
    sender = s.mail_from

    async def run() -> notices.Report:
        async with app_db(s) as db:
            incident = await notices.find(db, incident_id)
            planned = await notices.plan(db, incident, notice, sender)
            if dry_run or server is None:
                report = notices.Report(incident.id, dry_run=True)
                report.outcomes = [p.outcome for p in planned]
                for p in planned:
                    if p.message is not None:
                        p.outcome.detail = f"Subject: {p.message['Subject']}"
                return report
            return await notices.notify(db, incident, planned, server, operator)

    report = asyncio.run(run())
    typer.echo(json.dumps(report.as_json(), indent=2, default=str))
    say(report.line())
    if not report.ok():
        raise typer.Exit(1)


@app.command("status")
def incident_status(incident_id: UUID) -> None:
    """The 72-hour clock from confirmation (deadline, time left or overdue) and each admin
    not notified yet, with why."""
    from system2 import incident_notices as notices

    s = settings()

    async def gather() -> dict[str, Any]:
        async with app_db(s) as db:
            incident = await notices.find(db, incident_id)
            return await notices.status(db, incident, datetime.now(UTC))

    found = asyncio.run(gather())
    emit(found)
    clock = (
        f"{found['time_left']} left" if found["time_left"] else f"OVERDUE by {found['overdue_by']}"
    )
    say(
        f"{found['notified']} of {found['admins']} admins notified; deadline {found['deadline']}: {clock}"
    )
