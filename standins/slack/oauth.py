"""The app's installations: authorization codes, bot tokens, and token rotation.

Pure logic, no HTTP and no locking: ``Slack`` serialises calls under its lock. Tokens are
kept only as SHA-256 digests, so nothing here (nor in ``/_stats``) can leak one.

A *grant* is one installation into one workspace (one redeemed code). With rotation on,
its bot token (``xoxe.xoxb-1-…``) expires after ``access_ttl_s`` and a refresh token
(``xoxe-1-…``) buys a new pair. Each refresh token is single use: a refresh retires it, and
presenting it again is ``invalid_refresh_token``. Slack forgives a short overlap there; this
stand-in deliberately does not, so a client that refreshes one credential twice at once (a
missing refresh lock) fails in tests instead of in production. The old access token stays
valid until it expires, as Slack's does. With rotation off the bot token (``xoxb-…``)
never expires and no refresh token is issued.
"""

from __future__ import annotations

import hmac
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from standins.slack.errors import SlackError
from standins.slack.ids import digest, digits, new_id, token_body

ACCESS_PREFIX = "xoxe.xoxb-1-"
"""A rotating (expiring) bot token."""
BOT_PREFIX = "xoxb-"
"""A bot token that never expires (token rotation off)."""
REFRESH_PREFIX = "xoxe-1-"
CODE_TTL_S = 600.0


@dataclass(frozen=True, slots=True)
class Grant:
    """What a live bot token stands for."""

    id: str
    team: str
    scopes: tuple[str, ...]  # in the order the app asked for them
    user_scopes: tuple[str, ...] = ()
    revoked: bool = False

    @property
    def scope_text(self) -> str:
        return ",".join(self.scopes)


@dataclass(frozen=True, slots=True)
class Issued:
    """A token pair fresh from ``oauth.v2.access``."""

    grant: Grant
    access_token: str
    refresh_token: str | None
    expires_in: int | None


@dataclass(slots=True)
class _Code:
    team: str
    scopes: tuple[str, ...]
    user_scopes: tuple[str, ...]
    redirect_uri: str | None
    expires_at: float
    used: bool = False


@dataclass(slots=True)
class _Access:
    grant_id: str
    expires_at: float | None  # None: never (rotation off)


@dataclass(slots=True)
class Authority:
    """One registered app (client id and secret), its codes and its installations."""

    client_id: str
    client_secret: str
    access_ttl_s: float
    rotation: bool
    clock: Callable[[], float]
    grants: dict[str, Grant] = field(default_factory=dict)
    exchanged: Counter[str] = field(default_factory=Counter)  # codes redeemed, per team
    refreshed: Counter[str] = field(default_factory=Counter)
    reuse_refused: Counter[str] = field(default_factory=Counter)
    _codes: dict[str, _Code] = field(default_factory=dict)
    _access: dict[str, _Access] = field(default_factory=dict)
    _refresh: dict[str, str] = field(default_factory=dict)  # digest -> grant id, ever issued
    _live_refresh: dict[str, str] = field(default_factory=dict)  # grant id -> current digest

    def check_client(self, client_id: str | None, secret: str | None) -> None:
        if not client_id or not hmac.compare_digest(client_id.encode(), self.client_id.encode()):
            raise SlackError("invalid_client_id")
        if not secret or not hmac.compare_digest(secret.encode(), self.client_secret.encode()):
            raise SlackError("bad_client_secret")

    def issue_code(
        self,
        team: str,
        scopes: tuple[str, ...],
        user_scopes: tuple[str, ...],
        redirect_uri: str | None,
    ) -> str:
        now = self.clock()
        for stale in [k for k, c in self._codes.items() if c.expires_at <= now]:
            del self._codes[stale]
        code = f"{digits(13)}.{digits(13)}.{token_body(64).lower()}"
        self._codes[digest(code)] = _Code(team, scopes, user_scopes, redirect_uri, now + CODE_TTL_S)
        return code

    def redeem(self, code: str | None, redirect_uri: str | None) -> Issued:
        found = self._codes.get(digest(code)) if code else None
        if found is None or found.used or self.clock() >= found.expires_at:
            raise SlackError("invalid_code")
        if found.redirect_uri is not None and redirect_uri != found.redirect_uri:
            raise SlackError("bad_redirect_uri")
        found.used = True
        grant = Grant(new_id("G", 12), found.team, found.scopes, found.user_scopes)
        self.grants[grant.id] = grant
        self.exchanged[grant.team] += 1
        return self._issue(grant)

    def refresh(self, token: str | None) -> Issued:
        token_digest = digest(token) if token else ""
        grant = self.grants.get(self._refresh.get(token_digest, ""))
        if grant is None or grant.revoked:
            raise SlackError("invalid_refresh_token")
        if self._live_refresh.get(grant.id) != token_digest:
            self.reuse_refused[grant.team] += 1
            raise SlackError("invalid_refresh_token")
        self.refreshed[grant.team] += 1
        return self._issue(grant)

    def check(self, token: str | None) -> Grant:
        """The grant behind a bot token, or the error Slack gives for it."""
        if not token:
            raise SlackError("not_authed")
        access = self._access.get(digest(token))
        if access is None:
            raise SlackError("invalid_auth")
        grant = self.grants[access.grant_id]
        if grant.revoked:
            raise SlackError("token_revoked")
        if access.expires_at is not None and self.clock() >= access.expires_at:
            raise SlackError("token_expired")
        return grant

    def team_of(self, credential: str) -> str | None:
        """The workspace a token, refresh token or code belongs to (live or not), if any."""
        key = digest(credential)
        if (code := self._codes.get(key)) is not None:
            return code.team
        access = self._access.get(key)
        grant = self.grants.get(access.grant_id if access else self._refresh.get(key, ""))
        return None if grant is None else grant.team

    def revoke_team(self, team: str) -> int:
        """Uninstalls the app from ``team``: every token it holds there stops working."""
        hits = [g for g in self.grants.values() if g.team == team and not g.revoked]
        for grant in hits:
            self.grants[grant.id] = Grant(
                grant.id, grant.team, grant.scopes, grant.user_scopes, revoked=True
            )
        return len(hits)

    def _issue(self, grant: Grant) -> Issued:
        if not self.rotation:
            access = f"{BOT_PREFIX}{digits(13)}-{digits(13)}-{token_body(24)}"
            self._access[digest(access)] = _Access(grant.id, None)
            return Issued(grant, access, None, None)
        access, refresh = ACCESS_PREFIX + token_body(120), REFRESH_PREFIX + token_body(96)
        expires_at = self.clock() + self.access_ttl_s
        self._access[digest(access)] = _Access(grant.id, expires_at)
        self._refresh[digest(refresh)] = grant.id
        self._live_refresh[grant.id] = digest(refresh)
        return Issued(grant, access, refresh, max(1, math.ceil(self.access_ttl_s)))
