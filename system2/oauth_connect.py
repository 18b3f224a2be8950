"""Connect a company's integration by running the provider's OAuth code flow from here.

For providers that approve at once (the demo provider); a real provider's consent screen
ends in the ingress's ``PUT …/integrations/{name}`` instead. Shared by ``system2
integration connect`` and the demo.
"""

from __future__ import annotations

import secrets
from uuid import UUID

import httpx
import redis

from ingress.integrations import IntegrationTokens, audit_envelope, connect
from messages import Actor
from messages.transport import publisher
from runtime import catalog
from runtime.settings import Settings
from runtime.wiring import build_vault
from store import Database
from store.credentials import Credential
from system2.cli_support import company_tx
from system2.errors import System2Error
from workers.integrations.registry import oauth_client

REDIRECT = "http://127.0.0.1/oauth/callback"


async def connect_by_oauth(
    settings: Settings, db: Database, company_id: UUID, integration: str, *, by: Actor
) -> Credential:
    """Store the company's sealed tokens and audit the connection as ``by``. The provider's
    calls are awaited; the vault (its encryption counter) and the publisher block: the
    callers (a command, the demo) have nothing else on their loop."""
    spec = catalog.integration(integration)
    vault = build_vault(settings, redis.Redis.from_url(settings.redis_url))
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as http:
        oauth = oauth_client(settings, spec, http)
        try:
            code = await oauth.authorize(str(company_id), REDIRECT, secrets.token_urlsafe(16))
            tokens = await oauth.exchange_code(code, REDIRECT)
        except httpx.HTTPError as exc:
            raise System2Error(
                f"cannot reach {spec.title} at {settings.demo_provider_url}: {type(exc).__name__}"
            ) from None
    body = IntegrationTokens(
        access_token=tokens.access.reveal(),
        refresh_token=tokens.refresh.reveal() if tokens.refresh else None,
        expires_at=tokens.expires_at,
        scopes=tokens.scopes,
        account=str(company_id),
    )
    async with company_tx(db, company_id) as tx:
        cred = await connect(tx, vault, integration, body, connected_by=f"{by.type.value}:{by.id}")
    with publisher(settings.redis_url) as queue:
        queue.publish(
            audit_envelope(
                company_id,
                by,
                "integration.connected",
                f"integration:{integration}",
                {"scopes": cred.scopes},
            )
        )
    return cred
