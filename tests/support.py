"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import redis
from fastapi.testclient import TestClient

from guard import Admissions, Guard
from ingress.app import create_app
from ingress.auth import TokenVerifier
from ingress.deps import IngressDeps
from ingress.submit import QuestSpec, create_quest, enqueue_first_step
from messages import Actor, ActorType
from messages.transport import Publisher, build_broker, publisher
from runtime.loop_thread import StoreRunner
from runtime.settings import Settings
from runtime.wiring import async_redis
from store import Database, TenantTx
from store import activity as activity_store
from store import quests as quests_store
from store.activity import NewActivity
from store.quests import Quest
from system2.scratch import ENGINEER as SCRATCH_ENGINEER

T = TypeVar("T")
OPERATOR = Actor(type=ActorType.operator, id="tests")


class InTenant(StoreRunner):
    """The store from a test, which has no event loop (the ``in_tenant`` fixture):
    ``in_tenant(company_id, work)`` runs ``work(tx)`` in one transaction of that company."""


ENGINEER = SCRATCH_ENGINEER  # the engineer whose login the tests' operator store uses


def grant_support(
    in_tenant: InTenant, company_id: uuid.UUID, engineer: str = ENGINEER, ttl_s: int = 3_600
) -> uuid.UUID:
    """A live support grant, so ``engineer`` may read the company's content (``quest show``,
    ``audit list`` ...); returns its id."""
    from store import support as support_store

    async def grant(tx: TenantTx) -> uuid.UUID:
        found = await support_store.grant(
            tx,
            engineer,
            "a test reads it",
            by="lead@support.test",
            ttl_s=ttl_s,
        )
        return found.id

    return in_tenant(company_id, grant)


def wait_for(predicate: Callable[[], T | None], *, timeout: float = 30.0, every: float = 0.05) -> T:
    """Poll until ``predicate`` returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


def submit(
    in_tenant: InTenant,
    redis_url: str,
    company_id: uuid.UUID,
    goal: str,
    model: str = "claude-sonnet-5-5",
) -> Quest:
    """Submit a quest the way the ingress does (row, then first step on the queue)."""

    async def create(tx: TenantTx) -> Quest:
        quest, _ = await create_quest(tx, OPERATOR, QuestSpec(goal=goal, model=model))
        return quest

    quest = in_tenant(company_id, create)
    with publisher(redis_url) as queue:
        in_tenant.run(enqueue_first_step(in_tenant.db, queue, quest, OPERATOR))
    return quest


def quest_state(in_tenant: InTenant, company_id: uuid.UUID, quest_id: uuid.UUID) -> Quest:
    quest = in_tenant(company_id, lambda tx: quests_store.get(tx, quest_id))
    assert quest is not None
    return quest


def wait_finished(
    in_tenant: InTenant, company_id: uuid.UUID, quest_id: uuid.UUID, timeout: float = 30.0
) -> Quest:
    return wait_for(
        lambda: q if (q := quest_state(in_tenant, company_id, quest_id)).finished else None,
        timeout=timeout,
    )


@contextmanager
def provider_faults(provider_url: str, **fault: Any) -> Iterator[None]:
    """The demo provider misbehaves as ``fault`` says (see its ``/_faults``) until the block
    ends, whatever way it ends: the provider is shared by the whole session."""
    httpx.post(provider_url + "/_faults", json=fault).raise_for_status()
    try:
        yield
    finally:
        httpx.delete(provider_url + "/_faults")


@contextmanager
def ingress_client(
    settings: Settings,
    client: redis.Redis,
    *,
    broker_url: str | None = None,
    guard_url: str | None = None,
    raise_server_exceptions: bool = True,
    **deps: Any,
) -> Iterator[TestClient]:
    """The ingress app in a TestClient, wired as ``ingress.app.build`` wires it but on the
    given Redis client; ``deps`` adds the optional ones (``vault``, ``aredis``). The app has
    a pool of its own, opened by its lifespan on the TestClient's loop (a pool belongs to the
    loop that opened it: the tests' ``db`` is on another)."""
    broker = build_broker(broker_url or settings.redis_url)
    guard_settings = settings.model_copy(update={"redis_url": guard_url or settings.redis_url})
    guard_redis = async_redis(guard_settings, connections=4)  # on the TestClient's loop
    app = create_app(
        IngressDeps(
            settings=settings,
            db=Database(settings.database_url, min_size=1, max_size=4, name="ingress-test"),
            publisher=Publisher(broker),
            redis=client,
            verifier=TokenVerifier.from_settings(settings),
            admissions=Admissions(guard_redis),
            guard=Guard(guard_redis),  # closed by the app's lifespan
            **deps,
        )
    )
    try:
        with TestClient(app, raise_server_exceptions=raise_server_exceptions) as test_client:
            yield test_client
    finally:
        broker.close()


def add_activity(in_tenant: InTenant, company_id: uuid.UUID, count: int) -> list[int]:
    """``count`` audit rows, in pairs sharing a timestamp (cursors must break the tie); returns
    their ids newest first."""
    base = datetime(2030, 1, 1, tzinfo=UTC)
    rows = [
        NewActivity(
            idempotency_key=f"test-{uuid.uuid4().hex}",
            occurred_at=base + timedelta(seconds=i // 2),
            actor_type="ted",
            actor_id="ted",
            action="note.added",
            target=f"note:{i}",
            rationale="because the test said so",
            originating_message_id=uuid.uuid4(),
            quest_id=None,
            payload={"i": i},
        )
        for i in range(count)
    ]

    async def add(tx: TenantTx) -> list[tuple[Any, ...]]:
        assert await activity_store.append(tx, rows) == count
        return await tx.all(
            "SELECT id FROM activity_log WHERE company_id = %s ORDER BY occurred_at DESC, id DESC",
            (company_id,),
        )

    return [r[0] for r in in_tenant(company_id, add)]


class SseParser:
    """Server-Sent Events fed one line at a time: ``feed`` gives back the event (its ``id``,
    ``event`` and JSON-decoded ``data``) at the blank line ending one that has an id, else None.
    A blank line before any id ends nothing (the fields read so far carry on)."""

    def __init__(self) -> None:
        self.current: dict[str, Any] = {}

    def feed(self, line: str) -> dict[str, Any] | None:
        if line.startswith("id: "):
            self.current["id"] = line[4:]
        elif line.startswith("event: "):
            self.current["event"] = line[7:]
        elif line.startswith("data: "):
            self.current["data"] = json.loads(line[6:])
        elif line == "" and "id" in self.current:
            event, self.current = self.current, {}
            return event
        return None


def sse_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The events in a stream's ``lines``, as ``SseParser`` reads them."""
    parser = SseParser()
    for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event
