"""The HTTP ingress, in-process, on the machine's real Postgres and Redis.

Every rejected request is checked on the real queue: Dramatiq's Redis broker keeps queue
``quests`` as the list ``dramatiq:quests`` and the message bodies in the hash
``dramatiq:quests.msgs``; a rejected request leaves both empty.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jwt
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from ingress.submit import QuestSpec, create_quest
from messages import Actor, ActorType
from runtime.settings import Settings
from system2.dev_tokens import mint
from tests.conftest import Tenant
from tests.support import InTenant, add_activity, ingress_client

DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1

QUEUE = "dramatiq:quests"
BODIES = "dramatiq:quests.msgs"
AdminConn = psycopg.Connection[tuple[Any, ...]]


@contextmanager
def build_client(settings: Settings, broker_url: str) -> Iterator[TestClient]:
    client_redis = redis.Redis.from_url(settings.redis_url)
    try:
        with ingress_client(settings, client_redis, broker_url=broker_url) as client:
            yield client
    finally:
        client_redis.close()


@pytest.fixture
def client(settings: Settings, rds: redis.Redis) -> Iterator[TestClient]:
    rds.flushdb()
    with build_client(settings, settings.redis_url) as test_client:
        yield test_client


def queued(rds: redis.Redis) -> list[dict[str, Any]]:
    """The messages waiting on the ``quests`` queue, as Dramatiq stored them."""
    ids = rds.lrange(QUEUE, 0, -1)
    bodies = [rds.hget(BODIES, i) for i in ids]
    return [json.loads(b) for b in bodies if b is not None]


def assert_nothing_enqueued(rds: redis.Redis) -> None:
    assert rds.llen(QUEUE) == 0
    assert rds.hlen(BODIES) == 0


def quest_rows(admin_conn: AdminConn, company_id: uuid.UUID) -> int:
    row = admin_conn.execute(
        "SELECT count(*) FROM quests WHERE company_id = %s", (company_id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def quests_url(company_id: uuid.UUID) -> str:
    return f"/v1/companies/{company_id}/quests"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- submit and read back ---------------------------------------------------------------


def test_submit_enqueues_one_step_stamped_with_the_path_company_and_token_user(
    client: TestClient, rds: redis.Redis, tenant: Tenant, admin_conn: AdminConn
) -> None:
    resp = client.post(
        quests_url(tenant.id),
        json={"goal": "Draft the launch checklist", "max_usd": "2.50"},
        headers=tenant.headers(tenant.member),
    )
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "queued"
    quest_id = str(uuid.UUID(body["quest_id"]))

    messages = queued(rds)
    assert len(messages) == 1
    assert rds.hlen(BODIES) == 1
    message = messages[0]
    assert message["queue_name"] == "quests"
    assert message["actor_name"] == "quest_step"
    envelope = message["args"][0]
    assert envelope["company_id"] == str(tenant.id)
    assert envelope["actor"] == {"type": "user", "id": tenant.member}
    assert envelope["payload"]["quest_id"] == quest_id
    assert envelope["payload"]["step"] == 1
    assert message["message_id"] == envelope["message_id"]
    assert quest_rows(admin_conn, tenant.id) == 1


def test_submitted_quest_reads_back_queued_with_its_goal_and_cap(
    client: TestClient, tenant: Tenant
) -> None:
    resp = client.post(
        quests_url(tenant.id),
        json={"goal": "Summarise the week", "max_usd": "0.25"},
        headers=tenant.headers(tenant.member),
    )
    assert resp.status_code == 202, resp.text
    quest_id = resp.json()["quest_id"]

    shown = client.get(f"{quests_url(tenant.id)}/{quest_id}", headers=tenant.headers(tenant.member))
    assert shown.status_code == 200, shown.text
    view = shown.json()
    assert view["quest_id"] == quest_id
    assert view["status"] == "queued"
    assert view["goal"] == "Summarise the week"
    assert view["steps"] == []
    assert view["cost_usd_micros"] == 0
    assert view["max_usd_micros"] == 250_000
    assert view.get("result") is None


def test_company_id_planted_in_the_body_is_rejected_and_never_used(
    client: TestClient,
    rds: redis.Redis,
    tenant: Tenant,
    other_tenant: Tenant,
    admin_conn: AdminConn,
) -> None:
    resp = client.post(
        quests_url(tenant.id),
        json={"goal": "Move money", "company_id": str(other_tenant.id)},
        headers=tenant.headers(tenant.member),
    )
    assert resp.status_code == 422, resp.text
    assert "company_id" in resp.json()["detail"]
    assert_nothing_enqueued(rds)
    assert quest_rows(admin_conn, tenant.id) == 0
    assert quest_rows(admin_conn, other_tenant.id) == 0


# --- authentication ---------------------------------------------------------------------


def _claims(user: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": user, "aud": "authenticated", "iat": now, "exp": now + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


BAD_TOKENS: dict[str, Callable[[str, str], dict[str, str]]] = {
    "missing": lambda secret, user: {},
    "empty bearer": lambda secret, user: {"Authorization": "Bearer "},
    "not bearer": lambda secret, user: {"Authorization": f"Basic {mint(secret, user)}"},
    "garbage": lambda secret, user: bearer("not.a.jwt"),
    "expired": lambda secret, user: bearer(mint(secret, user, ttl_s=-120)),
    "wrongly signed": lambda secret, user: bearer(mint("some-other-secret-" + "x" * 32, user)),
    "alg none": lambda secret, user: bearer(jwt.encode(_claims(user), None, algorithm="none")),
    "alg none, signature kept": lambda secret, user: bearer(
        ".".join(
            [
                base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("="),
                *mint(secret, user).split(".")[1:],
            ]
        )
    ),
    "wrong audience": lambda secret, user: bearer(mint(secret, user, audience="anon")),
    "missing audience": lambda secret, user: bearer(
        jwt.encode(_claims(user, aud=None), secret, algorithm="HS256")
    ),
    "missing sub": lambda secret, user: bearer(
        jwt.encode(_claims(user, sub=None), secret, algorithm="HS256")
    ),
    "missing exp": lambda secret, user: bearer(
        jwt.encode(_claims(user, exp=None), secret, algorithm="HS256")
    ),
    "HS512": lambda secret, user: bearer(jwt.encode(_claims(user), secret, algorithm="HS512")),
}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_bad_token_is_401_and_nothing_is_enqueued(
    kind: str,
    client: TestClient,
    rds: redis.Redis,
    settings: Settings,
    tenant: Tenant,
    admin_conn: AdminConn,
) -> None:
    headers = BAD_TOKENS[kind](settings.jwt_secret.get_secret_value(), tenant.admin)
    resp = client.post(quests_url(tenant.id), json={"goal": "hello"}, headers=headers)
    assert resp.status_code == 401, resp.text
    assert resp.headers.get("www-authenticate", "").lower().startswith("bearer")
    assert_nothing_enqueued(rds)
    assert quest_rows(admin_conn, tenant.id) == 0

    read = client.get(f"{quests_url(tenant.id)}/{uuid.uuid4()}", headers=headers)
    assert read.status_code == 401


def test_bad_token_with_a_malformed_body_is_401_not_422(
    client: TestClient, rds: redis.Redis, tenant: Tenant
) -> None:
    """An unauthenticated caller learns nothing about the body's schema."""
    resp = client.post(quests_url(tenant.id), json={"company_id": "x"})
    assert resp.status_code == 401, resp.text
    assert "company_id" not in resp.text
    assert_nothing_enqueued(rds)


