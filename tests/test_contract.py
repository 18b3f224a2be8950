"""The HTTP contract (issue 20): the served OpenAPI document is the checked-in one; every
operation is named and secured; every error is an RFC 9457 problem whose ``code`` says why,
as the document says — checked on real answers of the ingress (real Postgres and Redis).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
from fastapi.testclient import TestClient
from httpx import Response

from ingress.problems import CODES, MEDIA_TYPE, Problem
from runtime.settings import Settings
from tests.conftest import JWT_SECRET, Tenant, settings_env, system2
from tests.support import InTenant, ingress_client

CHECKED_IN = Path(__file__).parent.parent / "docs" / "openapi.json"


@pytest.fixture
def client(settings: Settings, rds: redis.Redis) -> Iterator[TestClient]:
    with ingress_client(settings, rds) as test_client:
        yield test_client
    rds.flushdb()  # the steps its submits queued: no later test's workers should find them


def test_the_served_document_is_the_checked_in_one(client: TestClient) -> None:
    served = client.get("/openapi.json").json()
    assert served == json.loads(CHECKED_IN.read_text()), (
        "the HTTP contract changed: run `make openapi` and review the diff of docs/openapi.json"
    )


def test_the_command_says_when_the_checked_in_document_is_stale(
    settings: Settings, tmp_path: Path
) -> None:
    env = settings_env(settings)
    ok = subprocess.run(
        system2("openapi", "--check", str(CHECKED_IN)),
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    stale = tmp_path / "openapi.json"
    stale.write_text(CHECKED_IN.read_text().replace('"submit_quest"', '"post_quest"'))
    refused = subprocess.run(
        system2("openapi", "--check", str(stale)),
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "make openapi" in refused.stderr and refused.stderr.strip().count("\n") == 0


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def test_every_operation_is_named_secured_and_documents_its_errors_as_problems() -> None:
    doc = json.loads(CHECKED_IN.read_text())
    names = [op["operationId"] for _, _, op in operations(doc)]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)+|healthz|readyz", n) for n in names), names
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "a Supabase Auth access token (`aud` = `authenticated`)",
    }
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for method, path, op in operations(doc):
        params = {p["name"].lower() for p in op.get("parameters", [])}
        assert "authorization" not in params, (method, path)
        secured = op.get("security") == [{"bearer": []}]
        assert secured == (path.startswith("/v1/companies")), (method, path)
        for status, response in op["responses"].items():
            if status[0] in "45" and path != "/readyz":  # a 503 saying what is down
                assert response["content"] == {MEDIA_TYPE: {"schema": problem_ref}}, (path, status)
        if secured:
            assert {"401", "403", "422", "503"} <= set(op["responses"]), (method, path)
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["Problem"]["properties"]["code"]["enum"] == list(CODES)
    assert schemas["QuestView"]["properties"]["status"]["enum"] == [
        "queued", "running", "succeeded", "failed", "cancelled", "halted"
    ]  # fmt: skip
    assert schemas["SpendView"]["properties"]["tier"]["enum"] == ["ok", "warn", "slow", "halt"]
    submit = doc["paths"]["/v1/companies/{company_id}/quests"]["post"]
    assert {"409", "413", "429"} <= set(submit["responses"])
    stream = doc["paths"]["/v1/companies/{company_id}/events"]["get"]["responses"]["200"]
    assert stream["content"] == {
        "text/event-stream": {"schema": {"$ref": "#/components/schemas/LiveEventData"}}
    }
    assert "tool.called" in schemas["LiveEventData"]["properties"]["kind"]["enum"]


def problem(resp: Response, status: int, code: str) -> dict[str, Any]:
    """The answer is the problem the contract promises."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(MEDIA_TYPE)
    body: dict[str, Any] = resp.json()
    Problem.model_validate(body)
    assert body["code"] == code and body["status"] == status
    assert body["type"] == f"urn:system2:problem:{code}"
    assert body["title"] and body["detail"]
    return body


