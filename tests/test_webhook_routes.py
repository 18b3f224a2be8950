"""The webhook routes: admins only, each company its own endpoints, hostile URLs refused,
the secret shown once and stored sealed, bound to its company and endpoint."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from runtime.settings import Settings
from runtime.wiring import build_vault
from tests.conftest import Tenant
from tests.support import ingress_client
from vault import DecryptionFailed, Vault, new_key_entry
from vault.webhook_secrets import unseal

HOOK = "https://hooks.example.com/system2"


@pytest.fixture
def vault(settings: Settings, rds: redis.Redis) -> Vault:
    keys = SecretStr(new_key_entry(datetime.now(UTC)))
    return build_vault(settings.model_copy(update={"vault_keys": keys}), rds)


@pytest.fixture
def client(settings: Settings, rds: redis.Redis, vault: Vault) -> Iterator[TestClient]:
    with ingress_client(settings, rds, vault=vault) as c:
        yield c


def hooks(tenant: Tenant) -> str:
    return f"/v1/companies/{tenant.id}/webhooks"


def create(client: TestClient, tenant: Tenant, **body: Any) -> Any:
    spec = {"url": HOOK, "event_types": ["quest.succeeded"]} | body
    return client.post(hooks(tenant), json=spec, headers=tenant.headers())


def test_an_admin_registers_lists_and_removes_an_endpoint(
    client: TestClient, tenant: Tenant, rds: redis.Redis
) -> None:
    resp = create(client, tenant, event_types=["quest.failed", "guard.tier_changed"])
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert made["secret"].startswith("whsec_")
    assert made["event_types"] == ["guard.tier_changed", "quest.failed"]
    assert made["enabled"] is True
    listed = client.get(hooks(tenant), headers=tenant.headers()).json()
    assert [e["id"] for e in listed] == [made["id"]]
    assert made["secret"] not in json.dumps(listed)
    audit = [json.loads(m) for m in rds.hvals("dramatiq:audit.msgs")]
    actions = [e["action"] for m in audit for e in m["args"][0]["payload"]["events"]]
    assert "webhook.created" in actions

    page = client.get(f"{hooks(tenant)}/{made['id']}/deliveries", headers=tenant.headers())
    assert page.status_code == 200 and page.json() == {"items": [], "next_cursor": None}
    gone = client.delete(f"{hooks(tenant)}/{made['id']}", headers=tenant.headers())
    assert gone.status_code == 204
    assert client.get(hooks(tenant), headers=tenant.headers()).json() == []
    again = client.delete(f"{hooks(tenant)}/{made['id']}", headers=tenant.headers())
    assert again.status_code == 404


def test_the_secret_is_stored_sealed_and_bound_to_its_company_and_endpoint(
    client: TestClient,
    tenant: Tenant,
    other_tenant: Tenant,
    vault: Vault,
    admin_conn: psycopg.Connection[Any],
) -> None:
    made = create(client, tenant).json()
    row = admin_conn.execute(
        "SELECT secret, key_id FROM webhook_endpoints WHERE id = %s", (made["id"],)
    ).fetchone()
    assert row is not None
    sealed = bytes(row[0])
    assert made["secret"].encode() not in sealed
    endpoint_id = uuid.UUID(made["id"])
    opened = unseal(vault, sealed, company_id=tenant.id, endpoint_id=endpoint_id)
    assert opened.reveal() == made["secret"]
    with pytest.raises(DecryptionFailed):
        unseal(vault, sealed, company_id=other_tenant.id, endpoint_id=endpoint_id)
    with pytest.raises(DecryptionFailed):
        unseal(vault, sealed, company_id=tenant.id, endpoint_id=uuid.uuid4())


def test_a_member_is_refused(client: TestClient, tenant: Tenant) -> None:
    made = create(client, tenant).json()
    member = tenant.headers(tenant.member)
    spec = {"url": HOOK, "event_types": ["quest.succeeded"]}
    assert client.post(hooks(tenant), json=spec, headers=member).status_code == 403
    assert client.get(hooks(tenant), headers=member).status_code == 403
    assert client.delete(f"{hooks(tenant)}/{made['id']}", headers=member).status_code == 403
    deliveries = f"{hooks(tenant)}/{made['id']}/deliveries"
    assert client.get(deliveries, headers=member).status_code == 403
    assert len(client.get(hooks(tenant), headers=tenant.headers()).json()) == 1


def test_another_companys_admin_sees_and_removes_none_of_its_endpoints(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    made = create(client, tenant).json()
    theirs = other_tenant.headers()
    assert client.get(hooks(tenant), headers=theirs).status_code == 403
    assert client.delete(f"{hooks(tenant)}/{made['id']}", headers=theirs).status_code == 403
    # Through their own company's path, the endpoint does not exist.
    assert client.get(hooks(other_tenant), headers=theirs).json() == []
    assert client.delete(f"{hooks(other_tenant)}/{made['id']}", headers=theirs).status_code == 404
    deliveries = f"{hooks(other_tenant)}/{made['id']}/deliveries"
    assert client.get(deliveries, headers=theirs).status_code == 404
    assert len(client.get(hooks(tenant), headers=tenant.headers()).json()) == 1


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://hooks.example.com/x", "url_scheme"),
        ("javascript:alert(1)", "url_scheme"),
        ("https://admin:hunter2@hooks.example.com/x", "url_credentials"),
        ("https://hooks.example.com/" + "x" * 2100, None),  # beyond the field's bound
        ("https://hooks.example.com/\x00", "url_invalid"),
        ("not a url", "url_invalid"),
        ("hooks.example.com/x", "url_scheme"),
    ],
)
def test_hostile_urls_are_refused_and_nothing_is_stored(
    client: TestClient, tenant: Tenant, url: str, reason: str | None
) -> None:
    resp = create(client, tenant, url=url)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert [e["field"] for e in body["errors"]] == ["body.url"]
    if reason:
        assert reason in body["errors"][0]["problem"]
    assert "hunter2" not in resp.text
    assert client.get(hooks(tenant), headers=tenant.headers()).json() == []


def test_unknown_event_types_are_refused(client: TestClient, tenant: Tenant) -> None:
    for events in ([], ["quest.started"], ["*"]):
        resp = create(client, tenant, event_types=events)
        assert resp.status_code == 422, resp.text


def test_without_vault_keys_nothing_is_registered(
    settings: Settings, rds: redis.Redis, tenant: Tenant
) -> None:
    with ingress_client(settings, rds) as client:
        resp = create(client, tenant)
        assert resp.status_code == 503
        assert client.get(hooks(tenant), headers=tenant.headers()).json() == []
