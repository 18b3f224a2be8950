"""What a client may make the ingress read (issue 14, item 6).

A bearer token is checked before the body is read, so an unauthenticated client gets its
401 while it is still sending; a body is refused with 413 once it passes
``S2_MAX_BODY_BYTES`` — at once when its Content-Length says so, as it streams in when it is
chunked; and every string and list of a request is bounded, as the OpenAPI spec says.

The wire-level cases run against a real ``system2 ingress`` process through raw sockets;
the rest in-process (``ingress_client``).
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from runtime.settings import Settings
from system2.dev_tokens import mint
from tests.conftest import JWT_SECRET, Tenant
from tests.ingress_server import (
    Server,
    answered,
    ingress_process,
    read_answer,
    request_head,
)
from tests.support import ingress_client

MIB = 2**20
DEFAULT_BOUND = 256 * 1024


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with ingress_process(settings, tmp_path_factory.mktemp("bounds")) as s:
        yield s


@pytest.fixture
def client(settings: Settings, rds: redis.Redis) -> Iterator[TestClient]:
    rds.flushdb()
    with ingress_client(settings, rds) as test_client:
        yield test_client


def quests_path(tenant: Tenant) -> str:
    return f"/v1/companies/{tenant.id}/quests"


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


# --- the token before the body ------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "Bearer not.a.jwt", "Basic dXNlcjpwYXNz"], ids=["none", "bad", "basic"]
)
def test_an_unauthenticated_client_sending_a_large_body_slowly_gets_its_401_before_it_has_sent_it(
    server: Server, tenant: Tenant, authorization: str | None
) -> None:
    declared = 50 * MIB
    headers = {"Content-Type": "application/json", "Content-Length": str(declared)}
    if authorization:
        headers["Authorization"] = authorization
    sent = 0
    with connect(server) as sock:
        sock.sendall(request_head("POST", quests_path(tenant), server.port, headers))
        deadline = time.monotonic() + 10
        while not answered(sock) and time.monotonic() < deadline:
            sock.sendall(b" " * 16_384)  # slowly: 16 KiB every 50 ms
            sent += 16_384
            time.sleep(0.05)
        assert answered(sock), f"no answer after {sent} of {declared} bytes sent"
        answer = read_answer(sock)
    assert answer.status == 401, answer
    assert answer.headers["www-authenticate"].lower().startswith("bearer")
    assert isinstance(answer.json()["detail"], str)
    assert sent < 2 * MIB, f"the 401 came only after {sent} bytes"


# --- the body bound ------------------------------------------------------------------------


def test_a_content_length_over_the_bound_is_refused_at_once_without_reading_the_body(
    server: Server, tenant: Tenant
) -> None:
    headers = {
        **tenant.headers(tenant.member),
        "Content-Type": "application/json",
        "Content-Length": str(50 * MIB),
    }
    with connect(server) as sock:
        sock.sendall(request_head("POST", quests_path(tenant), server.port, headers))
        started = time.monotonic()
        answer = read_answer(sock, timeout=10)  # not a byte of the body is sent
    assert time.monotonic() - started < 5
    assert answer.status == 413, answer
    assert answer.json()["reason"] == "body_too_large"
    assert answer.json()["max_body_bytes"] == DEFAULT_BOUND
    assert answer.headers.get("connection") == "close"


def test_a_chunked_body_is_counted_as_it_streams_in(server: Server, tenant: Tenant) -> None:
    headers = {
        **tenant.headers(tenant.member),
        "Content-Type": "application/json",
        "Transfer-Encoding": "chunked",
    }
    chunk = b" " * 16_384
    sent = 0
    with connect(server) as sock:
        sock.sendall(request_head("POST", quests_path(tenant), server.port, headers))
        sock.sendall(b'%x\r\n{"goal": "big"\r\n' % len(b'{"goal": "big"'))
        deadline = time.monotonic() + 10
        while not answered(sock) and time.monotonic() < deadline and sent < 8 * MIB:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            time.sleep(0.01)
        assert answered(sock), f"no answer after {sent} bytes of a chunked body"
        answer = read_answer(sock)
    assert answer.status == 413, answer
    assert answer.json()["reason"] == "body_too_large"
    assert sent < 2 * MIB, f"the 413 came only after {sent} bytes"


def padded_submit(size: int) -> bytes:
    """A valid quest submission of exactly ``size`` bytes (JSON allows trailing spaces)."""
    body = json.dumps({"goal": "Count the chairs"}).encode()
    return body + b" " * (size - len(body))


def test_a_body_at_the_bound_is_read_and_one_byte_more_is_413(
    client: TestClient, tenant: Tenant, rds: redis.Redis
) -> None:
    headers = {**tenant.headers(tenant.member), "Content-Type": "application/json"}
    at = client.post(quests_path(tenant), content=padded_submit(DEFAULT_BOUND), headers=headers)
    assert at.status_code == 202, at.text
    over = client.post(
        quests_path(tenant), content=padded_submit(DEFAULT_BOUND + 1), headers=headers
    )
    assert over.status_code == 413, over.text
    assert over.headers["content-type"] == "application/problem+json"
    assert over.json() == {
        "type": "urn:system2:problem:body_too_large",
        "title": "Request body too large",
        "status": 413,
        "code": "body_too_large",
        "detail": f"the request body is larger than {DEFAULT_BOUND} bytes",
        "reason": "body_too_large",
        "max_body_bytes": DEFAULT_BOUND,
    }
    assert rds.llen("dramatiq:quests") == 1, "only the first was queued"


def test_the_bound_is_a_setting(settings: Settings, rds: redis.Redis) -> None:
    small = settings.model_copy(update={"max_body_bytes": 1000})
    with ingress_client(small, rds) as client:
        resp = client.post(
            f"/v1/companies/{uuid.uuid4()}/quests/{uuid.uuid4()}/cancel",
            json={"reason": "x" * 1500},  # within the schema's 2000, over the bound
            headers={"Authorization": "Bearer x"},
        )
        assert resp.status_code == 401, "the token first"
        resp = client.post(
            f"/v1/companies/{uuid.uuid4()}/quests/{uuid.uuid4()}/cancel",
            json={"reason": "x" * 1500},
            headers={"Authorization": f"Bearer {mint(JWT_SECRET, 'someone')}"},
        )
    assert resp.status_code == 413, resp.text
    assert resp.json()["max_body_bytes"] == 1000


# --- every string and list of a request is bounded ---------------------------------------


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def unbounded(spec: dict[str, Any], schema: dict[str, Any], where: str) -> list[str]:
    """Where ``schema`` lets a client send a string or list of any length."""
    schema = _resolve(spec, schema)
    found = []
    for key in ("anyOf", "oneOf", "allOf"):
        for i, option in enumerate(schema.get(key, [])):
            found += unbounded(spec, option, f"{where}|{i}")
    kind = schema.get("type")
    if kind == "string" and not {"maxLength", "format", "enum"} & schema.keys():
        found.append(where)  # a uuid or a date-time is bounded by its format, a status by its enum
    if kind == "array":
        if "maxItems" not in schema:
            found.append(where)
        found += unbounded(spec, schema.get("items", {}), f"{where}[]")
    if kind == "object":
        for name, prop in schema.get("properties", {}).items():
            found += unbounded(spec, prop, f"{where}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            found.append(f"{where}.*")  # an open map: any number of keys
    return found


def test_every_string_and_list_of_a_request_is_bounded_in_the_openapi_spec(
    client: TestClient,
) -> None:
    spec = client.get("/openapi.json").json()
    found = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for param in op.get("parameters", []):
                found += unbounded(spec, param["schema"], f"{method} {path} {param['name']}")
            for media in op.get("requestBody", {}).get("content", {}).values():
                found += unbounded(spec, media["schema"], f"{method} {path} body")
    assert not found, f"unbounded request fields: {found}"
    schemas = spec["components"]["schemas"]
    assert schemas["QuestSubmit"]["properties"]["goal"]["maxLength"] == 50_000
    assert schemas["CancelRequest"]["properties"]["reason"]["maxLength"] == 2000
    scopes = schemas["IntegrationTokens"]["properties"]["scopes"]
    assert scopes["maxItems"] == 50 and scopes["items"]["maxLength"] == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/quests", {"goal": "g", "model": "m" * 101}, "model"),
        ("POST", "/quests", {"goal": "g", "max_usd": "1" + " " * 40}, "max_usd"),
        ("POST", "/quests", {"goal": "g" * 50_001}, "goal"),
        (
            "PUT",
            "/integrations/demo",
            {"access_token": "demo_at_x", "scopes": ["tasks.read", "s" * 201]},
            "scopes",
        ),
        (
            "PUT",
            "/integrations/demo",
            {"access_token": "demo_at_x", "scopes": ["s"] * 51},
            "scopes",
        ),
        ("PUT", "/integrations/" + "d" * 42, {"access_token": "demo_at_x"}, "integration"),
    ],
    ids=["model", "max_usd", "goal", "one scope", "scope count", "integration name"],
)
def test_a_value_over_its_bound_is_422_naming_the_field(
    client: TestClient,
    tenant: Tenant,
    rds: redis.Redis,
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    resp = client.request(
        method,
        f"/v1/companies/{tenant.id}{path}",
        json=body,
        headers=tenant.headers(tenant.admin),
    )
    assert resp.status_code == 422, resp.text
    assert field in resp.json()["detail"]
    assert rds.llen("dramatiq:quests") == 0
    assert rds.llen("dramatiq:audit") == 0


def test_an_oversized_authorization_header_is_401(client: TestClient, tenant: Tenant) -> None:
    resp = client.get(
        f"/v1/companies/{tenant.id}/guard", headers={"Authorization": "Bearer " + "a" * 9000}
    )
    assert resp.status_code == 401, resp.text
