"""A step's live events on Redis: each lands, in order, in its company's stream and its
quest's stream; both stay bounded, and the quest's stream lives a week past its last event."""

from __future__ import annotations

import asyncio
import uuid

import redis
from redis.asyncio import Redis

from messages import Actor, ActorType, Envelope, QuestEvent
from messages.redis_keys import company_stream_key, quest_stream_key
from workers.events import QUEST_STREAM_TTL_S, QuestEvents


def events(company_id: uuid.UUID, quest_id: uuid.UUID, n: int) -> list[Envelope[QuestEvent]]:
    return [
        Envelope[QuestEvent](
            company_id=company_id,
            actor=Actor(type=ActorType.ted, id="ted"),
            correlation_id=uuid.uuid4(),
            payload=QuestEvent(quest_id=quest_id, kind="note", step=1, data={"i": i}),
        )
        for i in range(n)
    ]


def test_events_of_two_quests_land_in_order_in_both_streams_bounded_and_kept_a_week(
    redis_url: str,
) -> None:
    company, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    mixed = [
        e
        for pair in zip(events(company, first, 3), events(company, second, 3), strict=True)
        for e in pair
    ]
    many = events(company, second, 1_000)

    async def emit() -> None:
        client = Redis.from_url(redis_url)
        published = QuestEvents(client, maxlen=100)
        await published.emit(mixed)
        await published.emit(many)
        await client.aclose()

    asyncio.run(emit())
    r = redis.Redis.from_url(redis_url)

    def seen(key: str) -> list[str]:
        return [
            Envelope[QuestEvent].model_validate_json(fields[b"e"]).model_dump_json()
            for _, fields in r.xrange(key)
        ]

    assert seen(quest_stream_key(first)) == [e.model_dump_json() for e in mixed[0::2]]
    assert len(seen(quest_stream_key(second))) == 1_003  # under the quest stream's bound
    company_events = seen(company_stream_key(company))
    assert 100 <= len(company_events) < 1_006, "trimmed to about the company's bound"
    assert company_events[-1] == many[-1].model_dump_json()
    for quest in (first, second):
        assert QUEST_STREAM_TTL_S - 60 < r.ttl(quest_stream_key(quest)) <= QUEST_STREAM_TTL_S
