"""Live event streams (SSE) under load from one tenant (issue 14, item 7).

Against real ``system2 ingress`` processes on the session's Redis and Postgres: open streams
are capped per user and per company (429 with ``Retry-After``); one reader per process
serves every stream, so a tenant holding its maximum takes nothing from another company's
streams and a process's Redis connections stay few however many streams are open; and a
stream ends at its maximum life, the client resuming from ``Last-Event-ID`` with nothing
lost or repeated — and a member whose membership was revoked gets 403 when they do. A client
that stops reading holds its slot no longer than that maximum life (plus a short grace).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import psutil  # type: ignore[import-untyped]
import psycopg
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from ingress.live import LIVE_SEND_GRACE_S
from messages import Actor, ActorType, Envelope, QuestEvent
from messages.redis_keys import quest_stream_key
from runtime.loop_thread import LoopThread
from runtime.settings import Settings
from tests.conftest import Tenant
from tests.ingress_server import (
    Server,
    SseStream,
    WorkerEvents,
    emit,
    ingress_process,
    open_quest,
    read_events,
    request_head,
)
from tests.support import InTenant
from workers.events import QuestEvents

AdminConn = psycopg.Connection[tuple[Any, ...]]
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


@pytest.fixture
def events(guard_redis: AsyncRedis, call_loop: LoopThread) -> WorkerEvents:
    return WorkerEvents(QuestEvents(guard_redis, maxlen=10_000), call_loop)


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path


def events_url(tenant: Tenant, quest_id: uuid.UUID) -> str:
    return f"/v1/companies/{tenant.id}/quests/{quest_id}/events"


def async_client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url,
        timeout=httpx.Timeout(30, pool=30),
        limits=httpx.Limits(max_connections=400, max_keepalive_connections=0),
    )


async def open_many(
    client: httpx.AsyncClient, count: int, url: str, headers: dict[str, str]
) -> list[SseStream]:
    return list(await asyncio.gather(*(SseStream.open(client, url, headers) for _ in range(count))))


async def close_all(streams: list[SseStream]) -> None:
    await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)


def redis_connections(server: Server, redis_url: str) -> int:
    """The ingress process's TCP connections to Redis."""
    port = urlsplit(redis_url).port or 6379
    return sum(
        1
        for c in psutil.Process(server.proc.pid).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port
    )


# --- caps ----------------------------------------------------------------------------------

USER_CAP = 3


def test_a_user_over_the_stream_cap_gets_429_with_retry_after_and_a_closed_stream_frees_a_slot(
    settings: Settings, logs: Path, in_tenant: InTenant, tenant: Tenant
) -> None:
    quest = open_quest(in_tenant, tenant.id, tenant.member)
    url = events_url(tenant, quest)
    member, admin = tenant.headers(tenant.member), tenant.headers(tenant.admin)

    async def main(server: Server) -> None:
        async with async_client(server) as client:
            held = await open_many(client, USER_CAP, url, member)
            assert [s.response.status_code for s in held] == [200] * len(held)
            over = await SseStream.open(client, url, member)
            try:
                assert over.response.status_code == 429
                await over.response.aread()
                assert int(over.response.headers["retry-after"]) > 0
                body = over.response.json()
                assert body["reason"] == "too_many_streams_for_user"
                assert body["limit"] == USER_CAP
                assert isinstance(body["detail"], str)
            finally:
                await over.close()
            other = await SseStream.open(client, url, admin)  # another user: not affected
            assert other.response.status_code == 200
            await held.pop().close()
            deadline = time.monotonic() + 10
            while True:  # the hung-up stream's slot comes back
                again = await SseStream.open(client, url, member)
                status = again.response.status_code
                if status == 200:
                    held.append(again)
                    break
                await again.close()
                assert time.monotonic() < deadline, "a closed stream's slot never came back"
                await asyncio.sleep(0.2)
            await close_all([*held, other])

    with ingress_process(settings, logs, S2_SSE_MAX_PER_USER=str(USER_CAP)) as server:
        asyncio.run(main(server))


