"""On the wire: the real sentry-sdk, pointed at a loopback ingest endpoint, sends errors with
what a developer needs and none of the secrets the failing code held.

Secrets are made at run time (``secrets.token_urlsafe``, a fresh vault key, a real vault
ciphertext, a freshly minted JWT), so no source line holds them. Each is planted where a
careless setup leaks it: exception messages, request headers, cookies, query strings and
bodies, nested payloads in contexts and extra, tags, log lines that become breadcrumbs, and
local variables of the failing frames. The received envelopes are searched as raw bytes
(decompressed), for each secret as is and in its JSON-escaped, base64 and URL-encoded forms.

The ingress case runs the app from ``ingress.app.build`` (which starts Sentry) with one extra
route registered on that app instance only. The worker case is a real worker process with
``SENTRY_DSN`` set, running a quest whose tool's OAuth refresh meets a provider answering a
malformed token response that echoes the request (refresh token and client credentials) in
its ``expires_in``: an unexpected exception deep in the integration code, with tokens in its
message and in the locals of every frame around it.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
import sentry_sdk
import structlog
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ingress.app import build
from ingress.deps import CallerDep
from ingress.integrations import IntegrationTokens, connect
from runtime import logs
from runtime.settings import Settings
from runtime.wiring import build_vault
from store import TenantTx
from store import credentials as credentials_store
from tests.conftest import Stack, Tenant
from tests.sentry_ingest import SentryIngest, exception_types, frames
from tests.support import InTenant, submit
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
    sentry_sdk.flush(timeout=5)  # (the app's pool was closed by its lifespan, with the client)

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


# -- a worker -------------------------------------------------------------------------------


class BrokenTokenEndpoint:
    """An OAuth provider whose token endpoint answers a refresh with a malformed
    ``expires_in`` echoing the request — its form body and its Authorization header."""

    def __init__(self, access: str, refresh: str) -> None:
        self.hits = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                provider.hits += 1
                form = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                answer = json.dumps(
                    {
                        "access_token": access,
                        "refresh_token": refresh,
                        "token_type": "Bearer",
                        "expires_in": f"3600 ({form}; {self.headers.get('Authorization')})",
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class FailingRun:
    planted: Planted
    quest_id: uuid.UUID
    company_id: uuid.UUID
    release: str


@pytest.fixture
def failing_run(
    stack: Stack,
    in_tenant: InTenant,
    tenant: Tenant,
    settings: Settings,
    rds: redis.Redis,
    sentry_ingest: SentryIngest,
) -> Iterator[FailingRun]:
    """A worker process (Sentry on) running a quest whose integration call fails as above."""
    planted = Planted.make(bearer=tenant.token())
    provider = BrokenTokenEndpoint(
        access="demo_at_" + secrets.token_urlsafe(20),
        refresh="demo_rt_" + secrets.token_urlsafe(20),
    )
    vault = build_vault(
        settings.model_copy(update={"vault_keys": SecretStr(planted.vault_entry)}), rds
    )
    tokens = IntegrationTokens(
        access_token=planted.access,
        refresh_token=planted.refresh,
        expires_at=datetime.now(UTC) - timedelta(minutes=5),  # the step must refresh it
    )

    async def connect_demo(tx: TenantTx) -> credentials_store.Credential | None:
        await connect(tx, vault, "demo", tokens, connected_by="user:tests")
        return await credentials_store.get(tx, "demo")

    cred = in_tenant(tenant.id, connect_demo)
    assert cred is not None
    planted = _with_ciphertext(planted, cred.access_token)
    release = "commit-" + secrets.token_hex(6)
    stack.start_workers(
        processes=1,
        SENTRY_DSN=sentry_ingest.dsn(),
        S2_RELEASE=release,
        S2_VAULT_KEYS=planted.vault_entry,
        S2_DEMO_PROVIDER_URL=f"http://ops:{planted.password}@127.0.0.1:{provider.port}",
        S2_DEMO_CLIENT_SECRET=planted.client_secret,
    )
    goal = (
        f"[script:tasks] Rotate the staging credentials (password={planted.password}, "
        f"api key {planted.api_key}, Bearer {planted.bearer})"
    )
    quest = submit(in_tenant, settings.redis_url, tenant.id, goal)
    try:
        yield FailingRun(planted, quest.id, tenant.id, release)
    finally:
        stack.stop()
        provider.close()


def test_a_worker_error_reaches_sentry_with_its_ids_and_no_secret(
    failing_run: FailingRun, sentry_ingest: SentryIngest
) -> None:
    event = sentry_ingest.wait_for_event(lambda e: "ValueError" in exception_types(e), timeout=60)
    assert_nothing_leaked(sentry_ingest.raw(), failing_run.planted)
    tags = event["tags"]
    assert tags["quest_id"] == str(failing_run.quest_id)
    assert tags["company_id"] == str(failing_run.company_id)
    assert uuid.UUID(tags["message_id"]) and tags["component"] == "worker"
    assert event["release"] == failing_run.release
    names = [f.get("function") for f in frames(event)]
    assert "refreshed_token" in names and "_token" in names, names  # the stack is whole
    assert not any("vars" in f for f in frames(event)), "frame locals were sent"
    message = event["exception"]["values"][-1]["value"]
    assert message.startswith("invalid literal for int()") and "[redacted]" in message


def test_a_worker_log_of_that_run_is_json_with_its_ids_and_no_secret(
    failing_run: FailingRun, stack: Stack, sentry_ingest: SentryIngest
) -> None:
    sentry_ingest.wait_for_event(lambda e: "ValueError" in exception_types(e), timeout=60)
    proc = stack.procs["workers"]

    def retried() -> list[dict[str, Any]]:
        return [
            line
            for line in _json_lines(proc.output())
            if line.get("event") == "step will be retried"
        ]

    from tests.support import wait_for

    lines = wait_for(retried, timeout=30)
    text = proc.output().encode()
    assert_nothing_leaked(text, failing_run.planted)
    line = lines[0]
    assert line["quest_id"] == str(failing_run.quest_id)
    assert line["company_id"] == str(failing_run.company_id)
    assert uuid.UUID(line["message_id"]) and uuid.UUID(line["correlation_id"])
    assert line["error"] == "ValueError" and "[redacted]" in line["reason"]


def _json_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for raw in text.splitlines():
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found
