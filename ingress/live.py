"""Server-Sent Events from a quest's live stream in Redis: resumable by ``Last-Event-ID``
(the stream entry id), ending when the quest ends — or when the stream reaches its maximum
life, after which the client resumes with ``Last-Event-ID`` (and its membership is checked
again, so a revoked member stops streaming).

One reader per ingress process (``LiveEvents``) serves every open stream: a single task
XREADs all the stream keys being watched in one blocking call and hands each entry to the
queue of every stream waiting for it. A stream holds no Redis connection of its own — the
process holds ``REDIS_CONNECTIONS``, however many streams are open — so one tenant's
streams cannot use up the connections another tenant's need. Open streams are also capped
per user and per company (``TooManyStreams``: 429 with ``Retry-After``).

The reader's task is started by the app's lifespan (``start``) and stopped with it
(``stop``), which ends every open stream.

A stream's whole response (``LiveStreamResponse``) is bounded by its maximum life plus
``LIVE_SEND_GRACE_S``: a client that stops reading blocks the server's sends once the socket
buffers are full, so a deadline checked only between events would never be reached. The
response is cut then, and its slot given back however the response ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import weakref
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, cast
from uuid import UUID

import structlog
from fastapi import HTTPException
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from redis.typing import KeyT, StreamIdT
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ingress.errors import IngressError
from ingress.problems import Refused
from messages.notices import StreamReply
from runtime.tasks import cancel_and_wait
from store import StoreError
from store.quests import TERMINAL

log = structlog.get_logger(__name__)

REDIS_CONNECTIONS = 2  # the reader's, and a spare while a broken one is replaced
READ_BLOCK_MS = 250  # the longest a newly opened stream waits to join the reader's XREAD
READ_COUNT = 200  # entries per stream key per read
QUEUE_MAX = 1_000  # entries waiting for one client; beyond, its stream ends (it resumes)
TICK_S = 1.0  # the longest a stream waits for an entry before looking at the clock
PING_S = 15.0  # a keep-alive comment after this long without writing anything
CHECK_S = 3.0  # how often a stream checks its client, its quest and the caller's membership
RETRY_AFTER_S = 10  # said with a 429: a slot frees when one of the caller's streams ends
LIVE_SEND_GRACE_S = 5.0  # past its maximum life, how long a stream may take to send its end

EntryId = tuple[int, int]
Entry = tuple[str, dict[bytes, bytes]]  # (entry id, fields) as the stream holds it


# A stream entry id, "ms-seq" in ASCII digits: the one definition, used by ``parse_id`` and
# by the events route's ``Last-Event-ID`` header.
ENTRY_ID_PATTERN: Final = r"^[0-9]{1,20}-[0-9]{1,20}$"
_ENTRY_ID = re.compile(ENTRY_ID_PATTERN)
ID_PART_MAX = 2**64 - 1  # each half of a stream entry id is an unsigned 64-bit integer


def parse_id(text: str) -> EntryId:
    """``"ms-seq"`` as numbers; ValueError for anything else, and for anything Redis would
    refuse (a half over ``ID_PART_MAX``) — one bad id in the shared XREAD would fail it for
    every stream."""
    if _ENTRY_ID.fullmatch(text) is None:
        raise ValueError(f"not a stream entry id: {text[:50]!r}")
    ms, _, seq = text.partition("-")
    entry_id = int(ms), int(seq)
    if entry_id[0] > ID_PART_MAX or entry_id[1] > ID_PART_MAX:
        raise ValueError(f"not a stream entry id: {text[:50]!r}")
    return entry_id


def format_id(entry_id: EntryId) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


class TooManyStreams(IngressError):
    """The caller or its company has as many live streams open as it may."""

    def __init__(self, reason: str, detail: str, limit: int) -> None:
        super().__init__(detail)
        self.reason = reason
        self.limit = limit
        self.retry_after_s = RETRY_AFTER_S


@dataclass(eq=False)
class Subscription:
    """One open stream: what it watches, how far it has been given entries, and the queue
    they wait in for its client."""

    key: str
    user_id: str
    company_id: UUID
    last: EntryId
    hub: LiveEvents
    queue: asyncio.Queue[Entry | None] = field(default_factory=asyncio.Queue)
    ended: str = ""  # why the reader ended it (the queue then holds None last)
    closed: bool = False

    def close(self) -> None:
        """Give back its slot and stop reading for it; idempotent."""
        self.hub.release(self)


class LiveEvents:
    """The process's one reader of live event streams, and the count of open streams."""

    def __init__(self, client: AsyncRedis, *, max_per_user: int, max_per_company: int) -> None:
        self._client = client
        self.max_per_user = max_per_user
        self.max_per_company = max_per_company
        self._watched: dict[str, set[Subscription]] = {}
        self._per_user: Counter[str] = Counter()
        self._per_company: Counter[UUID] = Counter()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def open_streams(self) -> int:
        return self._per_user.total()

    async def start(self) -> None:
        if not self.running:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="live-events-reader")

    async def stop(self) -> None:
        """Stop reading and end every open stream (its client resumes elsewhere)."""
        task, self._task = self._task, None
        self._stopping = True
        self._changed.set()
        if task is not None:
            await cancel_and_wait([task])
            with contextlib.suppress(asyncio.CancelledError):
                task.result()
        for subs in list(self._watched.values()):
            for sub in list(subs):
                self._end(sub, "the ingress is stopping")

    def open(self, *, user_id: str, company_id: UUID, key: str, after: str) -> Subscription:
        """A stream of ``key``'s entries after ``after``, if the caller and its company are
        under their caps (``TooManyStreams`` if not). Checked and counted with no await in
        between, so concurrent requests cannot both take the last slot."""
        last = parse_id(after)
        if self._per_user[user_id] >= self.max_per_user:
            raise TooManyStreams(
                "too_many_streams_for_user",
                f"this user has {self.max_per_user} live streams open (the most allowed)",
                self.max_per_user,
            )
        if self._per_company[company_id] >= self.max_per_company:
            raise TooManyStreams(
                "too_many_streams_for_company",
                f"this company has {self.max_per_company} live streams open (the most allowed)",
                self.max_per_company,
            )
        sub = Subscription(key, user_id, company_id, last, self)
        self._per_user[user_id] += 1
        self._per_company[company_id] += 1
        self._watched.setdefault(key, set()).add(sub)
        self._changed.set()
        return sub

    def release(self, sub: Subscription) -> None:
        if sub.closed:
            return
        sub.closed = True
        self._unwatch(sub)
        self._per_user[sub.user_id] -= 1
        self._per_company[sub.company_id] -= 1
        if self._per_user[sub.user_id] <= 0:
            del self._per_user[sub.user_id]
        if self._per_company[sub.company_id] <= 0:
            del self._per_company[sub.company_id]

    def _unwatch(self, sub: Subscription) -> None:
        subs = self._watched.get(sub.key)
        if subs is not None and sub in subs:
            subs.discard(sub)
            if not subs:
                del self._watched[sub.key]
            self._changed.set()

    def _end(self, sub: Subscription, why: str) -> None:
        """Stop feeding ``sub``; its client gets what is queued, then the stream ends."""
        self._unwatch(sub)
        if not sub.ended:
            sub.ended = why
            sub.queue.put_nowait(None)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            if not self._watched:
                self._changed.clear()
                await self._changed.wait()
            # A changed set of keys is read at once; otherwise wait (briefly) for entries.
            block = None if self._changed.is_set() else READ_BLOCK_MS
            self._changed.clear()
            read_from = {key: min(s.last for s in subs) for key, subs in self._watched.items()}
            if not read_from:
                continue
            streams: dict[KeyT, StreamIdT] = {k: format_id(v) for k, v in read_from.items()}
            try:
                reply = await self._client.xread(streams, count=READ_COUNT, block=block)
                self._deliver(cast(StreamReply, reply or []), read_from)
                failures = 0
            except (RedisError, OSError) as exc:  # Redis down or restarting: retry, streams wait
                failures += 1
                log.warning("live events: read failed", error=type(exc).__name__)
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
            except Exception:  # a bug must not leave every stream without events
                failures += 1
                log.exception("live events: reader failed")
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))

    def _deliver(self, reply: StreamReply, read_from: dict[str, EntryId]) -> None:
        """Hand each entry to the streams this read covered. A stream opened while the read
        waited, from further back than it read (a client resuming with ``Last-Event-ID``), is
        left for the next read, which starts from it: given these entries now, it would skip
        the ones between."""
        for raw_key, raw_entries in reply:
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            entries = [
                (parse_id(text), text, fields)
                for entry_id, fields in raw_entries
                for text in [entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)]
            ]
            start = read_from.get(key)
            for sub in list(self._watched.get(key, ())):
                if start is None or sub.last < start:
                    continue
                for entry_id, text, fields in entries:
                    if entry_id <= sub.last:
                        continue  # a stream further on than the slowest of this key's
                    if sub.queue.qsize() >= QUEUE_MAX:
                        self._end(sub, "the client reads too slowly")
                        break
                    sub.queue.put_nowait((text, fields))
                    sub.last = entry_id


