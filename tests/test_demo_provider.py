"""The demo provider, served by uvicorn on loopback and driven by a real httpx client.

Each test gets a fresh provider (state is per app) with a hand-driven clock, so token and
code expiry are exact rather than slept for.
"""

from __future__ import annotations

import math
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn

from runtime.redact import redact_text
from standins.demo_provider import Provider, create_app, pkce_challenge

CLIENT_ID = "system2-demo"
SECRET = "demo-secret"
REDIRECT = "http://127.0.0.1:9/callback"
TTL = 60.0


class Clock:
    """A clock the test moves by hand; starts at the real time so timestamps look sane."""

    def __init__(self) -> None:
        self.now = time.time()
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@dataclass
class Demo:
    url: str
    provider: Provider
    clock: Clock
    http: httpx.Client

    def code(self, account: str, **params: str) -> str:
        query = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT,
            "state": "st-1",
            "login_hint": account,
            **params,
        }
        reply = self.http.get("/oauth/authorize", params=query, headers=JSON)
        assert reply.status_code == 200, reply.text
        assert reply.json()["state"] == "st-1"
        code: str = reply.json()["code"]
        return code

    def token(self, **form: str) -> httpx.Response:
        return self.http.post("/oauth/token", data=form, auth=(CLIENT_ID, SECRET))

    def connect(self, account: str, **params: str) -> dict[str, Any]:
        """The whole authorization-code flow for ``account``; returns the token response."""
        code = self.code(account, **params)
        reply = self.token(grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def refresh(self, refresh_token: str) -> httpx.Response:
        return self.token(grant_type="refresh_token", refresh_token=refresh_token)

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get("/_stats").json()
        return body

    def account_stats(self, account: str) -> dict[str, Any]:
        body: dict[str, Any] = self.stats()["accounts"][account]
        return body


JSON = {"Accept": "application/json"}


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def account_name() -> str:
    return f"co-{uuid.uuid4()}"


@pytest.fixture
def demo() -> Iterator[Demo]:
    clock = Clock()
    app = create_app(client_id=CLIENT_ID, client_secret=SECRET, access_ttl_s=TTL, clock=clock)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            yield Demo(url, app.state.provider, clock, http)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# --- OAuth ------------------------------------------------------------------------------------


def test_code_flow_redirects_then_issues_a_token_pair(demo: Demo) -> None:
    redirect = REDIRECT + "?keep=1"
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": redirect,
        "state": "xyz",
        "login_hint": "acme",
        "scope": "tasks.read tasks.write",
    }
    reply = demo.http.get("/oauth/authorize", params=query)
    assert reply.status_code == 302
    location = urlsplit(reply.headers["location"])
    params = parse_qs(location.query)
    assert location.path == "/callback" and params["keep"] == ["1"] and params["state"] == ["xyz"]
    code = params["code"][0]
    assert code.startswith("demo_ac_")

    token = demo.token(grant_type="authorization_code", code=code, redirect_uri=redirect)
    assert token.status_code == 200
    assert token.headers["cache-control"] == "no-store"
    body = token.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 60
    assert body["scope"] == "tasks.read tasks.write"
    assert body["access_token"].startswith("demo_at_")
    assert body["refresh_token"].startswith("demo_rt_")
    # The project's redaction recognises both token shapes.
    assert "demo_" not in redact_text(f"{body['access_token']} {body['refresh_token']}")
    tasks = demo.http.get("/api/v1/tasks", headers=bearer(body["access_token"]))
    assert tasks.status_code == 200 and tasks.json() == {"tasks": []}

    # A code works once; replaying it revokes what it issued (RFC 6749 §4.1.2).
    again = demo.token(grant_type="authorization_code", code=code, redirect_uri=redirect)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    gone = demo.http.get("/api/v1/tasks", headers=bearer(body["access_token"]))
    assert gone.status_code == 401