def test_valid_token_of_a_non_member_is_403_and_nothing_is_enqueued(
    client: TestClient, rds: redis.Redis, settings: Settings, tenant: Tenant, admin_conn: AdminConn
) -> None:
    stranger = mint(settings.jwt_secret.get_secret_value(), f"stranger-{uuid.uuid4().hex[:8]}")
    resp = client.post(quests_url(tenant.id), json={"goal": "hello"}, headers=bearer(stranger))
    assert resp.status_code == 403, resp.text
    assert_nothing_enqueued(rds)
    assert quest_rows(admin_conn, tenant.id) == 0


def test_unknown_company_is_403_not_a_leak(
    client: TestClient, rds: redis.Redis, tenant: Tenant
) -> None:
    resp = client.post(
        quests_url(uuid.uuid4()), json={"goal": "hello"}, headers=tenant.headers(tenant.admin)
    )
    assert resp.status_code == 403, resp.text
    assert_nothing_enqueued(rds)


# --- cross-tenant -----------------------------------------------------------------------


def test_member_of_a_posting_to_b_is_403_and_nothing_is_enqueued(
    client: TestClient,
    rds: redis.Redis,
    tenant: Tenant,
    other_tenant: Tenant,
    admin_conn: AdminConn,
) -> None:
    for user in (tenant.member, tenant.admin):
        resp = client.post(
            quests_url(other_tenant.id), json={"goal": "peek"}, headers=tenant.headers(user)
        )
        assert resp.status_code == 403, resp.text
    assert_nothing_enqueued(rds)
    assert quest_rows(admin_conn, other_tenant.id) == 0


