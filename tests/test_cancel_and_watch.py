"""Operators see every action live and can stop a quest mid-run: on real worker processes,
the offline Claude holding its reply, the demo provider hanging, Redis and Postgres."""

from __future__ import annotations

import functools
import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from messages.notices import announce_cancel
from store import TenantTx
from store import activity as activity_store
from store import charges as charges_store
from store import limits as limits_store
from store import notes as notes_store
from store import quests as quests_store
from store.activity import ActivityFilter
from store.charges import Charge
from store.notes import Note
from store.quests import Step
from tests.conftest import Stack, Tenant, system2
from tests.support import (
    InTenant,
    grant_support,
    provider_faults,
    quest_state,
    sse_events,
    submit,
    wait_finished,
    wait_for,
)
from tests.test_integrations import connect, fresh_key

pytestmark = pytest.mark.slow


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    stack.start_ingress()
    with httpx.Client(base_url=stack.ingress_url, timeout=10) as client:
        yield client


def cancel(
    http: httpx.Client,
    tenant: Tenant,
    quest_id: Any,
    reason: str = "changed my mind",
    user: str | None = None,
) -> httpx.Response:
    return http.post(
        f"/v1/companies/{tenant.id}/quests/{quest_id}/cancel",
        json={"reason": reason},
        headers=tenant.headers(user),
    )


def running_step(in_tenant: InTenant, tenant: Tenant, quest_id: Any) -> bool:
    quest = quest_state(in_tenant, tenant.id, quest_id)
    return quest.status == "running" and quest.step_claimed > quest.steps_done


def audit_actions(in_tenant: InTenant, tenant: Tenant, quest_id: Any) -> list[str]:
    wanted = ActivityFilter(quest_id=quest_id)
    rows, _ = in_tenant(tenant.id, lambda tx: activity_store.page(tx, wanted))
    return [r.action for r in rows]


def test_a_cancel_stops_a_claude_call_that_has_not_begun_answering(
    stack: Stack, http: httpx.Client, in_tenant: InTenant, tenant: Tenant
) -> None:
    """The request is sent and the API has not answered a byte (a slow start, a long prompt):
    no socket to shut is known yet, yet the cancel cuts the call at once."""
    stack.start_workers(processes=1)
    quest = submit(
        in_tenant, stack.settings.redis_url, tenant.id, "[script:slow_start] think first"
    )
    wait_for(lambda: running_step(in_tenant, tenant, quest.id), timeout=20)
    time.sleep(0.5)  # the call is out; the offline Claude holds its first byte for 30 s
    t0 = time.monotonic()
    assert cancel(http, tenant, quest.id).status_code == 202
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=10)
    assert time.monotonic() - t0 < 2.0
    assert done.status == "cancelled"
    (charge,) = in_tenant(tenant.id, lambda tx: charges_store.for_quest(tx, quest.id))
    # Sent, never answered: the API may bill it, so its reservation is kept.
    assert (charge.status, charge.cost_micros) == ("kept", charge.reserved_micros)
    rows = wait_for(
        lambda: (
            r if "quest.cancelled" in (r := audit_actions(in_tenant, tenant, quest.id)) else None
        )
    )
    assert rows.count("claude.call_charged") == 1


def test_a_token_count_the_api_is_slow_to_answer_neither_locks_the_quest_nor_delays_a_cancel(
    stack: Stack, http: httpx.Client, in_tenant: InTenant, tenant: Tenant
) -> None:
    """A call that does not fit the budget by its byte bound is counted by the API first: a
    network call, made outside the step's claim transaction and under its cancel scope. So
    while the API takes its time, the quest's row is free (the cancel request returns at once)
    and the cancel cuts the count."""
    budget = limits_store.LimitOverrides(daily_budget_micros=40_000)
    # the byte bound (~$0.05) does not fit, the count (~$0.02) does
    in_tenant(tenant.id, lambda tx: limits_store.put(tx, budget))
    stack.start_workers(processes=1)
    goal = "[script:slow_start] " + "plan the offsite " * 1200  # the API counts it in 30 s
    quest = submit(in_tenant, stack.settings.redis_url, tenant.id, goal)
    time.sleep(2)  # the step is waiting on the count
    t0 = time.monotonic()
    assert cancel(http, tenant, quest.id).status_code == 202
    assert time.monotonic() - t0 < 2.0, "the cancel request waited on the quest's row"
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=10)
    assert time.monotonic() - t0 < 4.0
    assert done.status == "cancelled"
    assert in_tenant(tenant.id, lambda tx: charges_store.for_quest(tx, quest.id)) == [], (
        "no call was made"
    )


