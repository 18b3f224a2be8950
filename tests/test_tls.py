"""TLS between every pair of services, as production runs: a Redis that listens only on TLS,
a Postgres whose pg_hba admits only TLS over TCP, and an offline Claude served over HTTPS,
each with a throw-away certificate authority. Every process runs with ``S2_ENV=production``
(so it refuses anything else at start-up); a quest goes from HTTP submit to worker to Claude
to the audit trail, and Postgres reports every app connection encrypted."""

from __future__ import annotations

import os
import secrets
import ssl
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from system2.dev_tokens import mint
from system2.procs import Proc, free_port, wait_http, wait_workers
from tests.servers import PrivatePostgres, PrivateRedis, Tls
from tests.support import wait_for
from vault import new_key_entry

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@dataclass
class TlsWorld:
    tls: Tls
    redis: PrivateRedis
    postgres: PrivatePostgres
    claude_url: str
    logs: Path
    jwt_secret: str

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("S2_", "SENTRY"))}
        return {
            **base,
            "S2_ENV": "production",
            "S2_JWT_SECRET": self.jwt_secret,
            "S2_VAULT_KEYS": new_key_entry(datetime.now(UTC)),
            "S2_REDIS_URL": self.redis.url,
            "S2_DATABASE_URL": self.postgres.app_url("system2"),
            "S2_ADMIN_DATABASE_URL": self.postgres.admin_url("system2"),
            "S2_PUBLIC_URL": "https://system2.example",
            "S2_OAUTH_STATE_SECRET": self.jwt_secret + "-oauth-state",
            "ANTHROPIC_BASE_URL": self.claude_url,
            "ANTHROPIC_API_KEY": "offline-test-key",
            "SSL_CERT_FILE": str(self.tls.ca),  # the SDK's HTTP stack trusts the test CA
            **extra,
        }

    def system2(self, name: str, *args: str) -> Proc:
        return Proc(name, [str(BIN / "system2"), *args], env=self.env(), log_path=self.logs / name)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[TlsWorld]:
    tls = Tls.make(tmp_path / "tls")
    rds = PrivateRedis(tmp_path, tls=tls)
    pg = PrivatePostgres(tls=tls)
    port = free_port()
    claude = Proc(
        "offline-claude-tls",
        [
            str(BIN / "python"),
            "-m",
            "uvicorn",
            "--factory",
            "standins.offline_claude.server:create_app",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--ssl-certfile={tls.cert}",
            f"--ssl-keyfile={tls.key}",
            "--log-level=warning",
        ],
        log_path=tmp_path / "claude.log",
    )
    try:
        rds.start()
        pg.init()
        pg.start()
        claude.start()
        with httpx.Client(verify=ssl.create_default_context(cafile=tls.ca)) as probe:
            wait_for(lambda: _answers(probe, f"https://127.0.0.1:{port}/"), timeout=20)
        yield TlsWorld(tls, rds, pg, f"https://127.0.0.1:{port}", tmp_path, secrets.token_hex(32))
    finally:
        claude.stop()
        rds.stop()
        pg.stop()
        pg.remove()


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        client.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


def run(world: TlsWorld, *args: str) -> str:
    proc = world.system2(args[0], *args).start()
    assert proc.popen is not None
    code = proc.popen.wait(timeout=60)
    output = proc.output()
    assert code == 0, output
    return output


def test_a_quest_runs_in_production_mode_over_tls_everywhere(world: TlsWorld) -> None:
    run(world, "migrate")
    company = run(world, "company", "create", "Acme").strip().splitlines()[-1]
    run(world, "company", "add-member", company, "ada", "--role", "admin")

    workers = world.system2("workers", "worker", "--processes", "1").start()
    ingress_port = free_port()
    ingress = world.system2("ingress", "ingress", "--port", str(ingress_port)).start()
    try:
        wait_workers(world.redis.url, 1, proc=workers)
        url = f"http://127.0.0.1:{ingress_port}"
        wait_http(url + "/healthz", proc=ingress)
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/readyz").json() == {"status": "ready"}
            headers = {"Authorization": f"Bearer {mint(world.jwt_secret, 'ada')}"}
            resp = client.post(
                f"/v1/companies/{company}/quests",
                json={"goal": "[script:notes] Write down the launch checklist"},
                headers=headers,
            )
            assert resp.status_code == 202, resp.text
            quest_id = resp.json()["quest_id"]

            def ended() -> dict[str, Any] | None:
                body = client.get(
                    f"/v1/companies/{company}/quests/{quest_id}", headers=headers
                ).json()
                return body if body["status"] not in ("queued", "running") else None

            quest = wait_for(ended, timeout=60)
            assert quest["status"] == "succeeded", (quest, workers.output()[-3000:])
            assert quest["steps"][0]["tools"] == ["add_note"]

        with psycopg.connect(world.postgres.admin_url("system2"), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT a.usename, s.ssl FROM pg_stat_activity a "
                "JOIN pg_stat_ssl s ON s.pid = a.pid "
                "WHERE a.datname = 'system2' AND a.backend_type = 'client backend'"
            ).fetchall()
            assert ("s2_app", True) in rows
            assert all(ssl for _, ssl in rows), rows

            def audited() -> list[str] | None:  # the log writer commits in its own time
                rows = conn.execute(
                    "SELECT action FROM activity_log WHERE quest_id = %s ORDER BY occurred_at, id",
                    (uuid.UUID(quest_id),),
                ).fetchall()
                return [a for (a,) in rows] if len(rows) >= 3 else None

            assert wait_for(audited, timeout=30) == [
                "quest.started",
                "note.added",
                "quest.succeeded",
            ]
    finally:
        ingress.stop()
        workers.stop()
