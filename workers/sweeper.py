"""Finding quests whose next message was lost, and sending it again.

Every other path keeps a quest's next message alive (acknowledged only after the step is
stored, redelivered after a crash). But a message can still be lost between systems: the
broker down just as a step publishes the next one, an acknowledgement lost with Redis while
the worker lives on. So every ``interval`` one worker (a Redis lock elects it) looks for open
quests idle longer than ``idle`` and publishes their next step again. Sending a step twice is
safe: the step's claim and lease keep it from running twice.
"""

from __future__ import annotations

import uuid

import structlog
from redis.asyncio import Redis

from messages import Actor, ActorType, Envelope, QuestStep
from messages.redis_keys import SWEEPER_LOCK
from store import Database, TenantTx
from store import companies as companies_store
from store import quests as quests_store
from workers.elected import every_interval
from workers.publisher import QueuePublisher

log = structlog.get_logger(__name__)
SWEEPER = Actor(type=ActorType.system, id="sweeper")


class Sweeper:
    def __init__(
        self,
        db: Database,
        publisher: QueuePublisher,
        client: Redis,
        *,
        interval_s: int,
        idle_s: int,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.redis = client
        self.interval_s = interval_s
        self.idle_s = idle_s

    async def run(self) -> None:
        """Sweep every ``interval`` while this process holds the sweeper's lock, until
        cancelled (one of the worker process's supervised tasks)."""
        await every_interval(self.redis, SWEEPER_LOCK, self.interval_s, self.sweep)

    async def sweep(self) -> int:
        """Publish the next step of every stuck quest; returns how many."""
        companies = await self._company_ids()
        sent = 0
        for company_id in companies:
            stuck = await self.db.in_tenant(company_id, self._take_stuck)
            for quest in stuck:
                envelope = Envelope[QuestStep](
                    company_id=company_id,
                    actor=SWEEPER,
                    correlation_id=quest.correlation_id,
                    payload=QuestStep(quest_id=quest.id, step=quest.steps_done + 1),
                )
                await self.publisher.publish(envelope)
                sent += 1
                log.warning(
                    "stuck quest's next step sent again",
                    quest_id=str(quest.id),
                    step=quest.steps_done + 1,
                )
        return sent

    async def _company_ids(self) -> list[uuid.UUID]:
        async with self.db.connection() as conn:
            return await companies_store.all_ids(conn)

    async def _take_stuck(self, tx: TenantTx) -> list[quests_store.Stuck]:
        stuck = await quests_store.stuck(tx, self.idle_s)
        for quest in stuck:
            await quests_store.touch(tx, quest.id)  # once per idle period, not every sweep
        return stuck
