"""Integrations a company has connected."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import typer

from system2.cli_support import app_db, emit, say, settings
from system2.errors import System2Error

if TYPE_CHECKING:
    from ingress.oauth_flow import Authorization

app = typer.Typer(help="Integrations a company has connected.", no_args_is_help=True)


@app.command("connect")
def integration_connect(
    company_id: UUID,
    integration: str,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="print the URL and exit")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the callback")] = 600.0,
) -> None:
    """Begin connecting the company's integration: prints the provider's authorize URL for a
    company admin to open, then waits until the provider sends the browser back to the
    ingress (S2_PUBLIC_URL), which stores the tokens sealed. The link is good once, for ten
    minutes."""
    from messages import Actor, ActorType
    from system2.oauth_connect import begin_connect, wait_connected

    s = settings()
    by = Actor(type=ActorType.operator, id="cli")

    async def begun() -> Authorization:
        async with app_db(s) as db:
            return await begin_connect(s, db, company_id, integration, by=by)

    flow = asyncio.run(begun())
    say(f"open this link in a {integration} admin's browser (good once, for 10 minutes):")
    emit(flow.url)
    if no_wait:
        return
    outcome = wait_connected(s, flow, min(timeout, 600.0))
    if outcome != "connected":
        raise System2Error(
            f"{integration} was not connected: {outcome or 'nobody came back within the time'}"
        )
    say(f"{integration} is connected")


@app.command("list")
def integration_list(company: Annotated[UUID, typer.Option(help="company id")]) -> None:
    """The company's connected integrations (never their tokens), as JSON, each with its
    status: connected; needs_reconnect (the provider refuses it even after a refresh, with
    when and why, until the company connects it again: system2 integration connect); or
    disabled (this deployment does not offer the integration now)."""
    from ingress.integrations import view
    from store import credentials as credentials_store
    from store.credentials import Credential

    s = settings()

    async def listed() -> list[Credential]:
        async with app_db(s) as db, db.tenant(company) as tx:
            return await credentials_store.all_for_company(tx)

    emit([view(c, s).model_dump(mode="json") for c in asyncio.run(listed())])