def test_authorize_errors_redirect_only_to_a_trusted_uri(demo: Demo) -> None:
    base = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT}
    unknown = demo.http.get("/oauth/authorize", params={**base, "client_id": "intruder"})
    assert unknown.status_code == 400 and "location" not in unknown.headers
    fragment = demo.http.get("/oauth/authorize", params={**base, "redirect_uri": REDIRECT + "#x"})
    assert fragment.status_code == 400 and fragment.json()["error"] == "invalid_request"

    no_account = demo.http.get("/oauth/authorize", params={**base, "state": "s"})
    assert no_account.status_code == 302
    params = parse_qs(urlsplit(no_account.headers["location"]).query)
    assert params["error"] == ["invalid_request"] and params["state"] == ["s"]
    assert "code" not in params

    bad_scope = demo.http.get(
        "/oauth/authorize", params={**base, "login_hint": "acme", "scope": "admin"}, headers=JSON
    )
    assert bad_scope.status_code == 400 and bad_scope.json()["error"] == "invalid_scope"
    wrong_type = demo.http.get(
        "/oauth/authorize", params={**base, "login_hint": "acme", "response_type": "token"}
    )
    error = parse_qs(urlsplit(wrong_type.headers["location"]).query)["error"]
    assert error == ["unsupported_response_type"]


