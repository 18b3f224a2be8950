"""The ingress's one reader of live event streams (``ingress.live.LiveEvents``), on the
session's real Redis: started and stopped by the app's lifespan, caps counted and given
back, and a client that reads too slowly cut off (its queue bounded) and resumed from its
last event without loss — while a fast reader of the same stream gets everything."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from ingress.live import QUEUE_MAX, LiveEvents, Subscription, TooManyStreams
from messages.notices import quest_stream_key
from store import Database
from system2.settings import Settings
from tests.conftest import Tenant
from tests.ingress_server import open_quest
from tests.support import ingress_client


@pytest.fixture
def key(rds: redis.Redis) -> Iterator[str]:
    name = quest_stream_key(uuid.uuid4())
    yield name
    rds.delete(name)


def add_entries(rds: redis.Redis, key: str, count: int) -> list[str]:
    pipe = rds.pipeline(transaction=False)
    for i in range(count):
        pipe.xadd(key, {"e": f'{{"n": {i}}}'})
    return [i.decode() for i in pipe.execute()]


async def take(sub: Subscription, count: int | None = None, timeout: float = 10) -> list[str]:
    """Entry ids from ``sub``'s queue: ``count`` of them, or up to the end mark."""
    ids: list[str] = []
    async with asyncio.timeout(timeout):
        while count is None or len(ids) < count:
            item = await sub.queue.get()
            if item is None:
                break
            ids.append(item[0])
    return ids


def test_the_reader_starts_with_the_app_and_stops_with_it(
    settings: Settings, db: Database, rds: redis.Redis, tenant: Tenant
) -> None:
    aredis = AsyncRedis.from_url(settings.redis_url)
    quest = open_quest(db, tenant.id, tenant.member)
    with ingress_client(settings, db, rds, aredis=aredis) as client:
        live: LiveEvents = client.app.state.live  # type: ignore[attr-defined]
        assert client.portal is not None
        assert live.running
        url = f"/v1/companies/{tenant.id}/quests/{quest}/events"
        with client.stream("GET", url, headers=tenant.headers(tenant.member)) as resp:
            assert resp.status_code == 200
            text = resp.iter_text()
            assert next(text).startswith("retry:")
            assert live.open_streams == 1
        client.portal.call(asyncio.sleep, 0.5)
        assert live.open_streams == 0, "a hung-up stream gives its slot back"
        client.portal.call(aredis.aclose)
    assert not live.running


def test_caps_are_counted_per_user_and_per_company_and_given_back() -> None:
    async def main() -> None:
        live = LiveEvents(AsyncRedis(), max_per_user=2, max_per_company=3)
        a, b = uuid.uuid4(), uuid.uuid4()
        subs = [
            live.open(user_id="ann", company_id=a, key="k1", after="0"),
            live.open(user_id="ann", company_id=b, key="k2", after="0"),
        ]
        with pytest.raises(TooManyStreams) as user_cap:
            live.open(user_id="ann", company_id=a, key="k1", after="0")
        assert (user_cap.value.reason, user_cap.value.limit) == ("too_many_streams_for_user", 2)
        subs += [live.open(user_id=u, company_id=a, key="k1", after="0") for u in ("bob", "cy")]
        with pytest.raises(TooManyStreams) as company_cap:
            live.open(user_id="dee", company_id=a, key="k3", after="0")
        assert company_cap.value.reason == "too_many_streams_for_company"
        assert live.open_streams == 4
        subs[0].close()
        subs[0].close()  # idempotent: counted back once
        assert live.open_streams == 3
        subs.append(live.open(user_id="dee", company_id=a, key="k3", after="0"))
        for sub in subs:
            sub.close()
        assert live.open_streams == 0

    asyncio.run(main())


def test_a_slow_client_is_cut_off_and_resumes_without_loss_while_a_fast_one_gets_everything(
    settings: Settings, rds: redis.Redis, key: str
) -> None:
    total = QUEUE_MAX + 1_500
    company = uuid.uuid4()

    async def main() -> None:
        live = LiveEvents(
            AsyncRedis.from_url(settings.redis_url), max_per_user=5, max_per_company=5
        )
        await live.start()
        try:
            slow = live.open(user_id="slow", company_id=company, key=key, after="0")
            fast = live.open(user_id="fast", company_id=company, key=key, after="0")
            reading = asyncio.create_task(take(fast, total))
            await asyncio.sleep(0.5)
            ids = add_entries(rds, key, total)
            assert await reading == ids

            cut = await take(slow)  # what was queued for it, then the end mark
            assert slow.ended == "the client reads too slowly"
            assert cut == ids[: len(cut)] and len(cut) == QUEUE_MAX
            slow.close()
            resumed = live.open(user_id="slow", company_id=company, key=key, after=cut[-1])
            assert await take(resumed, total - len(cut)) == ids[len(cut) :]

            more = add_entries(rds, key, 3)
            assert await take(fast, 3) == more
            assert await take(resumed, 3) == more
        finally:
            await live.stop()
        assert not live.running
        assert fast.queue.get_nowait() is None, "stopping ends every open stream"

    asyncio.run(main())
