"""Support access: an engineer's logged, time-limited access to one company's content.

Engineers have no standing read access to Customer Content (security page). Each signs in to
Postgres as a login of their own (``support enroll``); ``support grant`` admits one engineer
to one company for a while; the commands that read content (``quest show``, ``quest list``,
``quest watch``, ``audit list``) then work for them, on the operator role, and each read is an
audit row. Grants, revocations and expiries are audit rows too,
which the company's admins read in the product.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

import typer

from runtime.durations import duration_s, spoken
from system2.cli_support import AsOption, app_db, company_tx, emit, engineer, say, settings
from system2.errors import System2Error

app = typer.Typer(
    help="Support access: time-limited, logged grants to read one company's content.",
    no_args_is_help=True,
)


@app.command("grant")
def support_grant(
    company: Annotated[UUID, typer.Option(help="company id")],
    engineer_: Annotated[str, typer.Option("--engineer", help="who may read (their email)")],
    reason: Annotated[str, typer.Option(help="why: the customer's report, a ticket")],
    ttl: Annotated[
        str, typer.Option(help="for how long: 30m, 2h ... (at most S2_SUPPORT_MAX_TTL)")
    ],
    as_: AsOption = None,
) -> None:
    """Admit an engineer to a company's content for a while; prints the grant's id."""
    from store import support as support_store
    from store.engineers import valid_engineer

    s = settings()
    by = engineer(s, as_)
    who = valid_engineer(engineer_)
    try:
        ttl_s = duration_s(ttl)
    except ValueError as exc:
        raise System2Error(f"--ttl: {exc}") from None
    if not 60 <= ttl_s <= s.support_max_ttl_s:
        raise System2Error(
            f"--ttl must be from 1m to {spoken(s.support_max_ttl_s)} (S2_SUPPORT_MAX_TTL)"
        )
    if not reason.strip() or len(reason) > 1000:
        raise System2Error("--reason must say why, in at most 1000 characters")

    async def grant() -> support_store.SupportGrant:
        async with app_db(s) as db, company_tx(db, company) as tx:
            return await support_store.grant(tx, who, reason.strip(), by=by, ttl_s=ttl_s)

    found = asyncio.run(grant())
    emit(found.id)
    until = found.expires_at.astimezone(UTC)
    say(f"{who} may read company {company}'s content until {until:%Y-%m-%d %H:%M} UTC")


@app.command("enroll")
def support_enroll(
    email: Annotated[str, typer.Argument(help="the engineer's email address (their login)")],
) -> None:
    """Give an engineer a Postgres login of their own, in system2_operator alone (run as the
    owner, S2_ADMIN_DATABASE_URL). Prints a new password once, on stdout; an engineer enrolled
    before keeps theirs (nothing is printed). Their S2_OPERATOR_DATABASE_URL is the database's
    URL with this login."""
    import secrets

    import psycopg

    from store import engineers

    s = settings()
    name = engineers.valid_engineer(email)
    password = secrets.token_urlsafe(24)
    with psycopg.connect(s.admin_database_url, autocommit=True, connect_timeout=5) as conn:
        created = engineers.enroll(conn, name, password)
    if not created:
        say(f"{name} was enrolled already: their login and password are unchanged")
        return
    typer.echo(password)
    say(
        f"enrolled {name}: S2_OPERATOR_DATABASE_URL=postgresql://{name.replace('@', '%40')}:PASSWORD@HOST/DB"
    )


@app.command("list")
def support_list(
    company: Annotated[UUID, typer.Option(help="company id")],
    all_: Annotated[bool, typer.Option("--all", help="also revoked and expired grants")] = False,
) -> None:
    """The company's support grants, newest first, as JSON (live ones unless --all). Also
    records any expiry not recorded yet."""
    from store import support as support_store

    s = settings()
    now = datetime.now(UTC)

    async def listed() -> list[support_store.SupportGrant]:
        async with app_db(s) as db, company_tx(db, company) as tx:
            await support_store.log_expired(tx)
            return await support_store.listed(tx, live_only=not all_, now=now)

    emit([g.view(now) for g in asyncio.run(listed())])


@app.command("revoke")
def support_revoke(
    grant: Annotated[UUID, typer.Argument(help="the grant's id")],
    company: Annotated[UUID, typer.Option(help="company id")],
    as_: AsOption = None,
) -> None:
    """End a live grant now."""
    from store import support as support_store

    s = settings()
    by = engineer(s, as_)

    async def revoke() -> support_store.SupportGrant | None:
        async with app_db(s) as db, company_tx(db, company) as tx:
            return await support_store.revoke(tx, grant, by=by)

    if asyncio.run(revoke()) is None:
        raise System2Error(f"no live support grant {grant} in company {company}")
    say(f"support grant {grant} revoked")
