"""Transcripts past their retention, redacted in batches (``store.retention``).

Every ``interval`` one worker (a Redis lock elects it) walks the companies one at a time and
redacts their steps that finished more than ``days`` ago, a batch per short transaction on
the maintenance pool, until a batch comes back short. Nothing holds a lock across batches,
and a step a worker holds is skipped, not waited for.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from redis.asyncio import Redis

from messages.redis_keys import RETENTION_LOCK
from store import Database
from store import companies as companies_store
from store import retention as retention_store
from workers.elected import every_interval

log = structlog.get_logger(__name__)
BATCH = 500


class Retention:
    def __init__(
        self, db: Database, client: Redis, *, days: int, interval_s: int, batch: int = BATCH
    ) -> None:
        self.db = db
        self.redis = client
        self.days = days
        self.interval_s = interval_s
        self.batch = batch

    async def run(self) -> None:
        """Redact every ``interval`` while this process holds the lock, until cancelled (one
        of the worker process's supervised tasks)."""
        await every_interval(self.redis, RETENTION_LOCK, self.interval_s, self.redact)

    async def redact(self, now: datetime | None = None) -> int:
        """Redact every company's transcripts older than the retention; returns how many
        steps."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.days)
        async with self.db.connection() as conn:
            companies = await companies_store.all_ids(conn)
        total = 0
        for company_id in companies:
            while True:
                done = await self.db.in_tenant(
                    company_id, lambda tx: retention_store.redact_before(tx, cutoff, self.batch)
                )
                total += done
                if done < self.batch:
                    break
        if total:
            log.info("transcripts past their retention redacted", steps=total, days=self.days)
        return total
