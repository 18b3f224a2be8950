"""The prompt cache through the real step path: quests run by a worker's step runner against
the offline Claude, which caches like the API (per API key, breakpoints, minimum lengths,
TTLs) and reports ``usage`` from what it finds. Each test's goal is new, so no other test's
entries can be read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from ingress.routes_quests import quest_view
from ingress.submit import QuestSpec, create_quest
from messages import Envelope, QuestStep
from runtime.settings import Settings
from store import TenantTx
from store import quests as quests_store
from store.quests import Quest, Step
from tests.conftest import Tenant
from tests.support import OPERATOR, InTenant
from tests.worker_support import InProcess, in_process_worker

# About 3,000 tokens: a goal long enough to pass the model's minimum cacheable length
# (1,024 tokens for claude-sonnet-5-5) with the system prompt and the built-in tools.
LONG = " ".join(
    f"Requirement {i}: keep the customer's records tidy and current." for i in range(180)
)


def goal() -> str:
    return f"[script:notes] {uuid.uuid4()} {LONG}"


def run_quest(w: InProcess, in_tenant: InTenant, tenant: Tenant, text: str) -> list[Step]:
    """A quest of ``text`` run step by step to its end; its stored steps."""
    return run(w, in_tenant, tenant, text)[1]


def run(w: InProcess, in_tenant: InTenant, tenant: Tenant, text: str) -> tuple[Quest, list[Step]]:
    """A quest of ``text`` run step by step to its end, and its stored steps."""

    async def create(tx: TenantTx) -> Quest:
        quest, _ = await create_quest(tx, OPERATOR, QuestSpec(goal=text, model="claude-sonnet-5-5"))
        return quest

    quest = in_tenant(tenant.id, create)
    env = Envelope[QuestStep](
        message_id=quest.origin_message_id,
        company_id=tenant.id,
        actor=OPERATOR,
        correlation_id=quest.correlation_id,
        payload=QuestStep(quest_id=quest.id, step=1),
    )
    for n in range(1, 6):
        w.step(env.follow_up(QuestStep(quest_id=quest.id, step=n)), f"holder-{n}")
        row = in_tenant(tenant.id, lambda tx: quests_store.get(tx, quest.id))
        assert row is not None
        if row.finished:
            assert row.status == "succeeded", row.reason
            break
    assert row is not None and row.finished
    return row, in_tenant(tenant.id, lambda tx: quests_store.steps(tx, quest.id))


def usage(step: Step) -> dict[str, Any]:
    assert step.usage is not None
    return step.usage


@pytest.fixture
def worker(
    in_tenant: InTenant, guard_redis: AsyncRedis, settings: Settings, offline_claude: str
) -> Callable[..., Any]:
    def make(**changes: Any) -> Any:
        return in_process_worker(
            in_tenant, guard_redis, settings.model_copy(update=changes), offline_claude
        )

    return make


def test_a_quests_second_step_reads_what_its_first_step_wrote(
    worker: Callable[..., Any], in_tenant: InTenant, tenant: Tenant
) -> None:
    with worker() as w:
        first, second = run_quest(w, in_tenant, tenant, goal())
    one, two = usage(first), usage(second)
    assert one["cache_read_input_tokens"] == 0
    assert one["cache_creation_input_tokens"] > 1_024
    assert one["input_tokens"] == 0  # the whole prompt ends at its last breakpoint
    # step 2 reads all of step 1's prompt from the cache and writes only what it added
    assert two["cache_read_input_tokens"] == one["cache_creation_input_tokens"]
    assert 0 < two["cache_creation_input_tokens"] < one["cache_creation_input_tokens"]
    assert two["cache_creation"]["ephemeral_5m_input_tokens"] == two["cache_creation_input_tokens"]


def test_a_company_reads_its_own_prefix_and_never_another_companys(
    worker: Callable[..., Any],
    in_tenant: InTenant,
    make_tenant: Callable[[str], Tenant],
) -> None:
    a, b = make_tenant("Acme Robotics"), make_tenant("Acme Robotics")  # same name, same goal
    text = goal()
    with worker() as w:
        first = run_quest(w, in_tenant, a, text)
        again = run_quest(w, in_tenant, a, text)
        other = run_quest(w, in_tenant, b, text)
    written = usage(first[0])["cache_creation_input_tokens"]
    assert usage(again[0])["cache_read_input_tokens"] == written  # the same company: a hit
    assert usage(other[0])["cache_read_input_tokens"] == 0  # another company: never
    assert usage(other[0])["cache_creation_input_tokens"] == written


def test_a_changed_system_prompt_misses_the_cache(
    worker: Callable[..., Any], in_tenant: InTenant, tenant: Tenant, admin_conn: Any
) -> None:
    text = goal()
    with worker() as w:
        before = run_quest(w, in_tenant, tenant, text)
        admin_conn.execute(
            "UPDATE companies SET name = 'Acme Robotics Ltd' WHERE id = %s", (tenant.id,)
        )
        after = run_quest(w, in_tenant, tenant, text)
    assert usage(before[0])["cache_creation_input_tokens"] > 0
    assert usage(after[0])["cache_read_input_tokens"] == 0


def test_with_caching_off_no_step_writes_or_reads_the_cache(
    worker: Callable[..., Any], in_tenant: InTenant, tenant: Tenant
) -> None:
    with worker(prompt_cache=False) as w:
        steps = run_quest(w, in_tenant, tenant, goal())
    for step in steps:
        assert usage(step)["cache_creation_input_tokens"] == 0
        assert usage(step)["cache_read_input_tokens"] == 0
        assert usage(step)["input_tokens"] > 1_024


def test_quest_show_and_the_audit_trail_give_the_cost_with_the_caches_share(
    worker: Callable[..., Any], in_tenant: InTenant, tenant: Tenant
) -> None:
    with worker() as w:
        quest, steps = run(w, in_tenant, tenant, goal())
    view = in_tenant(tenant.id, lambda tx: quest_view(tx, quest))
    split = view.cost_split
    assert split.cache_read_tokens == usage(steps[1])["cache_read_input_tokens"] > 0
    assert split.cache_write_tokens == sum(usage(s)["cache_creation_input_tokens"] for s in steps)
    assert 0 < split.cache_read_pct < 100
    assert split.cache_read_usd_micros < split.cache_write_usd_micros
    parts = (
        split.input_usd_micros
        + split.cache_write_usd_micros
        + split.cache_read_usd_micros
        + split.output_usd_micros
    )
    assert view.cost_usd_micros <= parts <= view.cost_usd_micros + 4 * len(steps)
    assert [s.cost_split is not None for s in view.steps] == [True, True]
    ending = next(e for e in steps[-1].events if e["action"] == "quest.succeeded")
    assert ending["data"]["cache_read_tokens"] == split.cache_read_tokens
    assert ending["data"]["cache_write_tokens"] == split.cache_write_tokens
    assert ending["data"]["claude_cost_usd_micros"] == sum(s.cost_usd_micros for s in steps)
