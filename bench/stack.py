"""A whole stack for a benchmark: scratch Postgres and Redis, offline Claude, workers, ingress."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from runtime.settings import Settings
from store import Database
from store import companies as companies_store
from system2.dev_tokens import mint
from system2.procs import Proc, free_port, wait_http, wait_workers
from system2.scratch import scratch_postgres, scratch_redis

BIN = Path(sys.executable).parent
# The guard still runs every check; its limits are set so no benchmark quest is refused.
UNLIMITED = {
    "S2_GUARD_QUESTS_PER_MINUTE": str(10**9),
    "S2_GUARD_MAX_RUNNING_QUESTS": str(10**6),
    "S2_GUARD_DAILY_USD": "0",
    "S2_GUARD_MONTHLY_USD": "0",
}
JWT_SECRET = "bench-" + uuid.uuid4().hex


@dataclass
class Stack:
    settings: Settings
    logs: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    claude_url: str = ""
    ingress_url: str = ""

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            S2_DATABASE_URL=self.settings.database_url,
            S2_ADMIN_DATABASE_URL=self.settings.admin_database_url,
            S2_REDIS_URL=self.settings.redis_url,
            S2_JWT_SECRET=JWT_SECRET,
            ANTHROPIC_BASE_URL=self.claude_url,
            ANTHROPIC_API_KEY="offline-bench-key",
            **UNLIMITED,
        )
        env.update(extra)
        return env

    def start(self, name: str, *args: str, **extra_env: str) -> Proc:
        proc = Proc(
            name,
            [str(BIN / "system2"), *args],
            env=self.env(**extra_env),
            log_path=self.logs / f"{name}.log",
        )
        self.procs[name] = proc.start()
        return proc

    def start_claude(self) -> None:
        port = free_port()
        self.claude_url = f"http://127.0.0.1:{port}"
        wait_http(
            self.claude_url + "/",
            proc=self.start("offline-claude", "offline-claude", "--port", str(port)),
        )

    def start_workers(self, processes: int, *queues: str) -> Proc:
        args = ["worker", "--processes", str(processes)]
        if queues:
            args += ["--queues", *queues]
        proc = self.start("workers", *args)
        wait_workers(self.settings.redis_url, processes, proc=proc, timeout=60)
        return proc

    def start_ingress(self) -> None:
        port = free_port()
        self.ingress_url = f"http://127.0.0.1:{port}"
        wait_http(
            self.ingress_url + "/healthz",
            proc=self.start("ingress", "ingress", "--port", str(port)),
        )

    def company(self, user: str = "bench-user") -> tuple[uuid.UUID, str]:
        """A company with ``user`` as its admin, and a token for them."""
        return self.companies([user])[0]

    def companies(self, users: list[str]) -> list[tuple[uuid.UUID, str]]:
        """A company per user (its admin), each with a token: made on a pool of their own,
        opened and closed in one ``asyncio.run``."""

        async def create() -> list[tuple[uuid.UUID, str]]:
            async with Database(self.settings.database_url, max_size=2) as db:
                return [await add_company(db, user) for user in users]

        return asyncio.run(create())

    def worker_rss_mb(self) -> list[float]:
        """RSS of each worker process (the children of the group's parent)."""
        parent = psutil.Process(self.procs["workers"].pid)
        return [c.memory_info().rss / 2**20 for c in parent.children(recursive=True)]


async def add_company(db: Database, user: str = "bench-user") -> tuple[uuid.UUID, str]:
    """A company with ``user`` as its admin, and a token for them (on ``db``'s loop)."""
    cid = uuid.uuid4()
    async with db.tenant(cid) as tx:
        await companies_store.create(tx, "Bench Co")
        await companies_store.add_member(tx, user, "admin")
    return cid, mint(JWT_SECRET, user, ttl_s=3600)


@contextmanager
def stack() -> Iterator[Stack]:
    admin = os.environ.get("S2_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_base = os.environ.get("S2_REDIS_URL", "redis://127.0.0.1:6379/0")
    with ExitStack() as resources:
        admin_url, app_url = resources.enter_context(scratch_postgres(admin, prefix="s2bench"))
        redis_url = resources.enter_context(scratch_redis(redis_base))
        settings = Settings(database_url=app_url, admin_database_url=admin_url, redis_url=redis_url)
        s = Stack(settings, Path(tempfile.mkdtemp(prefix="s2-bench-")))
        try:
            yield s
        finally:
            for proc in reversed(list(s.procs.values())):
                proc.stop()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return (
        f"n={len(values)} p50={percentile(values, 50):.1f} p90={percentile(values, 90):.1f} "
        f"p99={percentile(values, 99):.1f} max={max(values):.1f} mean={statistics.fmean(values):.1f}"
    )
