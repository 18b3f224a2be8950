"""Connecting a company's integration from the command line or the demo: the OAuth code flow
an admin begins through the API (``ingress.oauth_flow``), here begun by an operator. The
provider sends the admin's browser back to the ingress's callback, which stores the tokens;
this side waits for that outcome."""

from __future__ import annotations

from uuid import UUID

import redis

from ingress.oauth_flow import Authorization, OAuthStates, begin, offered
from messages import Actor
from runtime.settings import Settings
from runtime.wiring import build_vault
from store import Database
from system2.cli_support import company_tx
from vault import Secret


def _states(settings: Settings) -> OAuthStates:
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    return OAuthStates(client, Secret(settings.oauth_state_secret.get_secret_value()))


async def begin_connect(
    settings: Settings, db: Database, company_id: UUID, integration: str, *, by: Actor
) -> Authorization:
    """The provider's authorize URL for this company (``System2Error`` if there is no such
    company; ``UnknownIntegration`` if the integration is not offered here; ``VaultError``
    without vault keys, which the callback needs to seal the tokens)."""
    offered(settings, integration)
    states = _states(settings)
    try:
        build_vault(settings, states.redis)  # refuse now rather than at the callback
        async with company_tx(db, company_id):
            pass
        return begin(settings, states, company_id, integration, by)
    finally:
        states.redis.close()


def wait_connected(settings: Settings, flow: Authorization, timeout_s: float) -> str | None:
    """How the flow ended ("connected", "declined", or a refusal's reason), or ``None`` if
    the browser did not come back within ``timeout_s``."""
    states = _states(settings)
    try:
        return states.wait(flow.nonce, timeout_s)
    finally:
        states.redis.close()