def test_token_endpoint_errors_follow_rfc6749(demo: Demo) -> None:
    code = demo.code("acme")
    grant = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}

    wrong = demo.http.post("/oauth/token", data=grant, auth=(CLIENT_ID, "nope"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    wrong_post = demo.http.post(
        "/oauth/token", data={**grant, "client_id": CLIENT_ID, "client_secret": "nope"}
    )
    assert wrong_post.status_code == 401 and wrong_post.json()["error"] == "invalid_client"
    anonymous = demo.http.post("/oauth/token", data=grant)
    assert anonymous.status_code == 401

    as_json = demo.http.post("/oauth/token", json=grant, auth=(CLIENT_ID, SECRET))
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    missing = demo.token(code=code, redirect_uri=REDIRECT)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    odd = demo.token(grant_type="password", username="u", password="p")
    assert odd.status_code == 400 and odd.json()["error"] == "unsupported_grant_type"
    elsewhere = demo.token(**{**grant, "redirect_uri": "http://127.0.0.1:9/other"})
    assert elsewhere.status_code == 400 and elsewhere.json()["error"] == "invalid_grant"
    assert wrong.headers["cache-control"] == "no-store"

    # None of those burned the code; client_secret_post is accepted too.
    good = demo.http.post(
        "/oauth/token", data={**grant, "client_id": CLIENT_ID, "client_secret": SECRET}
    )
    assert good.status_code == 200

    late = demo.code("acme")
    demo.clock.advance(61)
    expired = demo.token(grant_type="authorization_code", code=late, redirect_uri=REDIRECT)
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"


def test_pkce_binds_the_code_to_its_verifier(demo: Demo) -> None:
    verifier = "v" * 20 + "-._~" + "0123456789" * 3
    challenge = pkce_challenge(verifier)
    code = demo.code("acme", code_challenge=challenge, code_challenge_method="S256")
    grant = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    missing = demo.token(**grant)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_grant"
    wrong = demo.token(**grant, code_verifier="w" * 43)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert demo.token(**grant, code_verifier=verifier).status_code == 200


def test_expiry_refresh_rotation_and_reuse_detection(demo: Demo) -> None:
    first = demo.connect("acme")
    assert demo.http.get("/api/v1/tasks", headers=bearer(first["access_token"])).is_success

    demo.clock.advance(TTL)
    expired = demo.http.get("/api/v1/tasks", headers=bearer(first["access_token"]))
    assert expired.status_code == 401
    assert (
        expired.headers["www-authenticate"] == 'Bearer realm="demo-provider", error="invalid_token"'
    )
    assert expired.json()["error"] == "invalid_token"

    rotated = demo.refresh(first["refresh_token"])
    assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
    second = rotated.json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert demo.http.get("/api/v1/tasks", headers=bearer(second["access_token"])).is_success
    family = demo.account_stats("acme")["families"]
    assert [f["refreshes"] for f in family.values()] == [1]

    # The retired refresh token comes back: treated as stolen, the whole family goes.
    reused = demo.refresh(first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    after = demo.http.get("/api/v1/tasks", headers=bearer(second["access_token"]))
    assert after.status_code == 401 and after.json()["error"] == "invalid_token"
    assert demo.refresh(second["refresh_token"]).json()["error"] == "invalid_grant"
    stats = demo.stats()
    (entry,) = stats["accounts"]["acme"]["families"].values()
    assert entry["revoked"] and entry["revoked_reason"] == "rotated refresh token reused"
    assert stats["totals"]["refresh_reuse_detected"] == 1
    assert stats["totals"]["unauthorized"] == 2

    unknown = demo.http.get("/api/v1/tasks", headers=bearer("demo_at_" + "x" * 43))
    assert unknown.status_code == 401


def test_refresh_can_narrow_scope_but_not_widen_it(demo: Demo) -> None:
    tokens = demo.connect("acme", scope="tasks.read")
    wider = demo.token(
        grant_type="refresh_token", refresh_token=tokens["refresh_token"], scope="tasks.write"
    )
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    # A refused request does not spend the refresh token.
    assert demo.refresh(tokens["refresh_token"]).json()["scope"] == "tasks.read"


def test_concurrent_refreshes_of_one_token_win_once_and_revoke_the_family(demo: Demo) -> None:
    """Why the workers need a per-credential lock: racing refreshes lose the credential."""
    tokens = demo.connect("acme")
    barrier = threading.Barrier(8)

    def race(_: int) -> int:
        with httpx.Client(base_url=demo.url, timeout=10) as http:
            barrier.wait()
            form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
            return http.post("/oauth/token", data=form, auth=(CLIENT_ID, SECRET)).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(race, range(8)))
    assert statuses == [200] + [400] * 7
    (family,) = demo.account_stats("acme")["families"].values()
    assert family["refreshes"] == 1 and family["revoked"]


def test_revocation(demo: Demo) -> None:
    tokens = demo.connect("acme")
    revoke = demo.http.post(
        "/oauth/revoke", data={"token": tokens["access_token"]}, auth=(CLIENT_ID, SECRET)
    )
    assert revoke.status_code == 200
    assert demo.http.get("/api/v1/tasks", headers=bearer(tokens["access_token"])).status_code == 401
    # The refresh token survives an access-token revocation...
    fresh = demo.refresh(tokens["refresh_token"]).json()
    # ...but revoking a refresh token takes the whole grant down (RFC 7009 §2.1).
    form = {"token": fresh["refresh_token"], "token_type_hint": "refresh_token"}
    assert demo.http.post("/oauth/revoke", data=form, auth=(CLIENT_ID, SECRET)).status_code == 200
    assert demo.http.get("/api/v1/tasks", headers=bearer(fresh["access_token"])).status_code == 401
    assert demo.refresh(fresh["refresh_token"]).json()["error"] == "invalid_grant"
    # Unknown tokens are not an error (RFC 7009 §2.2); a bad client is.
    assert (
        demo.http.post("/oauth/revoke", data={"token": "nope"}, auth=(CLIENT_ID, SECRET))
    ).status_code == 200
    refused = demo.http.post("/oauth/revoke", data={"token": "nope"}, auth=(CLIENT_ID, "x"))
    assert refused.status_code == 401


def test_discovery_and_liveness(demo: Demo) -> None:
    meta = demo.http.get("/.well-known/oauth-authorization-server").json()
    assert meta["token_endpoint"] == f"{demo.url}/oauth/token"
    assert "refresh_token" in meta["grant_types_supported"]
    assert demo.http.get("/").json()["ok"] is True
    missing = demo.http.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


# --- the task API -----------------------------------------------------------------------------


def test_task_crud(demo: Demo) -> None:
    token = demo.connect("acme")["access_token"]
    auth = bearer(token)
    created = demo.http.post("/api/v1/tasks", json={"title": "Call Bob"}, headers=auth)
    assert created.status_code == 201
    task = created.json()
    assert set(task) == {"id", "title", "notes", "status", "created_at", "updated_at"}
    assert task["title"] == "Call Bob" and task["notes"] == "" and task["status"] == "open"
    assert task["created_at"].endswith("Z") and task["created_at"] == task["updated_at"]
    assert created.headers["location"] == f"/api/v1/tasks/{task['id']}"
    other = demo.http.post(
        "/api/v1/tasks", json={"title": "Write memo", "notes": "by Friday"}, headers=auth
    ).json()

    listing = demo.http.get("/api/v1/tasks", headers=auth).json()["tasks"]
    assert [t["id"] for t in listing] == [task["id"], other["id"]]
    assert demo.http.get(f"/api/v1/tasks/{task['id']}", headers=auth).json() == task

    demo.clock.advance(5)
    patched = demo.http.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}, headers=auth)
    assert patched.status_code == 200
    assert patched.json()["status"] == "done"
    assert patched.json()["updated_at"] > patched.json()["created_at"]
    done = demo.http.get("/api/v1/tasks", params={"status": "done"}, headers=auth).json()
    assert [t["id"] for t in done["tasks"]] == [task["id"]]
    opened = demo.http.get("/api/v1/tasks", params={"status": "open"}, headers=auth).json()
    assert [t["id"] for t in opened["tasks"]] == [other["id"]]

    for bad in ({"status": "archived"}, {"title": ""}, {"owner": "x"}):
        reply = demo.http.patch(f"/api/v1/tasks/{task['id']}", json=bad, headers=auth)
        assert reply.status_code == 400 and reply.json()["error"] == "invalid_request"
    assert demo.http.post("/api/v1/tasks", json={"notes": "x"}, headers=auth).status_code == 400
    not_json = demo.http.post("/api/v1/tasks", content=b"{", headers=auth)
    assert not_json.status_code == 400

    deleted = demo.http.delete(f"/api/v1/tasks/{task['id']}", headers=auth)
    assert deleted.status_code == 204 and deleted.content == b""
    assert demo.http.get(f"/api/v1/tasks/{task['id']}", headers=auth).status_code == 404
    assert demo.http.delete(f"/api/v1/tasks/{task['id']}", headers=auth).status_code == 404
    assert demo.account_stats("acme")["mutations"] == 4  # 2 creates, 1 update, 1 delete


