"""An OAuth 2.0 client for a provider's authorization-code flow (RFC 6749, with RFC 7636's
PKCE where the provider takes it): the authorize URL, the code exchange, the refresh.

The provider's trouble at the token endpoint is not a refusal of the company's grant: a 429
(the endpoint's limit, usually per client app, so a refresh storm meets it for every
company) or a 5xx or a connection failure is ``TokenEndpointTrouble`` with the reset the
provider's headers give. A refusal is ``OAuthError`` with the RFC 6749 §5.2 error code if
the body has one, whether the provider says it with a 4xx (RFC 6749) or in a 200 (GitHub's
``{"error": ...}``, Slack's ``{"ok": false, ...}``); a body that is not JSON (a proxy's HTML
page) is never parsed or echoed.

Why not authlib's ``AsyncOAuth2Client``: it is an ``httpx.AsyncClient`` holding one token
per instance and refreshing it inside a request, while a worker shares one client (and its
connection pool) among every company's steps, refreshes under a per-credential lock and
stores a rotated refresh token before using the new access token (``TokenBroker``). What
this module needs from an OAuth library (a form post and a JSON reply, PKCE's S256) is a
few lines of the standard library.

Its calls are awaited on the caller's ``httpx.AsyncClient`` (the worker's shared one, which
never follows a redirect, so the client secret and a refresh token go to the token endpoint
and nowhere else); a step's cancel cancels the request and httpx closes its connection.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from integrations.errors import OAuthError, TokenEndpointTrouble
from integrations.ratelimit import reset_after_ms
from integrations.routes import ProviderBase
from integrations.spec import Provider, json_object
from vault import Secret


@dataclass(frozen=True)
class TokenSet:
    access: Secret
    refresh: Secret | None
    expires_at: datetime | None
    scopes: list[str]
    account: str | None = None


def pkce_pair() -> tuple[str, str]:
    """A fresh RFC 7636 code verifier (43 characters) and its S256 challenge."""
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _error_code(body: dict[str, Any]) -> str:
    """The RFC 6749 §5.2 ``error`` code, if it is one short word: never the provider's text."""
    error = body.get("error")
    return error if isinstance(error, str) and _CODE.fullmatch(error) else ""


def authorize_url(
    provider: Provider,
    oauth_base: ProviderBase,
    client_id: str,
    redirect_uri: str,
    state: str,
    code_challenge: str | None,
) -> str:
    """Where a company admin approves the connection (the provider's consent page); the
    provider sends the browser back to ``redirect_uri`` with a code and ``state``."""
    spec = provider.oauth
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        **spec.authorize_params,
    }
    if spec.scopes:
        params["scope"] = spec.scope_separator.join(spec.scopes)
    if spec.pkce and code_challenge:
        params |= {"code_challenge": code_challenge, "code_challenge_method": "S256"}
    return str(oauth_base.url(spec.authorize_path).copy_merge_params(params))


class OAuthClient:
    """One provider's OAuth client, for our app registered with it (``client_id``)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        provider: Provider,
        *,
        oauth_url: str,
        client_id: str,
        client_secret: Secret,
    ) -> None:
        self.http = http
        self.provider = provider
        self.spec = provider.oauth
        self.base = ProviderBase(oauth_url)
        self.client_id = client_id
        self.client_secret = client_secret

    async def exchange_code(
        self, code: str, redirect_uri: str, code_verifier: str | None = None
    ) -> TokenSet:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if self.spec.pkce and code_verifier:
            form["code_verifier"] = code_verifier
        return await self._token(form)

    async def refresh(self, refresh_token: Secret) -> TokenSet:
        return await self._token(
            {"grant_type": "refresh_token", "refresh_token": refresh_token.reveal()}
        )

    async def _token(self, form: dict[str, str]) -> TokenSet:
        auth = httpx.Auth()  # sends the request as it is
        if self.spec.client_auth == "basic":
            auth = httpx.BasicAuth(self.client_id, self.client_secret.reveal())
        else:
            form = form | {
                "client_id": self.client_id,
                "client_secret": self.client_secret.reveal(),
            }
        try:
            resp = await self.http.post(
                self.base.url(self.spec.token_path),
                data=form,
                auth=auth,
                headers={"Accept": "application/json"},
                follow_redirects=False,
            )
        except httpx.TransportError as exc:
            raise TokenEndpointTrouble(
                f"{type(exc).__name__} at {self.provider.title}'s token endpoint"
            ) from None
        self._provider_trouble(resp)
        body = json_object(resp)
        refused = resp.status_code != 200 or "error" in body or body.get("ok") is False
        if refused:
            code = _error_code(body)
            raise OAuthError(
                "invalid_grant" if code in self.spec.refused_refresh else code,
                status=resp.status_code,
            )
        if not body.get("access_token"):
            raise OAuthError("no access_token in the reply", status=resp.status_code)
        return _token_set(body, self.spec.account(body))

    def _provider_trouble(self, resp: httpx.Response) -> None:
        """A 429 or 5xx: the provider's trouble, not a refusal; the step waits for its reset."""
        status = resp.status_code
        if status != 429 and status < 500:
            return
        after = reset_after_ms(resp.headers, time.time())
        title = self.provider.title
        if status == 429:
            raise TokenEndpointTrouble(
                f"{title}'s token endpoint is rate-limiting our requests (429)",
                retry_after_ms=after,
                rate_limited=True,
            )
        raise TokenEndpointTrouble(
            f"{title}'s token endpoint answered {status}", retry_after_ms=after
        )


async def whoami(
    http: httpx.AsyncClient, provider: Provider, api_url: str, token: Secret
) -> str | None:
    """Who the token acts for, by the provider's ``OAuthSpec.whoami`` (a GET and the field
    of its JSON answer), for a token reply that does not say; ``None`` if it cannot tell."""
    if provider.oauth.whoami is None:
        return None
    path, field = provider.oauth.whoami
    headers = {**provider.headers, "Authorization": f"Bearer {token.reveal()}"}
    try:
        resp = await http.get(ProviderBase(api_url).url(path), headers=headers)
    except httpx.HTTPError:
        return None
    found = json_object(resp).get(field) if resp.status_code == 200 else None
    return found if isinstance(found, str) and found else None


def _token_set(body: dict[str, Any], account: str | None) -> TokenSet:
    """The reply's tokens. An ``expires_in`` that is not a number is the provider breaking
    RFC 6749 §5.1: ``ValueError``, and the step is retried (its text is redacted before any
    log or Sentry event sees it)."""
    expires_in = body.get("expires_in")
    scope = str(body.get("scope", ""))
    return TokenSet(
        access=Secret(str(body["access_token"])),
        refresh=Secret(str(body["refresh_token"])) if body.get("refresh_token") else None,
        expires_at=datetime.now(UTC) + timedelta(seconds=int(expires_in)) if expires_in else None,
        scopes=[s for s in re.split(r"[ ,]", scope) if s],
        account=account,
    )
