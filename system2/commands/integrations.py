"""Integrations a company has connected."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import redis
import typer

from store import companies as companies_store
from system2.cli_support import app_db, emit, settings
from system2.errors import System2Error

app = typer.Typer(help="Integrations a company has connected.", no_args_is_help=True)


@app.command("connect")
def integration_connect(company_id: UUID, integration: str) -> None:
    """Run the provider's OAuth code flow for the company and store the tokens; prints the
    credential id. (For the demo provider, which approves at once.)"""
    import secrets as pysecrets

    import httpx

    from ingress.integrations import IntegrationTokens, connect
    from system2.catalog import INTEGRATIONS
    from system2.wiring import build_vault
    from workers.integrations.registry import oauth_client

    s = settings()
    spec = INTEGRATIONS.get(integration)
    if spec is None:
        raise System2Error(
            f"no integration named {integration!r}; known: {', '.join(sorted(INTEGRATIONS))}"
        )
    vault = build_vault(s, redis.Redis.from_url(s.redis_url))
    redirect = "http://127.0.0.1/oauth/callback"
    with httpx.Client(timeout=10) as http:
        oauth = oauth_client(s, spec, http)
        try:
            tokens = oauth.exchange_code(
                oauth.authorize(str(company_id), redirect, pysecrets.token_urlsafe(16)), redirect
            )
        except httpx.HTTPError as exc:
            raise System2Error(
                f"cannot reach {spec.title} at {s.demo_provider_url}: {type(exc).__name__}"
            ) from None
    body = IntegrationTokens(
        access_token=tokens.access.reveal(),
        refresh_token=tokens.refresh.reveal() if tokens.refresh else None,
        expires_at=tokens.expires_at,
        scopes=tokens.scopes,
        account=str(company_id),
    )
    with app_db(s) as db, db.tenant(company_id) as tx:
        if companies_store.get(tx) is None:
            raise System2Error(f"no company {company_id}")
        cred = connect(tx, vault, integration, body, connected_by="operator:cli")
    emit(cred.id)


@app.command("list")
def integration_list(company: Annotated[UUID, typer.Option(help="company id")]) -> None:
    """The company's connected integrations (never their tokens), as JSON."""
    from ingress.integrations import view
    from store import credentials as credentials_store

    with app_db(settings()) as db, db.tenant(company) as tx:
        emit([view(c).model_dump(mode="json") for c in credentials_store.all_for_company(tx)])
