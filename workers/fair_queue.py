"""Fair dispatch: every company with quest steps waiting gets its turn, in proportion to its
weight, whatever another company has queued.

Dramatiq's list is one FIFO for all companies, so a company's burst of a thousand quests
would delay every other company's next step by the whole burst. The ``quests`` queue keeps
Dramatiq's list as its *intake* (the ingress, the workers, Dramatiq's own maintenance and
``system2 dlq retry`` all push there as they always have), and each fetch runs
``lua/fair.lua``, which in one atomic call:

1. sorts up to ``sort_max`` intake entries into per-company lanes: steps of quests already
   running (a later step, a retry, a step handed back) before first steps, so started work
   finishes first;
2. takes, as many times as the fetch has free slots, the company with the lowest pass from
   the ring of companies with steps waiting, and advances its pass by ``STRIDE / weight``
   (stride scheduling: with equal weights, round robin over backlogged companies);
3. puts each fetched id into this consumer's Dramatiq acks set.

So what the queue promised still holds: a message is in the intake, a lane or one
consumer's acks set at every moment, moved only inside one script; acks, nacks and dead
letters are Dramatiq's; a consumer that falls silent has its acks put back, here at the head
of their company's ``started`` lane. There is no dispatcher process to lose: every worker's
fetch dispatches. A company costs nothing once its lanes are empty (it leaves the ring).

A company's weight is a guard setting (``system2 guard set --weight``), kept in Postgres
and in the ``FAIR_WEIGHTS`` hash that the script reads; companies without one weigh
``S2_FAIR_DEFAULT_WEIGHT``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis

from messages.redis_keys import (
    FAIR_WEIGHTS,
    NAMESPACE,
    fair_prefix,
)

SORT_MAX = 2_000  # intake entries one call sorts at most: ~10 ms of the server's time


def _script() -> bytes:
    return (resources.files("workers") / "lua" / "fair.lua").read_bytes()


class FairQueue:
    """One consumer's calls on a fair queue: fetch, hand back, look after the dead."""

    def __init__(
        self,
        client: Redis,
        queue: str,
        consumer_id: str,
        *,
        heartbeat_timeout_ms: int,
        default_weight: int = 1,
        sort_max: int = SORT_MAX,
        namespace: str = NAMESPACE,
    ) -> None:
        if default_weight < 1:
            raise ValueError("a company's weight is at least 1")
        self.queue = queue
        self.consumer_id = consumer_id
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.default_weight = default_weight
        self.sort_max = sort_max
        self.namespace = namespace
        self._script = client.register_script(_script())

    def _args(self, command: str, *args: Any) -> list[Any]:
        return [
            command,
            int(time.time() * 1000),
            self.queue,
            self.consumer_id,
            self.heartbeat_timeout_ms,
            self.default_weight,
            self.sort_max,
            *args,
        ]

    @property
    def _keys(self) -> list[str]:
        return [self.namespace, fair_prefix(self.queue), FAIR_WEIGHTS]

    async def fetch(self, count: int) -> list[bytes | None]:
        return list(await self._script(keys=self._keys, args=self._args("fetch", count)))

    async def requeue(self, redis_ids: Sequence[str]) -> None:
        """Hand fetched messages back, each at the head of its company's started lane."""
        if redis_ids:
            await self._script(keys=self._keys, args=self._args("requeue", *redis_ids))

    async def maintain(self, client: Redis | None = None) -> None:
        """Put back what consumers that fell silent held (``client``: a pipeline to join)."""
        await self._script(keys=self._keys, args=self._args("maintain"), client=client)

    async def unsort(self) -> int:
        """Put every waiting step back on the intake, for a fleet that takes steps in arrival
        order (``S2_FAIR_DISPATCH=false``): nothing waits in lanes no fetch reads. Returns how
        many were moved."""
        return int(await self._script(keys=self._keys, args=self._args("unsort")))
