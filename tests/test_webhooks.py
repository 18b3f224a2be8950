"""Webhooks end to end: registered over HTTP, sent by real worker processes to a loopback
receiver that verifies each signature with the Standard Webhooks reference library."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import Stack, Tenant
from tests.support import wait_for
from tests.webhook_receiver import Receiver, webhook_receiver
from vault import new_key_entry

pytestmark = pytest.mark.slow

# Three attempts a delivery (a second apart), a 2 s timeout each; two given-up deliveries
# in a row disable an endpoint.
WORKER_ENV = {
    "S2_WEBHOOK_RETRY_SCHEDULE_S": "1,1",
    "S2_WEBHOOK_TIMEOUT_S": "2",
    "S2_WEBHOOK_DISABLE_AFTER": "2",
    "S2_WEBHOOK_SWEEP_S": "2",
}


@pytest.fixture
def wstack(stack: Stack) -> Stack:
    stack.base_env.update(S2_VAULT_KEYS=new_key_entry(datetime.now(UTC)), **WORKER_ENV)
    stack.start_workers()
    stack.start_ingress()
    return stack


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


def register(stack: Stack, tenant: Tenant, url: str, *events: str) -> dict[str, Any]:
    resp = httpx.post(
        f"{stack.ingress_url}/v1/companies/{tenant.id}/webhooks",
        json={"url": url, "event_types": list(events)},
        headers=tenant.headers(),
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def run_quest(stack: Stack, tenant: Tenant, goal: str) -> str:
    with httpx.Client(base_url=stack.ingress_url, timeout=10) as client:
        resp = client.post(
            f"/v1/companies/{tenant.id}/quests", json={"goal": goal}, headers=tenant.headers()
        )
        assert resp.status_code == 202, resp.text
        quest_id = str(resp.json()["quest_id"])

        def ended() -> dict[str, Any] | None:
            body = client.get(
                f"/v1/companies/{tenant.id}/quests/{quest_id}", headers=tenant.headers()
            ).json()
            return body if body["status"] not in ("queued", "running") else None

        wait_for(ended)
    return quest_id


def deliveries(stack: Stack, tenant: Tenant, endpoint_id: str) -> list[dict[str, Any]]:
    resp = httpx.get(
        f"{stack.ingress_url}/v1/companies/{tenant.id}/webhooks/{endpoint_id}/deliveries",
        headers=tenant.headers(),
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])


def test_a_succeeded_quest_is_delivered_signed_and_retried_with_the_same_id(
    wstack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    endpoint = register(wstack, tenant, receiver.url, "quest.succeeded", "quest.failed")
    secret = endpoint["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    listed = httpx.get(
        f"{wstack.ingress_url}/v1/companies/{tenant.id}/webhooks", headers=tenant.headers()
    ).json()
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert "secret" not in listed[0], "the secret is shown once, at registration"
    receiver.secret = secret
    receiver.script = [500, "timeout"]  # then 200

    quest_id = run_quest(wstack, tenant, "[script:notes] Write down the launch checklist")

    got = wait_for(receiver.delivered, timeout=60)[0]
    attempts = receiver.all()
    assert [a.answered for a in attempts] == [500, "timeout", 200]
    assert {a.id for a in attempts} == {got.id}, "every attempt carries the same webhook-id"
    assert all(a.refused is None and a.verified for a in attempts), [a.refused for a in attempts]
    assert {a.headers["host"] for a in attempts} == {receiver.host}
    body = got.json()
    assert body["type"] == "quest.succeeded"
    assert body["data"]["quest_id"] == quest_id
    assert body["data"]["status"] == "succeeded"
    assert body["timestamp"].endswith("Z")

    def done() -> list[dict[str, Any]] | None:
        items = deliveries(wstack, tenant, endpoint["id"])
        return items if items and items[0]["status"] == "delivered" else None

    (item,) = wait_for(done)
    assert item["id"] == got.id
    assert item["event_type"] == "quest.succeeded"
    assert item["attempts"] == 3
    assert item["last_status"] == 200
    assert item["delivered_at"]


def test_an_endpoint_that_keeps_failing_is_disabled_with_an_audit_row(
    wstack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    endpoint = register(wstack, tenant, receiver.url, "quest.succeeded")
    receiver.secret = endpoint["secret"]
    receiver.then = 503
    for n in range(2):
        run_quest(wstack, tenant, f"[script:notes] Note number {n}")

    def disabled() -> dict[str, Any] | None:
        (found,) = httpx.get(
            f"{wstack.ingress_url}/v1/companies/{tenant.id}/webhooks", headers=tenant.headers()
        ).json()
        return found if not found["enabled"] else None

    found = wait_for(disabled, timeout=90)
    assert found["disabled_reason"]
    items = deliveries(wstack, tenant, endpoint["id"])
    assert [i["status"] for i in items] == ["failed", "failed"]
    assert all(i["attempts"] == 3 and i["last_status"] == 503 for i in items)
    assert len(receiver.all()) == 6
    audit = httpx.get(
        f"{wstack.ingress_url}/v1/companies/{tenant.id}/activity",
        params={"action": "webhook.disabled"},
        headers=tenant.headers(),
    ).json()["items"]
    assert [a["target"] for a in audit] == [f"webhook:{endpoint['id']}"]

    run_quest(wstack, tenant, "[script:notes] One more note")
    assert len(deliveries(wstack, tenant, endpoint["id"])) == 2, "nothing for a disabled endpoint"
