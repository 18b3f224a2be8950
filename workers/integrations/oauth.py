"""An OAuth 2.0 client for a provider's token endpoint (RFC 6749): exchange a code, refresh."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from system2.catalog import IntegrationSpec
from vault import Secret
from workers.errors import ProviderUnavailable
from workers.integrations.routes import ProviderBase


@dataclass(frozen=True)
class TokenSet:
    access: Secret
    refresh: Secret | None
    expires_at: datetime | None
    scopes: list[str]


class OAuthError(Exception):
    """The provider refused the grant (``invalid_grant``: the refresh token was revoked or
    reused — the company must connect the integration again)."""

    def __init__(self, error: str) -> None:
        super().__init__(f"the provider refused the token request: {error}")
        self.error = error


class OAuthClient:
    def __init__(
        self,
        http: httpx.Client,
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

    def authorize(self, account: str, redirect_uri: str, state: str) -> str:
        """Run the authorization step (the demo provider approves at once) and return the code."""
        resp = self.http.get(
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
        )
        if resp.status_code != 200:
            raise OAuthError(resp.json().get("error", f"HTTP {resp.status_code}"))
        body = resp.json()
        if body.get("state") != state:
            raise OAuthError("state mismatch")
        return str(body["code"])

    def exchange_code(self, code: str, redirect_uri: str) -> TokenSet:
        return self._token(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        )

    def refresh(self, refresh_token: Secret) -> TokenSet:
        return self._token({"grant_type": "refresh_token", "refresh_token": refresh_token.reveal()})

    def _token(self, form: dict[str, str]) -> TokenSet:
        try:
            resp = self.http.post(
                self.base.url(self.spec.token_path),
                data=form,
                auth=(self.client_id, self.client_secret.reveal()),
            )
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                f"{type(exc).__name__} at {self.spec.name}'s token endpoint"
            ) from None
        if resp.status_code >= 500:
            raise ProviderUnavailable(
                f"{self.spec.name}'s token endpoint answered {resp.status_code}"
            )
        body: dict[str, Any] = resp.json()
        if resp.status_code != 200:
            raise OAuthError(str(body.get("error", f"HTTP {resp.status_code}")))
        expires_in = body.get("expires_in")
        return TokenSet(
            access=Secret(str(body["access_token"])),
            refresh=Secret(str(body["refresh_token"])) if body.get("refresh_token") else None,
            expires_at=datetime.now(UTC) + timedelta(seconds=int(expires_in))
            if expires_in
            else None,
            scopes=str(body.get("scope", "")).split(),
        )
