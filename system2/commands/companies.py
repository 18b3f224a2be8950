"""Companies (the tenants) and their members."""

from __future__ import annotations

import asyncio
from typing import Annotated
from uuid import UUID

import typer

from store import companies as companies_store
from system2.cli_support import app_db, company_tx, emit, say, settings
from system2.errors import System2Error

app = typer.Typer(help="Companies (tenants) and their members.", no_args_is_help=True)


@app.command("create")
def company_create(name: str) -> None:
    """Create a company; prints its id."""
    from uuid import uuid4

    cid = uuid4()
    s = settings()

    async def create() -> None:
        async with app_db(s) as db, db.tenant(cid) as tx:
            await companies_store.create(tx, name)

    asyncio.run(create())
    emit(cid)


@app.command("add-member")
def company_add_member(
    company_id: UUID,
    user_id: str,
    role: Annotated[str, typer.Option(help="admin or member")] = "member",
    email: Annotated[
        str | None,
        typer.Option(help="where an admin's incident notices go (kept when left out)"),
    ] = None,
) -> None:
    """Add a user to a company (or change their role or email address)."""
    from runtime.mail import address

    if role not in companies_store.ROLES:
        raise System2Error(f"role must be one of {', '.join(companies_store.ROLES)}")
    if email is not None:
        email = address(email.strip())  # ValueError: one line, naming what is wrong
    s = settings()

    async def add() -> None:
        async with app_db(s) as db, company_tx(db, company_id) as tx:
            await companies_store.add_member(tx, user_id, role, email)

    asyncio.run(add())
    say(f"{user_id} is now {role} of {company_id}")
