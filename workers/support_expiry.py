"""Support grants that ran out, recorded in their companies' audit trails.

A grant stops admitting its engineer at ``expires_at`` by itself (the operator role's
policies compare with the clock); this writes the ``support.expired`` row that tells the
company's admins so, within a minute, from one elected worker.
"""

from __future__ import annotations

import structlog
from redis.asyncio import Redis

from messages.redis_keys import SUPPORT_EXPIRY_LOCK
from store import Database
from store import companies as companies_store
from store import support as support_store
from workers.elected import every_interval

log = structlog.get_logger(__name__)
INTERVAL_S = 60


class SupportExpiry:
    def __init__(self, db: Database, client: Redis, *, interval_s: int = INTERVAL_S) -> None:
        self.db = db
        self.redis = client
        self.interval_s = interval_s

    async def run(self) -> None:
        """Record expiries every interval while this process holds the lock, until cancelled."""
        await every_interval(self.redis, SUPPORT_EXPIRY_LOCK, self.interval_s, self.record)

    async def record(self) -> int:
        """Write the audit row of every grant that has expired unrecorded; returns how many."""
        async with self.db.connection() as conn:
            companies = await companies_store.all_ids(conn)
        total = 0
        for company_id in companies:
            total += await self.db.in_tenant(company_id, support_store.log_expired)
        if total:
            log.info("support grants expired", grants=total)
        return total
