"""Wiring the integrations of the catalog to their runtime: OAuth clients, token broker,
provider client and the tools.

Everything here runs on the worker process's event loop and shares its clients: one
``httpx.AsyncClient`` for every provider (``provider_http``: built, owned and closed by the
process, since its pool belongs to the loop it is first used on), the process's
redis.asyncio client, and the store's pool.
"""

from __future__ import annotations

import os
import socket

import httpx
from redis.asyncio import Redis as AsyncRedis

from runtime.catalog import INTEGRATIONS, IntegrationSpec
from runtime.settings import Settings
from store import Database
from vault import Secret, Vault
from workers.integrations import demo
from workers.integrations.breaker import AsyncBreaker
from workers.integrations.oauth import OAuthClient
from workers.integrations.provider import ProviderClient
from workers.integrations.token_broker import TokenBroker
from workers.integrations.tools import ConnectedTool, Endpoint
from workers.tools import Tool

ENDPOINTS: dict[str, dict[str, Endpoint]] = {"demo": demo.ENDPOINTS}

# The provider pool of one worker process, for all its steps (no setting yet). A call holds a
# connection only while it is on the wire; a step that finds all of them busy waits up to
# S2_PROVIDER_TIMEOUT_S for one, then waits as for an outage (not counted against the
# provider's breaker). 100 at once is httpx's default, the bound the thread-per-call worker
# had too; up to 20 idle ones are kept for 30 s, sparing most calls a TCP and TLS handshake.
PROVIDER_CONNECTIONS = 100
PROVIDER_IDLE_CONNECTIONS = 20
PROVIDER_IDLE_S = 30.0


def base_url(settings: Settings, spec: IntegrationSpec) -> str:
    return {"demo": settings.demo_provider_url}[spec.name]


def provider_http(settings: Settings) -> httpx.AsyncClient:
    """The process's client for every provider (APIs and token endpoints): keep-alive on
    (a cancel cancels the call's task, which closes that call's connection), a bounded pool,
    redirects never followed. The caller closes it (``await http.aclose()``) on shutdown."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            settings.provider_timeout_s, connect=min(5.0, settings.provider_timeout_s)
        ),
        limits=httpx.Limits(
            max_connections=PROVIDER_CONNECTIONS,
            max_keepalive_connections=PROVIDER_IDLE_CONNECTIONS,
            keepalive_expiry=PROVIDER_IDLE_S,
        ),
        follow_redirects=False,
    )


def oauth_client(settings: Settings, spec: IntegrationSpec, http: httpx.AsyncClient) -> OAuthClient:
    secrets = {"demo": (settings.demo_client_id, settings.demo_client_secret.get_secret_value())}
    client_id, client_secret = secrets[spec.name]
    return OAuthClient(
        http,
        spec,
        base_url=base_url(settings, spec),
        client_id=client_id,
        client_secret=Secret(client_secret),
    )


def integration_tools(
    settings: Settings,
    db: Database,
    redis: AsyncRedis,
    vault: Vault,
    http: httpx.AsyncClient,
) -> dict[str, list[Tool]]:
    """Each integration's tools, ready to run for any company that connected it. ``redis``
    carries the breakers, the refresh locks and the outage markers; ``http`` (see
    ``provider_http``) every provider call. Both are the caller's, and so is closing them."""
    breaker = AsyncBreaker(
        redis,
        failures=settings.breaker_failures,
        window_s=settings.breaker_window_s,
        open_s=settings.breaker_open_s,
    )
    provider = ProviderClient(http, breaker, retries=settings.provider_retries)
    tokens = TokenBroker(
        db,
        vault,
        redis,
        {name: oauth_client(settings, spec, http) for name, spec in INTEGRATIONS.items()},
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
    tools: dict[str, list[Tool]] = {}
    for name, spec in INTEGRATIONS.items():
        tools[name] = [
            ConnectedTool(
                spec,
                tool,
                ENDPOINTS[name][tool.name],
                base_url=base_url(settings, spec),
                db=db,
                tokens=tokens,
                provider=provider,
                outages=redis,
                outage_max_s=settings.provider_outage_max_s,
                rate_limit_max_s=settings.provider_rate_limit_max_s,
            )
            for tool in spec.tools
        ]
    return tools
