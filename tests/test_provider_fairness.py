"""One company's trouble with a provider stays that company's: its rate limit (429) delays only
its own step and never opens the provider's circuit breaker, which only the provider's own
failures (5xx, timeouts, connection errors) count; and a token the provider refuses even
after the one refresh marks only that company's credential as needing reconnection.

Real parts throughout: the demo provider on loopback (faults aimed at one company's token),
worker processes, Postgres, Redis, the CLI and the ingress routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from integrations.providers.demo import PROVIDER as DEMO
from runtime.loop_thread import LoopThread
from runtime.settings import Settings
from runtime.wiring import build_vault
from store import Database
from tests.conftest import Stack, Tenant
from tests.support import (
    InTenant,
    ingress_client,
    provider_faults,
    submit,
    wait_finished,
    wait_for,
)
from tests.test_integrations import (
    WorkerClients,
    connect,
    fresh_key,
    provider_requests,
    provider_stats,
    run_cli,
    worker_clients,
)
from vault import Secret
from vault.sealed_tokens import REFRESH, unseal
from workers.errors import ProviderUnavailable, QuestFailed, TryLater
from workers.integrations.breaker import AsyncBreaker, Breaker
from workers.integrations.provider import ProviderClient
from workers.tools import Tool, ToolCall

pytestmark = pytest.mark.slow

BREAKER = "s2:breaker:demo"


@pytest.fixture
def key() -> str:
    return fresh_key()


@pytest.fixture
def clients(settings: Settings, call_loop: LoopThread, db: Database) -> Iterator[WorkerClients]:
    """A worker's clients on the tests' loop: the integrations' objects run there."""
    with worker_clients(settings, call_loop, db) as made:
        yield made


@pytest.fixture
def istack(stack: Stack, demo_provider: str, key: str) -> Iterator[Stack]:
    """A stack whose processes have the vault's key and the demo provider; no fault is left
    on the (session-wide) provider before or after."""
    httpx.delete(demo_provider + "/_faults")
    stack.base_env.update(S2_VAULT_KEYS=key, S2_DEMO_PROVIDER_URL=demo_provider)
    yield stack
    httpx.delete(demo_provider + "/_faults")


def add_fault(url: str, **rule: Any) -> dict[str, Any]:
    reply = httpx.post(url + "/_faults", json=rule)
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def fault_hits(url: str, rule_id: int) -> int:
    """How often a rule has fired; a rule whose count ran out is gone (then: -1)."""
    for rule in httpx.get(url + "/_faults").json()["faults"]:
        if rule["id"] == rule_id:
            return int(rule["hits"])
    return -1


def quest_events(rds: redis.Redis, company: uuid.UUID, quest_id: uuid.UUID) -> list[dict[str, Any]]:
    events = [json.loads(f[b"e"])["payload"] for _, f in rds.xrange(f"s2:events:{company}")]
    return [e for e in events if e["quest_id"] == str(quest_id)]


def breaker_untouched(rds: redis.Redis) -> bool:
    return not rds.exists(f"{BREAKER}:open", f"{BREAKER}:failures", f"{BREAKER}:tripped")


def listed(stack: Stack, company: uuid.UUID) -> dict[str, Any]:
    """The company's demo integration as ``system2 integration list`` shows it."""
    (entry,) = json.loads(run_cli(stack, "integration", "list", "--company", str(company)))
    assert entry["integration"] == "demo"
    return dict(entry)


def reconnect_rows(admin_conn: psycopg.Connection[Any], company: uuid.UUID) -> list[Any]:
    return admin_conn.execute(
        "SELECT actor_type, action, target, rationale, quest_id, originating_message_id "
        "FROM activity_log WHERE company_id = %s AND action = 'integration.needs_reconnect'",
        (company,),
    ).fetchall()


