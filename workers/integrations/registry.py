"""Wiring the providers of ``integrations`` to their runtime: OAuth clients, token broker,
provider client and the tools, for the providers this deployment offers.

Everything here runs on the worker process's event loop and shares its clients: one
``httpx.AsyncClient`` for every provider (``provider_http``: built, owned and closed by the
process, since its pool belongs to the loop it is first used on), the process's
redis.asyncio client, and the store's pool.
"""

from __future__ import annotations

import os
import socket
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx
from redis.asyncio import Redis as AsyncRedis

from integrations import PROVIDERS, OAuthClient, Provider
from runtime.settings import Settings
from store import Database
from vault import Secret, Vault
from workers.integrations.breaker import AsyncBreaker
from workers.integrations.provider import ProviderClient
from workers.integrations.token_broker import TokenBroker
from workers.integrations.tools import ConnectedTool
from workers.tools import Tool

# The provider pool of one worker process, for all its steps (no setting yet). A call holds a
# connection only while it is on the wire; a step that finds all of them busy waits up to
# S2_PROVIDER_TIMEOUT_S for one, then waits as for an outage (not counted against the
# provider's breaker). 100 at once is httpx's default, the bound the thread-per-call worker
# had too; up to 20 idle ones are kept for 30 s, sparing most calls a TCP and TLS handshake.
PROVIDER_CONNECTIONS = 100
PROVIDER_IDLE_CONNECTIONS = 20
PROVIDER_IDLE_S = 30.0


def offered(settings: Settings) -> dict[str, Provider]:
    """The providers this deployment offers (``S2_<NAME>_ENABLED``, ``integrations.config``)."""
    return {name: p for name, p in PROVIDERS.items() if settings.integration(name).enabled}


def provider_http(settings: Settings) -> httpx.AsyncClient:
    """The process's client for every provider (APIs and token endpoints), for every company:
    so it keeps no cookie (one company's ``Set-Cookie`` must not ride on another's call),
    keep-alive on
    (a cancel cancels the call's task, which closes that call's connection), a bounded pool,
    redirects never followed. The caller closes it (``await http.aclose()``) on shutdown."""
    return httpx.AsyncClient(
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
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


def oauth_client(settings: Settings, provider: Provider, http: httpx.AsyncClient) -> OAuthClient:
    config = settings.integration(provider.name)
    return OAuthClient(
        http,
        provider,
        oauth_url=config.oauth_url,
        client_id=config.client_id,
        client_secret=Secret(config.client_secret.get_secret_value()),
    )


def integration_tools(
    settings: Settings,
    db: Database,
    redis: AsyncRedis,
    vault: Vault,
    http: httpx.AsyncClient,
) -> dict[str, list[Tool]]:
    """Each offered provider's tools, ready to run for any company that connected it.
    ``redis`` carries the breakers, the refresh locks and the outage markers; ``http`` (see
    ``provider_http``) every provider call. Both are the caller's, and so is closing them."""
    breaker = AsyncBreaker(
        redis,
        failures=settings.breaker_failures,
        window_s=settings.breaker_window_s,
        open_s=settings.breaker_open_s,
    )
    client = ProviderClient(http, breaker, retries=settings.provider_retries)
    providers = offered(settings)
    tokens = TokenBroker(
        db,
        vault,
        redis,
        {name: oauth_client(settings, p, http) for name, p in providers.items()},
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
    return {
        name: [
            ConnectedTool(
                provider,
                tool,
                base_url=settings.integration(name).api_url,
                db=db,
                tokens=tokens,
                client=client,
                outages=redis,
                outage_max_s=settings.provider_outage_max_s,
                rate_limit_max_s=max(
                    settings.provider_rate_limit_max_s, provider.rate_limit_max_s or 0
                ),
                send_timeout_s=settings.provider_timeout_s,
            )
            for tool in provider.tools
        ]
        for name, provider in providers.items()
    }