def test_bearer_and_scope_are_enforced(demo: Demo) -> None:
    bare = demo.http.get("/api/v1/tasks")
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"] == 'Bearer realm="demo-provider"'
    assert (
        demo.http.get("/api/v1/tasks", headers={"Authorization": "Basic eDp5"}).status_code == 401
    )

    reader = demo.connect("acme", scope="tasks.read")["access_token"]
    assert demo.http.get("/api/v1/tasks", headers=bearer(reader)).is_success
    refused = demo.http.post("/api/v1/tasks", json={"title": "t"}, headers=bearer(reader))
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
    assert 'scope="tasks.write"' in refused.headers["www-authenticate"]


def test_accounts_see_only_their_own_tasks(demo: Demo) -> None:
    acme = bearer(demo.connect("acme")["access_token"])
    globex = bearer(demo.connect("globex")["access_token"])
    mine = demo.http.post("/api/v1/tasks", json={"title": "acme only"}, headers=acme).json()
    demo.http.post("/api/v1/tasks", json={"title": "globex only"}, headers=globex)

    assert [t["title"] for t in demo.http.get("/api/v1/tasks", headers=acme).json()["tasks"]] == [
        "acme only"
    ]
    assert [t["title"] for t in demo.http.get("/api/v1/tasks", headers=globex).json()["tasks"]] == [
        "globex only"
    ]
    path = f"/api/v1/tasks/{mine['id']}"
    assert demo.http.get(path, headers=globex).status_code == 404
    assert demo.http.patch(path, json={"title": "x"}, headers=globex).status_code == 404
    assert demo.http.delete(path, headers=globex).status_code == 404
    assert demo.http.get(path, headers=acme).json()["title"] == "acme only"
    stats = demo.stats()["accounts"]
    assert stats["acme"]["mutations"] == 1 and stats["globex"]["mutations"] == 1


