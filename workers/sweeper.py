"""Finding quests whose next message was lost, and sending it again.

Every other path keeps a quest's next message alive (acknowledged only after the step is
stored, redelivered after a crash). But a message can still be lost between systems: the
broker down just as a step publishes the next one, an acknowledgement lost with Redis while
the worker lives on. So every ``interval`` one worker (a Redis lock elects it) looks for open
quests idle longer than ``idle`` and publishes their next step again. Sending a step twice is
safe: the step's claim and lease keep it from running twice.
"""

from __future__ import annotations

import contextlib
import threading
import uuid

import redis
import structlog

from messages import Actor, ActorType, Envelope, QuestStep
from messages.redis_keys import SWEEPER_LOCK
from messages.transport import Publisher
from runtime.loop_thread import StoreRunner
from store import StoreError, TenantTx
from store import companies as companies_store
from store import quests as quests_store

log = structlog.get_logger(__name__)
SWEEPER = Actor(type=ActorType.system, id="sweeper")


class Sweeper:
    def __init__(
        self,
        store: StoreRunner,
        publisher: Publisher,
        client: redis.Redis,
        *,
        interval_s: int,
        idle_s: int,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.redis = client
        self.interval_s = interval_s
        self.idle_s = idle_s

    def start(self) -> None:
        threading.Thread(target=self._forever, name="s2-sweeper", daemon=True).start()

    def _forever(self) -> None:
        while True:
            threading.Event().wait(self.interval_s)
            with contextlib.suppress(redis.RedisError, StoreError):
                if self.redis.set(
                    SWEEPER_LOCK, uuid.uuid4().hex, nx=True, ex=max(1, self.interval_s - 1)
                ):
                    self.sweep()

    def sweep(self) -> int:
        """Publish the next step of every stuck quest; returns how many."""
        companies = self.store.run(self._company_ids())
        sent = 0
        for company_id in companies:
            stuck = self.store(company_id, self._take_stuck)
            for quest in stuck:
                envelope = Envelope[QuestStep](
                    company_id=company_id,
                    actor=SWEEPER,
                    correlation_id=quest.correlation_id,
                    payload=QuestStep(quest_id=quest.id, step=quest.steps_done + 1),
                )
                self.publisher.publish(envelope)
                sent += 1
                log.warning(
                    "stuck quest's next step sent again",
                    quest_id=str(quest.id),
                    step=quest.steps_done + 1,
                )
        return sent

    async def _company_ids(self) -> list[uuid.UUID]:
        async with self.store.db.connection() as conn:
            return await companies_store.all_ids(conn)

    async def _take_stuck(self, tx: TenantTx) -> list[quests_store.Stuck]:
        stuck = await quests_store.stuck(tx, self.idle_s)
        for quest in stuck:
            await quests_store.touch(tx, quest.id)  # once per idle period, not every sweep
        return stuck
