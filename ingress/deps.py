"""What every route depends on: the ingress's long-lived parts and the verified caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis as AsyncRedis

from guard import Admissions, Guard
from ingress.asgi_middleware import CALLER_STATE
from ingress.auth import Caller, TokenVerifier
from ingress.oauth_flow import OAuthStates
from messages.transport import Publisher
from runtime.settings import Settings
from store import Database
from vault import Secret, Vault


@dataclass
class IngressDeps:
    """What the ingress holds for its lifetime, passed in by whoever starts it."""

    settings: Settings
    db: Database
    publisher: Publisher
    redis: redis.Redis
    verifier: TokenVerifier
    admissions: Admissions
    guard: Guard
    vault: Vault | None = None  # None: no keys configured, integrations cannot be connected
    aredis: AsyncRedis | None = None  # for the live event streams (SSE)


def get_deps(request: Request) -> IngressDeps:
    deps: IngressDeps = request.app.state.deps
    return deps


# The OpenAPI document's security scheme; ``get_caller`` reads the header itself (the scheme's
# own parsing would let a malformed header pass as "no token").
BEARER = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="JWT",
    description="a Supabase Auth access token (`aud` = `authenticated`)",
    auto_error=False,
)


async def get_caller(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> Caller:
    """The caller ``BearerAuth`` verified before the body was read (verified here for a route
    it does not cover)."""
    caller = getattr(request.state, CALLER_STATE, None)
    if isinstance(caller, Caller):
        return caller
    return await get_deps(request).verifier.verify(request.headers.get("authorization"))


def oauth_states(deps: IngressDeps) -> OAuthStates:
    secret = Secret(deps.settings.oauth_state_secret.get_secret_value())
    return OAuthStates(deps.redis, secret)


Deps = Annotated[IngressDeps, Depends(get_deps)]
CallerDep = Annotated[Caller, Depends(get_caller)]
