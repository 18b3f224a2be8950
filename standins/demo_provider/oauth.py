"""The authorization server's memory: codes, token families, rotation and reuse detection.

Pure logic, no HTTP and no locking: ``Provider`` serialises calls under its lock. Tokens are
kept only as SHA-256 digests, as a real provider keeps them, so nothing here (nor in
``/_stats``) can leak one.

A *family* is everything issued from one authorization code. Refresh tokens rotate: each
refresh returns a new one and retires the old. Presenting a retired refresh token is taken as
theft (RFC 9700 §4.14.2), so the whole family is revoked, including the access tokens it
already issued. There is deliberately no grace window for concurrent refreshes: a client
that refreshes the same credential twice at once loses it, which is what makes a missing
per-credential lock show up in tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from standins.demo_provider.errors import REALM, ProviderError, invalid_request, oauth_error

ACCESS_PREFIX = "demo_at_"
REFRESH_PREFIX = "demo_rt_"
CODE_PREFIX = "demo_ac_"
"""Opaque tokens are ``PREFIX + 43 base64url chars``; ``runtime.redact`` knows the first two."""

SCOPES = frozenset({"tasks.read", "tasks.write"})
CODE_TTL_S = 60.0
_PKCE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def scope_text(scope: frozenset[str]) -> str:
    return " ".join(sorted(scope))


def parse_scope(text: str | None, default: frozenset[str] = SCOPES) -> frozenset[str]:
    """RFC 6749 §3.3: space-delimited; absent means the default; unknown names are refused."""
    if text is None:
        return default
    scope = frozenset(text.split())
    if not scope or not scope <= SCOPES:
        known = scope_text(SCOPES)
        raise oauth_error("invalid_scope", f"scope must be drawn from: {known}")
    return scope


def _token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid access token stands for."""

    account: str
    scope: frozenset[str]
    family_id: str


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int
    scope: frozenset[str]

    def body(self) -> dict[str, Any]:
        """RFC 6749 §5.1."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "scope": scope_text(self.scope),
        }


@dataclass(slots=True)
class Family:
    """The tokens descended from one authorization code; revoked as a whole."""

    id: str
    account: str
    client_id: str
    scope: frozenset[str]
    refresh_digest: str = ""
    refreshes: int = 0
    revoked_reason: str | None = None

    def view(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "client_id": self.client_id,
            "scope": scope_text(self.scope),
            "refreshes": self.refreshes,
            "revoked": self.revoked_reason is not None,
            "revoked_reason": self.revoked_reason,
        }


@dataclass(slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    account: str
    scope: frozenset[str]
    expires_at: float
    challenge: str | None
    challenge_method: str
    family_id: str | None = None  # set once redeemed, so a replay can revoke what it issued


@dataclass(slots=True)
class _Access:
    family_id: str
    scope: frozenset[str]
    expires_at: float
    revoked: bool = False


@dataclass(slots=True)
class Authority:
    """One registered client, its codes and its token families."""

    client_id: str
    client_secret: str
    access_ttl_s: float
    clock: Callable[[], float]
    families: dict[str, Family] = field(default_factory=dict)
    reuse_detected: int = 0
    _codes: dict[str, _Code] = field(default_factory=dict)
    _access: dict[str, _Access] = field(default_factory=dict)
    _refresh: dict[str, str] = field(default_factory=dict)  # digest -> family id, ever issued

    def check_client(self, client_id: str, secret: str) -> None:
        known = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        if not (hmac.compare_digest(secret.encode(), self.client_secret.encode()) and known):
            raise oauth_error("invalid_client", "client authentication failed")

    def issue_code(
        self,
        *,
        redirect_uri: str,
        account: str,
        scope: frozenset[str],
        challenge: str | None,
        challenge_method: str,
    ) -> str:
        now = self.clock()
        for stale in [k for k, c in self._codes.items() if c.expires_at <= now]:
            del self._codes[stale]
        code = _token(CODE_PREFIX)
        self._codes[digest(code)] = _Code(
            self.client_id,
            redirect_uri,
            account,
            scope,
            now + CODE_TTL_S,
            challenge,
            challenge_method,
        )
        return code

    def redeem_code(
        self, client_id: str, code: str | None, redirect_uri: str | None, verifier: str | None
    ) -> Tokens:
        """RFC 6749 §4.1.3 (+ RFC 7636 §4.6 when the code carries a PKCE challenge)."""
        if code is None:
            raise invalid_request("code is required")
        found = self._codes.get(digest(code))
        if found is None or found.client_id != client_id:
            raise oauth_error("invalid_grant", "unknown authorization code")
        if found.family_id is not None:
            self._revoke_family(found.family_id, "authorization code replayed")
            raise oauth_error("invalid_grant", "authorization code already used")
        if self.clock() >= found.expires_at:
            raise oauth_error("invalid_grant", "authorization code expired")
        if redirect_uri != found.redirect_uri:
            raise oauth_error("invalid_grant", "redirect_uri does not match the authorization")
        _check_verifier(found, verifier)
        family = Family("fam_" + secrets.token_hex(8), found.account, client_id, found.scope)
        self.families[family.id] = family
        found.family_id = family.id
        return self._issue(family, found.scope)

    def refresh(self, client_id: str, token: str | None, scope: str | None) -> Tokens:
        """RFC 6749 §6 with rotation; a retired refresh token revokes its family."""
        if token is None:
            raise invalid_request("refresh_token is required")
        token_digest = digest(token)
        family_id = self._refresh.get(token_digest)
        family = self.families.get(family_id or "")
        if family is None or family.client_id != client_id:
            raise oauth_error("invalid_grant", "unknown refresh token")
        if family.revoked_reason is not None:
            raise oauth_error("invalid_grant", "refresh token revoked")
        if token_digest != family.refresh_digest:
            self.reuse_detected += 1
            self._revoke_family(family.id, "rotated refresh token reused")
            raise oauth_error(
                "invalid_grant", "refresh token already used; the grant has been revoked"
            )
        narrowed = parse_scope(scope, default=family.scope)
        if not narrowed <= family.scope:
            raise oauth_error("invalid_scope", "scope exceeds what was granted")
        family.refreshes += 1
        return self._issue(family, narrowed)

    def revoke(self, client_id: str, token: str) -> None:
        """RFC 7009 §2.1: a refresh token takes its family down; unknown tokens are a no-op."""
        token_digest = digest(token)
        access = self._access.get(token_digest)
        if access is not None and self.families[access.family_id].client_id == client_id:
            access.revoked = True
        family = self.families.get(self._refresh.get(token_digest, ""))
        if family is not None and family.client_id == client_id:
            self._revoke_family(family.id, "revoked by the client")

    def holder(self, token: str) -> str | None:
        """The account a token (access or refresh, live or not) was issued to, if any."""
        token_digest = digest(token)
        access = self._access.get(token_digest)
        family = self.families.get(
            access.family_id if access is not None else self._refresh.get(token_digest, "")
        )
        return None if family is None else family.account

    def check_access(self, token: str) -> Grant:
        """RFC 6750 §3.1: anything but a live token is ``invalid_token``."""
        access = self._access.get(digest(token))
        if access is None:
            raise _invalid_token("unknown access token")
        family = self.families[access.family_id]
        if access.revoked or family.revoked_reason is not None:
            raise _invalid_token("access token revoked")
        if self.clock() >= access.expires_at:
            raise _invalid_token("access token expired")
        return Grant(family.account, access.scope, family.id)

    def _issue(self, family: Family, scope: frozenset[str]) -> Tokens:
        access, refresh = _token(ACCESS_PREFIX), _token(REFRESH_PREFIX)
        self._access[digest(access)] = _Access(family.id, scope, self.clock() + self.access_ttl_s)
        family.refresh_digest = digest(refresh)
        self._refresh[family.refresh_digest] = family.id
        # RFC 6749 Appendix A.14 allows digits only; the exact TTL is enforced server-side.
        return Tokens(access, refresh, max(1, math.ceil(self.access_ttl_s)), scope)

    def _revoke_family(self, family_id: str, reason: str) -> None:
        family = self.families[family_id]
        if family.revoked_reason is None:
            family.revoked_reason = reason


def _invalid_token(description: str) -> ProviderError:
    challenge = f'Bearer realm="{REALM}", error="invalid_token"'
    return ProviderError(401, "invalid_token", description, {"WWW-Authenticate": challenge})


def pkce_challenge(verifier: str, method: str = "S256") -> str:
    """RFC 7636 §4.2; exposed so scripted clients and tests compute it the same way."""
    if method == "plain":
        return verifier
    hashed = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(hashed).rstrip(b"=").decode("ascii")


def _check_verifier(code: _Code, verifier: str | None) -> None:
    if code.challenge is None:
        if verifier is not None:
            raise oauth_error("invalid_grant", "code_verifier sent for a code without a challenge")
        return
    if verifier is None or not _PKCE_VERIFIER.fullmatch(verifier):
        raise oauth_error("invalid_grant", "a valid code_verifier is required")
    expected = pkce_challenge(verifier, code.challenge_method)
    if not hmac.compare_digest(expected.encode(), code.challenge.encode()):
        raise oauth_error("invalid_grant", "code_verifier does not match the code_challenge")
