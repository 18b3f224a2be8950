"""A quest that fails because Claude refused our request — our request or our configuration
is wrong — reaches Sentry once, grouped by the API's error type (not one issue per quest),
and the error log; errors that are retried and pass (an overload) reach neither.

A real worker process with Sentry on, reporting to a loopback ingest; a Messages API
stand-in (the offline Claude) scripted to answer each error the real API can."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Stack, Tenant, serve
from tests.sentry_ingest import SentryIngest
from tests.support import InTenant, submit, wait_finished, wait_for

pytestmark = pytest.mark.slow

REFUSING_CLAUDE = """
import sys, uvicorn
from standins.offline_claude.server import create_app
from standins.offline_claude.scripts import Failure, Script
refusals = {
    "bad_request": ("invalid_request_error", 400),
    "unauthorized": ("authentication_error", 401),
    "forbidden": ("permission_error", 403),
    "missing": ("not_found_error", 404),
}
scripts = {
    name: Script(turns=(Failure(status, kind, "Scripted refusal."),))
    for name, (kind, status) in refusals.items()
}
uvicorn.run(create_app(scripts), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
REFUSALS = {
    "bad_request": "invalid_request_error",
    "unauthorized": "authentication_error",
    "forbidden": "permission_error",
    "missing": "not_found_error",
}


@pytest.fixture(scope="module")
def refusing_claude(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve(
        "refusing-claude",
        tmp_path_factory,
        lambda port: [sys.executable, "-c", REFUSING_CLAUDE, str(port)],
    )


@pytest.fixture
def sentry_ingest() -> Iterator[SentryIngest]:
    with SentryIngest() as ingest:
        yield ingest


def refused(event: dict[str, Any]) -> bool:
    return (event.get("fingerprint") or [""])[0] == "claude-rejected"


def test_each_quest_claude_refuses_is_one_sentry_event_grouped_by_error_type(
    stack: Stack,
    in_tenant: InTenant,
    tenant: Tenant,
    refusing_claude: str,
    sentry_ingest: SentryIngest,
) -> None:
    stack.start_workers(
        processes=1, SENTRY_DSN=sentry_ingest.dsn(), ANTHROPIC_BASE_URL=refusing_claude
    )
    goals = ["bad_request", "bad_request", "unauthorized", "forbidden", "missing"]
    quests = [
        submit(in_tenant, stack.settings.redis_url, tenant.id, f"[script:{g}] go") for g in goals
    ]
    for goal, quest in zip(goals, quests, strict=True):
        done = wait_finished(in_tenant, tenant.id, quest.id, timeout=60)
        assert done.status == "failed"
        assert done.reason.startswith("Claude refused the request (4"), done.reason
        assert REFUSALS[goal] in done.reason

    wait_for(lambda: len([e for e in sentry_ingest.events() if refused(e)]) >= len(goals))
    time.sleep(1)  # any duplicate would arrive now
    found = [e for e in sentry_ingest.events() if refused(e)]
    assert len(found) == len(goals), "one event per failed quest"
    assert sorted(tuple(e["fingerprint"]) for e in found) == sorted(
        ("claude-rejected", REFUSALS[g]) for g in goals
    ), "grouped by the API's error type, not by quest"
    assert {e["tags"]["quest_id"] for e in found} == {str(q.id) for q in quests}
    assert all(e["level"] == "error" for e in found)

    lines = [json.loads(line) for line in stack.procs["workers"].output().splitlines()]
    errors = [line for line in lines if line.get("event") == "Claude refused a quest's request"]
    assert sorted(line["error_type"] for line in errors) == sorted(REFUSALS[g] for g in goals)
    assert all(line["level"] == "error" for line in errors)


def test_a_transient_error_that_passes_reaches_neither_sentry_nor_the_error_log(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, sentry_ingest: SentryIngest
) -> None:
    stack.start_workers(processes=1, SENTRY_DSN=sentry_ingest.dsn())
    quest = submit(
        in_tenant, stack.settings.redis_url, tenant.id, "[script:flaky] go"
    )  # 529, then ok
    assert wait_finished(in_tenant, tenant.id, quest.id, timeout=30).status == "succeeded"
    marker = submit(in_tenant, stack.settings.redis_url, tenant.id, "[script:answer] after it")
    wait_finished(in_tenant, tenant.id, marker.id, timeout=30)
    assert sentry_ingest.events() == []
    lines = [json.loads(line) for line in stack.procs["workers"].output().splitlines()]
    assert [line for line in lines if line.get("level") == "error"] == []