def test_a_tenant_holding_its_maximum_leaves_another_companys_stream_delivering(
    settings: Settings,
    logs: Path,
    in_tenant: InTenant,
    tenant: Tenant,
    other_tenant: Tenant,
    events: WorkerEvents,
) -> None:
    """110 streams of one company (more than the 100 connections the ingress's Redis pool
    used to have, one held per waiting stream), then another company's stream."""
    cap = 110
    quests = [open_quest(in_tenant, tenant.id, tenant.member) for _ in range(10)]
    theirs = open_quest(in_tenant, other_tenant.id, other_tenant.member)

    async def main(server: Server) -> None:
        async with async_client(server) as client:
            hogs: list[SseStream] = []
            for i, quest in enumerate(quests):
                who = tenant.member if i % 2 else tenant.admin
                hogs += await open_many(
                    client, cap // 10, events_url(tenant, quest), tenant.headers(who)
                )
            assert [s.response.status_code for s in hogs] == [200] * cap
            over = await SseStream.open(client, events_url(tenant, quests[0]), tenant.headers())
            assert over.response.status_code == 429
            await over.response.aread()
            assert over.response.json()["reason"] == "too_many_streams_for_company"
            assert int(over.response.headers["retry-after"]) > 0
            await over.close()
            await asyncio.sleep(1.5)  # every hog is now waiting in its read

            victim = await SseStream.open(
                client,
                events_url(other_tenant, theirs),
                other_tenant.headers(other_tenant.member),
            )
            assert victim.response.status_code == 200
            await asyncio.sleep(0.5)
            emit(events, other_tenant.id, theirs, text="for Globex")
            got = await asyncio.wait_for(victim.next_event(), timeout=5)
            assert got is not None and got["data"]["data"] == {"text": "for Globex"}

            emit(events, tenant.id, quests[3], text="for Acme")  # the hogs still work too
            per_quest = cap // len(quests)
            for hog in hogs[3 * per_quest : 4 * per_quest]:
                got = await asyncio.wait_for(hog.next_event(), timeout=5)
                assert got is not None and got["data"]["data"] == {"text": "for Acme"}
            await close_all([*hogs, victim])

    env = {"S2_SSE_MAX_PER_USER": str(cap), "S2_SSE_MAX_PER_COMPANY": str(cap)}
    with ingress_process(settings, logs, **env) as server:
        asyncio.run(main(server))


# --- one reader per process ----------------------------------------------------------------


