"""Fixtures: a fresh Postgres database and a private Redis database per test session.

Everything is real: the machine's Postgres (a scratch database, migrated as the owner, used
as the app role) and Redis (one of its numbered databases, reserved with a lock key so that
concurrent runs don't collide). Processes — workers, ingress, offline Claude — are started
on loopback and stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from runtime.loop_thread import LoopThread
from runtime.settings import Settings
from runtime.wiring import async_redis
from store import Database, TenantTx
from store import companies as companies_store
from system2.dev_tokens import mint
from system2.procs import Proc, free_port, wait_http, wait_workers
from system2.scratch import operator_url, scratch_postgres, scratch_redis
from tests.browser import browser_page, chromium  # noqa: F401 - fixtures for browser tests
from tests.support import InTenant
from workers.beacon import live_workers

JWT_SECRET = "test-secret-" + uuid.uuid4().hex
BIN = Path(sys.executable).parent


def _base_admin_url() -> str:
    return os.environ.get("S2_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _base_redis_url() -> str:
    return os.environ.get("S2_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def pg_urls() -> Iterator[tuple[str, str]]:
    """(admin url, app url) of a scratch database, migrated; dropped at the end."""
    with scratch_postgres(_base_admin_url(), prefix="s2test") as urls:
        yield urls


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A numbered Redis database reserved for this session."""
    with scratch_redis(_base_redis_url()) as url:
        yield url


@pytest.fixture(scope="session")
def settings(pg_urls: tuple[str, str], redis_url: str) -> Settings:
    admin_url, app_url = pg_urls
    return Settings(
        env="test",
        database_url=app_url,
        admin_database_url=admin_url,
        operator_database_url=operator_url(app_url),
        redis_url=redis_url,
        jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
    )