def demo_tools(
    settings: Settings,
    clients: WorkerClients,
    rds: redis.Redis,
    demo_provider: str,
    key: str,
    **update: Any,
) -> dict[str, Tool]:
    """The demo integration's tools, wired as a worker wires them (``update``: settings)."""
    s = settings.with_integration(
        "demo", api_url=demo_provider, oauth_url=demo_provider
    ).model_copy(update={"vault_keys": SecretStr(key), **update})
    return clients.tools(s, build_vault(s, rds))


def expire_token(admin_conn: psycopg.Connection[Any], company: uuid.UUID) -> None:
    admin_conn.execute(
        "UPDATE integration_credentials SET access_expires_at = now() - interval '1 minute' "
        "WHERE company_id = %s",
        (company,),
    )


# -- what counts towards the breaker, and what a 429 says ---------------------------------------


def test_only_provider_side_failures_count_towards_the_breaker(
    demo_provider: str, rds: redis.Redis, clients: WorkerClients
) -> None:
    """The provider client on its own against the demo provider: 4xx answers are returned and
    counted as nothing; a 429 is not retried, counts as nothing and says when to come back;
    5xx still count and open the breaker."""
    httpx.delete(demo_provider + "/_faults")
    rds.delete(f"{BREAKER}:open", f"{BREAKER}:failures", f"{BREAKER}:tripped")
    breaker = Breaker(rds)  # the operators' view of the breaker the client counts into
    counted = AsyncBreaker(clients.redis, failures=2, window_s=30, open_s=30)
    client = ProviderClient(clients.http, counted, retries=1, backoff_s=0.01)
    tasks = httpx.URL(demo_provider + "/api/v1/tasks")
    token = Secret("demo_at_" + "x" * 43)  # not one the provider issued: a real 401

    def request(method: str, url: httpx.URL, **kw: Any) -> httpx.Response:
        return clients.loop.run(client.request(DEMO, method, url, token, **kw))

    try:
        assert request("GET", tasks).status_code == 401
        add_fault(demo_provider, status=403, count=1, paths=["/api/"])
        assert request("GET", tasks).status_code == 403
        add_fault(demo_provider, status=401, count=1, paths=["/api/"])
        assert request("GET", tasks).status_code == 401
        nowhere = httpx.URL(demo_provider + "/api/v1/nothing")
        assert request("GET", nowhere).status_code == 404
        assert breaker.failure_count("demo") == 0 and breaker.state("demo") == "closed"

        said: list[tuple[dict[str, Any], int | None, int | None]] = [
            ({"retry_after_s": 7}, 7_000, 7_000),
            ({"retry_after_s": 7, "retry_after_date": True}, 5_000, 8_000),
            ({"reset_s": 9, "reset_header": "X-RateLimit-Reset"}, 7_000, 10_000),
            ({"reset_s": 4, "reset_header": "RateLimit-Reset"}, 4_000, 4_000),
            ({}, None, None),
        ]
        for when, least, most in said:
            rule = add_fault(demo_provider, status=429, paths=["/api/"], **when)
            with pytest.raises(TryLater) as limited:
                request("POST", tasks, json={"title": "t"})
            assert fault_hits(demo_provider, rule["id"]) == 1, "a 429 is not retried here"
            httpx.delete(demo_provider + "/_faults")
            assert type(limited.value).__name__ == "ProviderRateLimited", limited.value
            wait = limited.value.retry_after_ms
            if least is None:
                assert wait is None
            else:
                assert wait is not None and least <= wait <= (most or least), (when, wait)
        assert breaker.failure_count("demo") == 0 and breaker.state("demo") == "closed"

        add_fault(demo_provider, status=503, paths=["/api/"])
        for _ in range(2):
            with pytest.raises(TryLater):
                request("GET", tasks)
        assert breaker.state("demo") == "open"
    finally:
        httpx.delete(demo_provider + "/_faults")
        breaker.reset("demo")


