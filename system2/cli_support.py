"""What every ``system2`` command shares: settings, a database connection, output.

A command that uses the store runs its body once with ``asyncio.run``: an ``async def``
that opens the database with ``app_db`` (one loop, one pool, both gone when it returns).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from uuid import UUID

import psycopg
import typer

from runtime.settings import Settings
from store import Database, TenantTx
from system2.errors import System2Error


def settings() -> Settings:
    return Settings()


@asynccontextmanager
async def app_db(s: Settings) -> AsyncIterator[Database]:
    """The store for one command, opened on the running loop (``asyncio.run``'s)."""
    # Fail fast with the driver's own reason: a pool would retry quietly for its timeout.
    # (A blocking probe: the command has nothing else to do meanwhile.)
    psycopg.connect(s.database_url, connect_timeout=5).close()
    async with Database(s.database_url, min_size=1, max_size=2, name="cli") as db:
        yield db  # opened waiting at most 10 s, closed when the command's body ends


@asynccontextmanager
async def operator_db(s: Settings) -> AsyncIterator[Database]:
    """The engineer's store (``S2_OPERATOR_DATABASE_URL``, their own login): it reads a
    company's content only under their live support grant."""
    psycopg.connect(s.operator_database_url, connect_timeout=5).close()
    async with Database(s.operator_database_url, min_size=1, max_size=2, name="operator") as db:
        yield db


def engineer(s: Settings, given: str | None) -> str:
    """Who runs a command on the app's store (a grant, a revocation): ``--as`` or
    ``S2_OPERATOR``, an engineer's address (``store.engineers``). A read of content needs no
    such claim: the engineer is the operator store's login."""
    from store.engineers import valid_engineer

    who = (given or s.operator or "").strip()
    if not who:
        raise System2Error("say who you are: --as EMAIL or S2_OPERATOR=EMAIL")
    try:
        return valid_engineer(who)
    except ValueError:
        raise System2Error("--as / S2_OPERATOR must be an engineer's email address") from None


@asynccontextmanager
async def support_read(
    db: Database, company_id: UUID, what: str, quest_id: UUID | None = None
) -> AsyncIterator[TenantTx]:
    """A read of ``company_id``'s content by the operator store's engineer, recorded in its
    audit trail (``what`` they ran, about ``quest_id`` if one); refused without a live grant."""
    from store import support as support_store

    async with db.tenant(company_id) as tx:
        try:
            await support_store.open_read(tx, what, quest_id)
        except support_store.NoSupportGrant as exc:
            raise System2Error(str(exc)) from None
        yield tx


async def granted_quest_company(db: Database, quest_id: UUID, company: UUID | None) -> UUID:
    """The quest's company for the operator store's engineer: as given, or the one among the
    companies they hold a live grant for that has the quest. They learn nothing of a quest
    outside their grants, not even its company."""
    from store import support as support_store

    if company is not None:
        return company
    for candidate in await support_store.granted_companies(db):
        async with db.tenant(candidate) as tx:
            if await tx.one("SELECT 1 FROM quests WHERE id = %s", (quest_id,)):
                return candidate
    async with db.connection() as conn:
        who = await support_store.whoami(conn)
    raise System2Error(
        f"no quest {quest_id} in the companies {who} holds a live support grant for: "
        "ask for one (system2 support grant), or name the company with --company"
    )


def actor(s: Settings, given: str | None) -> str:
    """Who a command's audit row names: ``--operator``, else ``S2_OPERATOR``, else ``cli``."""
    return given or s.operator or "cli"


AsOption = Annotated[
    str | None, typer.Option("--as", help="who you are (email; default: S2_OPERATOR)")
]


@asynccontextmanager
async def company_tx(db: Database, company_id: UUID) -> AsyncIterator[TenantTx]:
    """A transaction scoped to ``company_id``; ``System2Error`` if there is no such company,
    or it was deleted."""
    from store import companies as companies_store

    async with db.tenant(company_id) as tx:
        company = await companies_store.get(tx)
        if company is None:
            raise System2Error(f"no company {company_id}")
        if company.deleted:
            raise System2Error(f"company {company_id} was deleted")
        yield tx


def emit(value: Any) -> None:
    """Print a result on stdout: ids bare, everything else as JSON."""
    if isinstance(value, str | UUID):
        typer.echo(str(value))
    else:
        typer.echo(json.dumps(value, indent=2, default=str))


def say(message: str) -> None:
    typer.echo(message, err=True)


async def quest_company(db: Database, quest_id: UUID, company: UUID | None) -> UUID:
    """The quest's company: as given, or looked up (operators often have only the quest id)."""
    from store import quests as quests_store

    if company is not None:
        return company
    async with db.connection() as conn:
        found = await quests_store.company_of(conn, quest_id)
    if found is None:
        raise System2Error(f"no quest {quest_id}")
    return found


CompanyOption = Annotated[UUID | None, typer.Option(help="company id (looked up if left out)")]
