"""What travels outside the queues: the live event streams, and how a cancel reaches the
worker running a quest at once.

Quest events go to a bounded stream per company and one per quest (what a quest's watchers
read). A cancel sets a flag key (read when a step starts and polled while it runs) and is
published on a channel (heard at once); its durable record is the quest's row and its work
travels on the control queue — these only make it prompt.
"""

from __future__ import annotations

from uuid import UUID

import redis

from messages.redis_keys import CANCEL_CHANNEL, cancel_flag_key

CANCEL_FLAG_TTL_S = 7 * 86_400

# What XREAD answers (without decode_responses): per stream, its entries as (id, fields).
StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


def announce_cancel(client: redis.Redis, quest_id: UUID) -> None:
    """Tell every worker, now and later, that the quest is cancelled."""
    pipe = client.pipeline(transaction=False)
    pipe.set(cancel_flag_key(quest_id), "1", ex=CANCEL_FLAG_TTL_S)
    pipe.publish(CANCEL_CHANNEL, str(quest_id))
    pipe.execute()
