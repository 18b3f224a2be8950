"""Integrations on real parts: the demo provider on loopback (OAuth 2 with rotating refresh
tokens, a task API honouring Idempotency-Key), the vault, worker processes, Postgres, Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from redis.asyncio import Redis as AsyncRedis

from messages import AuditBatch, open_envelope
from messages.redis_keys import credential_lock_key
from runtime.loop_thread import LoopThread
from runtime.settings import Settings
from runtime.wiring import async_redis, build_vault
from store import Database
from store import activity as activity_store
from store import credentials as credentials_store
from store import quests as quests_store
from store import tool_calls as tool_calls_store
from store.activity import ActivityFilter
from tests.conftest import Stack, Tenant, serve, settings_env, system2
from tests.support import (
    InTenant,
    ingress_client,
    provider_faults,
    submit,
    wait_finished,
    wait_for,
)
from tests.test_provider_routes import TRAVERSALS
from tests.test_quest_runner import start
from tests.worker_support import InProcess, in_process_worker
from vault import Vault, new_key_entry
from vault.sealed_tokens import ACCESS, REFRESH, unseal
from workers.audit import AuditWriter
from workers.integrations.lock import LockTimeout, RedisLock
from workers.integrations.registry import integration_tools, provider_http
from workers.integrations.tools import ConnectedTool
from workers.tools import Tool, ToolCall, ToolOutcome

pytestmark = pytest.mark.slow


def fresh_key() -> str:
    return new_key_entry(datetime.now(UTC))


@pytest.fixture
def keys() -> list[str]:
    return [fresh_key(), fresh_key()]


@pytest.fixture
def istack(stack: Stack, demo_provider: str, keys: list[str], rds: redis.Redis) -> Stack:
    """A stack whose processes have the vault's first key and the demo provider."""
    httpx.delete(demo_provider + "/_faults")
    stack.base_env.update(S2_VAULT_KEYS=keys[0], S2_DEMO_PROVIDER_URL=demo_provider)
    return stack


