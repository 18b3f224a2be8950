"""The ingress's one reader of live event streams (``ingress.live.LiveEvents``), on the
session's real Redis: started and stopped by the app's lifespan, caps counted and given
back, and a client that reads too slowly cut off (its queue bounded) and resumed from its
last event without loss — while a fast reader of the same stream gets everything. A stream's
response (``LiveStreamResponse``) is cut when its sends outlast its maximum life, and gives its
slot back however it ends; entry ids are parsed strictly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis
from starlette.types import Message, Scope

from ingress import live as live_module
from ingress.live import (
    ID_PART_MAX,
    QUEUE_MAX,
    LiveEvents,
    LiveStreamResponse,
    Subscription,
    TooManyStreams,
    parse_id,
)
from messages.redis_keys import quest_stream_key
from runtime.settings import Settings
from tests.conftest import Tenant
from tests.ingress_server import open_quest
from tests.support import InTenant, ingress_client


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


@asynccontextmanager
async def reading(settings: Settings) -> AsyncIterator[LiveEvents]:
    """A started reader on the session's Redis, stopped when the block ends."""
    live = LiveEvents(AsyncRedis.from_url(settings.redis_url), max_per_user=5, max_per_company=5)
    await live.start()
    try:
        yield live
    finally:
        await live.stop()


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
    settings: Settings, in_tenant: InTenant, rds: redis.Redis, tenant: Tenant
) -> None:
    aredis = AsyncRedis.from_url(settings.redis_url)
    quest = open_quest(in_tenant, tenant.id, tenant.member)
    with ingress_client(settings, rds, aredis=aredis) as client:
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
            live.open(user_id="ann", company_id=a, key="k1", after="0-0"),
            live.open(user_id="ann", company_id=b, key="k2", after="0-0"),
        ]
        with pytest.raises(TooManyStreams) as user_cap:
            live.open(user_id="ann", company_id=a, key="k1", after="0-0")
        assert (user_cap.value.reason, user_cap.value.limit) == ("too_many_streams_for_user", 2)
        subs += [live.open(user_id=u, company_id=a, key="k1", after="0-0") for u in ("bob", "cy")]
        with pytest.raises(TooManyStreams) as company_cap:
            live.open(user_id="dee", company_id=a, key="k3", after="0-0")
        assert company_cap.value.reason == "too_many_streams_for_company"
        assert live.open_streams == 4
        subs[0].close()
        subs[0].close()  # idempotent: counted back once
        assert live.open_streams == 3
        subs.append(live.open(user_id="dee", company_id=a, key="k3", after="0-0"))
        for sub in subs:
            sub.close()
        assert live.open_streams == 0

    asyncio.run(main())


def test_a_stream_resuming_from_further_back_while_the_reader_waits_loses_nothing(
    settings: Settings, rds: redis.Redis, key: str
) -> None:
    """A client whose stream ended at its maximum life with an event queued but unsent
    resumes from before that event while the reader is blocked reading after it: the
    entries in between must reach the resumed stream, not only the ones after."""
    company = uuid.uuid4()

    async def main() -> None:
        async with reading(settings) as live:
            first = add_entries(rds, key, 3)
            ahead = live.open(user_id="a", company_id=company, key=key, after=first[-1])
            await asyncio.sleep(0.3)  # the reader now blocks reading after first[-1]
            resumed = live.open(user_id="b", company_id=company, key=key, after=first[0])
            later = add_entries(rds, key, 2)  # wakes the blocked read
            assert await take(resumed, 4) == first[1:] + later
            assert await take(ahead, 2) == later

    asyncio.run(main())


def test_a_slow_client_is_cut_off_and_resumes_without_loss_while_a_fast_one_gets_everything(
    settings: Settings, rds: redis.Redis, key: str
) -> None:
    total = QUEUE_MAX + 1_500
    company = uuid.uuid4()

    async def main() -> None:
        async with reading(settings) as live:
            slow = live.open(user_id="slow", company_id=company, key=key, after="0-0")
            fast = live.open(user_id="fast", company_id=company, key=key, after="0-0")
            fast_read = asyncio.create_task(take(fast, total))
            await asyncio.sleep(0.5)
            ids = add_entries(rds, key, total)
            assert await fast_read == ids

            cut = await take(slow)  # what was queued for it, then the end mark
            assert slow.ended == "the client reads too slowly"
            assert cut == ids[: len(cut)] and len(cut) == QUEUE_MAX
            slow.close()
            resumed = live.open(user_id="slow", company_id=company, key=key, after=cut[-1])
            assert await take(resumed, total - len(cut)) == ids[len(cut) :]

            more = add_entries(rds, key, 3)
            assert await take(fast, 3) == more
            assert await take(resumed, 3) == more
        assert not live.running
        assert fast.queue.get_nowait() is None, "stopping ends every open stream"

    asyncio.run(main())


