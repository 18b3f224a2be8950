"""Stopping a step at once when its quest is cancelled, even inside a network call.

Raising an exception into a thread cannot interrupt a blocked socket read, so a step
registers how to cut each call it makes in a ``CallScope``: the socket of a blocking call
(``shutdown`` wakes a blocked ``recv``, ``close`` would not), or the future of a call running
on the process's ``CallLoop`` (cancelling its task closes its connection wherever the call
is: connecting, sent and waiting for the first byte, or mid-stream). A cancel cuts them all
and the call fails at once. Cancels arrive by Redis pub/sub; a flag key, checked when a step
starts and every second while it runs, catches any notice the subscription missed.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any
from uuid import UUID

import redis
import structlog

from messages.redis_keys import CANCEL_CHANNEL, cancel_flag_key
from workers.errors import WorkerError

log = structlog.get_logger(__name__)


class Interrupted(WorkerError):
    """A network call was cut because its quest was cancelled."""


class CallScope:
    """How to cut each network call a step makes, so another thread can cut them."""

    def __init__(self, quest_id: UUID) -> None:
        self.quest_id = quest_id
        self.cancelled = threading.Event()
        self._cuts: list[Callable[[], object]] = []
        self._lock = threading.Lock()

    def on_cancel(self, cut: Callable[[], object]) -> None:
        """Call ``cut`` when the scope is cancelled (at once if it already is)."""
        with self._lock:
            self._cuts.append(cut)
            cancelled = self.cancelled.is_set()
        if cancelled:
            cut()

    def track(self, sock: socket.socket | None) -> None:
        if sock is not None:
            self.on_cancel(functools.partial(_shutdown, sock))

    def track_future(self, future: Future[Any]) -> None:
        self.on_cancel(future.cancel)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled.set()
            cuts, self._cuts = self._cuts, []
        for cut in cuts:
            cut()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


_current: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar(
    "s2_call_scope", default=None
)


def current_scope() -> CallScope | None:
    return _current.get()


@contextlib.contextmanager
def calls_in(scope: CallScope) -> Iterator[CallScope]:
    """Network calls made in this block (by this thread) are cut if the scope is cancelled."""
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


def track_network_stream(stream: Any) -> None:
    """Register an httpcore network stream's socket with the current scope."""
    scope = current_scope()
    if scope is not None and stream is not None:
        scope.track(stream.get_extra_info("socket"))


def trace(event: str, info: dict[str, Any]) -> None:
    """An httpcore ``trace`` extension: catches each new connection's socket."""
    if event.endswith("connect_tcp.complete"):
        track_network_stream(info.get("return_value"))


class CancelWatch:
    """One per worker process: the scopes of the steps it runs, cut when their quest is
    cancelled."""

    def __init__(self, client: redis.Redis, *, poll_s: float = 1.0) -> None:
        self.redis = client
        self.poll_s = poll_s
        self._scopes: dict[UUID, list[CallScope]] = {}
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            threading.Thread(target=self._listen, name="s2-cancel-listen", daemon=True).start()
            threading.Thread(target=self._poll, name="s2-cancel-poll", daemon=True).start()

    @contextlib.contextmanager
    def watching(self, quest_id: UUID) -> Iterator[CallScope]:
        scope = CallScope(quest_id)
        with self._lock:
            self._scopes.setdefault(quest_id, []).append(scope)
        try:
            if self.is_cancelled(quest_id):
                scope.cancel()
            yield scope
        finally:
            with self._lock:
                scopes = self._scopes.get(quest_id, [])
                if scope in scopes:
                    scopes.remove(scope)
                if not scopes:
                    self._scopes.pop(quest_id, None)

    def is_cancelled(self, quest_id: UUID) -> bool:
        try:
            return bool(self.redis.exists(cancel_flag_key(quest_id)))
        except redis.RedisError:
            return False  # Postgres still has the request; the next step boundary sees it

    def cancel(self, quest_id: UUID | str) -> None:
        try:
            qid = UUID(str(quest_id))
        except ValueError:
            return
        with self._lock:
            scopes = list(self._scopes.get(qid, []))
        for scope in scopes:
            scope.cancel()
        if scopes:
            log.info("cancel reached a running step", quest_id=str(qid))

    def _listen(self) -> None:
        while True:
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(CANCEL_CHANNEL)
                for message in pubsub.listen():
                    data = message.get("data")
                    self.cancel(data.decode() if isinstance(data, bytes) else str(data))
            except redis.RedisError:
                threading.Event().wait(1.0)  # Redis went away: subscribe again

    def _poll(self) -> None:
        while True:
            threading.Event().wait(self.poll_s)
            with self._lock:
                quests = list(self._scopes)
            if not quests:
                continue
            try:
                flags = self.redis.mget([cancel_flag_key(q) for q in quests])
            except redis.RedisError:
                continue
            for quest_id, flag in zip(quests, flags, strict=True):
                if flag:
                    self.cancel(quest_id)
