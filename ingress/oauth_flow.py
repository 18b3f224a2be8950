"""Connecting an integration by the provider's OAuth code flow (RFC 6749 §4.1, with RFC 7636's
PKCE where the provider takes it), ending at our callback.

``begin`` (a company admin through the API, or an operator through ``system2 integration
connect``) issues a ``state`` and answers the provider's authorize URL. The state is signed
(HMAC-SHA256 under ``S2_OAUTH_STATE_SECRET``), names the company, the integration and who
asked, expires after ten minutes, and is good once: its nonce is a Redis key (holding the
PKCE verifier, which never leaves the server) that the callback takes with ``GETDEL``. The
callback (``complete``) refuses a state that is forged or altered (another company's, another
provider's), expired or already used, with nothing stored; otherwise it exchanges the code,
seals the tokens with the vault, stores them and publishes the audit row. Whoever began the
flow can wait for its outcome (``wait``: a Redis list the callback pushes to).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from uuid import UUID

import httpx
import redis
import structlog
from starlette.concurrency import run_in_threadpool

from ingress.errors import IngressError
from ingress.integrations import IntegrationTokens, audit_envelope, connect
from integrations import (
    OAuthClient,
    OAuthError,
    ProviderBase,
    TokenEndpointTrouble,
    UnknownIntegration,
    authorize_url,
    pkce_pair,
    provider,
    whoami,
)
from messages import Actor, ActorType
from messages.redis_keys import oauth_result_key, oauth_state_key
from messages.transport import Publisher
from runtime.settings import Settings
from store import Database
from store import companies as companies_store
from store.credentials import Credential
from vault import Secret, Vault

log = structlog.get_logger(__name__)

STATE_TTL_S = 600
RESULT_TTL_S = STATE_TTL_S + 60
CALLBACK_PATH = "/v1/oauth/{integration}/callback"


class ConnectRefused(IngressError):
    """The callback cannot connect anything; ``reason`` is a stable code for machines, the
    message a sentence for the admin's browser (never a token nor the provider's text)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Grant:
    """What a state stands for: who may connect what, until when."""

    nonce: str
    company_id: UUID
    integration: str
    actor: Actor
    expires: int  # Unix time


@dataclass(frozen=True)
class Authorization:
    url: str
    expires: int
    nonce: str  # to ``wait`` for the outcome


def offered(settings: Settings, integration: str) -> None:
    """``UnknownIntegration`` unless this deployment offers ``integration``."""
    provider(integration)
    if not settings.integration(integration).enabled:
        raise UnknownIntegration(f"the {integration} integration is not offered here")


def redirect_uri(settings: Settings, integration: str) -> str:
    return settings.public_url.rstrip("/") + CALLBACK_PATH.format(integration=integration)


class OAuthStates:
    """Issues, redeems and reports states; the Redis client blocks (callers hop threads)."""

    def __init__(self, client: redis.Redis, secret: Secret, ttl_s: int = STATE_TTL_S) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self._key = hashlib.sha256(b"system2 oauth state\0" + secret.reveal().encode()).digest()

    def issue(
        self, company_id: UUID, integration: str, actor: Actor, verifier: str | None
    ) -> tuple[str, Grant]:
        grant = Grant(
            secrets.token_urlsafe(18),
            company_id,
            integration,
            actor,
            int(time.time()) + self.ttl_s,
        )
        claims = {
            "n": grant.nonce,
            "c": str(company_id),
            "i": integration,
            "a": actor.model_dump(mode="json"),
            "e": grant.expires,
        }
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        self.redis.set(
            oauth_state_key(grant.nonce), json.dumps({"v": verifier, **claims}), ex=self.ttl_s
        )
        return f"{body}.{_b64(self._sign(body))}", grant

    def redeem(self, integration: str, state: str) -> tuple[Grant, str | None]:
        """The grant ``state`` stands for and its PKCE verifier; it is spent."""
        body, _, signature = state.partition(".")
        if not hmac.compare_digest(_unb64(signature), self._sign(body)):
            raise ConnectRefused("state_invalid", "This link was not issued by System2.")
        try:
            claims = json.loads(_unb64(body))
            grant = Grant(
                claims["n"],
                UUID(claims["c"]),
                claims["i"],
                Actor.model_validate(claims["a"]),
                int(claims["e"]),
            )
        except (ValueError, KeyError, TypeError):  # signed by us, yet not ours: a wrong secret?
            raise ConnectRefused("state_invalid", "This link was not issued by System2.") from None
        if grant.integration != integration:
            raise ConnectRefused("state_invalid", "This link was issued for another integration.")
        if grant.expires < time.time():
            raise ConnectRefused("state_expired", "This link has expired: start again.")
        stored = self.redis.getdel(oauth_state_key(grant.nonce))
        if stored is None:
            raise ConnectRefused("state_used", "This link was already used: start again.")
        kept = json.loads(stored)
        if kept["c"] != claims["c"] or kept["i"] != claims["i"] or kept["a"] != claims["a"]:
            raise ConnectRefused("state_invalid", "This link does not match what was issued.")
        return grant, kept.get("v")

    def report(self, nonce: str, outcome: str) -> None:
        pipe = self.redis.pipeline()
        pipe.rpush(oauth_result_key(nonce), outcome)
        pipe.expire(oauth_result_key(nonce), RESULT_TTL_S)
        pipe.execute()

    def wait(self, nonce: str, timeout_s: float) -> str | None:
        """The flow's outcome ("connected" or the refusal's reason), or None at the timeout."""
        found = self.redis.blpop([oauth_result_key(nonce)], timeout=timeout_s)
        if found is None:
            return None
        outcome = found[1]
        return outcome.decode() if isinstance(outcome, bytes) else str(outcome)

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return b""