# --- entry ids --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("0-0", (0, 0)),
        ("1526919030474-55", (1526919030474, 55)),
        ("007-1", (7, 1)),
        (f"{ID_PART_MAX}-{ID_PART_MAX}", (ID_PART_MAX, ID_PART_MAX)),
    ],
)
def test_parse_id_reads_an_entry_id(text: str, want: tuple[int, int]) -> None:
    assert parse_id(text) == want


@pytest.mark.parametrize(
    "text",
    [
        *("", "0", "1526919030474", "-", "1-", "-1", "1-2-3", "-1-0", "*", "$", ">"),
        *("+1-0", "1-+0", "1_0-0", " 1-0", "1-0 ", "1-0\n", "0x1-0", "1.0-0"),
        *("\u0661-0", "1-\uff10"),  # digits to int(), not to Redis
        *(f"{ID_PART_MAX + 1}-0", f"0-{ID_PART_MAX + 1}", "1" * 21 + "-0", "0-" + "1" * 21),
    ],
)
def test_parse_id_refuses_anything_but_two_ascii_numbers_redis_accepts(text: str) -> None:
    with pytest.raises(ValueError):
        parse_id(text)


# --- a stream's response --------------------------------------------------------------------


async def endless() -> AsyncGenerator[str, None]:
    while True:
        yield "data: x\n\n"
        await asyncio.sleep(0)


async def never() -> Message:
    await asyncio.Event().wait()  # the client neither sends nor goes
    raise AssertionError


def http_scope(spec_version: str) -> Scope:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": spec_version}}


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_a_response_whose_sends_block_is_cut_after_its_max_life_and_gives_its_slot_back(
    monkeypatch: pytest.MonkeyPatch, spec_version: str
) -> None:
    monkeypatch.setattr(live_module, "LIVE_SEND_GRACE_S", 0.2)

    async def main() -> None:
        live = LiveEvents(AsyncRedis(), max_per_user=1, max_per_company=1)
        sub = live.open(user_id="ann", company_id=uuid.uuid4(), key="k", after="0-0")
        events = endless()
        sent: list[str] = []

        async def send(message: Message) -> None:
            sent.append(message["type"])
            if len(sent) == 3:
                await asyncio.Event().wait()  # the client stopped reading: blocked for good

        loop = asyncio.get_running_loop()
        started = loop.time()
        response = LiveStreamResponse(sub, events, max_life_s=0.3)
        await asyncio.wait_for(response(http_scope(spec_version), never, send), timeout=5)
        assert 0.5 <= loop.time() - started < 2
        assert sent == ["http.response.start", "http.response.body", "http.response.body"]
        assert live.open_streams == 0 and sub.closed
        assert events.ag_frame is None, "its events are closed too"

    asyncio.run(main())


def test_a_response_that_fails_or_is_never_sent_gives_its_slot_back() -> None:
    async def main() -> None:
        live = LiveEvents(AsyncRedis(), max_per_user=2, max_per_company=2)
        company = uuid.uuid4()

        async def failing() -> AsyncGenerator[str, None]:
            yield "retry: 1000\n\n"
            raise RuntimeError("a bug")

        async def send(message: Message) -> None:
            pass

        sub = live.open(user_id="ann", company_id=company, key="k", after="0-0")
        with pytest.raises(RuntimeError, match="a bug"):
            await LiveStreamResponse(sub, failing(), max_life_s=60)(http_scope("2.4"), never, send)
        assert sub.closed

        unsent = live.open(user_id="ann", company_id=company, key="k", after="0-0")
        response = LiveStreamResponse(unsent, endless(), max_life_s=60)
        assert live.open_streams == 1
        del response  # dropped unsent (say, a failure between the route and the response)
        await asyncio.sleep(0)
        assert unsent.closed and live.open_streams == 0

    asyncio.run(main())
