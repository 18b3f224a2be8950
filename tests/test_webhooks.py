"""Webhooks end to end: registered over HTTP, sent by real worker processes to a loopback
receiver that verifies each signature with the Standard Webhooks reference library."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import Stack, Tenant, system2
from tests.support import InTenant, wait_for
from tests.test_crashes import FAST, kill
from tests.test_guard_quests import set_limits
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


def test_a_quests_events_reach_an_endpoint_in_order_even_while_one_is_retried(
    stack: Stack, tenant: Tenant, receiver: Receiver, in_tenant: InTenant
) -> None:
    # As tests/test_guard_quests.py: a quest that crosses warn, then slow, then is halted.
    set_limits(in_tenant, tenant, quest_cap_micros=6_000, warn_pct=20, slow_pct=40, halt_pct=100)
    stack.base_env.update(S2_VAULT_KEYS=new_key_entry(datetime.now(UTC)), **WORKER_ENV)
    stack.start_workers(processes=1, S2_MAX_TOKENS="128")
    stack.start_ingress()
    endpoint = register(stack, tenant, receiver.url, "guard.tier_changed", "quest.halted")
    receiver.secret = endpoint["secret"]
    receiver.script = [500, 500]  # the first event is tried three times (1 s apart)
    with httpx.Client(base_url=stack.ingress_url, timeout=10) as client:
        resp = client.post(
            f"/v1/companies/{tenant.id}/quests",
            json={"goal": "[script:loop] keep writing notes"},
            headers=tenant.headers(),
        )
        assert resp.status_code == 202, resp.text

    def halted() -> list[Any] | None:
        got = receiver.delivered()
        return got if got and got[-1].json()["type"] == "quest.halted" else None

    delivered = wait_for(halted, timeout=90)
    bodies = [d.json() for d in delivered]
    assert [b["data"]["tier"] for b in bodies[:-1]][:2] == ["warn", "slow"], bodies
    assert all(b["type"] == "guard.tier_changed" for b in bodies[:-1])
    ids = [r.id for r in receiver.all()]
    assert ids[:3] == [ids[0]] * 3, "the first event was retried before any other was sent"
    assert len(set(ids)) == len(delivered), "each event delivered once"
    seen = [i for n, i in enumerate(ids) if i not in ids[:n]]
    assert seen == [d.id for d in delivered], "sent one at a time, in the events' order"
    assert all(r.verified for r in receiver.all())


def run_cli(stack: Stack, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        system2(*args), env=stack.env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode == 0) is ok, done.stderr
    return done


def test_system2_webhook_commands(wstack: Stack, tenant: Tenant, receiver: Receiver) -> None:
    company = ["--company", str(tenant.id)]
    added = run_cli(wstack, "webhook", "add", *company, receiver.url, "--event", "quest.succeeded")
    endpoint_id = added.stdout.strip()
    (line,) = added.stderr.strip().splitlines()
    secret = line.rsplit(" ", 1)[-1]
    assert secret.startswith("whsec_")
    receiver.secret = secret
    listed = json.loads(run_cli(wstack, "webhook", "list", *company).stdout)
    assert [e["id"] for e in listed] == [endpoint_id] and secret not in json.dumps(listed)

    quest_id = run_quest(wstack, tenant, "[script:notes] Write down the launch checklist")
    got = wait_for(receiver.delivered, timeout=60)[0]
    assert got.verified["data"]["quest_id"] == quest_id

    def shown() -> list[dict[str, Any]] | None:
        out = run_cli(wstack, "webhook", "deliveries", *company, endpoint_id).stdout
        items = json.loads(out)["items"]
        return items if items and items[0]["status"] == "delivered" else None

    first = wait_for(shown)[0]
    assert first["id"] == got.id and "data" not in first  # content is a support read
    run_cli(wstack, "webhook", "remove", *company, endpoint_id)
    again = run_cli(wstack, "webhook", "remove", *company, endpoint_id, ok=False)
    assert again.stderr.startswith("error: ") and len(again.stderr.strip().splitlines()) == 1
    bad = run_cli(
        wstack, "webhook", "add", *company, "ftp://x.example/h", "--event", "quest.failed", ok=False
    )
    assert bad.stderr.startswith("error: ") and "url_scheme" in bad.stderr
    assert json.loads(run_cli(wstack, "webhook", "list", *company).stdout) == []


def test_signing_secrets_are_rewrapped_with_the_credentials(
    stack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    """A key rotation covers the endpoints' secrets: `vault retire` counts them, `vault
    rewrap` moves them, and deliveries are signed with the same secret after."""
    old, new = new_key_entry(datetime.now(UTC)), new_key_entry(datetime.now(UTC))
    old_kid = old.split("=")[0]
    stack.base_env.update(S2_VAULT_KEYS=old, **WORKER_ENV)
    stack.start_ingress()
    endpoint = register(stack, tenant, receiver.url, "quest.succeeded")
    receiver.secret = endpoint["secret"]

    rotated = {"S2_VAULT_KEYS": f"{new},{old}"}
    stack.base_env.update(rotated)
    refused = run_cli(stack, "vault", "retire", old_kid, ok=False)
    assert "still protects 1 ciphertexts" in refused.stderr
    stack.start_workers(processes=1)
    stack.start_ingress(httpx.URL(stack.ingress_url).port)
    run_cli(stack, "vault", "rewrap", "--wait", "--timeout", "60")
    run_cli(stack, "vault", "retire", old_kid)

    run_quest(stack, tenant, "[script:notes] Write down the launch checklist")
    got = wait_for(receiver.delivered, timeout=60)[0]
    assert got.verified and got.refused is None


def test_a_worker_killed_mid_send_leaves_the_delivery_to_go_again_with_its_id(
    stack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    """The claim is a lease: a delivery whose worker died while its request was in flight
    (no outcome recorded) is claimed again once the lease ends (S2_WEBHOOK_TIMEOUT_S + 30 s)
    and sent with the same webhook-id: at least once."""
    env = {**WORKER_ENV, **FAST, "S2_WEBHOOK_TIMEOUT_S": "5"}
    stack.base_env.update(S2_VAULT_KEYS=new_key_entry(datetime.now(UTC)), **env)
    workers = stack.start_workers(processes=1)
    stack.start_ingress()
    endpoint = register(stack, tenant, receiver.url, "quest.succeeded")
    receiver.secret = endpoint["secret"]
    receiver.script, receiver.hold_s = ["timeout"], 30.0

    run_quest(stack, tenant, "[script:notes] Write down the launch checklist")
    first = wait_for(receiver.all, timeout=30, every=0.02)[0]
    kill(workers)  # while the request waits for its answer: no outcome is recorded
    (item,) = deliveries(stack, tenant, endpoint["id"])
    assert item["status"] == "pending" and item["attempts"] == 0
    stack.start_workers("workers-again", processes=1)

    got = wait_for(receiver.delivered, timeout=120)[0]
    assert got.id == first.id and got.verified
