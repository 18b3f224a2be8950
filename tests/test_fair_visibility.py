"""What fair dispatch shows the people it serves (README, "Fair share"): a company's admins
see their weight and their quest steps waiting their turn (``GET .../guard``); an operator
sees, with ``system2 ops queues``, which companies have steps waiting and how long the oldest
of each has waited; ``s2_queue_*`` counts the steps in the companies' lanes too; and only the
workers' private metrics endpoint exports a gauge per company, never the ingress's public
``/metrics``. Real Redis, Postgres and fair.lua: steps are sorted into their lanes by a fair
queue's fetch, as a worker's fetch sorts them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis as AsyncRedis
from typer.testing import CliRunner

from ingress import app as ingress_app
from messages import QUESTS, Actor, ActorType, Envelope, QuestStep
from messages.transport import build_broker, to_message
from runtime import queue_metrics
from runtime.settings import Settings
from store import limits as limits_store
from system2 import cli
from tests.conftest import Tenant
from tests.support import InTenant, ingress_client
from workers.fair_queue import FairQueue

SYSTEM = Actor(type=ActorType.system, id="tests")


def send_steps(redis_url: str, company: uuid.UUID | str, count: int, *, sent_s_ago: float) -> None:
    """``count`` first steps of new quests of ``company``, as the ingress sends them, sent
    ``sent_s_ago`` seconds ago."""
    broker = build_broker(redis_url, middleware=[])
    sent_ms = int((time.time() - sent_s_ago) * 1000)
    for _ in range(count):
        envelope = Envelope[QuestStep](
            company_id=uuid.UUID(str(company)),
            actor=SYSTEM,
            correlation_id=uuid.uuid4(),
            payload=QuestStep(quest_id=uuid.uuid4(), step=1),
        )
        broker.enqueue(to_message(envelope).copy(message_timestamp=sent_ms))
    broker.close()


def sort_intake(redis_url: str) -> None:
    """What every worker's fetch does first: sort the intake into the companies' lanes (a
    fetch with no free slot takes nothing)."""

    async def fetch_nothing() -> None:
        async with AsyncRedis.from_url(redis_url) as client:
            fair = FairQueue(client, QUESTS, "tests-sorter", heartbeat_timeout_ms=60_000)
            assert await fair.fetch(0) == []

    asyncio.run(fetch_nothing())


def ops_queues(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(
        cli.app,
        ["ops", "queues", *args],
        env={"S2_REDIS_URL": settings.redis_url},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    (only,) = [
        v for n, have, v in found if n == name and all(have.get(k) == x for k, x in labels.items())
    ]
    return only


# -- a company's own guard view ------------------------------------------------------------


@pytest.fixture
def ingress(settings: Settings, rds: redis.Redis) -> Iterator[TestClient]:
    rds.flushdb()
    # the fleet's default weight is 2 here, so that "the default" is seen to be the setting's
    with ingress_client(settings.model_copy(update={"fair_default_weight": 2}), rds) as client:
        yield client


def test_the_guard_view_shows_the_companys_weight_and_its_own_steps_waiting(
    ingress: TestClient,
    settings: Settings,
    tenant: Tenant,
    other_tenant: Tenant,
    in_tenant: InTenant,
) -> None:
    def view(who: Tenant) -> dict[str, Any]:
        resp = ingress.get(f"/v1/companies/{who.id}/guard", headers=who.headers())
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    before = view(tenant)
    assert (before["weight"], before["queued_steps"]) == (2, 0)  # S2_FAIR_DEFAULT_WEIGHT

    for who, count in ((tenant, 3), (other_tenant, 5)):
        for i in range(count):
            resp = ingress.post(
                f"/v1/companies/{who.id}/quests", json={"goal": f"task {i}"}, headers=who.headers()
            )
            assert resp.status_code == 202, resp.text
    sort_intake(settings.redis_url)
    assert view(tenant)["queued_steps"] == 3  # its own: not the other company's five
    assert view(other_tenant)["queued_steps"] == 5

    in_tenant(
        tenant.id, lambda tx: limits_store.put(tx, limits_store.LimitOverrides(fair_weight=7))
    )
    after = view(tenant)
    assert after["weight"] == 7
    assert view(other_tenant)["weight"] == 2
    assert "fair_weight" not in after["limits"]  # a weight, not one of the guard's limits
    member = ingress.get(f"/v1/companies/{tenant.id}/guard", headers=tenant.headers(tenant.member))
    assert member.status_code == 403


# -- the operator's queue view ---------------------------------------------------------------


def test_ops_queues_lists_the_companies_with_steps_waiting_and_their_oldest(
    settings: Settings, rds: redis.Redis
) -> None:
    rds.flushdb()
    backlog, newcomer = uuid.uuid4(), uuid.uuid4()
    send_steps(settings.redis_url, backlog, 6, sent_s_ago=120)
    send_steps(settings.redis_url, newcomer, 2, sent_s_ago=10)
    sort_intake(settings.redis_url)
    send_steps(settings.redis_url, newcomer, 1, sent_s_ago=0)  # in the intake, not yet sorted

    (quests,) = [q for q in json.loads(ops_queues(settings, "--json")) if q["queue"] == QUESTS]
    assert quests["waiting"] == 9  # the intake's one and the lanes' eight
    assert quests["companies_waiting"] == 2
    assert 120 <= quests["oldest_age_s"] < 130  # the backlog's head, from its lane
    companies = quests["companies"]
    assert [(c["company_id"], c["waiting"]) for c in companies] == [
        (str(backlog), 6),
        (str(newcomer), 2),  # its step still in the intake is nobody's turn yet
    ]
    assert 120 <= companies[0]["oldest_age_s"] < 130
    assert 10 <= companies[1]["oldest_age_s"] < 20
    others = [q for q in json.loads(ops_queues(settings, "--json")) if q["queue"] != QUESTS]
    assert all(q["companies"] == [] for q in others)

    table = ops_queues(settings).splitlines()
    assert table[0].split() == ["queue", "waiting", "in-flight", "delayed", "dead", "oldest"]
    row = next(line.split() for line in table if line.startswith(QUESTS))
    assert row[1] == "9" and 120 <= int(row[5].removesuffix("s")) < 130
    at = table.index(f"{QUESTS}: 2 companies have steps waiting their turn:")
    assert table[at + 1].split() == ["company", "waiting", "oldest"]
    first, second = (line.split() for line in table[at + 2 : at + 4])
    assert first[:2] == [str(backlog), "6"] and 120 <= int(first[2].removesuffix("s")) < 130
    assert second[:2] == [str(newcomer), "2"]


def test_ops_queues_shows_the_companies_with_the_most_steps_waiting_only(
    settings: Settings, rds: redis.Redis
) -> None:
    rds.flushdb()
    many = queue_metrics.COMPANIES_SHOWN + 5
    companies = [uuid.uuid4() for _ in range(many)]
    for n, company in enumerate(companies, start=1):  # the n-th company has n steps waiting
        send_steps(settings.redis_url, company, n, sent_s_ago=1)
    sort_intake(settings.redis_url)

    (quests,) = [q for q in json.loads(ops_queues(settings, "--json")) if q["queue"] == QUESTS]
    assert quests["waiting"] == many * (many + 1) // 2  # all of them count
    assert quests["companies_waiting"] == many
    shown = [(c["company_id"], c["waiting"]) for c in quests["companies"]]
    most = companies[::-1][: queue_metrics.COMPANIES_SHOWN]
    assert shown == [(str(c), many - i) for i, c in enumerate(most)]
    table = ops_queues(settings).splitlines()
    heading = f"{QUESTS}: {many} companies have steps waiting their turn; the 20 with the most:"
    at = table.index(heading)
    assert [line.split()[0] for line in table[at + 2 :]] == [str(c) for c in most]


# -- metrics -------------------------------------------------------------------------------


def test_queue_metrics_count_the_lanes_and_only_a_private_endpoint_names_companies(
    settings: Settings, rds: redis.Redis
) -> None:
    rds.flushdb()
    backlog, newcomer = uuid.uuid4(), uuid.uuid4()
    send_steps(settings.redis_url, backlog, 4, sent_s_ago=90)
    send_steps(settings.redis_url, newcomer, 1, sent_s_ago=5)
    sort_intake(settings.redis_url)
    send_steps(settings.redis_url, newcomer, 1, sent_s_ago=0)

    with TestClient(ingress_app.build(settings)) as ingress:  # wired as deployed
        public = ingress.get("/metrics").text
    found = samples(public)
    assert value(found, "s2_queue_depth", queue=QUESTS) == 6
    assert 90 <= value(found, "s2_queue_oldest_age_seconds", queue=QUESTS) < 100
    assert str(backlog) not in public and str(newcomer) not in public
    assert not [n for n, labels, _ in found if "company" in labels or "company_id" in labels]

    registry = CollectorRegistry()  # as a worker machine's endpoint installs it
    queue_metrics.install(rds, registry, per_company=True)
    private = samples(generate_latest(registry).decode())
    assert value(private, "s2_queue_depth", queue=QUESTS) == 6
    waiting = {
        labels["company"]: v
        for n, labels, v in private
        if n == "s2_fair_waiting_steps" and labels["queue"] == QUESTS
    }
    assert waiting == {str(backlog): 4, str(newcomer): 1}

    sort_intake(settings.redis_url)  # the last step sorted too
    private = samples(generate_latest(registry).decode())
    assert value(private, "s2_fair_waiting_steps", queue=QUESTS, company=str(newcomer)) == 2