def test_each_refusal_has_its_code(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, in_tenant: InTenant
) -> None:
    quests = f"/v1/companies/{tenant.id}/quests"
    member, admin = tenant.headers(tenant.member), tenant.headers(tenant.admin)

    problem(client.get(quests), 401, "token_missing")
    expired = jwt.encode(
        {"sub": "u", "aud": "authenticated", "exp": int(time.time()) - 60}, JWT_SECRET
    )
    problem(
        client.get(quests, headers={"Authorization": f"Bearer {expired}"}), 401, "token_expired"
    )
    problem(client.get(quests, headers={"Authorization": "Bearer x.y.z"}), 401, "token_invalid")
    problem(
        client.get(quests, headers=other_tenant.headers(other_tenant.admin)), 403, "not_a_member"
    )
    problem(client.get(f"/v1/companies/{tenant.id}/guard", headers=member), 403, "admins_only")
    problem(client.get(f"{quests}/{uuid.uuid4()}", headers=member), 404, "not_found")
    problem(client.get("/v1/nowhere", headers=member), 404, "not_found")
    problem(client.delete(quests, headers=member), 405, "method_not_allowed")

    invalid = problem(
        client.post(quests, json={"goal": ""}, headers=member), 422, "validation_failed"
    )
    assert invalid["errors"][0]["field"] == "body.goal"
    problem(client.get(quests, params={"cursor": "nope"}, headers=member), 422, "bad_cursor")
    problem(
        client.post(quests, json={"goal": "x", "max_usd": "999999"}, headers=member),
        422,
        "cap_above_ceiling",
    )
    big = problem(
        client.post(quests, content=b"{" + b" " * 2_000_000 + b"}", headers=member),
        413,
        "body_too_large",
    )
    assert big["max_body_bytes"] > 0

    first = client.post(quests, json={"goal": "a"}, headers={**admin, "Idempotency-Key": "k1"})
    assert first.status_code == 202
    problem(
        client.post(quests, json={"goal": "b"}, headers={**admin, "Idempotency-Key": "k1"}),
        409,
        "idempotency_conflict",
    )


def test_throttles_have_distinct_codes(
    client: TestClient, tenant: Tenant, admin_conn: Any, rds: redis.Redis
) -> None:
    quests = f"/v1/companies/{tenant.id}/quests"
    admin = tenant.headers(tenant.admin)
    admin_conn.execute(
        "INSERT INTO company_limits (company_id, quests_per_minute, max_running_quests) "
        "VALUES (%s, 1, 5) ON CONFLICT (company_id) DO UPDATE "
        "SET quests_per_minute = 1, max_running_quests = 5",
        (tenant.id,),
    )
    assert client.post(quests, json={"goal": "one"}, headers=admin).status_code == 202
    second = client.post(quests, json={"goal": "two"}, headers=admin)
    limited = problem(second, 429, "rate_limited")
    assert limited["reason"] == "too_many_quest_starts"
    assert int(second.headers["retry-after"]) > 0


def test_the_checked_in_client_is_what_the_generator_makes_of_the_document(
    tmp_path: Path,
) -> None:
    """system2_client (used by ``system2 ops smoke``) is generated from docs/openapi.json
    with a maintained generator, unedited: regenerated here, it is the same."""
    root = CHECKED_IN.parent.parent
    generator = Path(sys.executable).parent / "openapi-python-client"
    out = tmp_path / "system2_client"
    subprocess.run(
        [str(generator), "generate", "--path", str(CHECKED_IN), "--meta", "none",
         "--output-path", str(out), "--config", str(root / "docs" / "openapi-client.yml")],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip

    def files(top: Path) -> dict[str, str]:
        return {
            str(p.relative_to(top)): p.read_text()
            for p in sorted(top.rglob("*.py"))
            if "__pycache__" not in p.parts
        }

    made, kept = files(out), files(root / "system2_client")
    assert made.keys() == kept.keys(), "run `make openapi`"
    stale = [name for name in made if made[name] != kept[name]]
    assert not stale, f"run `make openapi`: {stale[:5]} differ"


def test_every_live_event_a_worker_emits_is_described() -> None:
    """The document's event kinds are the ones the workers' code shows (a new kind is a
    contract change)."""
    from typing import get_args

    from ingress.contract import EventKind

    root = CHECKED_IN.parent.parent / "workers"
    source = "\n".join(p.read_text() for p in root.rglob("*.py"))
    shown = set(re.findall(r'\.show\(\s*"([a-z_.]+)"', source))
    shown |= set(re.findall(r'kind="([a-z_.]+)"', source))
    assert "tool.called" in shown and "quest.state" in shown  # the search finds them
    assert shown == set(get_args(EventKind))


def test_malformed_bodies_and_times_are_refused_as_problems_that_echo_nothing(
    client: TestClient, tenant: Tenant
) -> None:
    quests = f"/v1/companies/{tenant.id}/quests"
    member = {**tenant.headers(tenant.member), "Content-Type": "application/json"}

    not_json = problem(
        client.post(quests, content=b'{"goal": "\xff\xfe"}', headers=member),
        400,
        "validation_failed",
    )
    assert "\xff" not in not_json["detail"]

    planted = "<script>secret-TOKEN-1234</script>"
    unknown = problem(
        client.post(quests, json={"goal": "hi", planted: 1}, headers=member),
        422,
        "validation_failed",
    )
    assert "secret-TOKEN-1234" not in json.dumps(unknown)
    assert unknown["errors"] == [{"field": "body", "problem": "has a field it does not know"}]

    naive = client.get(quests, params={"since": "2030-01-01T00:00:00"}, headers=member)
    assert problem(naive, 422, "validation_failed")["errors"][0]["field"] == "query.since"
    aware = client.get(quests, params={"since": "2030-01-01T00:00:00Z"}, headers=member)
    assert aware.status_code == 200 and aware.json()["items"] == []
