"""An OAuth 2.0 client for a provider's token endpoint (RFC 6749): exchange a code, refresh.

The provider's trouble there is not a refusal of the company's grant: a 429 (the endpoint's
limit, usually per client app, so a refresh storm meets it for every company) becomes
``ProviderRateLimited`` and a 5xx or a connection failure ``ProviderUnavailable``, each with
the reset the provider's headers give, so the step waits as it does for an API call. Any
other non-200 is ``OAuthError`` with the status and the RFC 6749 §5.2 error code if the body
has one; a body that is not JSON (a proxy's HTML page) is never parsed or echoed.

Its calls are awaited on the caller's ``httpx.AsyncClient`` (the worker's shared one, which
never follows a redirect, so the client secret and a refresh token go to the token endpoint
and nowhere else); a step's cancel cancels the request and httpx closes its connection.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from runtime.catalog import IntegrationSpec
from vault import Secret
from workers.errors import ProviderUnavailable, WorkerError
from workers.integrations.errors import ProviderRateLimited
from workers.integrations.ratelimit import reset_after_ms
from workers.integrations.routes import ProviderBase


@dataclass(frozen=True)
class TokenSet:
    access: Secret
    refresh: Secret | None
    expires_at: datetime | None
    scopes: list[str]


class OAuthError(WorkerError):
    """The provider refused the grant (``invalid_grant``: the refresh token was revoked or
    reused — the company must connect the integration again). ``error`` is the reply's
    error code ("" when it gave none, or its body was not JSON); ``status`` its HTTP status
    (``None`` when the refusal is ours, as a state mismatch)."""

    def __init__(self, error: str, *, status: int | None = None) -> None:
        said = " ".join(part for part in (f"HTTP {status}" if status else "", error) if part)
        super().__init__(f"the provider refused the token request: {said or 'no reason given'}")
        self.error = error
        self.status = status


def _json_object(resp: httpx.Response) -> dict[str, Any]:
    """The reply's JSON object, or ``{}`` if its body is anything else."""
    try:
        body = resp.json()
    except ValueError:  # JSONDecodeError, or a body that is not UTF-8
        return {}
    return body if isinstance(body, dict) else {}


_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _error_code(body: dict[str, Any]) -> str:
    """The RFC 6749 §5.2 ``error`` code, if it is one short word: never the provider's text."""
    error = body.get("error")
    return error if isinstance(error, str) and _CODE.fullmatch(error) else ""


class OAuthClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        spec: IntegrationSpec,
        *,
        base_url: str,
        client_id: str,
        client_secret: Secret,
    ):
        self.http = http
        self.spec = spec
        self.base = ProviderBase(base_url)
        self.client_id = client_id
        self.client_secret = client_secret

    async def authorize(self, account: str, redirect_uri: str, state: str) -> str:
        """Run the authorization step (the demo provider approves at once) and return the code."""
        resp = await self.http.get(
            self.base.url(self.spec.authorize_path),
            params={
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "state": state,
                "scope": " ".join(self.spec.scopes),
                "login_hint": account,
            },
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
        self._provider_trouble(resp, "authorization endpoint")
        body = _json_object(resp)
        if resp.status_code != 200:
            raise OAuthError(_error_code(body), status=resp.status_code)
        if body.get("state") != state:
            raise OAuthError("state mismatch")
        if not isinstance(body.get("code"), str):
            raise OAuthError("no code in the reply", status=resp.status_code)
        return str(body["code"])

    async def exchange_code(self, code: str, redirect_uri: str) -> TokenSet:
        return await self._token(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        )

    async def refresh(self, refresh_token: Secret) -> TokenSet:
        return await self._token(
            {"grant_type": "refresh_token", "refresh_token": refresh_token.reveal()}
        )

    async def _token(self, form: dict[str, str]) -> TokenSet:
        try:
            resp = await self.http.post(
                self.base.url(self.spec.token_path),
                data=form,
                auth=(self.client_id, self.client_secret.reveal()),
                follow_redirects=False,
            )
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                f"{type(exc).__name__} at {self.spec.name}'s token endpoint"
            ) from None
        self._provider_trouble(resp, "token endpoint")
        body = _json_object(resp)
        if resp.status_code != 200:
            raise OAuthError(_error_code(body), status=resp.status_code)
        if not body.get("access_token"):
            raise OAuthError("no access_token in the reply", status=resp.status_code)
        expires_in = body.get("expires_in")
        return TokenSet(
            access=Secret(str(body["access_token"])),
            refresh=Secret(str(body["refresh_token"])) if body.get("refresh_token") else None,
            expires_at=datetime.now(UTC) + timedelta(seconds=int(expires_in))
            if expires_in
            else None,
            scopes=str(body.get("scope", "")).split(),
        )

    def _provider_trouble(self, resp: httpx.Response, where: str) -> None:
        """A 429 or 5xx: the provider's trouble, not a refusal; the step waits for its reset."""
        status = resp.status_code
        if status != 429 and status < 500:
            return
        after = reset_after_ms(resp.headers, time.time())
        if status == 429:
            raise ProviderRateLimited(
                f"{self.spec.name}'s {where} is rate-limiting our requests (429)",
                retry_after_ms=after,
                limited="our token requests",
            )
        raise ProviderUnavailable(
            f"{self.spec.name}'s {where} answered {status}", retry_after_ms=after
        )
