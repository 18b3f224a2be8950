"""A worker's step runner and quest ender in the test process, built as a worker process
builds them (``workers.app``), their coroutines run on the tests' loop (``call_loop``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis as AsyncRedis

from guard.pricing import PriceTable
from messages import CancelQuest, Envelope, QuestStep
from runtime.settings import Settings
from store import Database
from tests.support import InTenant
from workers.app import prompts, step_budget
from workers.claude import Claude
from workers.control import QuestEnder
from workers.events import QuestEvents
from workers.publisher import QueuePublisher
from workers.quest import QuestRunner
from workers.queue_protocol import QueueProtocol
from workers.tools import AddNote, Tool, Toolbox


def publisher_on(client: AsyncRedis) -> QueuePublisher:
    """A publisher on ``client`` (a client of the tests' loop), as a worker process has."""
    protocol = QueueProtocol(client, f"tests-{uuid.uuid4().hex[:8]}", heartbeat_timeout_ms=60_000)
    return QueuePublisher(protocol)


@dataclass
class InProcess:
    store: InTenant
    runner: QuestRunner
    ender: QuestEnder

    def step(self, env: Envelope[QuestStep], holder: str) -> None:
        """Run one step message, as the consumer would hand it over."""
        self.store.run(self.runner.run(env, holder))

    def cancel(self, env: Envelope[CancelQuest]) -> None:
        self.store.run(self.ender.cancel(env))


@contextmanager
def in_process_worker(
    store: InTenant,
    client: AsyncRedis,
    settings: Settings,
    claude_url: str,
    *,
    tools: Callable[[Database], list[Tool]] | None = None,
    integrations: Mapping[str, list[Tool]] | None = None,
    max_tokens: int = 512,
    max_steps: int = 5,
    publisher: QueuePublisher | None = None,
    db: Database | None = None,
    **runner_options: Any,
) -> Iterator[InProcess]:
    """``client``: an async Redis client of the tests' loop (the ``guard_redis`` fixture);
    ``db``: the steps' pool, if not the store's."""
    claude = Claude(timeout_s=10, base_url=claude_url, api_key="offline-test")
    prices = PriceTable.load()
    budget = step_budget(settings, client, prices, claude)
    publisher = publisher or publisher_on(client)
    events = QuestEvents(client, maxlen=1000)
    builtin = tools(store.db) if tools else [AddNote(store.db)]
    runner = QuestRunner(
        db=db or store.db,
        publisher=publisher,
        claude=claude,
        toolbox=Toolbox(builtin, integrations),
        prices=prices,
        budget=budget,
        events=events,
        prompts=prompts(settings.model_copy(update={"max_tokens": max_tokens}), prices, claude),
        max_steps=max_steps,
        **runner_options,
    )
    try:
        yield InProcess(store, runner, QuestEnder(store.db, publisher, events, budget))
    finally:
        store.run(claude.close())
