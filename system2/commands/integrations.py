"""Integrations a company has connected."""

from __future__ import annotations

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
    from system2.oauth_connect import connect_by_oauth

    s = settings()
    with app_db(s) as db:
        by = Actor(type=ActorType.operator, id="cli")
        cred = connect_by_oauth(s, db, company_id, integration, by=by)
    emit(cred.id)


@app.command("list")
def integration_list(company: Annotated[UUID, typer.Option(help="company id")]) -> None:
    """The company's connected integrations (never their tokens), as JSON. One the provider
    refuses even after a refresh shows "needs_reconnect": true with when and why, until the
    company connects it again (system2 integration connect, or the ingress's PUT)."""
    from ingress.integrations import view
    from store import credentials as credentials_store

    with app_db(settings()) as db, db.tenant(company) as tx:
        emit([view(c).model_dump(mode="json") for c in credentials_store.all_for_company(tx)])
