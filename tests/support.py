"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx

from ingress.submit import QuestSpec, create_quest, enqueue_first_step
from messages import Actor, ActorType
from messages.transport import publisher
from store import Database
from store import quests as quests_store
from store.quests import Quest

T = TypeVar("T")
OPERATOR = Actor(type=ActorType.operator, id="tests")


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
    db: Database, redis_url: str, company_id: uuid.UUID, goal: str, model: str = "claude-sonnet-5-5"
) -> Quest:
    """Submit a quest the way the ingress does (row, then first step on the queue)."""
    with db.tenant(company_id) as tx:
        quest, _ = create_quest(tx, OPERATOR, QuestSpec(goal=goal, model=model))
    with publisher(redis_url) as queue:
        enqueue_first_step(db, queue, quest, OPERATOR)
    return quest


def quest_state(db: Database, company_id: uuid.UUID, quest_id: uuid.UUID) -> Quest:
    with db.tenant(company_id) as tx:
        quest = quests_store.get(tx, quest_id)
    assert quest is not None
    return quest


def wait_finished(
    db: Database, company_id: uuid.UUID, quest_id: uuid.UUID, timeout: float = 30.0
) -> Quest:
    return wait_for(
        lambda: q if (q := quest_state(db, company_id, quest_id)).finished else None,
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