def test_150_streams_in_one_process_use_a_bounded_number_of_redis_connections(
    settings: Settings, logs: Path, in_tenant: InTenant, tenant: Tenant, events: WorkerEvents
) -> None:
    count, per_quest = 150, 3
    quests = [open_quest(in_tenant, tenant.id, tenant.member) for _ in range(count // per_quest)]

    async def main(server: Server) -> None:
        async with async_client(server) as client:
            streams: list[SseStream] = []
            for quest in quests:
                streams += await open_many(
                    client, per_quest, events_url(tenant, quest), tenant.headers(tenant.member)
                )
            assert [s.response.status_code for s in streams] == [200] * count
            await asyncio.sleep(2)  # each has been waiting a while
            held = redis_connections(server, settings.redis_url)
            assert held <= 4, f"{held} Redis connections for {count} streams"

            for i, quest in enumerate(quests):
                emit(events, tenant.id, quest, n=i)
            got = await asyncio.wait_for(
                asyncio.gather(*(s.next_event() for s in streams)), timeout=20
            )
            want = [{"n": i} for i in range(len(quests)) for _ in range(per_quest)]
            assert [e["data"]["data"] if e else None for e in got] == want
            assert redis_connections(server, settings.redis_url) <= 4
            await close_all(streams)

    env = {"S2_SSE_MAX_PER_USER": "200", "S2_SSE_MAX_PER_COMPANY": "200"}
    with ingress_process(settings, logs, **env) as server:
        asyncio.run(main(server))


# --- maximum life ---------------------------------------------------------------------------

MAX_LIFE_S = 2


@pytest.fixture
def short_lived(settings: Settings, logs: Path) -> Iterator[Server]:
    with ingress_process(settings, logs, S2_SSE_MAX_LIFE_S=str(MAX_LIFE_S)) as server:
        yield server


class Emitter(threading.Thread):
    """Adds an event to the quest's stream every ``every`` seconds, for ``for_s`` seconds
    or until halted, then (if ``finish``) the quest's final state."""

    def __init__(
        self,
        events: WorkerEvents,
        tenant: Tenant,
        quest: uuid.UUID,
        *,
        every: float = 0.1,
        for_s: float = 60,
        finish: bool = False,
    ) -> None:
        super().__init__(daemon=True)
        self.events, self.tenant, self.quest = events, tenant, quest
        self.every, self.for_s, self.finish = every, for_s, finish
        self.halt = threading.Event()

    def run(self) -> None:
        until = time.monotonic() + self.for_s
        i = 0
        while not self.halt.wait(self.every) and time.monotonic() < until:
            emit(self.events, self.tenant.id, self.quest, n=i)
            i += 1
        if self.finish:
            emit(self.events, self.tenant.id, self.quest, "quest.state", status="succeeded")


def test_a_stream_ends_at_its_max_life_and_resumes_from_last_event_id_without_loss_or_duplicates(
    short_lived: Server, in_tenant: InTenant, tenant: Tenant, events: WorkerEvents, rds: redis.Redis
) -> None:
    quest = open_quest(in_tenant, tenant.id, tenant.member)
    emitter = Emitter(events, tenant, quest, for_s=7, finish=True)
    emitter.start()
    seen: list[dict[str, Any]] = []
    lives: list[float] = []
    with httpx.Client(base_url=short_lived.url, timeout=30) as client:
        while not seen or seen[-1]["event"] != "quest.state":
            assert len(lives) < 20, "the quest's end never came"
            headers = tenant.headers(tenant.member)
            if seen:
                headers["Last-Event-ID"] = seen[-1]["id"]
            status, got, life = read_events(client, events_url(tenant, quest), headers)
            assert status == 200
            seen += got
            lives.append(life)
    emitter.join(5)
    stored = [
        entry_id.decode()
        for entry_id, _ in cast(StreamEntries, rds.xrange(quest_stream_key(quest)))
    ]
    ids = [e["id"] for e in seen]
    assert len(set(ids)) == len(ids), "an event came twice"
    assert ids == stored, "every event, in order, across the reconnects"
    assert [e["data"]["data"]["n"] for e in seen[:-1]] == list(range(len(seen) - 1))
    assert len(lives) >= 3, f"the stream did not end at its max life: lived {lives}"
    assert all(life < MAX_LIFE_S + 2 for life in lives), lives


def test_a_revoked_member_stops_streaming_at_the_max_life_and_cannot_resume(
    short_lived: Server,
    in_tenant: InTenant,
    tenant: Tenant,
    events: WorkerEvents,
    admin_conn: AdminConn,
) -> None:
    quest = open_quest(in_tenant, tenant.id, tenant.member)
    emitter = Emitter(events, tenant, quest)  # events keep flowing: no quiet moment
    emitter.start()
    try:

        async def main() -> str:
            async with async_client(short_lived) as client:
                url = events_url(tenant, quest)
                stream = await SseStream.open(client, url, tenant.headers(tenant.member))
                assert stream.response.status_code == 200
                first = await asyncio.wait_for(stream.next_event(), timeout=5)
                assert first is not None
                admin_conn.execute(
                    "DELETE FROM memberships WHERE company_id = %s AND user_id = %s",
                    (tenant.id, tenant.member),
                )
                revoked = time.monotonic()
                while await asyncio.wait_for(stream.next_event(), timeout=MAX_LIFE_S + 3):
                    assert time.monotonic() - revoked < MAX_LIFE_S + 3, "still streaming"
                await stream.close()
                again = await SseStream.open(
                    client, url, {**tenant.headers(tenant.member), "Last-Event-ID": first["id"]}
                )
                status = again.response.status_code
                await again.close()
                return str(status)

        assert asyncio.run(main()) == "403"
    finally:
        emitter.halt.set()
        emitter.join(5)


# --- a client that stops reading -------------------------------------------------------------

STUCK_LIFE_S = 3
# 16 MB: more than every buffer between the stream and a client that does not read (the
# server's socket grows to tcp_wmem's maximum, 4 MB by default), fewer entries than QUEUE_MAX.
BIG_EVENTS, BIG_EVENT_BYTES = 800, 20_000


def add_big_events(rds: redis.Redis, company_id: uuid.UUID, quest_id: uuid.UUID) -> None:
    """Large events straight into the quest's live stream, as a worker would add them."""
    envelope = Envelope[QuestEvent](
        company_id=company_id,
        actor=Actor(type=ActorType.ted, id="ted"),
        correlation_id=uuid.uuid4(),
        payload=QuestEvent(
            quest_id=quest_id, kind="note", step=1, data={"x": "x" * BIG_EVENT_BYTES}
        ),
    ).model_dump_json()
    pipe = rds.pipeline(transaction=False)
    for _ in range(BIG_EVENTS):
        pipe.xadd(quest_stream_key(quest_id), {"e": envelope})
    pipe.execute()


def open_stuck_stream(server: Server, path: str, headers: dict[str, str]) -> socket.socket:
    """A stream opened on a raw socket with a small receive buffer, read up to its status
    line and then never again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(request_head("GET", path, server.port, headers))
    sock.settimeout(10)
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(64)
        assert chunk, f"closed before a status line: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def drain_to_end(sock: socket.socket, timeout: float) -> str:
    """Reads ``sock`` until the server ends the connection: "eof" or "reset"."""
    deadline = time.monotonic() + timeout
    sock.settimeout(1)
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                return "eof"
        except TimeoutError:
            continue
        except ConnectionResetError:
            return "reset"
    raise AssertionError(f"the connection was still open {timeout}s after its stream was cut")


def test_a_client_that_stops_reading_loses_its_slot_at_the_max_life_and_its_connection_ends(
    settings: Settings, logs: Path, in_tenant: InTenant, tenant: Tenant, rds: redis.Redis
) -> None:
    """Its stream's sends block once every buffer on the way is full; the response is still
    cut at the max life (plus a short grace), giving back the user's only slot while the
    socket stays open — and the connection ends, with a warning logged and no server error."""
    quest = open_quest(in_tenant, tenant.id, tenant.member)
    path = events_url(tenant, quest)
    headers = tenant.headers(tenant.member)
    env = {
        "S2_SSE_MAX_LIFE_S": str(STUCK_LIFE_S),
        "S2_SSE_MAX_PER_USER": "1",
        "S2_SSE_MAX_PER_COMPANY": "2",
    }
    limit = STUCK_LIFE_S + LIVE_SEND_GRACE_S + 4
    with ingress_process(settings, logs, **env) as server:
        stuck = open_stuck_stream(server, path, headers)
        opened = time.monotonic()
        try:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                over = client.get(path, headers=headers)
                assert over.status_code == 429, "the stuck stream holds the user's only slot"
                add_big_events(rds, tenant.id, quest)
                while True:
                    with client.stream("GET", path, headers=headers) as again:
                        if again.status_code == 200:
                            waited = time.monotonic() - opened
                            break
                    assert time.monotonic() - opened < limit, (
                        f"the stuck stream still held its slot after {limit}s"
                    )
                    time.sleep(0.25)
            assert waited >= STUCK_LIFE_S - 0.5, f"its slot came back after only {waited:.1f}s"
            assert drain_to_end(stuck, timeout=10) in ("eof", "reset")
        finally:
            stuck.close()
            rds.delete(quest_stream_key(quest))
    log = (logs / f"ingress-{server.port}.log").read_text()
    assert "a stream outlived its maximum life and is cut" in log
    assert "ASGI callable returned without completing response" not in log
    assert "Exception in ASGI application" not in log