def test_a_cancelled_call_and_a_full_pool_count_towards_nothing(
    demo_provider: str, rds: redis.Redis, clients: WorkerClients
) -> None:
    """A quest's cancel cancels its step's task: the call hanging on the provider ends at
    once with the cancel (not swallowed, not turned into an error), and counts as no failure.
    A call that finds every connection of the pool busy waits as for an outage, without
    counting against the provider either: the congestion is ours."""
    httpx.delete(demo_provider + "/_faults")
    breaker = Breaker(rds)
    breaker.reset("demo")
    counted = AsyncBreaker(clients.redis, failures=1)  # any counted failure would open it
    tasks = httpx.URL(demo_provider + "/api/v1/tasks")
    token = Secret("demo_at_" + "x" * 43)

    async def cut_after(seconds: float) -> tuple[bool, float]:
        client = ProviderClient(clients.http, counted, retries=0)
        call = asyncio.create_task(client.request(DEMO, "GET", tasks, token))
        await asyncio.sleep(seconds)
        call.cancel()
        cut_at = time.monotonic()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        return call.cancelled(), time.monotonic() - cut_at

    async def two_at_once_on_one_connection() -> list[BaseException | httpx.Response]:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(5, pool=0.2)) as http:
            client = ProviderClient(http, counted, retries=0)
            calls = [client.request(DEMO, "GET", tasks, token) for _ in range(2)]
            return await asyncio.gather(*calls, return_exceptions=True)

    try:
        with provider_faults(demo_provider, delay_s=3, paths=["/api/"]):
            cancelled, took = clients.loop.run(cut_after(0.3))
        assert cancelled, "the cancel reached the caller as a cancel"
        assert took < 0.25, f"the call took {took:.2f}s to stop"
        assert breaker.failure_count("demo") == 0 and breaker.state("demo") == "closed"

        with provider_faults(demo_provider, delay_s=1, paths=["/api/"]):
            first, second = clients.loop.run(two_at_once_on_one_connection())
        assert isinstance(first, httpx.Response) and first.status_code == 401, first
        assert isinstance(second, ProviderUnavailable), second
        assert "every connection to providers is busy" in str(second)
        assert second.retry_after_ms is not None and second.retry_after_ms > 0
        assert breaker.failure_count("demo") == 0 and breaker.state("demo") == "closed"
    finally:
        httpx.delete(demo_provider + "/_faults")
        breaker.reset("demo")


def test_one_companys_4xx_during_anothers_outage_do_not_keep_the_breaker_closed(
    istack: Stack,
    in_tenant: InTenant,
    clients: WorkerClients,
    rds: redis.Redis,
    settings: Settings,
    key: str,
    tenant: Tenant,
    other_tenant: Tenant,
    demo_provider: str,
    admin_conn: psycopg.Connection[Any],
) -> None:
    """B's calls meet a provider outage (503) while A's calls get 404s and 401s: only a 2xx
    or 3xx (the provider working) forgets B's failures, so the third one opens the breaker.
    The tools are wired as in a worker, with both companies' real tokens."""
    a, b = tenant.id, other_tenant.id
    connect(istack, tenant)
    connect(istack, other_tenant)
    breaker = Breaker(rds)
    breaker.reset("demo")
    tools = demo_tools(
        settings, clients, rds, demo_provider, key,
        breaker_failures=3, provider_retries=0, breaker_open_s=60,
    )  # fmt: skip
    quest_a = submit(in_tenant, istack.settings.redis_url, a, "set-up")
    quest_b = submit(in_tenant, istack.settings.redis_url, b, "set-up")
    nowhere = {"id": "tsk_" + "0" * 16, "title": "Not there"}  # no such task: a real 404

    def a_gets_404(use: str) -> None:
        outcome = clients.run(tools["demo_update_task"], ToolCall(a, quest_a.id, 1, use, nowhere))
        assert outcome.is_error and "404" in outcome.content, outcome

    def b_fails(use: str) -> ProviderUnavailable:
        with pytest.raises(ProviderUnavailable) as down:
            clients.run(tools["demo_list_tasks"], ToolCall(b, quest_b.id, 1, use, {}))
        return down.value

    add_fault(demo_provider, status=503, accounts=[str(b)], paths=["/api/"])
    try:
        b_fails("toolu_b1")
        a_gets_404("toolu_a1")
        assert breaker.failure_count("demo") == 1, "A's 404 reset B's failures"
        b_fails("toolu_b2")
        a_gets_404("toolu_a2")
        # A's token is refused, and again after its refresh: two 401s, and A must reconnect.
        rule = add_fault(demo_provider, status=401, accounts=[str(a)], paths=["/api/"])
        with pytest.raises(QuestFailed, match="needs reconnecting"):
            clients.run(tools["demo_update_task"], ToolCall(a, quest_a.id, 1, "toolu_a3", nowhere))
        assert fault_hits(demo_provider, rule["id"]) == 2
        assert breaker.failure_count("demo") == 2, "A's 401s reset B's failures"
        assert breaker.state("demo") == "closed"
        opened = b_fails("toolu_b3")
        assert "circuit breaker is open" in str(opened), opened
        assert breaker.state("demo") == "open"
        again = b_fails("toolu_b4")  # no call made: the breaker is open for everyone
        assert again.retry_after_ms is not None and again.retry_after_ms > 50_000
        assert provider_stats(demo_provider, a)["mutations"] == 0
    finally:
        httpx.delete(demo_provider + "/_faults")
        breaker.reset("demo")