# --- Idempotency-Key --------------------------------------------------------------------------


def test_idempotency_key_replays_the_original_and_mutates_once(demo: Demo) -> None:
    account = account_name()
    token = demo.connect(account)["access_token"]
    key = str(uuid.uuid4())
    first = demo.http.post(
        "/api/v1/tasks", json={"title": "once"}, headers=bearer(token, **{"Idempotency-Key": key})
    )
    demo.clock.advance(3)
    # Same request with keys in another order and a quoted (RFC 8941) key: still the same.
    second = demo.http.post(
        "/api/v1/tasks",
        content=b'{ "title" : "once" }',
        headers=bearer(
            token, **{"Idempotency-Key": f'"{key}"', "Content-Type": "application/json"}
        ),
    )
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers

    changed = demo.http.post(
        "/api/v1/tasks", json={"title": "other"}, headers=bearer(token, **{"Idempotency-Key": key})
    )
    assert changed.status_code == 422 and changed.json()["error"] == "idempotency_key_reused"
    elsewhere = demo.http.delete(
        f"/api/v1/tasks/{first.json()['id']}", headers=bearer(token, **{"Idempotency-Key": key})
    )
    assert elsewhere.status_code == 422

    stats = demo.account_stats(account)
    assert stats["mutations"] == 1 and stats["idempotent_replays"] == 1 and stats["tasks"] == 1

    # The key space is per account: the same key elsewhere is a new request.
    other = demo.connect(account_name())["access_token"]
    theirs = demo.http.post(
        "/api/v1/tasks", json={"title": "once"}, headers=bearer(other, **{"Idempotency-Key": key})
    )
    assert theirs.status_code == 201 and "idempotent-replayed" not in theirs.headers


def test_idempotent_delete_and_patch_replay(demo: Demo) -> None:
    account = account_name()
    token = demo.connect(account)["access_token"]
    task = demo.http.post("/api/v1/tasks", json={"title": "t"}, headers=bearer(token)).json()
    path = f"/api/v1/tasks/{task['id']}"
    patch = bearer(token, **{"Idempotency-Key": "patch-1"})
    one = demo.http.patch(path, json={"status": "done"}, headers=patch)
    demo.clock.advance(1)
    two = demo.http.patch(path, json={"status": "done"}, headers=patch)
    assert one.json() == two.json() and two.headers["idempotent-replayed"] == "true"

    drop = bearer(token, **{"Idempotency-Key": "delete-1"})
    assert demo.http.delete(path, headers=drop).status_code == 204
    again = demo.http.delete(path, headers=drop)
    assert again.status_code == 204 and again.headers["idempotent-replayed"] == "true"
    stats = demo.account_stats(account)
    assert stats["mutations"] == 3 and stats["idempotent_replays"] == 2


def test_concurrent_posts_with_one_key_create_one_task(demo: Demo) -> None:
    account = account_name()
    token = demo.connect(account)["access_token"]
    headers = bearer(token, **{"Idempotency-Key": "step-7:toolu_01"})
    barrier = threading.Barrier(16)

    def post(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=demo.url, timeout=10) as http:
            barrier.wait()
            reply = http.post("/api/v1/tasks", json={"title": "exactly once"}, headers=headers)
            return reply.status_code, reply.json()["id"]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(post, range(16)))
    assert {status for status, _ in results} == {201}
    assert len({task_id for _, task_id in results}) == 1
    listing = demo.http.get("/api/v1/tasks", headers=bearer(token)).json()["tasks"]
    assert len(listing) == 1
    stats = demo.account_stats(account)
    assert stats["mutations"] == 1 and stats["idempotent_replays"] == 15


