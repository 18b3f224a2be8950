"""Companies (the tenants) and their members."""

from __future__ import annotations

import asyncio
from typing import Annotated
from uuid import UUID

import typer

from store import companies as companies_store
from system2.cli_support import actor, app_db, company_tx, emit, say, settings
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


@app.command("delete")
def company_delete(
    company_id: UUID,
    confirm: Annotated[str, typer.Option(help="the company's name, typed again")],
    operator: Annotated[
        str | None, typer.Option(help="who deletes, for the audit trail (default: S2_OPERATOR)")
    ] = None,
) -> None:
    """Delete a company: every user's content erased (as `privacy erase`), its integrations'
    sealed credentials, webhook endpoints and deliveries and its members removed, open quests
    cancelled, its name replaced; the ingress refuses it from then on. The audit skeleton stays
    and the deletion is an audit row. Prints the rows changed, by kind. Run again on a deleted
    company (--confirm "deleted company"), it finishes what a failure left (live events)."""
    from store import privacy as privacy_store
    from store import support as support_store
    from system2.commands.privacy import erased_everywhere

    s = settings()
    operator = actor(s, operator)

    async def delete() -> privacy_store.Erasure:
        async with app_db(s) as db, db.tenant(company_id) as tx:
            company = await companies_store.get(tx)
            if company is None:
                raise System2Error(f"no company {company_id}")
            if confirm != company.name:
                raise System2Error(
                    f"--confirm does not match the name of company {company_id}: nothing deleted"
                )
            erasure = await privacy_store.erase_company(tx, operator)
            # No engineer reads a deleted company's remains under an earlier grant.
            await support_store.revoke_all(tx, by=operator)
            return erasure

    erasure = asyncio.run(delete())
    emit(erased_everywhere(s, company_id, erasure, whole_company=True))
