"""On the wire: the real sentry-sdk, pointed at a loopback ingest endpoint, sends errors with
what a developer needs and none of the secrets the failing code held.

Secrets are made at run time (``secrets.token_urlsafe``, a fresh vault key, a real vault
ciphertext, a freshly minted JWT), so no source line holds them. Each is planted where a
careless setup leaks it: exception messages, request headers, cookies, query strings and
bodies, nested payloads in contexts and extra, tags, log lines that become breadcrumbs, and
local variables of the failing frames. The received envelopes are searched as raw bytes
(decompressed), for each secret as is and in its JSON-escaped, base64 and URL-encoded forms.

The ingress case runs the app from ``ingress.app.build`` (which starts Sentry) with one extra
route registered on that app instance only.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import sentry_sdk
import structlog
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ingress.app import build
from ingress.deps import CallerDep
from system2 import logs
from system2.settings import Settings
from system2.wiring import build_vault
from tests.conftest import Tenant
from tests.sentry_ingest import SentryIngest, exception_types, frames
from vault import new_key_entry

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Planted:
    """Secrets made for one test, and every form in which one must not reach Sentry."""

    bearer: str  # a signed JWT, as the ingress's callers send it
    access: str  # OAuth access token
    refresh: str  # OAuth refresh token
    api_key: str  # an Anthropic API key
    password: str  # no shape at all: only its key or label gives it away
    client_secret: str
    cookie: str
    vault_entry: str  # kid=base64 key, as S2_VAULT_KEYS holds it
    ciphertext: bytes = b""

    @classmethod
    def make(cls, bearer: str) -> Planted:
        return cls(
            bearer=bearer,
            access="demo_at_" + secrets.token_urlsafe(24),
            refresh="demo_rt_" + secrets.token_urlsafe(24),
            api_key="sk-ant-api03-" + secrets.token_urlsafe(32),
            password="pw-" + secrets.token_hex(6),
            client_secret="cs-" + secrets.token_hex(10),
            cookie="sess-" + secrets.token_hex(10),
            vault_entry=new_key_entry(datetime.now(UTC)),
        )

    def texts(self) -> dict[str, str]:
        return {
            "bearer token": self.bearer,
            "access token": self.access,
            "refresh token": self.refresh,
            "API key": self.api_key,
            "password": self.password,
            "client secret": self.client_secret,
            "cookie": self.cookie,
            "vault key": self.vault_entry.split("=", 1)[1],
        }

    def needles(self) -> dict[str, bytes]:
        """What must not appear in the raw envelopes: each secret in every encoding."""
        found: dict[str, bytes] = {}
        for name, text in self.texts().items():
            data = text.encode()
            for form, value in (
                ("raw", data),
                ("json", json.dumps(text)[1:-1].encode()),
                ("base64", base64.b64encode(data)),
                ("base64url", base64.urlsafe_b64encode(data).rstrip(b"=")),
                ("url", urllib.parse.quote(text, safe="").encode()),
                ("url+", urllib.parse.quote_plus(text).encode()),
            ):
                found[f"{name} ({form})"] = value
        material = base64.b64decode(self.vault_entry.split("=", 1)[1])
        found["vault key bytes (hex)"] = material.hex().encode()
        found["vault key bytes (repr)"] = repr(material)[2:-1].encode()
        if self.ciphertext:
            body = self.ciphertext[-40:]  # nonce tail, encrypted token and tag
            found["ciphertext (repr)"] = repr(body)[2:-1].encode()
            found["ciphertext (hex)"] = body.hex().encode()
            found["ciphertext (base64)"] = base64.b64encode(self.ciphertext)[8:40]
        return found


def assert_nothing_leaked(raw: bytes, planted: Planted) -> None:
    assert raw, "nothing reached the ingest endpoint"
    leaked = {
        name: raw[max(0, raw.index(needle) - 150) : raw.index(needle)]
        for name, needle in planted.needles().items()
        if needle in raw
    }
    assert not leaked, f"leaked (with what came before it): {leaked}"


@pytest.fixture
def sentry_ingest() -> Iterator[SentryIngest]:
    with SentryIngest() as ingest:
        yield ingest


@pytest.fixture
def in_process_sentry() -> Iterator[None]:
    """Leave this test process's Sentry client, logging and structlog set-up as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog_config = structlog.get_config()
    try:
        yield
    finally:
        sentry_sdk.flush(timeout=5)
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**structlog_config)


