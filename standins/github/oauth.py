"""GitHub App user-to-server tokens: codes, access/refresh pairs, rotation, revocation.

Pure logic, no HTTP and no locking (``GitHub`` serialises calls under its lock). Tokens and
codes are kept only as SHA-256 digests. As GitHub documents ("Refreshing user access
tokens"): once a refresh token is used, it and the access token issued with it stop working,
and the reply carries a new pair. A retired refresh token is refused as ``bad_refresh_token``
with no grace window, so two concurrent refreshes of one credential lose it: that is what
makes a client's missing refresh lock show up in tests. Codes live ten minutes, once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ACCESS_PREFIX = "ghu_"
REFRESH_PREFIX = "ghr_"
CODE_TTL_S = 600.0
_ALPHANUMERIC = string.ascii_letters + string.digits
_ERROR_DOCS = (
    "https://docs.github.com/apps/managing-oauth-apps/"
    "troubleshooting-oauth-app-access-token-request-errors/#"
)
_DESCRIPTIONS = {
    "bad_verification_code": "The code passed is incorrect or expired.",
    "incorrect_client_credentials": "The client_id and/or client_secret passed are incorrect.",
    "redirect_uri_mismatch": (
        "The redirect_uri MUST match the registered callback URL for this application."
    ),
    "bad_refresh_token": "The refresh token passed is incorrect or expired.",
    "unsupported_grant_type": "The grant_type passed is not supported.",
}


class OAuthFailure(Exception):
    """A token-endpoint refusal; GitHub sends it with HTTP 200, in the body only."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error

    def body(self) -> dict[str, str]:
        return {
            "error": self.error,
            "error_description": _DESCRIPTIONS[self.error],
            "error_uri": _ERROR_DOCS + self.error.replace("_", "-"),
        }


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _random(prefix: str, size: int) -> str:
    return prefix + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(size))


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 §4.2, S256 (the only method GitHub takes)."""
    hashed = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(hashed).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_token_expires_in: int

    def body(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_token_expires_in": self.refresh_token_expires_in,
            "scope": "",
            "token_type": "bearer",
        }


@dataclass(slots=True)
class _Code:
    login: str
    redirect_uri: str
    challenge: str | None
    expires_at: float


@dataclass(slots=True)
class _Secret:
    """One issued access or refresh token; ``partner`` is the digest issued with it."""

    login: str
    expires_at: float
    partner: str
    retired: bool = False


@dataclass(slots=True)
class Authority:
    client_id: str
    client_secret: str
    access_ttl_s: float
    refresh_ttl_s: float
    clock: Callable[[], float]
    counts: dict[str, int] = field(default_factory=dict)
    _codes: dict[str, _Code] = field(default_factory=dict)
    _access: dict[str, _Secret] = field(default_factory=dict)
    _refresh: dict[str, _Secret] = field(default_factory=dict)

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def check_client(self, client_id: str, secret: str) -> None:
        same_id = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        if not (hmac.compare_digest(secret.encode(), self.client_secret.encode()) and same_id):
            self.count("client_refusals")
            raise OAuthFailure("incorrect_client_credentials")

    def issue_code(self, login: str, redirect_uri: str, challenge: str | None) -> str:
        now = self.clock()
        for stale in [key for key, code in self._codes.items() if code.expires_at <= now]:
            del self._codes[stale]
        code = secrets.token_hex(10)
        self._codes[digest(code)] = _Code(login, redirect_uri, challenge, now + CODE_TTL_S)
        self.count("codes_issued")
        return code

    def redeem(self, code: str, redirect_uri: str | None, verifier: str | None) -> Tokens:
        found = self._codes.pop(digest(code), None)  # single use, even when refused below
        if found is None or self.clock() >= found.expires_at:
            self.count("code_refusals")
            raise OAuthFailure("bad_verification_code")
        if redirect_uri is not None and redirect_uri != found.redirect_uri:
            self.count("code_refusals")
            raise OAuthFailure("redirect_uri_mismatch")
        if found.challenge is not None and not _verifier_matches(verifier, found.challenge):
            self.count("code_refusals")
            raise OAuthFailure("bad_verification_code")
        self.count("codes_exchanged")
        return self._issue(found.login)

    def refresh(self, token: str) -> Tokens:
        found = self._refresh.get(digest(token))
        if found is None or found.retired or self.clock() >= found.expires_at:
            self.count("refresh_refusals")
            if found is not None and found.retired:
                self.count("refresh_reuse_refused")
            raise OAuthFailure("bad_refresh_token")
        found.retired = True
        old_access = self._access.get(found.partner)
        if old_access is not None:
            old_access.retired = True
        self.count("refreshes")
        return self._issue(found.login)

    def revoke_login(self, login: str) -> int:
        """The user revoked the app's authorization: every token they hold stops working."""
        revoked = 0
        for secret in [*self._access.values(), *self._refresh.values()]:
            if secret.login == login and not secret.retired:
                secret.retired = True
                revoked += 1
        self.count("revocations")
        return revoked

    def login_for(self, token: str) -> str | None:
        """Whose live access token this is; ``None`` for unknown, expired or revoked."""
        found = self._access.get(digest(token))
        if found is None or found.retired or self.clock() >= found.expires_at:
            return None
        return found.login

    def holder(self, token: str) -> str | None:
        """Who a token (access or refresh, live or not) was issued to; for the journal."""
        key = digest(token)
        found = self._access.get(key) or self._refresh.get(key)
        return None if found is None else found.login

    def _issue(self, login: str) -> Tokens:
        access = _random(ACCESS_PREFIX, 36)
        refresh = _random(REFRESH_PREFIX, 76)
        now = self.clock()
        access_key, refresh_key = digest(access), digest(refresh)
        self._access[access_key] = _Secret(login, now + self.access_ttl_s, refresh_key)
        self._refresh[refresh_key] = _Secret(login, now + self.refresh_ttl_s, access_key)
        return Tokens(
            access, refresh, max(1, round(self.access_ttl_s)), max(1, round(self.refresh_ttl_s))
        )


def _verifier_matches(verifier: str | None, challenge: str) -> bool:
    if not verifier or not 43 <= len(verifier) <= 128:
        return False
    try:
        expected = pkce_challenge(verifier)
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected.encode(), challenge.encode())