def begin(
    settings: Settings, states: OAuthStates, company_id: UUID, integration: str, actor: Actor
) -> Authorization:
    """The provider's authorize URL for this company, with a fresh state."""
    offered(settings, integration)
    spec = provider(integration)
    config = settings.integration(integration)
    verifier, challenge = pkce_pair() if spec.oauth.pkce else (None, None)
    state, grant = states.issue(company_id, integration, actor, verifier)
    url = authorize_url(
        spec,
        ProviderBase(config.oauth_url),
        config.client_id,
        redirect_uri(settings, integration),
        state,
        challenge,
    )
    return Authorization(url, grant.expires, grant.nonce)


async def complete(
    settings: Settings,
    states: OAuthStates,
    db: Database,
    vault: Vault,
    publisher: Publisher,
    integration: str,
    code: str,
    state: str,
) -> Credential:
    """Redeem ``state``, exchange ``code``, seal and store the tokens, audit the connection.
    Once the state is spent, whatever stops the connection is reported to whoever waits on
    the flow, and ends as ``ConnectRefused``: the link cannot be used again."""
    grant, verifier = await run_in_threadpool(states.redeem, integration, state)
    try:
        cred = await _connect(settings, db, vault, publisher, grant, code, verifier)
    except ConnectRefused as exc:
        await run_in_threadpool(states.report, grant.nonce, exc.reason)
        raise
    except Exception:
        log.exception("connecting an integration failed after its code came back")
        await run_in_threadpool(states.report, grant.nonce, "connect_failed")
        raise ConnectRefused(
            "connect_failed", "The connection could not be stored: start again."
        ) from None
    await run_in_threadpool(states.report, grant.nonce, "connected")
    return cred


async def _connect(
    settings: Settings,
    db: Database,
    vault: Vault,
    publisher: Publisher,
    grant: Grant,
    code: str,
    verifier: str | None,
) -> Credential:
    integration = grant.integration
    tokens = await _exchange(settings, integration, code, verifier)
    async with db.tenant(grant.company_id) as tx:
        user = grant.actor.type is ActorType.user  # still an admin of the company, or nothing
        if user and await companies_store.member_role(tx, grant.actor.id) != "admin":
            raise ConnectRefused(
                "not_admin", "Whoever began this connection is no longer an admin."
            )
        by = f"{grant.actor.type.value}:{grant.actor.id}"
        cred = await connect(tx, vault, integration, tokens, connected_by=by)
    envelope = audit_envelope(
        grant.company_id,
        grant.actor,
        "integration.connected",
        f"integration:{integration}",
        {"scopes": cred.scopes, "by": "oauth"},
    )
    await run_in_threadpool(publisher.publish, envelope)  # it blocks (Redis)
    return cred


async def _exchange(
    settings: Settings, integration: str, code: str, verifier: str | None
) -> IntegrationTokens:
    spec = provider(integration)
    config = settings.integration(integration)
    async with httpx.AsyncClient(
        timeout=settings.provider_timeout_s, follow_redirects=False
    ) as http:
        client = OAuthClient(
            http,
            spec,
            oauth_url=config.oauth_url,
            client_id=config.client_id,
            client_secret=Secret(config.client_secret.get_secret_value()),
        )
        try:
            got = await client.exchange_code(code, redirect_uri(settings, integration), verifier)
            account = got.account or await whoami(http, spec, config.api_url, got.access)
        except OAuthError as exc:
            raise ConnectRefused(
                "provider_refused", f"{spec.title} refused the authorization ({exc.error})."
            ) from None
        except (TokenEndpointTrouble, httpx.HTTPError):
            raise ConnectRefused(
                "provider_unavailable", f"{spec.title} could not be reached: start again."
            ) from None
    return IntegrationTokens(
        access_token=got.access.reveal(),
        refresh_token=got.refresh.reveal() if got.refresh else None,
        expires_at=got.expires_at,
        scopes=got.scopes[:50],
        account=account[:200] if account else None,
    )