def test_when_a_provider_says_to_come_back() -> None:
    from integrations.ratelimit import delay_ms, reset_after_ms

    now = 1_800_000_000.0
    headers = httpx.Headers
    assert reset_after_ms(headers({"Retry-After": "120"}), now) == 120_000
    assert reset_after_ms(headers({"Retry-After": "Fri, 15 Jan 2027 08:00:30 GMT"}), now) == 30_000
    assert reset_after_ms(headers({"Retry-After": "Fri, 15 Jan 2027 07:00:00 GMT"}), now) == 0
    assert reset_after_ms(headers({"RateLimit-Reset": "17"}), now) == 17_000
    assert reset_after_ms(headers({"RateLimit": '"default";r=0;t=42'}), now) == 42_000
    assert reset_after_ms(headers({"X-RateLimit-Reset": str(int(now) + 90)}), now) == 90_000
    assert reset_after_ms(headers({"X-RateLimit-Reset": "30"}), now) == 30_000  # a delta
    assert reset_after_ms(headers({"Retry-After": "soon", "RateLimit-Reset": "5"}), now) == 5_000
    assert reset_after_ms(headers({"Retry-After": "-3"}), now) is None
    assert reset_after_ms(headers({}), now) is None

    assert delay_ms(3_000, 1, waited_s=0, max_s=300) == 3_000  # what the provider said
    assert delay_ms(None, 1, waited_s=0, max_s=300) == 5_000  # it said nothing
    assert delay_ms(500, 4, waited_s=10, max_s=300) == 8_000  # it keeps saying "half a second"
    assert delay_ms(3_600_000, 1, waited_s=0, max_s=300) is None  # further than a quest waits
    assert delay_ms(20_000, 3, waited_s=290, max_s=300) is None  # past the bound in all


# -- 429: this company's step waits; the breaker is not touched --------------------------------