_LIVE_DOWN: dict[str, Any] = {"headers": {"Retry-After": str(RETRY_AFTER_S)}, "dependency": "redis"}


def open_stream(
    request: Request, *, user_id: str, company_id: UUID, key: str, after: str
) -> Subscription:
    """A subscription to ``key`` for this request, from after ``after``: 422 for an id Redis
    would refuse, 503 when live events are not running here, ``TooManyStreams`` (429) when
    the caller or its company is at its cap."""
    try:
        parse_id(after)
    except ValueError:  # refused now: in the shared read, Redis would refuse it for every stream
        raise Refused(422, "bad_last_event_id", "last-event-id: no such id") from None
    live: LiveEvents | None = request.app.state.live
    if live is None:
        raise Refused(503, "unavailable", "live events are not configured", **_LIVE_DOWN)
    if not live.running:
        raise Refused(503, "unavailable", "live events are not running", **_LIVE_DOWN)
    return live.open(user_id=user_id, company_id=company_id, key=key, after=after)


def sse(entry_id: str, payload: dict[str, Any], issued_at: str) -> str:
    data = {
        "quest_id": payload["quest_id"],
        "kind": payload["kind"],
        "step": payload.get("step"),
        "data": payload.get("data", {}),
        "at": issued_at,
    }
    return f"id: {entry_id}\nevent: {payload['kind']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