# -- the ingress ----------------------------------------------------------------------------


def test_an_ingress_error_reaches_sentry_with_its_context_and_no_secret(
    settings: Settings,
    tenant: Tenant,
    rds: redis.Redis,
    sentry_ingest: SentryIngest,
    in_process_sentry: None,
) -> None:
    planted = Planted.make(bearer=tenant.token())
    vault = build_vault(
        settings.model_copy(update={"vault_keys": SecretStr(planted.vault_entry)}), rds
    )
    ct = vault.encrypt(
        _secret(planted.access),
        company_id=tenant.id,
        integration="demo",
        credential_id=f"{uuid.uuid4()}/access_token",
    )
    planted = _with_ciphertext(planted, ct)
    release = "commit-" + secrets.token_hex(6)
    configured = settings.model_copy(
        update={"sentry_dsn": SecretStr(sentry_ingest.dsn()), "sentry_release": release}
    )
    logs.configure(configured, json=True)
    app = build(configured)  # starts Sentry, as the ingress process does
    log = structlog.get_logger("tests.upstream")

    @app.post("/v1/companies/{company_id}/diagnostics")
    def diagnostics(company_id: uuid.UUID, payload: dict[str, Any], who: CallerDep) -> None:
        tokens = payload["integration"]["tokens"]
        access_token = tokens["access_token"]  # a local variable holding a secret
        row = {"access_token": ct, "key": planted.vault_entry}  # and one holding more
        log.warning("provider refused the connection", payload=payload, row=row)
        logging.getLogger("httpx").warning(
            "POST %s answered 401 for Authorization: Bearer %s",
            f"https://ops:{planted.password}@provider.example/oauth/token",
            access_token,
        )
        sentry_sdk.set_context("upstream", {"request": payload, "row": row})
        sentry_sdk.set_extra("credential", {"refresh_token": tokens["refresh_token"]})
        sentry_sdk.set_tag("upstream_auth", f"Bearer {planted.bearer}")
        raise RuntimeError(
            f"connect failed for {payload!r}: Authorization: Bearer {access_token}; "
            f"api_key={planted.api_key} password={planted.password} "
            f"S2_VAULT_KEYS={planted.vault_entry} row={row!r} Cookie: session={planted.cookie}"
        )

    path = f"/v1/companies/{tenant.id}/diagnostics"
    query = urllib.parse.urlencode({"access_token": planted.access, "password": planted.password})
    body = {
        "integration": {
            "tokens": {"access_token": planted.access, "refresh_token": planted.refresh},
            "client": {"client_secret": planted.client_secret},
        },
        "profile": {"password": planted.password, "api_key": planted.api_key},
        "vault": [planted.vault_entry, repr(ct)],
    }
    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.post(
            f"{path}?{query}",
            json=body,
            headers={
                **tenant.headers(),
                "Cookie": f"session={planted.cookie}",
                "X-Api-Key": planted.api_key,
                "X-Upstream-Token": planted.refresh,
                "X-Request-Id": "req-sentry-test-1",
            },
        )
    assert resp.status_code == 500
    sentry_sdk.flush(timeout=5)
    app.state.deps.db.close()

    event = sentry_ingest.wait_for_event(lambda e: "RuntimeError" in exception_types(e))
    assert_nothing_leaked(sentry_ingest.raw(), planted)
    # What a developer needs is still there.
    assert any(f.get("function") == "diagnostics" and f.get("lineno") for f in frames(event))
    assert not any("vars" in f for f in frames(event)), "frame locals were sent"
    assert event["request"]["url"].endswith(path) and event["request"]["method"] == "POST"
    assert event["release"] == release and event["environment"] == "test"
    assert event["tags"]["request_id"] == "req-sentry-test-1"
    assert event["tags"]["component"] == "ingress"
    assert event["tags"]["upstream_auth"] == "Bearer [redacted]"
    assert "connect failed for" in event["exception"]["values"][-1]["value"]
    crumbs = [c.get("message") or "" for c in event.get("breadcrumbs", {}).get("values", [])]
    assert "provider refused the connection" in crumbs
    assert any(c.startswith("POST https://[redacted]@provider.example") for c in crumbs)
    assert "upstream" in event["contexts"]


def _secret(text: str) -> Any:
    from vault import Secret

    return Secret(text)


def _with_ciphertext(planted: Planted, ct: bytes) -> Planted:
    return Planted(**{**planted.__dict__, "ciphertext": ct})
