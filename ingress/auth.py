"""Who is calling: a Supabase Auth access token — ES256/RS256 signed with one of the
project's signing keys (its JWKS, ``ingress.jwks``), or HS256 with the legacy shared secret
where that is configured; either way ``aud``, ``exp``, ``sub`` (and ``iss`` when set) checked.

Only the token is checked here; membership of the company in the path is checked by
``member_tx`` as the first read of the request's transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import jwt
from fastapi import status

from ingress.jwks import ALGORITHMS, JwksConfig, JwksUnavailable, SigningKeys
from ingress.problems import ProblemCode, Refused
from messages import Actor, ActorType
from runtime.settings import Settings
from store import Database, TenantTx
from store import companies as companies_store
from store.companies import Role

_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
AUTHORIZATION_MAX = 8192  # a Supabase access token is about 1 KB
KID_MAX = 200


@dataclass(frozen=True)
class Caller:
    user_id: str

    @property
    def actor(self) -> Actor:
        """Who the caller is in messages and rows (``actor.ref``: ``user:<id>``)."""
        return Actor(type=ActorType.user, id=self.user_id)


@dataclass(frozen=True)
class Member:
    user_id: str
    company_id: UUID
    role: Role


class TokenVerifier:
    """Verifies bearer tokens. ``secret`` None: HS256 is refused; ``keys`` None: ES256/RS256
    are. The algorithm a token is verified with is the key's, never the token's choice."""

    def __init__(
        self,
        secret: str | None,
        *,
        audience: str = "authenticated",
        issuer: str | None = None,
        keys: SigningKeys | None = None,
        leeway_s: int = 5,
    ) -> None:
        self._secret = secret or None
        self._audience = audience
        self._issuer = issuer
        self.keys = keys
        self._leeway = leeway_s

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        keys = None
        if settings.jwt_jwks_url:
            keys = SigningKeys(
                JwksConfig(
                    settings.jwt_jwks_url,
                    ttl_s=settings.jwks_ttl_s,
                    min_refresh_s=settings.jwks_min_refresh_s,
                    timeout_s=settings.jwks_timeout_s,
                )
            )
        return cls(
            settings.jwt_hs256_secret(),
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            keys=keys,
        )

    async def verify(self, authorization: str | None) -> Caller:
        """The caller the ``Authorization`` header's token names, or a 401 (a 503 while no
        signing key could be fetched yet). May wait for a fetch of the signing keys."""
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _unauthorized("token invalid") from None
        alg = header.get("alg")
        if alg == "HS256" and self._secret is not None:
            claims = self._decode(token, self._secret, "HS256")
        elif alg in ALGORITHMS and self.keys is not None:
            claims = await self._decode_signed(token, header)
        else:
            raise _unauthorized("token invalid")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 200 or "\x00" in sub:
            raise _unauthorized("token has no valid subject")
        return Caller(sub)

    async def _decode_signed(self, token: str, header: dict[str, Any]) -> dict[str, Any]:
        assert self.keys is not None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > KID_MAX:
            raise _unauthorized("token names no signing key (kid)")
        try:
            key = await self.keys.get(kid)
        except JwksUnavailable:
            raise Refused(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "unavailable",
                "the signing keys cannot be fetched; try again shortly",
                headers={"Retry-After": str(max(1, round(self.keys.config.min_refresh_s)))},
            ) from None
        if key is None:
            raise _unauthorized("token signed by an unknown key")
        if header.get("alg") != key.alg:
            raise _unauthorized("token invalid")  # not the algorithm of the key it names
        return self._decode(token, key.key, key.alg)

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        required = ["exp", "sub", "aud", *(["iss"] if self._issuer else [])]
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("token expired", "token_expired") from None
        except jwt.InvalidTokenError:
            raise _unauthorized("token invalid") from None
        return claims


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise _unauthorized("missing bearer token", "token_missing")
    if len(authorization) > AUTHORIZATION_MAX:
        raise _unauthorized("token invalid")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("expected 'Authorization: Bearer <token>'")
    return token.strip()


def _unauthorized(detail: str, code: ProblemCode = "token_invalid") -> Refused:
    return Refused(status.HTTP_401_UNAUTHORIZED, code, detail, headers=_UNAUTHORIZED_HEADERS)


@asynccontextmanager
async def member_tx(
    db: Database, company_id: UUID, caller: Caller, *, admin: bool = False
) -> AsyncIterator[tuple[TenantTx, Member]]:
    """The request's transaction, opened only for a member of ``company_id`` (an admin if
    ``admin``). The membership check is its first read."""
    async with db.tenant(company_id) as tx:
        role = await companies_store.member_role(tx, caller.user_id)
        if role is None:
            raise Refused(status.HTTP_403_FORBIDDEN, "not_a_member", "not a member of this company")
        if admin and role != "admin":
            raise Refused(status.HTTP_403_FORBIDDEN, "admins_only", "company admins only")
        yield tx, Member(caller.user_id, company_id, role)