def run_cli(stack: Stack, *args: str, **env: str) -> str:
    done = subprocess.run(
        system2(*args),
        env=stack.env(**env),
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def connect(stack: Stack, tenant: Tenant) -> None:
    """The tenant connects the demo task list through the OAuth flow, as an operator does."""
    page = stack.connect(tenant, "demo", login_hint=str(tenant.id))
    assert page.status_code == 200, page.text


def provider_stats(url: str, account: uuid.UUID) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(url + "/_stats").json()
    return stats["accounts"].get(str(account), {"mutations": 0, "refreshes": 0, "requests": 0})


def vault_for(settings: Settings, rds: redis.Redis, keyring: str) -> Vault:
    return build_vault(settings.model_copy(update={"vault_keys": SecretStr(keyring)}), rds)


@dataclass(frozen=True)
class WorkerClients:
    """What a worker process wires its integrations with, for the tests' loop: the store's
    pool, a redis.asyncio client and the provider client (``provider_http``)."""

    loop: LoopThread
    db: Database
    redis: AsyncRedis
    http: httpx.AsyncClient

    def tools(self, settings: Settings, vault: Vault) -> dict[str, Tool]:
        """The demo integration's tools, wired as a worker wires them."""
        wired = integration_tools(settings, self.db, self.redis, vault, self.http)
        return {t.name: t for t in wired["demo"]}

    def run(self, tool: Tool, call: ToolCall) -> ToolOutcome:
        """Run ``tool`` on the loop, as a step does, and wait for its outcome."""
        return self.loop.run(tool.run(call))


@contextlib.contextmanager
def worker_clients(settings: Settings, loop: LoopThread, db: Database) -> Iterator[WorkerClients]:
    """A worker's clients on ``loop`` (their pools bind to the loop that first uses them),
    closed there when the block ends."""
    clients = WorkerClients(loop, db, async_redis(settings, connections=8), provider_http(settings))
    try:
        yield clients
    finally:
        loop.run(clients.http.aclose())
        loop.run(clients.redis.aclose())


@pytest.fixture
def clients(settings: Settings, call_loop: LoopThread, db: Database) -> Iterator[WorkerClients]:
    with worker_clients(settings, call_loop, db) as made:
        yield made


# -- the refresh lock --------------------------------------------------------------------------


def test_a_lock_held_by_a_cancelled_step_is_released_and_its_waiter_goes_on(
    clients: WorkerClients,
) -> None:
    """A step cancelled while it refreshes a token lets go of the credential's lock on its
    way out: the next step waiting for it goes on at once, not after the lock's 15 s
    lifetime. One that waits longer than it is willing to gets ``LockTimeout``."""
    key = f"s2:lock:credential:{uuid.uuid4()}:demo"

    async def cancel_the_holder() -> tuple[bool, bool, float, int]:
        holding = asyncio.Event()

        async def holder() -> None:
            async with RedisLock(clients.redis, key):
                holding.set()
                await asyncio.sleep(30)

        async def waiter() -> bool:
            async with RedisLock(clients.redis, key, wait_s=5) as lock:
                return lock.waited

        held = asyncio.create_task(holder())
        await holding.wait()
        with pytest.raises(LockTimeout):
            async with RedisLock(clients.redis, key, wait_s=0.2):
                pass
        waiting = asyncio.create_task(waiter())
        await asyncio.sleep(0.1)
        held.cancel()
        cut_at = time.monotonic()
        waited = await waiting
        took = time.monotonic() - cut_at
        return held.cancelled(), waited, took, int(await clients.redis.exists(key))

    cancelled, waited, took, left = clients.loop.run(cancel_the_holder())
    assert cancelled and waited
    assert took < 1, f"the waiter took the lock {took:.1f}s after the cancel"
    assert left == 0, "the waiter released it too"


# -- connecting over HTTP -----------------------------------------------------------------------


@pytest.fixture
def ingress(settings: Settings, rds: redis.Redis, keys: list[str]) -> Iterator[TestClient]:
    with ingress_client(settings, rds, vault=vault_for(settings, rds, keys[0])) as client:
        yield client


def test_connecting_stores_ciphertexts_and_echoes_no_token(
    ingress: TestClient,
    tenant: Tenant,
    admin_conn: psycopg.Connection[Any],
    settings: Settings,
    rds: redis.Redis,
    keys: list[str],
) -> None:
    access, refresh = f"demo_at_{uuid.uuid4().hex}", f"demo_rt_{uuid.uuid4().hex}"
    url = f"/v1/companies/{tenant.id}/integrations/demo"
    body = {
        "access_token": access,
        "refresh_token": refresh,
        "scopes": ["tasks.read"],
        "expires_at": "2030-01-01T00:00:00Z",
    }
    assert ingress.put(url, json=body, headers=tenant.headers(tenant.member)).status_code == 403
    resp = ingress.put(url, json=body, headers=tenant.headers())
    assert resp.status_code == 200, resp.text
    listed = ingress.get(
        f"/v1/companies/{tenant.id}/integrations", headers=tenant.headers(tenant.member)
    )
    for text in (resp.text, listed.text):
        assert access not in text and refresh not in text
    assert (
        listed.json()[0]["key_id"] == keys[0].split("=")[0]
        and listed.json()[0]["has_refresh_token"]
    )

    row = admin_conn.execute(
        "SELECT id, access_token, refresh_token FROM integration_credentials WHERE company_id = %s",
        (tenant.id,),
    ).fetchone()
    assert row is not None
    cred_id, access_ct, refresh_ct = row
    assert access.encode() not in bytes(access_ct) and refresh.encode() not in bytes(refresh_ct)
    vault = vault_for(settings, rds, keys[0])
    opened = unseal(
        vault,
        bytes(access_ct),
        company_id=tenant.id,
        integration="demo",
        credential_id=cred_id,
        field=ACCESS,
    )
    assert opened.reveal() == access
    with pytest.raises(
        Exception, match="binding is wrong"
    ):  # the access ciphertext is not the refresh token
        unseal(
            vault,
            bytes(access_ct),
            company_id=tenant.id,
            integration="demo",
            credential_id=cred_id,
            field=REFRESH,
        )

    bad = ingress.put(
        url, json={"access_token": access, "bogus": refresh}, headers=tenant.headers()
    )
    assert bad.status_code == 422 and access not in bad.text and refresh not in bad.text
    unknown = ingress.put(
        f"/v1/companies/{tenant.id}/integrations/nope", json=body, headers=tenant.headers()
    )
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "no integration named 'nope'; known: demo, github, slack"
    assert ingress.delete(url, headers=tenant.headers()).status_code == 204
    assert (
        ingress.get(f"/v1/companies/{tenant.id}/integrations", headers=tenant.headers()).json()
        == []
    )


# -- quests using tools --------------------------------------------------------------------------


def test_only_a_company_that_connected_an_integration_gets_its_tools(
    istack: Stack, in_tenant: InTenant, tenant: Tenant, other_tenant: Tenant, demo_provider: str
) -> None:
    connect(istack, tenant)
    istack.start_workers(processes=1)
    mine = submit(
        in_tenant, istack.settings.redis_url, tenant.id, "[script:tasks] Order new chairs"
    )
    theirs = submit(
        in_tenant, istack.settings.redis_url, other_tenant.id, "[script:tasks] Order new desks"
    )
    assert wait_finished(in_tenant, tenant.id, mine.id).status == "succeeded"
    assert wait_finished(in_tenant, other_tenant.id, theirs.id).status == "succeeded"
    assert provider_stats(demo_provider, tenant.id)["mutations"] == 1
    assert provider_stats(demo_provider, other_tenant.id)["mutations"] == 0

    step = in_tenant(other_tenant.id, lambda tx: quests_store.steps(tx, theirs.id))[0]
    assert "unknown tool demo_create_task" in json.dumps(step.tool_results)

    def created() -> list[Any] | None:
        wanted = ActivityFilter(quest_id=mine.id, action="task.created")
        rows, _ = in_tenant(tenant.id, lambda tx: activity_store.page(tx, wanted))
        return rows or None

    (row,) = wait_for(created)
    assert row.rationale and row.target.startswith("demo:task:tsk_")
    uses = in_tenant(tenant.id, lambda tx: credentials_store.uses(tx, "demo"))
    assert [u.purpose for u in uses] == ["tool demo_create_task"] and uses[0].quest_id == mine.id


def test_sixteen_concurrent_steps_on_an_expired_token_refresh_it_once(
    istack: Stack,
    in_tenant: InTenant,
    tenant: Tenant,
    admin_conn: psycopg.Connection[Any],
    demo_provider: str,
) -> None:
    connect(istack, tenant)
    admin_conn.execute(
        "UPDATE integration_credentials SET access_expires_at = now() - interval '1 minute' WHERE company_id = %s",
        (tenant.id,),
    )
    quests = [
        submit(in_tenant, istack.settings.redis_url, tenant.id, f"[script:tasks] task {i}")
        for i in range(16)
    ]
    istack.start_workers(processes=2)
    done = [wait_finished(in_tenant, tenant.id, q.id, timeout=60) for q in quests]
    assert [q.status for q in done] == ["succeeded"] * 16, [q.reason for q in done]
    stats = provider_stats(demo_provider, tenant.id)
    assert stats["refreshes"] == 1
    assert stats["mutations"] == 16
    cred = in_tenant(tenant.id, lambda tx: credentials_store.get(tx, "demo"))
    assert cred is not None and cred.version == 2 and cred.access_expires_at > datetime.now(UTC)


def test_a_provider_that_fails_opens_the_breaker_delays_then_fails_the_quest(
    istack: Stack, in_tenant: InTenant, tenant: Tenant, demo_provider: str, rds: redis.Redis
) -> None:
    connect(istack, tenant)
    with provider_faults(demo_provider, status=500, paths=["/api/"]):
        istack.start_workers(
            processes=1,
            S2_PROVIDER_OUTAGE_MAX_S="3",
            S2_BREAKER_FAILURES="2",
            S2_BREAKER_OPEN_S="1",
            S2_PROVIDER_RETRIES="1",
        )
        quest = submit(
            in_tenant, istack.settings.redis_url, tenant.id, "[script:tasks] Book the venue"
        )
        done = wait_finished(in_tenant, tenant.id, quest.id, timeout=60)
    assert done.status == "failed"
    assert "Demo task list has been unavailable" in (done.reason or "")
    assert provider_stats(demo_provider, tenant.id)["mutations"] == 0
    events = [json.loads(f[b"e"])["payload"] for _, f in rds.xrange(f"s2:events:{tenant.id}")]
    waits = [e for e in events if e["quest_id"] == str(quest.id) and e["kind"] == "step.waiting"]
    assert waits and any("circuit breaker is open" in e["data"]["reason"] for e in waits)
    assert all(e["data"]["retry_in_ms"] >= 500 for e in waits), "the step waits for the breaker"


def test_a_provider_that_times_out_delays_then_fails_the_quest(
    istack: Stack, in_tenant: InTenant, tenant: Tenant, demo_provider: str
) -> None:
    connect(istack, tenant)
    with provider_faults(demo_provider, delay_s=3, paths=["/api/"]):
        istack.start_workers(
            processes=1,
            S2_PROVIDER_OUTAGE_MAX_S="2",
            S2_PROVIDER_TIMEOUT_S="0.5",
            S2_PROVIDER_RETRIES="0",
        )
        quest = submit(
            in_tenant, istack.settings.redis_url, tenant.id, "[script:tasks] Book the venue"
        )
        done = wait_finished(in_tenant, tenant.id, quest.id, timeout=60)
    assert done.status == "failed" and "unavailable" in (done.reason or ""), done.reason


# -- redelivery of a mutating step ---------------------------------------------------------------


class DiesAfterTheCall:
    """The real tool, then the worker dies before the step is recorded."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name, self.description = inner.name, inner.description
        self.input_schema, self.mutates = inner.input_schema, inner.mutates
        self.calls = 0

    async def run(self, call: ToolCall) -> ToolOutcome:
        self.calls += 1
        outcome = await self.inner.run(call)
        if self.calls == 1:
            raise RuntimeError("killed after the provider call")
        return outcome


def create_task_tool(worker: InProcess, istack: Stack, tenant: Tenant) -> ConnectedTool:
    """The company connects the demo integration; the runner's tool that creates a task."""
    connect(istack, tenant)
    toolbox = worker.runner.toolbox
    (create,) = [t for t in toolbox.integrations["demo"] if t.name == "demo_create_task"]
    assert isinstance(create, ConnectedTool)
    return create


@contextlib.contextmanager
def runner_on(
    claude_url: str,
    store: InTenant,
    rds: redis.Redis,
    settings: Settings,
    keys: list[str],
    demo_provider: str,
    *,
    max_tokens: int = 256,
) -> Iterator[tuple[InProcess, Settings]]:
    """A quest runner in-process with the integrations' real tools, on the given Claude."""
    rds.flushdb()
    s = settings.with_integration(
        "demo", api_url=demo_provider, oauth_url=demo_provider
    ).model_copy(update={"vault_keys": SecretStr(keys[0])})
    with worker_clients(s, store.loop, store.db) as clients:
        tools = integration_tools(s, clients.db, clients.redis, build_vault(s, rds), clients.http)
        with in_process_worker(
            store, clients.redis, s, claude_url, integrations=tools, max_tokens=max_tokens,
            max_steps=10,
        ) as worker:  # fmt: skip
            yield worker, s


@pytest.fixture
def connected_runner(
    in_tenant: InTenant,
    rds: redis.Redis,
    offline_claude: str,
    settings: Settings,
    keys: list[str],
    demo_provider: str,
) -> Iterator[tuple[InProcess, Settings]]:
    with runner_on(offline_claude, in_tenant, rds, settings, keys, demo_provider) as parts:
        yield parts


def write_queued_audit(store: InTenant, rds: redis.Redis) -> None:
    """Write every audit batch waiting on the audit queue, as the audit worker would."""
    batches = [
        open_envelope(json.loads(b)["args"][0], AuditBatch)
        for b in rds.hvals("dramatiq:audit.msgs")
    ]
    writer = AuditWriter(store.db)
    for batch in batches:
        store.run(writer.write(batch.company_id, batch.payload.events))
    store.run(writer.close())


def test_a_redelivered_mutating_step_mutates_once_and_audits_once(
    connected_runner: tuple[InProcess, Settings],
    istack: Stack,
    in_tenant: InTenant,
    rds: redis.Redis,
    tenant: Tenant,
    demo_provider: str,
) -> None:
    worker, _ = connected_runner
    create = create_task_tool(worker, istack, tenant)
    dying = DiesAfterTheCall(create)
    worker.runner.toolbox.integrations["demo"] = [dying]
    env = start(in_tenant, tenant, "[script:tasks] Renew the lease")
    with pytest.raises(RuntimeError, match="killed"):
        worker.step(env, holder="m1")
    worker.step(env, holder="m1")  # the broker redelivers the same message
    assert dying.calls == 2
    stats = provider_stats(demo_provider, tenant.id)
    assert stats["mutations"] == 1, "the provider saw the same Idempotency-Key"

    write_queued_audit(in_tenant, rds)
    wanted = ActivityFilter(quest_id=env.payload.quest_id, action="task.created")
    rows, _ = in_tenant(tenant.id, lambda tx: activity_store.page(tx, wanted))
    assert len(rows) == 1


def test_a_mutating_call_is_recorded_done_even_if_redis_fails_after_it(
    connected_runner: tuple[InProcess, Settings],
    istack: Stack,
    in_tenant: InTenant,
    tenant: Tenant,
) -> None:
    worker, _ = connected_runner
    create = create_task_tool(worker, istack, tenant)
    # The outage marker's Redis stops answering once the provider has done the call.
    create.outages = AsyncRedis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    env = start(in_tenant, tenant, "[script:tasks] Renew the lease")
    call = ToolCall(tenant.id, env.payload.quest_id, 1, "toolu_1", {"title": "Renew the lease"})
    outcome = in_tenant.run(create.run(call))
    assert not outcome.is_error
    record = in_tenant(
        tenant.id,
        lambda tx: tool_calls_store.begin(tx, call.idempotency_key, call.quest_id, 1, create.name),
    )
    assert record.status == "done", "a redelivery will not call the provider again"


@dataclass
class DemoTools:
    """The demo integration's tools, connected for a company, each run in one started quest."""

    store: InTenant
    tools: dict[str, Tool]
    company_id: uuid.UUID
    quest_id: uuid.UUID

    def __call__(self, name: str, use: str, **inp: Any) -> ToolOutcome:
        call = ToolCall(self.company_id, self.quest_id, 1, use, inp)
        return self.store.run(self.tools[name].run(call))


@pytest.fixture
def demo_tools(
    connected_runner: tuple[InProcess, Settings],
    istack: Stack,
    in_tenant: InTenant,
    tenant: Tenant,
) -> DemoTools:
    worker, _ = connected_runner
    connect(istack, tenant)
    tools = {t.name: t for t in worker.runner.toolbox.integrations["demo"]}
    quest_id = start(in_tenant, tenant, "[script:tasks] Renew the lease").payload.quest_id
    return DemoTools(in_tenant, tools, tenant.id, quest_id)


def test_the_demo_tools_create_update_list_and_delete_a_task(demo_tools: DemoTools) -> None:
    run = demo_tools
    created = run("demo_create_task", "toolu_c", title="Renew the lease")
    assert (created.action, created.is_error) == ("task.created", False)
    task_id = created.data["task_id"]
    assert created.target == f"demo:task:{task_id}"

    updated = run("demo_update_task", "toolu_u", id=task_id, status="done")
    assert (updated.action, updated.target) == ("task.updated", f"demo:task:{task_id}")
    assert f"{task_id} [done] Renew the lease" in updated.content
    assert "[done] Renew the lease" in run("demo_list_tasks", "toolu_l", status="done").content

    deleted = run("demo_delete_task", "toolu_d", id=task_id)
    assert (deleted.action, deleted.target) == ("task.deleted", f"demo:task:{task_id}")
    assert run("demo_list_tasks", "toolu_l2").content == "no tasks"
    missing = run("demo_update_task", "toolu_u2", id=task_id, title="again")
    assert missing.is_error and "404" in missing.content


def test_a_refresh_stays_single_when_its_redis_lock_lapses_during_a_slow_token_endpoint(
    demo_tools: DemoTools,
    admin_conn: psycopg.Connection[Any],
    rds: redis.Redis,
    tenant: Tenant,
    demo_provider: str,
) -> None:
    """A token endpoint slower than the lock's lifetime: the second step, finding the lock
    gone, must not send the same refresh token again (a rotating provider would revoke the
    grant); it waits for the first refresh's row and uses what it stored."""
    admin_conn.execute(
        "UPDATE integration_credentials SET access_expires_at = now() - interval '1 minute' "
        "WHERE company_id = %s",
        (tenant.id,),
    )
    lock = credential_lock_key(tenant.id, "demo")

    async def lapse() -> None:
        for _ in range(200):  # until the first step holds the lock, then as if it lapsed
            if rds.delete(lock):
                return
            await asyncio.sleep(0.01)

    async def both() -> list[ToolOutcome]:
        calls = [ToolCall(tenant.id, demo_tools.quest_id, 1, f"toolu_{i}", {}) for i in range(2)]
        listing = demo_tools.tools["demo_list_tasks"]
        first = asyncio.ensure_future(listing.run(calls[0]))
        await lapse()
        second = asyncio.ensure_future(listing.run(calls[1]))
        return list(await asyncio.gather(first, second))

    with provider_faults(demo_provider, delay_s=1.5, paths=["/oauth/token"]):
        outcomes = demo_tools.store.run(both())
    assert [o.is_error for o in outcomes] == [False, False], [o.content for o in outcomes]
    assert provider_stats(demo_provider, tenant.id)["refreshes"] == 1
    cred = demo_tools.store(tenant.id, lambda tx: credentials_store.get(tx, "demo"))
    assert cred is not None and cred.version == 2 and not cred.needs_reconnect


# -- tool input never moves a request off its path ----------------------------------------------
# Claude writes the tools' input. A task id like "../../../oauth/token" once sent the company's
# bearer token, and a PATCH or DELETE, to another provider endpoint (httpx resolves ".."), and
# "x/../<id>" or "<id>#x" changed a task under a false name in the audit trail. The provider's
# journal shows every request that carried the company's token, as it arrived.


def provider_requests(url: str, account: uuid.UUID) -> list[tuple[str, str, str]]:
    """(method, path as sent, path as routed) of each request bearing ``account``'s token."""
    found = httpx.get(url + "/_requests", params={"account": str(account)}).json()["requests"]
    return [(r["method"], r["raw_path"], r["path"]) for r in found]


def smuggled(task_id: str) -> list[Any]:
    """Traversals of every kind, and ones that would land on a real task under another name."""
    return [
        *TRAVERSALS,
        f"x/../{task_id}",
        f"{task_id}#x",
        f"{task_id}?status=done",
        f"{task_id}/.",
        f"./{task_id}",
        f"{task_id}%2F..%2F..%2F..%2Foauth%2Ftoken",
        f"{task_id}/../../../oauth/token",
    ]


def test_a_planted_id_in_each_tool_sends_no_request_and_changes_nothing(
    demo_tools: DemoTools,
    tenant: Tenant,
    demo_provider: str,
    admin_conn: psycopg.Connection[Any],
) -> None:
    run, quest_id = demo_tools, demo_tools.quest_id
    task_id = run("demo_create_task", "toolu_c", title="Renew the lease").data["task_id"]
    outcomes = {
        (tool, repr(bad)): run(tool, f"toolu_{tool}_{i}", id=bad, status="done")
        for i, bad in enumerate(smuggled(task_id))
        for tool in ("demo_update_task", "demo_delete_task")
    }

    created = ("POST", "/api/v1/tasks", "/api/v1/tasks")
    assert provider_requests(demo_provider, tenant.id) == [created], "the token went elsewhere"
    refused = {k: o for k, o in outcomes.items() if o.is_error and o.action is None}
    assert refused == outcomes, "every planted id is an error for Claude"
    assert all(" was not called: input.id " in o.content for o in outcomes.values())
    calls = admin_conn.execute(
        "SELECT tool FROM tool_calls WHERE company_id = %s AND quest_id = %s",
        (tenant.id, quest_id),
    )
    assert [r[0] for r in calls.fetchall()] == ["demo_create_task"], "no call was recorded"
    assert provider_stats(demo_provider, tenant.id)["mutations"] == 1

    # The task is as it was, and its own id still reaches its own path, and only that.
    assert run("demo_list_tasks", "toolu_l").content == f"{task_id} [open] Renew the lease"
    assert not run("demo_update_task", "toolu_u", id=task_id, status="done").is_error
    assert not run("demo_delete_task", "toolu_d", id=task_id).is_error
    task = f"/api/v1/tasks/{task_id}"
    assert provider_requests(demo_provider, tenant.id) == [
        created,
        ("GET", "/api/v1/tasks", "/api/v1/tasks"),
        ("PATCH", task, task),
        ("DELETE", task, task),
    ]


# A stand-in Claude that plants traversals in the task tools; ``{goal}`` is the real task id.
PLANTING_CLAUDE = """
import sys, uvicorn
from standins.offline_claude.server import create_app
from standins.offline_claude.scripts import Script, Text, ToolUse, Turn
planted = ["x/../{goal}", "{goal}#x", "{goal}?status=done", "../../../oauth/token", "..",
           "../../oauth/token", "%2e%2e/oauth", "x/../../oauth/token", "a?b", "a#b", "a%2Fb",
           "{goal}%2F..%2F..%2F..%2Foauth%2Ftoken"]
uses = [ToolUse("demo_update_task", {"id": p, "title": "Paid by Ted"}) for p in planted]
uses += [ToolUse("demo_delete_task", {"id": p}) for p in planted]
first = Turn((Text("Tidying the task list as asked."), *uses), stop_reason="tool_use")
scripts = {"plant": Script(turns=(first, Turn((Text("Done."),))))}
uvicorn.run(create_app(scripts), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@pytest.fixture(scope="module")
def planting_claude(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve(
        "planting-claude",
        tmp_path_factory,
        lambda port: [sys.executable, "-c", PLANTING_CLAUDE, str(port)],
    )


def test_a_quest_whose_claude_plants_traversals_gets_errors_and_no_audit_row(
    planting_claude: str,
    istack: Stack,
    in_tenant: InTenant,
    rds: redis.Redis,
    settings: Settings,
    keys: list[str],
    tenant: Tenant,
    demo_provider: str,
    admin_conn: psycopg.Connection[Any],
) -> None:
    parts = runner_on(
        planting_claude, in_tenant, rds, settings, keys, demo_provider, max_tokens=4096
    )
    with parts as (worker, _):
        connect(istack, tenant)
        tools = {t.name: t for t in worker.runner.toolbox.integrations["demo"]}
        setup = start(in_tenant, tenant, "set-up").payload.quest_id
        made = in_tenant.run(
            tools["demo_create_task"].run(
                ToolCall(tenant.id, setup, 1, "toolu_c", {"title": "Pay the rent"})
            )
        )
        task_id = made.data["task_id"]
        env = start(in_tenant, tenant, f"[script:plant] {task_id}")
        worker.step(env, holder="m1")

    quest_id = env.payload.quest_id
    created = ("POST", "/api/v1/tasks", "/api/v1/tasks")
    assert provider_requests(demo_provider, tenant.id) == [created], "the token went elsewhere"
    (step,) = in_tenant(tenant.id, lambda tx: quests_store.steps(tx, quest_id))
    assert len(step.tool_results) == 24
    for result in step.tool_results:
        assert result.get("is_error") is True, result
        assert " was not called: input.id " in json.dumps(result["content"])
    assert not [e for e in step.events if e["action"].startswith("task.")], step.events

    write_queued_audit(in_tenant, rds)
    rows = admin_conn.execute(
        "SELECT action, target FROM activity_log WHERE company_id = %s AND quest_id = %s",
        (tenant.id, quest_id),
    ).fetchall()
    assert not [r for r in rows if r[0].startswith("task.")], rows
    calls = admin_conn.execute("SELECT count(*) FROM tool_calls WHERE quest_id = %s", (quest_id,))
    assert calls.fetchone() == (0,)
    stats = provider_stats(demo_provider, tenant.id)
    assert stats["mutations"] == 1 and stats["requests"] == 1


# -- rotation --------------------------------------------------------------------------------------


def test_rotation_and_rewrap_beside_running_quests_fail_no_decrypt(
    istack: Stack,
    in_tenant: InTenant,
    tenant: Tenant,
    other_tenant: Tenant,
    keys: list[str],
    demo_provider: str,
    admin_conn: psycopg.Connection[Any],
) -> None:
    old, new = keys[0].split("=")[0], keys[1].split("=")[0]
    for t in (tenant, other_tenant):
        connect(istack, t)
    istack.start_workers("old-workers", processes=1)
    before = [
        submit(in_tenant, istack.settings.redis_url, t.id, f"[script:tasks] before {t.id}")
        for t in (tenant, other_tenant)
    ]

    rotated = f"{keys[1]},{keys[0]}"  # the new key first: the primary
    refused = subprocess.run(
        system2("vault", "retire", old),
        env=istack.env(S2_VAULT_KEYS=rotated),
        capture_output=True,
        check=False,
        text=True,
    )
    assert refused.returncode != 0 and "still protects 4 ciphertexts" in refused.stderr
    istack.start_workers("new-workers", processes=1, S2_VAULT_KEYS=rotated)
    istack.procs.pop("old-workers").stop()
    during = [
        submit(in_tenant, istack.settings.redis_url, t.id, f"[script:tasks] during {t.id}")
        for t in (tenant, other_tenant)
    ]
    run_cli(istack, "vault", "rewrap", "--wait", "--timeout", "60", S2_VAULT_KEYS=rotated)
    after = [
        submit(in_tenant, istack.settings.redis_url, t.id, f"[script:tasks] after {t.id}")
        for t in (tenant, other_tenant)
    ]

    for q in before + during + after:
        company = tenant.id if str(tenant.id) in q.goal else other_tenant.id
        done = wait_finished(in_tenant, company, q.id, timeout=60)
        assert done.status == "succeeded", done.reason
    mine = admin_conn.execute(
        "SELECT key_id FROM integration_credentials WHERE company_id = ANY(%s)",
        ([tenant.id, other_tenant.id],),
    )
    assert {r[0] for r in mine.fetchall()} == {new}
    status = json.loads(run_cli(istack, "vault", "status", S2_VAULT_KEYS=rotated))
    counts = {k["key_id"]: k["ciphertexts"] for k in status["keys"]}
    assert counts[new] >= 4 and counts[old] == 0 and status["primary"] == new
    run_cli(istack, "vault", "retire", old, S2_VAULT_KEYS=rotated)
    logs = istack.procs["new-workers"].output()
    assert "DecryptionFailed" not in logs and "UnknownKey" not in logs


def test_planted_tokens_and_keys_never_reach_logs_or_reasons(
    istack: Stack,
    in_tenant: InTenant,
    tenant: Tenant,
    keys: list[str],
    settings: Settings,
    rds: redis.Redis,
    admin_conn: psycopg.Connection[Any],
    demo_provider: str,
) -> None:
    connect(istack, tenant)
    istack.start_ingress()
    istack.start_workers(processes=1, S2_PROVIDER_OUTAGE_MAX_S="1", S2_PROVIDER_RETRIES="0")
    ok = submit(
        in_tenant, istack.settings.redis_url, tenant.id, "[script:tasks_then_list] plan the offsite"
    )
    assert wait_finished(in_tenant, tenant.id, ok.id).status == "succeeded"
    with provider_faults(demo_provider, status=503, paths=["/api/"]):
        failing = submit(
            in_tenant, istack.settings.redis_url, tenant.id, "[script:tasks] during an outage"
        )
        failed = wait_finished(in_tenant, tenant.id, failing.id, timeout=60)

    vault = vault_for(settings, rds, keys[0])
    row = admin_conn.execute(
        "SELECT id, access_token, refresh_token FROM integration_credentials WHERE company_id = %s",
        (tenant.id,),
    ).fetchone()
    assert row is not None
    bound = {"company_id": tenant.id, "integration": "demo", "credential_id": row[0]}
    planted = [
        unseal(vault, bytes(row[1]), field=ACCESS, **bound).reveal(),
        unseal(vault, bytes(row[2]), field=REFRESH, **bound).reveal(),
        keys[0].split("=", 1)[1],
    ]
    texts = [p.output() for p in istack.procs.values()]  # every process's log
    texts.append(failed.reason or "")
    audit = admin_conn.execute(
        "SELECT json_agg(a)::text FROM activity_log a WHERE company_id = %s", (tenant.id,)
    )
    texts.append(str(audit.fetchone()))
    texts.extend(
        v.decode(errors="replace") for k in rds.scan_iter() for v in _values(rds, k)
    )  # queues, events
    for secret in planted:
        assert all(secret not in t for t in texts), "a secret leaked"


def _values(rds: redis.Redis, key: bytes) -> list[bytes]:
    kind = rds.type(key)
    if kind == b"string":
        return [rds.get(key) or b""]
    if kind == b"hash":
        return list(rds.hvals(key))
    if kind == b"list":
        return list(rds.lrange(key, 0, -1))
    if kind == b"stream":
        return [v for _, fields in rds.xrange(key) for v in fields.values()]
    return []


def test_the_cli_refuses_to_connect_without_vault_keys(
    stack: Stack, tenant: Tenant, settings: Settings
) -> None:
    done = subprocess.run(
        system2("integration", "connect", str(tenant.id), "demo"),
        env=settings_env(settings, S2_VAULT_KEYS="", S2_VAULT_KEYS_FILE=""),
        capture_output=True,
        check=False,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: no vault keys")
    assert len(done.stderr.strip().splitlines()) == 1
