"""Step leases on real Redis: a step that runs past the lease's lifetime keeps it (renewed
with every other lease of the process in one script call); no second delivery runs the same
quest's step meanwhile; a lease taken over by another owner is not renewed by the first."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
from redis.asyncio import Redis

from messages.redis_keys import step_lease_key
from workers.errors import NotStarted
from workers.lease import StepLeases


def test_leases_outlive_their_ttl_while_their_steps_run_and_go_when_they_end(
    redis_url: str,
) -> None:
    quests = [uuid.uuid4() for _ in range(3)]
    r = redis.Redis.from_url(redis_url)

    async def main() -> None:
        leases = StepLeases(Redis.from_url(redis_url), ttl_ms=1_000)
        renewing = asyncio.create_task(leases.run())
        async with leases.hold(quests[0]), leases.hold(quests[1]), leases.hold(quests[2]):
            await asyncio.sleep(3.5)  # three and a half lifetimes
            assert all(r.exists(step_lease_key(q)) for q in quests)
            with pytest.raises(NotStarted):
                async with leases.hold(quests[1]):
                    pass
        assert not any(r.exists(step_lease_key(q)) for q in quests)
        renewing.cancel()

    asyncio.run(main())


def test_a_lease_taken_over_by_another_owner_is_not_renewed(redis_url: str) -> None:
    quest = uuid.uuid4()
    r = redis.Redis.from_url(redis_url)

    async def main() -> None:
        leases = StepLeases(Redis.from_url(redis_url), ttl_ms=1_000)
        renewing = asyncio.create_task(leases.run())
        async with leases.hold(quest):
            r.set(step_lease_key(quest), "someone-else", px=1_000)  # it lapsed and was taken
            await asyncio.sleep(1.6)
            assert not r.exists(step_lease_key(quest)), "the other owner's lease ran out"
        renewing.cancel()

    asyncio.run(main())
