"""The whole path on real parts: HTTP submit -> worker processes -> Claude -> activity_log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Stack, Tenant
from tests.support import wait_for

pytestmark = pytest.mark.slow


def finished(client: httpx.Client, tenant: Tenant, quest_id: str) -> dict[str, Any] | None:
    body = client.get(
        f"/v1/companies/{tenant.id}/quests/{quest_id}", headers=tenant.headers()
    ).json()
    return body if body["status"] not in ("queued", "running") else None


def test_quest_runs_end_to_end_and_is_audited(stack: Stack, tenant: Tenant) -> None:
    stack.start_workers()
    url = stack.start_ingress()
    with httpx.Client(base_url=url, timeout=10) as client:
        resp = client.post(
            f"/v1/companies/{tenant.id}/quests",
            json={"goal": "[script:notes] Write down the launch checklist"},
            headers=tenant.headers(tenant.member),
        )
        assert resp.status_code == 202, resp.text
        quest_id = resp.json()["quest_id"]
        assert resp.json()["status"] == "queued"

        quest = wait_for(lambda: finished(client, tenant, quest_id))
        assert quest["status"] == "succeeded", quest
        assert quest["result"]
        assert [s["stop_reason"] for s in quest["steps"]] == ["tool_use", "end_turn"]
        assert quest["steps"][0]["tools"] == ["add_note"]
        assert quest["cost_usd_micros"] > 0

        def audit() -> list[dict[str, Any]] | None:
            items = client.get(
                f"/v1/companies/{tenant.id}/activity", headers=tenant.headers()
            ).json()["items"]
            return items if len(items) >= 3 else None

        items = wait_for(audit)
        actions = [i["action"] for i in items]
        assert actions == ["quest.succeeded", "note.added", "quest.started"]
        note = items[1]
        assert note["rationale"], "a mutating action records Claude's rationale"
        assert note["originating_message_id"]
        assert note["quest_id"] == quest_id
        assert note["actor_type"] == "ted"