def test_one_companys_429s_delay_its_own_step_and_never_open_the_breaker(
    istack: Stack,
    in_tenant: InTenant,
    rds: redis.Redis,
    tenant: Tenant,
    other_tenant: Tenant,
    demo_provider: str,
    admin_conn: psycopg.Connection[Any],
) -> None:
    a, b = tenant.id, other_tenant.id
    connect(istack, tenant)
    connect(istack, other_tenant)
    # A's own rate limit: its next two calls are refused, each "come back in 3 s".
    rule = add_fault(
        demo_provider, status=429, accounts=[str(a)], paths=["/api/"], retry_after_s=3, count=2
    )
    # One counted failure would open the breaker, for a minute, for every company.
    istack.start_workers(processes=1, S2_BREAKER_FAILURES="1", S2_BREAKER_OPEN_S="60")

    mine = submit(in_tenant, istack.settings.redis_url, a, "[script:tasks] Order new chairs")
    wait_for(lambda: fault_hits(demo_provider, rule["id"]) >= 1, timeout=30)
    assert breaker_untouched(rds), "a 429 counted towards the provider's breaker"

    sent_at = time.monotonic()
    theirs = submit(in_tenant, istack.settings.redis_url, b, "[script:tasks] Order new desks")
    done_b = wait_finished(in_tenant, b, theirs.id, timeout=30)
    b_took = time.monotonic() - sent_at
    assert done_b.status == "succeeded", done_b.reason
    assert b_took < 8, f"B waited {b_took:.1f}s behind A's rate limit"

    done_a = wait_finished(in_tenant, a, mine.id, timeout=60)
    a_waited = time.monotonic() - sent_at
    assert done_a.status == "succeeded", done_a.reason
    assert a_waited > 4, "A's step did not wait for the provider's Retry-After"

    waits = [e for e in quest_events(rds, a, mine.id) if e["kind"] == "step.waiting"]
    assert [w["data"]["retry_in_ms"] for w in waits] == [3000, 3000], waits
    assert all("rate-limiting" in w["data"]["reason"] for w in waits), waits
    assert not [e for e in quest_events(rds, b, theirs.id) if e["kind"] == "step.waiting"]

    # The refused calls were not performed; the retry performed the mutation, once.
    posts = [r for r in provider_requests(demo_provider, a) if r[0] == "POST"]
    assert len(posts) == 3, posts  # two refused with 429, then the one that worked
    assert provider_stats(demo_provider, a)["mutations"] == 1
    assert provider_stats(demo_provider, b)["mutations"] == 1
    calls = admin_conn.execute(
        "SELECT status FROM tool_calls WHERE company_id = %s AND quest_id = %s", (a, mine.id)
    ).fetchall()
    assert calls == [("done",)]
    assert breaker_untouched(rds)


def test_a_reset_further_away_than_a_quest_waits_fails_that_quest_with_the_reason(
    istack: Stack,
    in_tenant: InTenant,
    rds: redis.Redis,
    tenant: Tenant,
    demo_provider: str,
) -> None:
    connect(istack, tenant)
    add_fault(
        demo_provider,
        status=429,
        accounts=[str(tenant.id)],
        paths=["/api/"],
        reset_s=3600,
        reset_header="X-RateLimit-Reset",
    )
    istack.start_workers(processes=1, S2_BREAKER_FAILURES="1")
    quest = submit(in_tenant, istack.settings.redis_url, tenant.id, "[script:tasks] Book the venue")
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=30)
    assert done.status == "failed"
    assert "Demo task list is rate-limiting this company" in (done.reason or ""), done.reason
    resets = re.search(r"resets in (\d+)s", done.reason or "")
    assert resets and 3590 <= int(resets[1]) <= 3601, done.reason  # an epoch header: whole seconds
    assert provider_stats(demo_provider, tenant.id)["mutations"] == 0
    assert breaker_untouched(rds)


# -- the token endpoint's trouble: the step waits; a non-JSON refusal is handled ----------------