# --- faults -----------------------------------------------------------------------------------


def test_injected_status_for_n_requests_then_normal(demo: Demo) -> None:
    account = account_name()
    token = demo.connect(account)["access_token"]
    rule = demo.http.post("/_faults", json={"status": 500, "count": 2, "paths": ["/api/"]})
    assert rule.status_code == 201 and rule.json()["count"] == 2

    key = bearer(token, **{"Idempotency-Key": "k1"})
    for _ in range(2):
        failed = demo.http.post("/api/v1/tasks", json={"title": "t"}, headers=key)
        assert failed.status_code == 500 and failed.json()["error"] == "server_error"
    assert demo.account_stats(account)["mutations"] == 0  # an injected error performs nothing
    assert demo.http.get("/_faults").json() == {"faults": []}
    ok = demo.http.post("/api/v1/tasks", json={"title": "t"}, headers=key)
    assert ok.status_code == 201 and "idempotent-replayed" not in ok.headers
    assert demo.stats()["totals"]["faults_injected"] == 2

    # Paths outside the rule are untouched; 503 carries Retry-After; DELETE clears.
    demo.http.post("/_faults", json={"status": 503, "paths": ["/api/"], "retry_after_s": 2})
    busy = demo.http.get("/api/v1/tasks", headers=bearer(token))
    assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
    assert busy.json()["error"] == "temporarily_unavailable"
    assert demo.http.get("/api/v1/tasks", headers=bearer(token)).status_code == 503
    assert demo.http.get("/").status_code == 200
    assert demo.http.delete("/_faults").status_code == 204
    assert demo.http.get("/api/v1/tasks", headers=bearer(token)).status_code == 200


def test_faults_can_target_methods_and_the_token_endpoint(demo: Demo) -> None:
    tokens = demo.connect("acme")
    demo.http.post("/_faults", json={"status": 502, "methods": ["POST"], "paths": ["/oauth/token"]})
    assert demo.refresh(tokens["refresh_token"]).status_code == 502
    demo.http.delete("/_faults")
    assert demo.refresh(tokens["refresh_token"]).status_code == 200  # not spent by the fault


def test_the_token_endpoint_can_rate_limit_and_answer_as_a_proxy_would(demo: Demo) -> None:
    """A 429 at the token endpoint says when to come back; ``html`` makes a fault's reply
    the HTML page a proxy in front of a provider sends (same status and headers); neither
    spends the refresh token, since the request was not performed."""
    tokens = demo.connect("acme")
    demo.http.post(
        "/_faults", json={"status": 429, "paths": ["/oauth/token"], "retry_after_s": 7, "count": 1}
    )
    limited = demo.refresh(tokens["refresh_token"])
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert limited.json()["error"] == "rate_limited"

    rule = demo.http.post(
        "/_faults",
        json={"status": 403, "paths": ["/oauth/token"], "html": True, "count": 1},
    )
    assert rule.status_code == 201 and rule.json()["html"] is True
    page = demo.refresh(tokens["refresh_token"])
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert page.text.startswith("<html>")
    with pytest.raises(ValueError):
        page.json()
    demo.http.post(
        "/_faults",
        json={"status": 503, "paths": ["/oauth/token"], "html": True, "retry_after_s": 4},
    )
    busy = demo.refresh(tokens["refresh_token"])
    assert busy.status_code == 503 and busy.headers["retry-after"] == "4"
    assert busy.headers["content-type"].startswith("text/html")
    demo.http.delete("/_faults")
    assert demo.refresh(tokens["refresh_token"]).status_code == 200  # not spent by the faults
    for bad in ({"status": 503, "html": "yes"}, {"delay_s": 1, "html": True}):
        reply = demo.http.post("/_faults", json=bad)
        assert reply.status_code == 400, bad
        assert reply.json()["error"] == "invalid_request"


