"""Wiring the integrations of the catalog to their runtime: OAuth clients, token broker,
provider client and the tools."""

from __future__ import annotations

import os
import socket

import httpx
import redis

from runtime.catalog import INTEGRATIONS, IntegrationSpec
from runtime.loop_thread import StoreRunner
from runtime.settings import Settings
from vault import Secret, Vault
from workers.integrations import demo
from workers.integrations.breaker import Breaker
from workers.integrations.oauth import OAuthClient
from workers.integrations.provider import ProviderClient
from workers.integrations.token_broker import TokenBroker
from workers.integrations.tools import ConnectedTool, Endpoint
from workers.tools import Tool

ENDPOINTS: dict[str, dict[str, Endpoint]] = {"demo": demo.ENDPOINTS}


def base_url(settings: Settings, spec: IntegrationSpec) -> str:
    return {"demo": settings.demo_provider_url}[spec.name]


def oauth_client(settings: Settings, spec: IntegrationSpec, http: httpx.Client) -> OAuthClient:
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
    settings: Settings, store: StoreRunner, client: redis.Redis, vault: Vault
) -> dict[str, list[Tool]]:
    """Each integration's tools, ready to run for any company that connected it."""
    http = httpx.Client(
        timeout=httpx.Timeout(
            settings.provider_timeout_s, connect=min(5.0, settings.provider_timeout_s)
        ),
        limits=httpx.Limits(
            max_keepalive_connections=0
        ),  # a connection per call: a cancel can cut it
    )
    breaker = Breaker(
        client,
        failures=settings.breaker_failures,
        window_s=settings.breaker_window_s,
        open_s=settings.breaker_open_s,
    )
    provider = ProviderClient(http, breaker, retries=settings.provider_retries)
    tokens = TokenBroker(
        store,
        vault,
        client,
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
                store=store,
                tokens=tokens,
                provider=provider,
                outages=client,
                outage_max_s=settings.provider_outage_max_s,
                rate_limit_max_s=settings.provider_rate_limit_max_s,
            )
            for tool in spec.tools
        ]
    return tools