def test_the_token_endpoints_429_and_5xx_delay_the_step_and_a_proxy_page_is_a_plain_refusal(
    istack: Stack,
    in_tenant: InTenant,
    clients: WorkerClients,
    rds: redis.Redis,
    settings: Settings,
    key: str,
    tenant: Tenant,
    demo_provider: str,
    admin_conn: psycopg.Connection[Any],
) -> None:
    """A refresh the token endpoint refuses with 429 or 5xx leaves the credential alone and
    the step waits for the endpoint's reset; a 4xx whose body is an HTML page fails the
    quest with the status, and nothing of the page."""
    connect(istack, tenant)
    expire_token(admin_conn, tenant.id)
    tools = demo_tools(settings, clients, rds, demo_provider, key)
    create = tools["demo_create_task"]
    quest = submit(in_tenant, istack.settings.redis_url, tenant.id, "set-up")
    call = ToolCall(tenant.id, quest.id, 1, "toolu_1", {"title": "Renew the lease"})
    token = ["/oauth/token"]
    try:
        rule = add_fault(demo_provider, status=429, paths=token, retry_after_s=7, count=1)
        with pytest.raises(TryLater) as limited:
            clients.run(create, call)
        assert fault_hits(demo_provider, rule["id"]) == -1, "the 429 was met (and used up)"
        assert type(limited.value).__name__ == "ProviderRateLimited", limited.value
        assert limited.value.retry_after_ms == 7_000
        assert "rate-limiting our token requests" in str(limited.value), limited.value

        add_fault(demo_provider, status=503, paths=token, retry_after_s=4, count=1, html=True)
        with pytest.raises(ProviderUnavailable) as down:
            clients.run(create, call)
        assert down.value.retry_after_ms == 4_000, down.value
        assert "token endpoint answered 503" in str(down.value)

        add_fault(demo_provider, status=403, paths=token, count=1, html=True)
        other = ToolCall(tenant.id, quest.id, 1, "toolu_2", {"title": "Pay the rent"})
        with pytest.raises(QuestFailed) as refused:
            clients.run(create, other)
        assert "refused to refresh the connection (HTTP 403)" in str(refused.value)
        assert "<" not in str(refused.value) and "html" not in str(refused.value).lower()

        stats = provider_stats(demo_provider, tenant.id)
        assert stats["refreshes"] == 0 and stats["mutations"] == 0
        assert listed(istack, tenant.id)["needs_reconnect"] is False
        assert reconnect_rows(admin_conn, tenant.id) == []
        assert breaker_untouched(rds)

        outcome = clients.run(create, call)  # the step's retry, once the endpoint answers again
        assert not outcome.is_error and outcome.action == "task.created", outcome
        stats = provider_stats(demo_provider, tenant.id)
        assert stats["refreshes"] == 1 and stats["mutations"] == 1
    finally:
        httpx.delete(demo_provider + "/_faults")


def test_a_refresh_storm_the_token_endpoint_rate_limits_delays_the_quests_and_fails_none(
    istack: Stack,
    in_tenant: InTenant,
    rds: redis.Redis,
    tenant: Tenant,
    demo_provider: str,
    admin_conn: psycopg.Connection[Any],
) -> None:
    """Worker processes: the token endpoint refuses the refresh twice with 429 (its limit is
    our client app's), "come back in 3 s"; the quest's step waits twice, then succeeds."""
    connect(istack, tenant)
    expire_token(admin_conn, tenant.id)
    rule = add_fault(demo_provider, status=429, paths=["/oauth/token"], retry_after_s=3, count=2)
    istack.start_workers(processes=1, S2_BREAKER_FAILURES="1", S2_BREAKER_OPEN_S="60")
    quest = submit(
        in_tenant, istack.settings.redis_url, tenant.id, "[script:tasks] Order new chairs"
    )
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=60)
    assert done.status == "succeeded", done.reason
    assert fault_hits(demo_provider, rule["id"]) == -1, "both 429s were met"
    waits = [e for e in quest_events(rds, tenant.id, quest.id) if e["kind"] == "step.waiting"]
    assert [w["data"]["retry_in_ms"] for w in waits] == [3000, 3000], waits
    assert all("rate-limiting our token requests" in w["data"]["reason"] for w in waits), waits
    stats = provider_stats(demo_provider, tenant.id)
    assert stats["refreshes"] == 1 and stats["mutations"] == 1
    assert breaker_untouched(rds)


# -- 401 after the refresh: this company must reconnect ------------------------------------------


@pytest.fixture
def ingress(settings: Settings, rds: redis.Redis, key: str) -> Iterator[TestClient]:
    vault = build_vault(settings.model_copy(update={"vault_keys": SecretStr(key)}), rds)
    with ingress_client(settings, rds, vault=vault) as client:
        yield client