def test_a_fault_can_aim_at_one_accounts_tokens_and_say_when_to_come_back(demo: Demo) -> None:
    """Rate limits and refusals are per installation: a rule naming ``accounts`` hits only
    requests bearing those accounts' tokens (refreshed ones too), and a 429 says when the
    limit resets in any of the ways providers do."""
    acme_tokens = demo.connect("acme")
    acme, globex = acme_tokens["access_token"], demo.connect("globex")["access_token"]
    demo.http.post(
        "/_faults",
        json={"status": 429, "accounts": ["acme"], "paths": ["/api/"], "retry_after_s": 5},
    )
    limited = demo.http.get("/api/v1/tasks", headers=bearer(acme))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "5"
    assert limited.json()["error"] == "rate_limited"
    assert demo.http.get("/api/v1/tasks", headers=bearer(globex)).status_code == 200
    assert demo.http.get("/api/v1/tasks").status_code == 401  # no token: not acme's
    fresh = demo.refresh(acme_tokens["refresh_token"]).json()["access_token"]
    assert demo.http.get("/api/v1/tasks", headers=bearer(fresh)).status_code == 429
    demo.http.delete("/_faults")

    now = demo.clock()
    for rule, header, value in (
        ({"retry_after_s": 30, "retry_after_date": True}, "retry-after", None),
        ({"reset_s": 60}, "x-ratelimit-reset", str(math.ceil(now + 60))),
        ({"reset_s": 60, "reset_header": "RateLimit-Reset"}, "ratelimit-reset", "60"),
    ):
        demo.http.post("/_faults", json={"status": 429, "count": 1, **rule})
        reply = demo.http.get("/api/v1/tasks", headers=bearer(globex))
        assert reply.status_code == 429
        if value is None:
            when = parsedate_to_datetime(reply.headers[header]).timestamp()
            assert now + 29 <= when <= now + 31
        else:
            assert reply.headers[header] == value


def test_an_injected_401_refuses_fresh_tokens_too_and_a_403_is_forbidden(demo: Demo) -> None:
    tokens = demo.connect("acme")
    demo.http.post("/_faults", json={"status": 401, "accounts": ["acme"], "paths": ["/api/"]})
    refused = demo.http.get("/api/v1/tasks", headers=bearer(tokens["access_token"]))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    fresh = demo.refresh(tokens["refresh_token"])  # the token endpoint is not faulted
    assert fresh.status_code == 200
    again = demo.http.get("/api/v1/tasks", headers=bearer(fresh.json()["access_token"]))
    assert again.status_code == 401
    demo.http.delete("/_faults")

    demo.http.post("/_faults", json={"status": 403, "count": 1})
    forbidden = demo.http.get("/api/v1/tasks", headers=bearer(fresh.json()["access_token"]))
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden"


def test_fault_rules_are_validated(demo: Demo) -> None:
    for bad in (
        {"status": 418},
        {"delay_s": -1},
        {},
        {"status": 500, "count": 0},
        {"status": 500, "paths": "/api"},
        {"status": 500, "colour": "red"},
        {"status": 500, "accounts": "acme"},
        {"status": 429, "retry_after_date": True},
        {"status": 429, "retry_after_s": 1, "retry_after_date": "yes"},
        {"status": 429, "reset_s": 5, "reset_header": "X-Rate-Reset"},
        {"status": 429, "reset_s": -1},
    ):
        reply = demo.http.post("/_faults", json=bad)
        assert reply.status_code == 400, bad
        assert reply.json()["error"] == "invalid_request"