def test_a_cancel_stops_a_quest_blocked_in_a_claude_call_within_two_seconds(
    stack: Stack, http: httpx.Client, in_tenant: InTenant, tenant: Tenant
) -> None:
    stack.start_workers(processes=1)
    quest = submit(
        in_tenant,
        stack.settings.redis_url,
        tenant.id,
        "[script:slow_notes] think hard, then note it",
    )
    wait_for(lambda: running_step(in_tenant, tenant, quest.id), timeout=20)
    time.sleep(0.5)  # well inside the 30 s the offline Claude holds its reply
    t0 = time.monotonic()
    assert cancel(http, tenant, quest.id).status_code == 202
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=10)
    assert time.monotonic() - t0 < 2.0
    assert done.status == "cancelled"
    assert done.reason == f"cancelled by user:{tenant.admin}: changed my mind"

    async def read(tx: TenantTx) -> tuple[list[Step], list[Charge], list[Note]]:
        return (
            await quests_store.steps(tx, quest.id),
            await charges_store.for_quest(tx, quest.id),
            await notes_store.recent(tx),
        )

    steps, charges, notes = in_tenant(tenant.id, read)
    assert notes == [], "no tool call started"
    assert [s.content for s in steps] == [None] and done.steps_done == 1, "no further step"
    # Cut mid-stream: the prompt as message_start reported it, and all the output it might
    # have produced (the stream reported none) — less than the reservation's byte bound.
    (charge,) = charges
    assert charge.status == "settled"
    assert 0 < charge.cost_micros < charge.reserved_micros
    rows = wait_for(
        lambda: (
            r if "quest.cancelled" in (r := audit_actions(in_tenant, tenant, quest.id)) else None
        )
    )
    assert rows.count("quest.cancelled") == 1
    assert rows.count("claude.call_charged") == 1, "the audit trail says what the cut call cost"
    cancelled = ActivityFilter(quest_id=quest.id, action="quest.cancelled")
    (row,) = in_tenant(tenant.id, lambda tx: activity_store.page(tx, cancelled))[0]
    assert (row.actor_type, row.actor_id) == ("user", tenant.admin)


def test_a_cancel_stops_a_quest_waiting_on_a_hung_provider(
    stack: Stack, http: httpx.Client, in_tenant: InTenant, tenant: Tenant, demo_provider: str
) -> None:
    stack.base_env.update(S2_VAULT_KEYS=fresh_key(), S2_DEMO_PROVIDER_URL=demo_provider)
    connect(stack, tenant)
    with provider_faults(demo_provider, delay_s=30, paths=["/api/"]):
        stack.start_workers(processes=1)
        quest = submit(
            in_tenant, stack.settings.redis_url, tenant.id, "[script:tasks] book the venue"
        )
        wait_for(
            lambda: quest_state(in_tenant, tenant.id, quest.id).cost_usd_micros > 0, timeout=20
        )  # Claude answered
        time.sleep(0.5)  # now the tool call hangs at the provider
        t0 = time.monotonic()
        assert cancel(http, tenant, quest.id, user=tenant.member).status_code == 403, (
            "not the submitter"
        )
        assert cancel(http, tenant, quest.id).status_code == 202
        done = wait_finished(in_tenant, tenant.id, quest.id, timeout=10)
        assert time.monotonic() - t0 < 2.0
    assert done.status == "cancelled"
    assert "task.created" not in audit_actions(in_tenant, tenant, quest.id)


def test_a_cancel_before_the_first_step_stops_the_quest_before_any_call(
    stack: Stack, http: httpx.Client, in_tenant: InTenant, tenant: Tenant
) -> None:
    quest = submit(in_tenant, stack.settings.redis_url, tenant.id, "[script:answer] never mind")
    assert cancel(http, tenant, quest.id, reason="typo").status_code == 202
    stack.start_workers(processes=1)  # no worker held the quest when the cancel came
    done = wait_finished(in_tenant, tenant.id, quest.id)
    assert done.status == "cancelled" and done.reason and done.reason.endswith("typo")

    async def read(tx: TenantTx) -> tuple[list[Charge], list[Step]]:
        return await charges_store.for_quest(tx, quest.id), await quests_store.steps(tx, quest.id)

    charges, steps = in_tenant(tenant.id, read)
    assert charges == [], "no Claude call"
    assert all(s.content is None for s in steps), "no reply"


def test_cancelling_an_ended_quest_answers_its_final_state(
    stack: Stack, http: httpx.Client, in_tenant: InTenant, tenant: Tenant, other_tenant: Tenant
) -> None:
    stack.start_workers(processes=1)
    quest = submit(in_tenant, stack.settings.redis_url, tenant.id, "[script:answer] quick")
    assert wait_finished(in_tenant, tenant.id, quest.id).status == "succeeded"
    resp = cancel(http, tenant, quest.id)
    assert resp.status_code == 200 and resp.json()["status"] == "succeeded"
    # another company's quest: 404 whichever way, and nothing changes
    foreign = cancel(http, other_tenant, quest.id)
    assert foreign.status_code == 404
    running = submit(in_tenant, stack.settings.redis_url, tenant.id, "[script:slow] long")
    assert cancel(http, other_tenant, running.id).status_code == 404
    time.sleep(0.5)
    assert quest_state(in_tenant, tenant.id, running.id).cancel_requested_at is None


# -- live events ---------------------------------------------------------------------------------