Visible = Callable[[dict[str, Any]], Awaitable[bool]]


async def sse_events(
    sub: Subscription,
    request: Request,
    finished: Callable[[], Awaitable[bool]],
    max_life_s: float,
    *,
    visible: Visible | None = None,
    ends_with_quest: bool = True,
) -> AsyncGenerator[str, None]:
    """The stream's text: its entries as events (those ``visible`` admits), keep-alive
    comments while it is quiet; it ends with the quest (``ends_with_quest``), when
    ``finished`` says so, at its maximum life, or when the reader ends it. Its slot is given
    back however it ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_life_s
    checked = wrote = loop.time()
    try:
        yield "retry: 1000\n\n"
        while True:
            # By the clock, not by quiet ticks: a busy stream (a company's feed, most of it
            # perhaps hidden from this member) is checked and kept alive like a quiet one.
            now = loop.time()
            left = deadline - now
            if left <= 0:
                yield ": this stream reached its maximum life; resume with Last-Event-ID\n\n"
                return
            if now - checked >= CHECK_S:
                checked = now
                if await request.is_disconnected() or await _over(finished):
                    return  # ended (every event it left is delivered), or may no longer watch
            if now - wrote >= PING_S:
                wrote = now
                yield ": keep-alive\n\n"
            try:
                async with asyncio.timeout(min(TICK_S, left)):
                    item = await sub.queue.get()
            except TimeoutError:
                continue
            if item is None:
                yield f": {sub.ended}; resume with Last-Event-ID\n\n"
                return
            entry_id, fields = item
            envelope = json.loads(fields[b"e"])
            payload = envelope["payload"]
            if visible is not None and not await _shown(visible, payload):
                continue
            wrote = loop.time()
            yield sse(entry_id, payload, envelope["issued_at"])
            if (
                ends_with_quest
                and payload["kind"] == "quest.state"
                and payload.get("data", {}).get("status") in TERMINAL
            ):
                return
    except _Unwatchable as exc:
        yield f": {exc}; resume with Last-Event-ID\n\n"
    finally:
        sub.close()


class _Unwatchable(IngressError):
    """The caller may no longer be shown this stream's events (or we cannot tell)."""