def settings_env(s: Settings, **extra: str) -> dict[str, str]:
    """The environment a subprocess needs to run with these settings."""
    env = dict(os.environ)
    env.update(
        S2_ENV=s.env,
        S2_DATABASE_URL=s.database_url,
        S2_ADMIN_DATABASE_URL=s.admin_database_url,
        S2_OPERATOR_DATABASE_URL=s.operator_database_url,
        S2_REDIS_URL=s.redis_url,
        S2_JWT_SECRET=s.jwt_secret.get_secret_value(),
        S2_MAX_STEPS=str(s.max_steps),
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def db(settings: Settings, call_loop: LoopThread) -> Iterator[Database]:
    """The store's pool, on the tests' loop (``call_loop``): in-process workers share it."""
    database = Database(settings.database_url, min_size=1, max_size=4, name="tests")
    call_loop.run(database.open())
    yield database
    call_loop.run(database.close())


@pytest.fixture
def guard_redis(settings: Settings, call_loop: LoopThread) -> Iterator[AsyncRedis]:
    """The guard's async Redis client, used on the tests' loop (``call_loop``), as a worker
    process uses its own on its call loop: pass it to ``step_budget``, ``Guard``,
    ``Admissions``, and run their coroutines with ``in_tenant.run``."""
    client = async_redis(settings, connections=8)
    yield client
    call_loop.run(client.aclose())


@pytest.fixture(scope="session")
def in_tenant(db: Database, call_loop: LoopThread) -> InTenant:
    """Run ``work(tx)`` in one transaction of a company, from a test (which has no loop)."""
    return InTenant(db, call_loop)


@pytest.fixture(scope="session")
def admin_conn(settings: Settings) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(settings.admin_database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def call_loop() -> Iterator[LoopThread]:
    """An event loop in a thread, where the tests run in-process workers' coroutines (as a
    worker process runs them on its loop) and their own store work."""
    loop = LoopThread(name="tests-loop")
    loop.start()
    yield loop
    loop.stop()


@pytest.fixture
def rds(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    client.close()


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    admin: str
    member: str

    def token(self, user: str | None = None, **kw: int) -> str:
        return mint(JWT_SECRET, user or self.admin, **kw)

    def headers(self, user: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}


@pytest.fixture
def make_tenant(in_tenant: InTenant) -> Callable[[str], Tenant]:
    def make(name: str = "Acme") -> Tenant:
        cid = uuid.uuid4()
        suffix = cid.hex[:6]
        tenant = Tenant(cid, admin=f"admin-{suffix}", member=f"member-{suffix}")

        async def create(tx: TenantTx) -> None:
            await companies_store.create(tx, name)
            await companies_store.add_member(tx, tenant.admin, "admin")
            await companies_store.add_member(tx, tenant.member, "member")

        in_tenant(cid, create)
        return tenant

    return make


@pytest.fixture
def tenant(make_tenant: Callable[[str], Tenant]) -> Tenant:
    return make_tenant("Acme Robotics")


@pytest.fixture
def other_tenant(make_tenant: Callable[[str], Tenant]) -> Tenant:
    return make_tenant("Globex Foods")


def system2(*args: str) -> list[str]:
    return [str(BIN / "system2"), *args]


def serve(
    name: str,
    tmp_path_factory: pytest.TempPathFactory,
    argv: Callable[[int], list[str]] | None = None,
) -> Iterator[str]:
    """``system2 NAME --port P`` (or ``argv(P)``) in its own process; yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / f"{name}.log"
    command = argv(port) if argv else system2(name, "--port", str(port))
    proc = Proc(name, command, log_path=log).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/", proc=proc)
        yield url
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def offline_claude(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The offline Claude in its own process; yields its base URL."""
    yield from serve("offline-claude", tmp_path_factory)


@pytest.fixture(scope="session")
def demo_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo integration provider in its own process; yields its base URL."""
    yield from serve("demo-provider", tmp_path_factory)


@dataclass
class Stack:
    """Worker processes and an ingress on loopback, sharing the session's databases."""

    settings: Settings
    claude_url: str
    logs: Path
    procs: dict[str, Proc]
    ingress_url: str = ""
    base_env: dict[str, str] = field(default_factory=dict)  # for every process of the stack
    ingress_env: dict[str, str] = field(default_factory=dict)  # what the ingress runs with

    def env(self, **extra: str) -> dict[str, str]:
        claude = {"ANTHROPIC_BASE_URL": self.claude_url, "ANTHROPIC_API_KEY": "offline-test-key"}
        return settings_env(self.settings, **{**claude, **self.base_env, **extra})

    def start_workers(
        self,
        name: str = "workers",
        *,
        processes: int = 2,
        in_flight: int | None = None,
        **extra: str,
    ) -> Proc:
        argv = system2("worker", "--processes", str(processes))
        if in_flight is not None:
            argv += ["--in-flight", str(in_flight)]
        proc = Proc(name, argv, env=self.env(**extra), log_path=self.logs / f"{name}.log").start()
        self.procs[name] = proc
        wait_workers(self.settings.redis_url, processes, proc=proc)
        return proc

    def live_worker_count(self) -> int:
        return len(live_workers(redis.Redis.from_url(self.settings.redis_url)))

    def start_ingress(self, port: int | None = None) -> str:
        """The stack's ingress (replacing the one running, if any, as a redeploy does)."""
        if "ingress" in self.procs:
            self.procs["ingress"].stop()
        port = port or free_port()
        self.ingress_url = f"http://127.0.0.1:{port}"
        self.base_env["S2_PUBLIC_URL"] = self.ingress_url  # OAuth callbacks come back here
        self.ingress_env = self.env()
        proc = Proc(
            "ingress",
            system2("ingress", "--port", str(port)),
            env=self.ingress_env,
            log_path=self.logs / "ingress.log",
        ).start()
        self.procs["ingress"] = proc
        wait_http(self.ingress_url + "/healthz", proc=proc)
        return self.ingress_url

    def connect(self, tenant: Tenant, integration: str, **login: str) -> httpx.Response:
        """Connect the company's integration as its admin does: ``POST …/authorize`` answers
        the provider's consent URL, and "the admin's browser" (a GET following redirects,
        logged in at the stand-in by ``login``'s parameters) approves it and lands on the
        ingress's callback, whose page is returned. (``system2 integration connect`` begins
        the same flow: tests/test_oauth_connect.py.)"""
        if not self.ingress_url:
            self.start_ingress()
        elif self.ingress_env != self.env():  # e.g. vault keys given since: as a redeploy
            self.start_ingress(httpx.URL(self.ingress_url).port)
        begun = httpx.post(
            f"{self.ingress_url}/v1/companies/{tenant.id}/integrations/{integration}/authorize",
            headers=tenant.headers(),
            timeout=30,
        )
        assert begun.status_code == 200, begun.text
        consent = httpx.URL(begun.json()["authorize_url"]).copy_merge_params(login)
        return httpx.get(consent, follow_redirects=True, timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


@contextlib.contextmanager
def running_stack(settings: Settings, claude_url: str, logs: Path) -> Iterator[Stack]:
    """A stack whose processes are stopped, and whose Redis is emptied, when the block ends."""
    s = Stack(settings, claude_url, logs, {})
    try:
        yield s
    finally:
        s.stop()
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(settings.redis_url).flushdb()


@pytest.fixture
def stack(settings: Settings, offline_claude: str, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(settings, offline_claude, tmp_path) as s:
        yield s