def read_sse(
    http: httpx.Client,
    tenant: Tenant,
    quest_id: Any,
    last_event_id: str | None = None,
    stop_after: int | None = None,
) -> list[dict[str, Any]]:
    headers = tenant.headers(tenant.member) | (
        {"Last-Event-ID": last_event_id} if last_event_id else {}
    )
    events: list[dict[str, Any]] = []
    with http.stream(
        "GET", f"/v1/companies/{tenant.id}/quests/{quest_id}/events", headers=headers, timeout=30
    ) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(
            "text/event-stream"
        )
        for event in sse_events(resp.iter_lines()):
            events.append(event)
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


def test_an_sse_client_gets_the_events_in_order_and_resumes_after_the_last_it_saw(
    stack: Stack, http: httpx.Client, in_tenant: InTenant, tenant: Tenant
) -> None:
    stack.start_workers(processes=1)
    quest = submit(in_tenant, stack.settings.redis_url, tenant.id, "[script:notes] write it down")
    everything = read_sse(http, tenant, quest.id)  # ends by itself when the quest ends
    kinds = [e["event"] for e in everything]
    assert kinds[0] == "quest.state" and everything[0]["data"]["data"]["status"] == "running"
    assert kinds[-1] == "quest.state" and everything[-1]["data"]["data"]["status"] == "succeeded"
    assert "tool.called" in kinds and kinds.index("tool.called") < kinds.index("tool.finished")
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-")))) and len(set(ids)) == len(
        ids
    )

    first_three = read_sse(http, tenant, quest.id, stop_after=3)
    rest = read_sse(http, tenant, quest.id, last_event_id=first_three[-1]["id"])
    assert first_three + rest == everything, "a reconnect gets exactly what it missed"
    foreign = http.get(
        f"/v1/companies/{tenant.id}/quests/{quest.id}/events", headers={"Authorization": "Bearer x"}
    )
    assert foreign.status_code == 401


def test_quest_watch_in_a_terminal_follows_the_quest_to_its_end(
    stack: Stack, in_tenant: InTenant, tenant: Tenant
) -> None:
    stack.start_workers(processes=1)
    quest = submit(
        in_tenant, stack.settings.redis_url, tenant.id, "[script:notes] remember the launch date"
    )
    grant_support(in_tenant, tenant.id)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        system2("quest", "watch", str(quest.id)),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=stack.env(COLUMNS="200"),
        close_fds=True,
    )
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if proc.poll() is not None and not ready:
            break
    os.close(leader)
    assert proc.wait(10) == 0
    text = out.decode(errors="replace")
    for expected in (
        "step started",
        "Claude tool_use add_note",
        "→ add_note",
        "← add_note ok",
        "state succeeded",
    ):
        assert expected in text, (expected, text)
    assert "$0.0" in text and "tier" in text


def test_admins_filter_the_audit_trail(
    stack: Stack, http: httpx.Client, in_tenant: InTenant, tenant: Tenant
) -> None:
    stack.start_workers(processes=1)
    quests = [
        submit(in_tenant, stack.settings.redis_url, tenant.id, f"[script:notes] note {i}")
        for i in range(2)
    ]
    for q in quests:
        wait_finished(in_tenant, tenant.id, q.id)
    url = f"/v1/companies/{tenant.id}/activity"

    def page(**params: Any) -> dict[str, Any]:
        resp = http.get(url, params=params, headers=tenant.headers())
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    wait_for(lambda: len(page()["items"]) >= 6)
    notes = page(action="note.added")["items"]
    assert len(notes) == 2 and {n["quest_id"] for n in notes} == {str(q.id) for q in quests}
    assert [i["action"] for i in page(quest_id=str(quests[0].id))["items"]] == [
        "quest.succeeded",
        "note.added",
        "quest.started",
    ]
    assert page(actor="ted", limit=4)["next_cursor"]
    assert page(until="2000-01-01T00:00:00Z")["items"] == []
    assert http.get(url, headers=tenant.headers(tenant.member)).status_code == 403


def test_a_worker_process_takes_no_more_steps_than_its_in_flight_bound(
    stack: Stack, in_tenant: InTenant, tenant: Tenant
) -> None:
    """Steps that wait 30 s on Claude must not hold others back in one process's memory
    while another process has room: each takes at most its bound, the rest stays queued."""
    stack.start_workers(processes=2, in_flight=4)
    quests = [
        submit(in_tenant, stack.settings.redis_url, tenant.id, f"[script:slow] think {i}")
        for i in range(8)
    ]

    def all_running() -> bool:
        return all(running_step(in_tenant, tenant, q.id) for q in quests)

    wait_for(all_running, timeout=10)
    client = redis.Redis.from_url(stack.settings.redis_url)
    for q in quests:  # end the waits so the workers stop at once
        in_tenant(
            tenant.id,
            functools.partial(
                quests_store.request_cancel, quest_id=q.id, by="operator:tests", reason="measured"
            ),
        )
        announce_cancel(client, q.id)
    assert all(
        wait_finished(in_tenant, tenant.id, q.id, timeout=10).status == "cancelled" for q in quests
    )