def test_a_401_that_survives_the_refresh_marks_that_companys_credential_until_it_reconnects(
    istack: Stack,
    ingress: TestClient,
    in_tenant: InTenant,
    rds: redis.Redis,
    tenant: Tenant,
    other_tenant: Tenant,
    demo_provider: str,
    admin_conn: psycopg.Connection[Any],
) -> None:
    a, b = tenant.id, other_tenant.id
    connect(istack, tenant)
    connect(istack, other_tenant)
    # The provider refuses every API call made with A's tokens, fresh ones included.
    add_fault(demo_provider, status=401, accounts=[str(a)], paths=["/api/"])
    istack.start_workers(processes=1, S2_BREAKER_FAILURES="1", S2_BREAKER_OPEN_S="60")

    first = submit(in_tenant, istack.settings.redis_url, a, "[script:tasks] Order new chairs")
    failed = wait_finished(in_tenant, a, first.id, timeout=30)
    assert failed.status == "failed"
    reason = failed.reason or ""
    assert "demo integration needs reconnecting" in reason, reason
    assert "refused its token even after a refresh" in reason and "connect it again" in reason
    stats = provider_stats(demo_provider, a)
    assert stats["refreshes"] == 1, "one refresh, then the credential is given up"
    assert stats["mutations"] == 0

    shown = listed(istack, a)
    assert shown["needs_reconnect"] is True and shown["needs_reconnect_since"]
    assert "refused its token even after a refresh" in shown["needs_reconnect_reason"]
    over_http = ingress.get(
        f"/v1/companies/{a}/integrations", headers=tenant.headers(tenant.member)
    )
    assert over_http.status_code == 200
    assert over_http.json()[0]["needs_reconnect"] is True
    assert listed(istack, b)["needs_reconnect"] is False

    (row,) = reconnect_rows(admin_conn, a)
    assert row[0:3] == ("system", "integration.needs_reconnect", "integration:demo")
    assert row[4] == first.id and "refused its token" in row[3]
    assert row[5] == first.origin_message_id, "the row names the message that started the quest"

    # Until A reconnects, its quests fail at once: no token is sent, no second row written.
    before = provider_requests(demo_provider, a)
    again = submit(in_tenant, istack.settings.redis_url, a, "[script:tasks] Order new lamps")
    again_done = wait_finished(in_tenant, a, again.id, timeout=30)
    assert again_done.status == "failed" and "needs reconnecting" in (again_done.reason or "")
    assert provider_requests(demo_provider, a) == before
    assert len(reconnect_rows(admin_conn, a)) == 1

    # B, on the same provider, is untouched: no breaker was opened by A's 401s.
    theirs = submit(in_tenant, istack.settings.redis_url, b, "[script:tasks] Order new desks")
    sent_at = time.monotonic()
    done_b = wait_finished(in_tenant, b, theirs.id, timeout=30)
    assert done_b.status == "succeeded", done_b.reason
    assert time.monotonic() - sent_at < 8
    assert breaker_untouched(rds)
    assert reconnect_rows(admin_conn, b) == []

    # A reconnects: the mark is gone, and its quests use the integration again.
    httpx.delete(demo_provider + "/_faults")
    connect(istack, tenant)
    assert listed(istack, a)["needs_reconnect"] is False
    assert listed(istack, a)["needs_reconnect_reason"] is None
    after = submit(in_tenant, istack.settings.redis_url, a, "[script:tasks] Order new chairs again")
    assert wait_finished(in_tenant, a, after.id, timeout=30).status == "succeeded"
    assert provider_stats(demo_provider, a)["mutations"] == 1