async def _shown(visible: Visible, payload: dict[str, Any]) -> bool:
    try:
        return await visible(payload)
    except HTTPException:  # a revoked membership: 403
        raise _Unwatchable("this stream may no longer be watched") from None
    except StoreError:
        raise _Unwatchable("the database is unavailable") from None


async def _over(finished: Callable[[], Awaitable[bool]]) -> bool:
    """Whether the quest has ended — or the caller may no longer see it (a revoked
    membership: 403; the quest gone: 404), or the database cannot say (the client resumes)."""
    try:
        return await finished()
    except (HTTPException, StoreError):
        return True


class LiveStreamResponse(StreamingResponse):
    """A live stream's response: ``events`` (``sse_events``) sent within the stream's maximum
    life plus ``LIVE_SEND_GRACE_S`` — every send included, which blocks for as long as a
    client does not read — and its subscription's slot given back however the response ends:
    the events end, the client goes, an error, the cut at that bound, or never being sent at
    all (when the response is dropped unsent)."""

    def __init__(
        self, sub: Subscription, events: AsyncGenerator[str, None], *, max_life_s: float
    ) -> None:
        loop = asyncio.get_running_loop()
        self._unsent = weakref.finalize(self, _release_soon, loop, sub)
        self._unsent.atexit = False
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.sub = sub
        self.events = events
        self.max_life_s = max_life_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._unsent.detach()
        bound = asyncio.timeout(self.max_life_s + LIVE_SEND_GRACE_S)
        try:
            async with bound:
                await super().__call__(scope, receive, send)
        except TimeoutError:
            if not bound.expired():
                raise
            # Returning with the body unfinished makes the server close the connection; its
            # error for that is dropped (``_QuietCut``): this is the line that says so.
            _cut.set(True)
            _quiet_the_servers_error()
            log.warning(
                "live events: a stream outlived its maximum life and is cut "
                "(its client stopped reading, most likely)",
                stream=self.sub.key,
                user_id=self.sub.user_id,
                company_id=str(self.sub.company_id),
                max_life_s=self.max_life_s,
            )
        finally:
            self.sub.close()
            with contextlib.suppress(RuntimeError):  # still running: it ends with its task
                await self.events.aclose()


def _release_soon(loop: asyncio.AbstractEventLoop, sub: Subscription) -> None:
    """A response dropped unsent gives back its slot (on its loop: a finalizer may run in
    another thread)."""
    with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is counted any more
        loop.call_soon_threadsafe(sub.close)


# Set in the request's context when ``LiveStreamResponse`` cuts a response; uvicorn logs its
# "returned without completing response" error in that same context, right after.
_cut: ContextVar[bool] = ContextVar("live_stream_cut", default=False)
UVICORN_INCOMPLETE = "ASGI callable returned without completing response."


class _QuietCut(logging.Filter):
    """Drops uvicorn's error for a response cut on purpose (already logged, as a warning)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_cut.get() and record.getMessage() == UVICORN_INCOMPLETE)


_QUIET_CUT = _QuietCut()


def _quiet_the_servers_error() -> None:
    logging.getLogger("uvicorn.error").addFilter(_QUIET_CUT)  # once: the same filter is kept
