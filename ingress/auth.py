"""Who is calling: a Supabase Auth access token (HS256, ``aud`` = authenticated, ``exp``).

Only the signature, audience and expiry are checked here; membership of the company in the
path is checked by ``member_tx`` as the first read of the request's transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from uuid import UUID

import jwt
from fastapi import status

from ingress.problems import ProblemCode, Refused
from store import Database, TenantTx
from store import companies as companies_store
from store.companies import Role

_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
AUTHORIZATION_MAX = 8192  # a Supabase access token is about 1 KB


@dataclass(frozen=True)
class Caller:
    user_id: str


@dataclass(frozen=True)
class Member:
    user_id: str
    company_id: UUID
    role: Role


class TokenVerifier:
    def __init__(self, secret: str, *, audience: str = "authenticated", leeway_s: int = 5) -> None:
        self._secret = secret
        self._audience = audience
        self._leeway = leeway_s

    def verify(self, authorization: str | None) -> Caller:
        if not authorization:
            raise _unauthorized("missing bearer token", "token_missing")
        if len(authorization) > AUTHORIZATION_MAX:
            raise _unauthorized("token invalid")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("expected 'Authorization: Bearer <token>'")
        try:
            claims = jwt.decode(
                token.strip(),
                self._secret,
                algorithms=["HS256"],
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("token expired", "token_expired") from None
        except jwt.InvalidTokenError:
            raise _unauthorized("token invalid") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 200 or "\x00" in sub:
            raise _unauthorized("token has no valid subject")
        return Caller(sub)


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