def test_delay_fires_the_client_timeout_and_the_server_stays_healthy(demo: Demo) -> None:
    token = demo.connect("acme")["access_token"]
    demo.http.post("/_faults", json={"delay_s": 1.5, "count": 1, "paths": ["/api/v1/tasks"]})
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        demo.http.get("/api/v1/tasks", headers=bearer(token), timeout=0.3)
    assert time.monotonic() - started < 1.0
    # While that request is still held, the server answers others promptly.
    quick = demo.http.get("/api/v1/tasks", headers=bearer(token), timeout=1.0)
    assert quick.status_code == 200
    assert demo.http.get("/_stats", timeout=1.0).status_code == 200


def test_a_held_mutation_still_happens_so_the_retry_must_carry_its_key(demo: Demo) -> None:
    account = account_name()
    token = demo.connect(account)["access_token"]
    demo.http.post("/_faults", json={"delay_s": 0.8, "count": 1, "methods": ["POST"]})
    headers = bearer(token, **{"Idempotency-Key": "held-1"})
    with pytest.raises(httpx.ReadTimeout):
        demo.http.post("/api/v1/tasks", json={"title": "slow"}, headers=headers, timeout=0.2)
    retry = demo.http.post("/api/v1/tasks", json={"title": "slow"}, headers=headers)
    assert retry.status_code == 201

    deadline = time.monotonic() + 5
    while demo.account_stats(account)["idempotent_replays"] < 1:
        assert time.monotonic() < deadline, "the held request never completed"
        time.sleep(0.05)
    stats = demo.account_stats(account)
    assert stats["mutations"] == 1 and stats["tasks"] == 1


# --- the request journal (/_requests) ---------------------------------------------------------


def test_the_journal_shows_each_path_as_it_arrived_and_whose_token_it_carried(demo: Demo) -> None:
    tokens = demo.connect("acme")
    acme = tokens["access_token"]
    demo.http.delete("/_requests")
    demo.http.patch("/api/v1/tasks/a%2Fb", headers=bearer(acme), json={})  # %2F kept as sent
    demo.http.post("/oauth/token", headers=bearer(acme), data={"grant_type": "x"})
    demo.http.get(
        "/api/v1/tasks", params={"status": "open"}, headers=bearer(tokens["refresh_token"])
    )
    demo.http.get("/api/v1/tasks", headers=bearer("demo_at_unknown"))
    demo.http.get("/api/v1/tasks", headers={"Authorization": "Basic eDp5"})
    demo.http.get("/_stats")  # test routes are not recorded

    assert demo.http.get("/_requests").json()["requests"] == [
        {
            "method": "PATCH",
            "path": "/api/v1/tasks/a/b",
            "raw_path": "/api/v1/tasks/a%2Fb",
            "query": "",
            "auth_scheme": "bearer",
            "account": "acme",
        },
        {
            "method": "POST",
            "path": "/oauth/token",
            "raw_path": "/oauth/token",
            "query": "",
            "auth_scheme": "bearer",
            "account": "acme",
        },
        {
            "method": "GET",
            "path": "/api/v1/tasks",
            "raw_path": "/api/v1/tasks",
            "query": "status=open",
            "auth_scheme": "bearer",
            "account": "acme",
        },
        {
            "method": "GET",
            "path": "/api/v1/tasks",
            "raw_path": "/api/v1/tasks",
            "query": "",
            "auth_scheme": "bearer",
            "account": None,
        },
        {
            "method": "GET",
            "path": "/api/v1/tasks",
            "raw_path": "/api/v1/tasks",
            "query": "",
            "auth_scheme": "basic",
            "account": None,
        },
    ]
    only = demo.http.get("/_requests", params={"account": "acme"}).json()["requests"]
    assert [r["raw_path"] for r in only] == ["/api/v1/tasks/a%2Fb", "/oauth/token", "/api/v1/tasks"]
    text = demo.http.get("/_requests").text
    assert acme not in text and tokens["refresh_token"] not in text
    assert demo.http.delete("/_requests").status_code == 204
    assert demo.http.get("/_requests").json() == {"requests": []}
