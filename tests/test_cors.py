"""CORS, as the security page promises: web pages of the origins in ``S2_CORS_ORIGINS`` may
call the ingress from a browser, with a bearer token and no cookies; any other page gets no
CORS header at all, so the browser keeps the answer from it. Checked on the wire (preflight
and actual requests) and in a real Chromium, whose page on a second loopback origin reads a
quest's events only when its origin is allowed."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import ValidationError

from runtime.settings import Settings
from system2.procs import free_port
from tests.browser import WatchedPage
from tests.conftest import Stack, Tenant
from tests.support import add_activity, ingress_client, submit, wait_finished

WEB_APP = "https://app.system2.example"
ELSEWHERE = "https://evil.example"


@pytest.fixture
def cors_client(settings: Settings, rds: redis.Redis) -> Iterator[TestClient]:
    with ingress_client(settings.model_copy(update={"cors_origins": (WEB_APP,)}), rds) as c:
        yield c


def preflight(client: TestClient, origin: str, method: str = "GET", headers: str = "") -> Any:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        asked["Access-Control-Request-Headers"] = headers
    return client.options(
        "/v1/companies/00000000-0000-0000-0000-000000000000/activity", headers=asked
    )


def cors_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def test_a_preflight_from_an_allowed_origin_is_answered_without_a_token(
    cors_client: TestClient,
) -> None:
    asked = "authorization, content-type, idempotency-key, last-event-id"
    for method in ("GET", "POST", "PUT", "DELETE"):
        r = preflight(cors_client, WEB_APP, method, asked)
        assert r.status_code == 204, r.text  # not the bearer check's 401: preflights carry none
        assert r.headers["access-control-allow-origin"] == WEB_APP
        assert method in r.headers["access-control-allow-methods"]
        allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "idempotency-key", "last-event-id"} <= allowed
        assert "access-control-allow-credentials" not in r.headers  # bearer tokens, no cookies
        assert "Origin" in r.headers["vary"]


def test_a_preflight_from_another_origin_gets_no_cors_header(cors_client: TestClient) -> None:
    r = preflight(cors_client, ELSEWHERE, "POST", "authorization, content-type")
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert (r.json()["code"], r.json()["reason"]) == ("not_allowed", "origin_not_allowed")
    assert cors_headers(r) == {}


def test_actual_requests_carry_cors_headers_for_an_allowed_origin_only(
    cors_client: TestClient, tenant: Tenant, in_tenant: Any
) -> None:
    add_activity(in_tenant, tenant.id, 3)
    url = f"/v1/companies/{tenant.id}/activity?limit=2"
    ok = cors_client.get(url, headers={**tenant.headers(), "Origin": WEB_APP})
    assert ok.status_code == 200 and len(ok.json()["items"]) == 2
    assert ok.headers["access-control-allow-origin"] == WEB_APP
    exposed = {h.strip() for h in ok.headers["access-control-expose-headers"].split(",")}
    assert {"Location", "Retry-After"} <= exposed
    assert "access-control-allow-credentials" not in ok.headers

    # A refusal reaches the allowed page readable too: it can show why (here the bearer
    # check's 401, answered by the middleware inside the CORS one).
    refused = cors_client.get(url, headers={"Origin": WEB_APP})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == WEB_APP

    other = cors_client.get(url, headers={**tenant.headers(), "Origin": ELSEWHERE})
    assert other.status_code == 200  # the server answers; the browser keeps it from the page
    assert cors_headers(other) == {}
    assert "Origin" in other.headers["vary"]

    no_origin = cors_client.get(url, headers=tenant.headers())  # not a browser's cross-origin call
    assert cors_headers(no_origin) == {}


def test_no_origin_is_allowed_by_default(settings: Settings, rds: redis.Redis) -> None:
    assert Settings().cors_origins == ()
    with ingress_client(settings, rds) as client:
        assert preflight(client, WEB_APP).status_code == 403
        assert cors_headers(preflight(client, WEB_APP)) == {}


def test_origins_are_read_comma_separated_and_normalised_as_browsers_send_them() -> None:
    s = Settings(cors_origins="https://App.Example.com:443, http://127.0.0.1:5173,")  # type: ignore[arg-type]
    assert s.cors_origins == ("https://app.example.com", "http://127.0.0.1:5173")


@pytest.mark.parametrize(
    "bad",
    [
        "https://app.example.com/",
        "https://app.example.com/console",
        "app.example.com",
        "ftp://app.example.com",
        "https://user@app.example.com",
        "https://app.example.com?x=1",
        "https://app.example.com:notaport",
    ],
)
def test_an_origin_with_a_path_or_no_scheme_is_refused_at_start_up(bad: str) -> None:
    with pytest.raises(ValidationError, match="S2_CORS_ORIGINS"):
        Settings(cors_origins=bad)  # type: ignore[arg-type]


# --- in a real browser --------------------------------------------------------------------


@contextmanager
def static_site(root: Path) -> Iterator[str]:
    """A tiny static web server on another loopback port: another origin than the ingress's."""
    handler = _quiet_handler(str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _quiet_handler(directory: str) -> Callable[..., http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=directory, **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


READ_EVENTS = """
async ([url, token]) => {
  try {
    const r = await fetch(url, {headers: {Authorization: "Bearer " + token, "Last-Event-ID": "0-0"}});
    return {status: r.status, body: await r.text()};
  } catch (e) {
    return {error: String(e)};
  }
}
"""


@pytest.mark.slow
def test_a_page_reads_a_quests_events_from_the_browser_only_when_its_origin_is_allowed(
    stack: Stack,
    tenant: Tenant,
    in_tenant: Any,
    browser_page: WatchedPage,
    tmp_path: Path,
) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>the web app</title><p>web app</p>")
    with static_site(tmp_path) as allowed_site, static_site(tmp_path) as other_site:
        stack.base_env["S2_CORS_ORIGINS"] = allowed_site
        stack.start_ingress()
        stack.start_workers(processes=1)
        quest = submit(in_tenant, stack.settings.redis_url, tenant.id, "summarise the week")
        assert wait_finished(in_tenant, tenant.id, quest.id).status == "succeeded"
        events = f"{stack.ingress_url}/v1/companies/{tenant.id}/quests/{quest.id}/events"
        page = browser_page.page

        page.goto(allowed_site + "/index.html")
        read = page.evaluate(READ_EVENTS, [events, tenant.token()])
        assert read.get("status") == 200, read
        assert "event: quest.state" in read["body"] and '"status":"succeeded"' in read["body"]

        page.goto(other_site + "/index.html")
        refused = page.evaluate(READ_EVENTS, [events, tenant.token()])
        assert "error" in refused and "Failed to fetch" in refused["error"], refused
        assert any("CORS policy" in m for m in browser_page.console), browser_page.console
