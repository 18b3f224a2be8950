"""Where a webhook may go (URL and address rules, with the deployed setting), and its
signature as the Standard Webhooks reference library verifies it."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from runtime.settings import Settings
from runtime.webhook_urls import EndpointRefused, Target, check_address, check_url, resolve
from tests.test_settings_deployed import SAFE
from tests.webhook_receiver import webhook_receiver
from vault import Secret
from vault.webhook_secrets import key_bytes, new_secret
from workers.webhooks import signing
from workers.webhooks.sender import post_pinned, webhook_http


@pytest.fixture
def staging(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as staging loads them (a deployed environment's safe settings)."""
    for name in list(os.environ):
        if name.startswith(("S2_", "SENTRY_", "ANTHROPIC_")):
            monkeypatch.delenv(name)
    for name, value in {**SAFE, "S2_ENV": "staging"}.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.deployed()
    return settings


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "url_scheme"),
        ("javascript:alert(1)", "url_scheme"),
        ("file:///etc/passwd", "url_scheme"),
        ("https://user:pw@example.com/hook", "url_credentials"),
        ("https://token@example.com/hook", "url_credentials"),
        ("https://example.com/" + "a" * 2048, "url_too_long"),
        ("https:///nohost", "url_invalid"),
        ("https://example.com/h\nx", "url_invalid"),
        ("https://example.com:99999/", "url_invalid"),
        ("https://example.com/h#frag", "url_invalid"),
    ],
)
def test_hostile_urls_are_refused_everywhere(url: str, reason: str) -> None:
    for deployed in (False, True):
        with pytest.raises(EndpointRefused) as refused:
            check_url(url, deployed=deployed)
        assert refused.value.reason == reason


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # not https
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://172.16.5.4/hook",
        "https://169.254.169.254/latest/meta-data",  # the cloud metadata service
        "https://100.64.0.1/hook",  # shared address space (CGNAT)
        "https://0.0.0.0/hook",
        "https://[fe80::1]/hook",
        "https://[fd00::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",  # IPv4-mapped
        "https://224.0.0.1/hook",
        "https://localhost/hook",
        "https://printer.local/hook",
    ],
)
def test_deployed_refuses_http_and_non_global_hosts(staging: Settings, url: str) -> None:
    with pytest.raises(EndpointRefused):
        check_url(url, deployed=staging.deployed())
    check_url(url.replace("https://", "http://", 1), deployed=False)  # dev and test allow them


def test_deployed_accepts_a_public_https_endpoint(staging: Settings) -> None:
    target = check_url("https://hooks.example.com:8443/in?k=v", deployed=staging.deployed())
    assert target == Target("https", "hooks.example.com", 8443)
    check_address(ipaddress.ip_address("93.184.216.34"), deployed=True)
    check_address(ipaddress.ip_address("2606:4700::1111"), deployed=True)


def test_a_name_resolving_to_loopback_is_refused_at_delivery_when_deployed(
    staging: Settings,
) -> None:
    """The name passes registration (a name is not an address); every address it resolves
    to is checked when it is sent to."""
    target = Target("https", "localhost", 443)
    with pytest.raises(EndpointRefused) as refused:
        asyncio.run(resolve(target, deployed=staging.deployed()))
    assert refused.value.reason == "address_not_global"
    assert "127.0.0.1" in asyncio.run(resolve(target, deployed=False))


def test_the_sender_never_connects_to_a_refused_address(staging: Settings) -> None:
    """With the deployed setting, a send to a name that resolves to loopback is refused
    before any connection: the receiver there hears nothing. In test it is delivered, with
    the URL's Host."""
    with webhook_receiver() as receiver:

        async def send(deployed: bool) -> int:
            async with webhook_http(staging) as http:
                return await post_pinned(http, receiver.url, b"{}", {}, deployed=deployed)

        with pytest.raises(EndpointRefused):
            asyncio.run(send(staging.deployed()))
        assert receiver.all() == []
        assert asyncio.run(send(False)) == 200
        (got,) = receiver.all()
        assert got.headers["host"] == receiver.host


def test_a_redirect_is_not_followed(staging: Settings) -> None:
    with webhook_receiver() as receiver:
        receiver.then = 307

        async def send() -> int:
            async with webhook_http(staging) as http:
                return await post_pinned(http, receiver.url, b"{}", {}, deployed=False)

        assert asyncio.run(send()) == 307
        assert len(receiver.all()) == 1


def test_the_signature_verifies_with_the_reference_library() -> None:
    secret = new_secret()
    assert secret.reveal().startswith("whsec_")
    assert len(key_bytes(secret)) == 32
    body = signing.body(
        "quest.succeeded", datetime(2026, 12, 4, 16, 0, tzinfo=UTC), {"quest_id": "q", "n": 1}
    )
    headers = signing.headers(key_bytes(secret), "msg_1", int(time.time()), body)
    verified = Webhook(secret.reveal()).verify(body, headers)
    assert verified == {
        "type": "quest.succeeded",
        "timestamp": "2026-12-04T16:00:00.000Z",
        "data": {"quest_id": "q", "n": 1},
    }
    with pytest.raises(WebhookVerificationError):  # another secret
        Webhook(new_secret().reveal()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):  # a changed body
        Webhook(secret.reveal()).verify(body.replace(b"q", b"r"), headers)
    stale = signing.headers(key_bytes(secret), "msg_1", int(time.time()) - 3600, body)
    with pytest.raises(WebhookVerificationError):  # replayed an hour later
        Webhook(secret.reveal()).verify(body, stale)


def test_the_secret_is_never_shown_by_its_repr() -> None:
    secret = new_secret()
    assert isinstance(secret, Secret)
    assert secret.reveal() not in f"{secret!r} {secret}"


@pytest.mark.parametrize("schedule", ["0,5", "-1", "80000,7000"])
def test_a_retry_schedule_beyond_a_day_or_not_positive_is_refused(
    monkeypatch: pytest.MonkeyPatch, schedule: str
) -> None:
    monkeypatch.setenv("S2_WEBHOOK_RETRY_SCHEDULE_S", schedule)
    with pytest.raises(ValidationError, match="webhook_retry_schedule_s"):
        Settings()
    monkeypatch.setenv("S2_WEBHOOK_RETRY_SCHEDULE_S", "0.5, 2,60")
    assert Settings().webhook_retry_schedule_s == (0.5, 2.0, 60.0)