def test_reading_another_companys_quest(
    client: TestClient, rds: redis.Redis, tenant: Tenant, other_tenant: Tenant
) -> None:
    made = client.post(
        quests_url(other_tenant.id),
        json={"goal": "Globex's secret plan"},
        headers=other_tenant.headers(other_tenant.member),
    )
    assert made.status_code == 202, made.text
    b_quest = made.json()["quest_id"]
    rds.flushdb()

    headers = tenant.headers(tenant.member)
    through_a = client.get(f"{quests_url(tenant.id)}/{b_quest}", headers=headers)
    missing = client.get(f"{quests_url(tenant.id)}/{uuid.uuid4()}", headers=headers)
    assert through_a.status_code == 404
    assert missing.status_code == 404
    assert through_a.json() == missing.json()
    assert "secret plan" not in through_a.text

    through_b = client.get(f"{quests_url(other_tenant.id)}/{b_quest}", headers=headers)
    assert through_b.status_code == 403
    assert "secret plan" not in through_b.text
    assert_nothing_enqueued(rds)


# --- malformed bodies -------------------------------------------------------------------

MALFORMED: dict[str, tuple[Any, str]] = {
    "missing goal": ({"model": "claude-sonnet-5-5"}, "goal"),
    "empty goal": ({"goal": ""}, "goal"),
    "blank goal": ({"goal": "   \n\t "}, "goal"),
    "goal not a string": ({"goal": 42}, "goal"),
    "goal a list": ({"goal": ["a", "b"]}, "goal"),
    "max_usd not a number": ({"goal": "g", "max_usd": "abc"}, "max_usd"),
    "max_usd negative": ({"goal": "g", "max_usd": "-1"}, "max_usd"),
    "max_usd zero": ({"goal": "g", "max_usd": "0"}, "max_usd"),
    "max_usd below a micro-dollar": ({"goal": "g", "max_usd": "0.0000001"}, "max_usd"),
    "max_usd infinite": ({"goal": "g", "max_usd": "Infinity"}, "max_usd"),
    "max_usd NaN": ({"goal": "g", "max_usd": "NaN"}, "max_usd"),
    "max_usd huge": ({"goal": "g", "max_usd": "1e30"}, "max_usd"),
    "bad model name": ({"goal": "g", "model": "Claude Opus!"}, "model"),
    "model with a slash": ({"goal": "g", "model": "../../etc/passwd"}, "model"),
    "body is a list": (["goal"], "body"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_body_is_422_naming_the_field_and_nothing_is_enqueued(
    case: str, client: TestClient, rds: redis.Redis, tenant: Tenant, admin_conn: AdminConn
) -> None:
    body, field = MALFORMED[case]
    resp = client.post(quests_url(tenant.id), json=body, headers=tenant.headers(tenant.member))
    assert resp.status_code == 422, resp.text
    assert field in resp.json()["detail"]
    assert_nothing_enqueued(rds)
    assert quest_rows(admin_conn, tenant.id) == 0


def test_body_that_is_not_json_is_422_and_nothing_is_enqueued(
    client: TestClient, rds: redis.Redis, tenant: Tenant, admin_conn: AdminConn
) -> None:
    headers = {**tenant.headers(tenant.member), "Content-Type": "application/json"}
    resp = client.post(quests_url(tenant.id), content=b"{goal: nope", headers=headers)
    assert resp.status_code == 422, resp.text
    assert "body" in resp.json()["detail"]
    assert_nothing_enqueued(rds)
    assert quest_rows(admin_conn, tenant.id) == 0


def test_rejected_value_is_not_echoed_back(
    client: TestClient, rds: redis.Redis, tenant: Tenant
) -> None:
    secret = "sk-ant-api03-" + uuid.uuid4().hex
    resp = client.post(
        quests_url(tenant.id),
        json={"goal": "g", "max_usd": secret},
        headers=tenant.headers(tenant.member),
    )
    assert resp.status_code == 422
    assert "max_usd" in resp.json()["detail"]
    assert secret not in resp.text
    assert_nothing_enqueued(rds)


# --- idempotency ------------------------------------------------------------------------


def test_same_idempotency_key_twice_gives_one_quest_one_row_one_message(
    client: TestClient, rds: redis.Redis, tenant: Tenant, admin_conn: AdminConn
) -> None:
    key = f"retry-{uuid.uuid4().hex}"
    headers = {**tenant.headers(tenant.member), "Idempotency-Key": key}
    body = {"goal": "Only once, please", "max_usd": "1.00"}
    first = client.post(quests_url(tenant.id), json=body, headers=headers)
    second = client.post(quests_url(tenant.id), json=body, headers=headers)
    assert first.status_code == 202, first.text
    assert second.status_code == 202, second.text
    assert first.json()["quest_id"] == second.json()["quest_id"]

    row = admin_conn.execute(
        "SELECT count(*) FROM quests WHERE company_id = %s AND idempotency_key = %s",
        (tenant.id, key),
    ).fetchone()
    assert row is not None
    assert row[0] == 1
    assert quest_rows(admin_conn, tenant.id) == 1
    assert rds.llen(QUEUE) == 1
    assert rds.hlen(BODIES) == 1


def test_same_idempotency_key_with_a_different_body_is_409(
    client: TestClient, rds: redis.Redis, tenant: Tenant, admin_conn: AdminConn
) -> None:
    key = f"retry-{uuid.uuid4().hex}"
    headers = {**tenant.headers(tenant.member), "Idempotency-Key": key}
    first = client.post(quests_url(tenant.id), json={"goal": "Plan A"}, headers=headers)
    assert first.status_code == 202, first.text
    second = client.post(quests_url(tenant.id), json={"goal": "Plan B"}, headers=headers)
    assert second.status_code == 409, second.text
    assert quest_rows(admin_conn, tenant.id) == 1
    assert rds.llen(QUEUE) == 1


def test_idempotency_keys_are_per_company(
    client: TestClient, rds: redis.Redis, tenant: Tenant, other_tenant: Tenant
) -> None:
    key = f"shared-{uuid.uuid4().hex}"
    a = client.post(
        quests_url(tenant.id),
        json={"goal": "same"},
        headers={**tenant.headers(tenant.member), "Idempotency-Key": key},
    )
    b = client.post(
        quests_url(other_tenant.id),
        json={"goal": "same"},
        headers={**other_tenant.headers(other_tenant.member), "Idempotency-Key": key},
    )
    assert a.status_code == b.status_code == 202
    assert a.json()["quest_id"] != b.json()["quest_id"]
    assert rds.llen(QUEUE) == 2


def test_retry_after_a_crash_between_commit_and_publish_queues_the_first_step(
    client: TestClient,
    in_tenant: InTenant,
    settings: Settings,
    rds: redis.Redis,
    tenant: Tenant,
) -> None:
    """The ingress died after committing the quest and before publishing its first step.

    The client's retry with the same Idempotency-Key is the only thing that can save that
    quest; answering 202 "queued" without queueing anything leaves it queued forever.
    """
    key = f"crash-{uuid.uuid4().hex}"
    goal = "Survive the crash"
    spec = QuestSpec(goal=goal, model=settings.default_model, idempotency_key=key)
    actor = Actor(type=ActorType.user, id=tenant.member)
    # the first half of a submit, then the process is gone
    quest, created = in_tenant(tenant.id, lambda tx: create_quest(tx, actor, spec))
    assert created
    assert_nothing_enqueued(rds)

    retry = client.post(
        quests_url(tenant.id),
        json={"goal": goal},
        headers={**tenant.headers(tenant.member), "Idempotency-Key": key},
    )
    assert retry.status_code == 202, retry.text
    assert retry.json()["quest_id"] == str(quest.id)
    steps = [m["args"][0]["payload"] for m in queued(rds)]
    assert steps == [{"quest_id": str(quest.id), "step": 1}], "the quest would never run"


# --- the audit trail --------------------------------------------------------------------


def test_activity_admin_gets_items_member_gets_403(
    client: TestClient, in_tenant: InTenant, tenant: Tenant, other_tenant: Tenant
) -> None:
    add_activity(in_tenant, tenant.id, 3)
    add_activity(in_tenant, other_tenant.id, 2)
    url = f"/v1/companies/{tenant.id}/activity"

    resp = client.get(url, headers=tenant.headers(tenant.admin))
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert len(items) == 3
    assert {i["target"] for i in items} == {"note:0", "note:1", "note:2"}
    assert all(i["rationale"] == "because the test said so" for i in items)

    assert client.get(url, headers=tenant.headers(tenant.member)).status_code == 403
    assert client.get(url, headers=other_tenant.headers(other_tenant.admin)).status_code == 403


def test_activity_cursor_walks_every_row_newest_first_without_duplicates(
    client: TestClient, in_tenant: InTenant, tenant: Tenant
) -> None:
    expected = add_activity(in_tenant, tenant.id, 11)
    url = f"/v1/companies/{tenant.id}/activity"
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        resp = client.get(url, params=params, headers=tenant.headers(tenant.admin))
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert len(page["items"]) <= 3
        seen.extend(i["id"] for i in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "pagination does not end"
    assert seen == expected
    assert len(set(seen)) == 11
    assert pages == 4


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        _b64("not a cursor"),
        _b64("2030-01-01T00:00:00+00:00|abc"),
        _b64("yesterday|12"),
        _b64("2030-01-01T00:00:00+00:00|1|2"),
        _b64("2030-01-01T00:00:00+00:00|²"),  # a digit to str.isdigit, not to int
        _b64("2030-01-01T00:00:00|12"),  # no zone
    ],
)
def test_activity_garbage_cursor_is_422(
    cursor: str, client: TestClient, in_tenant: InTenant, tenant: Tenant
) -> None:
    add_activity(in_tenant, tenant.id, 2)
    resp = client.get(
        f"/v1/companies/{tenant.id}/activity",
        params={"cursor": cursor},
        headers=tenant.headers(tenant.admin),
    )
    assert resp.status_code == 422, resp.text
    assert "cursor" in resp.json()["detail"]


# --- ops endpoints and the contract -----------------------------------------------------


def test_healthz_and_readyz(client: TestClient) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"


def test_readyz_is_503_when_redis_is_down(settings: Settings) -> None:
    down = redis.Redis.from_url(DOWN, socket_connect_timeout=1)
    with ingress_client(settings, down, broker_url=DOWN, guard_url=DOWN) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "redis" in ready.json()["problems"]


def test_openapi_is_served_and_lists_the_quest_routes(client: TestClient) -> None:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    paths = resp.json()["paths"]
    assert "post" in paths["/v1/companies/{company_id}/quests"]
    assert "get" in paths["/v1/companies/{company_id}/quests/{quest_id}"]
    assert "get" in paths["/v1/companies/{company_id}/activity"]


# --- the queue is down ------------------------------------------------------------------


def test_submit_when_the_queue_is_down_is_503_and_leaves_no_quest(
    settings: Settings, rds: redis.Redis, tenant: Tenant, admin_conn: AdminConn
) -> None:
    rds.flushdb()
    started = time.monotonic()
    with build_client(settings, "redis://127.0.0.1:1/0") as client:
        resp = client.post(
            quests_url(tenant.id),
            json={"goal": "will not be queued"},
            headers={**tenant.headers(tenant.member), "Idempotency-Key": "k-" + uuid.uuid4().hex},
        )
    assert time.monotonic() - started < 60
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["Retry-After"]) > 0
    assert quest_rows(admin_conn, tenant.id) == 0
    assert_nothing_enqueued(rds)
