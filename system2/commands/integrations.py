"""Integrations a company has connected."""

from __future__ import annotations

import asyncio
from typing import Annotated
from uuid import UUID

import typer

from system2.cli_support import app_db, emit, settings

app = typer.Typer(help="Integrations a company has connected.", no_args_is_help=True)


@app.command("connect")
def integration_connect(company_id: UUID, integration: str) -> None:
    """Run the provider's OAuth code flow for the company and store the tokens; prints the
    credential id. (For the demo provider, which approves at once.)"""
    from messages import Actor, ActorType
    from store.credentials import Credential
    from system2.oauth_connect import connect_by_oauth

    s = settings()
    by = Actor(type=ActorType.operator, id="cli")

    async def run() -> Credential:
        async with app_db(s) as db:
            return await connect_by_oauth(s, db, company_id, integration, by=by)

    emit(asyncio.run(run()).id)


@app.command("list")
def integration_list(company: Annotated[UUID, typer.Option(help="company id")]) -> None:
    """The company's connected integrations (never their tokens), as JSON. One the provider
    refuses even after a refresh shows "needs_reconnect": true with when and why, until the
    company connects it again (system2 integration connect, or the ingress's PUT)."""
    from ingress.integrations import view
    from store import credentials as credentials_store
    from store.credentials import Credential

    s = settings()

    async def listed() -> list[Credential]:
        async with app_db(s) as db, db.tenant(company) as tx:
            return await credentials_store.all_for_company(tx)

    emit([view(c).model_dump(mode="json") for c in asyncio.run(listed())])