def test_a_refused_refresh_marks_the_credential_once_and_a_put_clears_it(
    istack: Stack,
    ingress: TestClient,
    in_tenant: InTenant,
    clients: WorkerClients,
    rds: redis.Redis,
    settings: Settings,
    key: str,
    tenant: Tenant,
    demo_provider: str,
    admin_conn: psycopg.Connection[Any],
) -> None:
    """The company revoked our access at the provider: the token is refused and so is the
    refresh (``invalid_grant``). A redelivered step changes nothing more."""
    connect(istack, tenant)
    s = settings.with_integration(
        "demo", api_url=demo_provider, oauth_url=demo_provider
    ).model_copy(update={"vault_keys": SecretStr(key)})
    vault = build_vault(s, rds)
    row = admin_conn.execute(
        "SELECT id, refresh_token FROM integration_credentials WHERE company_id = %s",
        (tenant.id,),
    ).fetchone()
    assert row is not None
    refresh = unseal(
        vault, bytes(row[1]), company_id=tenant.id, integration="demo",
        credential_id=row[0], field=REFRESH,
    ).reveal()  # fmt: skip
    revoked = httpx.post(
        demo_provider + "/oauth/revoke",
        data={"token": refresh},
        auth=(
            s.integration("demo").client_id,
            s.integration("demo").client_secret.get_secret_value(),
        ),
    )
    assert revoked.status_code == 200

    create = clients.tools(s, vault)["demo_create_task"]
    quest = submit(in_tenant, s.redis_url, tenant.id, "set-up")
    call = ToolCall(
        tenant.id, quest.id, 1, "toolu_1", {"title": "Renew the lease"},
        origin_message_id=quest.origin_message_id,
    )  # fmt: skip
    for _ in range(2):  # the second run is the broker redelivering the step
        with pytest.raises(QuestFailed, match="demo integration needs reconnecting") as failed:
            clients.run(create, call)
        assert "refused to refresh its token (invalid_grant)" in str(failed.value)
        assert refresh not in str(failed.value)
    (row,) = reconnect_rows(admin_conn, tenant.id)
    assert row[4] == quest.id and row[5] == quest.origin_message_id
    assert provider_stats(demo_provider, tenant.id)["mutations"] == 0
    listed_now = ingress.get(f"/v1/companies/{tenant.id}/integrations", headers=tenant.headers())
    assert listed_now.json()[0]["needs_reconnect"] is True

    put = ingress.put(
        f"/v1/companies/{tenant.id}/integrations/demo",
        json={"access_token": f"demo_at_{uuid.uuid4().hex}", "refresh_token": "demo_rt_x"},
        headers=tenant.headers(),
    )
    assert put.status_code == 200, put.text
    assert put.json()["needs_reconnect"] is False and put.json()["needs_reconnect_reason"] is None
    listed_after = ingress.get(f"/v1/companies/{tenant.id}/integrations", headers=tenant.headers())
    assert listed_after.json()[0]["needs_reconnect"] is False


def test_the_reconnect_row_carries_the_message_that_started_the_quest(
    istack: Stack,
    in_tenant: InTenant,
    clients: WorkerClients,
    rds: redis.Redis,
    settings: Settings,
    key: str,
    tenant: Tenant,
    demo_provider: str,
    admin_conn: psycopg.Connection[Any],
) -> None:
    """Invariant 7: the audit row of a credential marked as needing reconnection (a 401 that
    survived the refresh) names its actor, action, target, rationale and the originating
    message: the one that started the quest whose call was refused."""
    connect(istack, tenant)
    create = demo_tools(settings, clients, rds, demo_provider, key)["demo_create_task"]
    quest = submit(in_tenant, istack.settings.redis_url, tenant.id, "Order new chairs")
    call = ToolCall(
        tenant.id, quest.id, 3, "toolu_r", {"title": "Order new chairs"},
        origin_message_id=quest.origin_message_id,
    )  # fmt: skip
    try:
        add_fault(demo_provider, status=401, accounts=[str(tenant.id)], paths=["/api/"])
        with pytest.raises(QuestFailed, match="needs reconnecting"):
            clients.run(create, call)
    finally:
        httpx.delete(demo_provider + "/_faults")
    (row,) = reconnect_rows(admin_conn, tenant.id)
    assert row[0:3] == ("system", "integration.needs_reconnect", "integration:demo")
    assert "refused its token even after a refresh" in row[3]
    assert row[4] == quest.id
    assert row[5] is not None and row[5] == quest.origin_message_id
