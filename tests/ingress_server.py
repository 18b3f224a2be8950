"""A real ingress process (``system2 ingress``, uvicorn) on loopback, and raw HTTP/1.1 and
Server-Sent Events clients for tests that must see what a client on the wire sees: when an
answer comes while a body is still being sent, how many streams one process serves."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ingress.submit import QuestSpec, create_quest
from messages import Actor, ActorType, Envelope, QuestEvent
from runtime.loop_thread import LoopThread
from runtime.settings import Settings
from system2.procs import Proc, free_port, wait_http
from tests.conftest import settings_env, system2
from tests.support import InTenant, SseParser, sse_events
from workers.events import QuestEvents


@dataclass
class Server:
    url: str
    port: int
    proc: Proc


@contextlib.contextmanager
def ingress_process(settings: Settings, logs: Path, **env: str) -> Iterator[Server]:
    """``system2 ingress`` in its own process, with ``env`` added to the settings'."""
    port = free_port()
    proc = Proc(
        "ingress",
        system2("ingress", "--port", str(port)),
        env=settings_env(settings, **env),
        log_path=logs / f"ingress-{port}.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", proc=proc)
        yield Server(url, port, proc)
    finally:
        proc.stop()


def open_quest(
    in_tenant: InTenant, company_id: uuid.UUID, by: str, goal: str = "Watch me"
) -> uuid.UUID:
    """A quest row as a submit makes it (no worker runs it: it stays open)."""
    actor = Actor(type=ActorType.user, id=by)
    quest, _ = in_tenant(company_id, lambda tx: create_quest(tx, actor, QuestSpec(goal, "m-1")))
    return quest.id


@dataclass
class WorkerEvents:
    """A worker's publisher of live events, used from the test's threads: its coroutines run
    on the tests' loop (``call_loop``), where its Redis client belongs."""

    events: QuestEvents
    loop: LoopThread


def emit(
    events: WorkerEvents,
    company_id: uuid.UUID,
    quest_id: uuid.UUID,
    kind: str = "note",
    **data: Any,
) -> None:
    """One event on the quest's live stream, as a worker publishes it."""
    envelope = Envelope[QuestEvent](
        company_id=company_id,
        actor=Actor(type=ActorType.ted, id="ted"),
        correlation_id=uuid.uuid4(),
        payload=QuestEvent(quest_id=quest_id, kind=kind, step=1, data=data),
    )
    events.loop.run(events.events.emit([envelope]))


# --- raw HTTP/1.1 ------------------------------------------------------------------------


def request_head(method: str, path: str, port: int, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def answered(sock: socket.socket) -> bool:
    """Whether the server has sent something (or closed) on ``sock``."""
    ready, _, _ = select.select([sock], [], [], 0)
    return bool(ready)


def read_answer(sock: socket.socket, timeout: float = 10.0) -> RawAnswer:
    """The response on ``sock``: status, headers and a Content-Length body."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a full response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawAnswer(int(status_line.split()[1]), headers, body[:length])


# --- Server-Sent Events ------------------------------------------------------------------


@dataclass
class SseStream:
    """One open event stream (async), read event by event."""

    response: httpx.Response
    exit: contextlib.AsyncExitStack
    lines: AsyncIterator[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False

    @classmethod
    async def open(cls, client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> SseStream:
        stack = contextlib.AsyncExitStack()
        response = await stack.enter_async_context(client.stream("GET", url, headers=headers))
        return cls(response, stack, response.aiter_lines())

    async def next_event(self) -> dict[str, Any] | None:
        """The next event with an id (None when the stream ends)."""
        parser = SseParser()
        async for line in self.lines:
            if (event := parser.feed(line)) is not None:
                self.events.append(event)
                return event
        self.ended = True
        return None

    async def close(self) -> None:
        await self.exit.aclose()


def read_events(
    client: httpx.Client, url: str, headers: dict[str, str]
) -> tuple[int, list[dict[str, Any]], float]:
    """A whole stream, synchronously: (status, its events, seconds it stayed open)."""
    started = time.monotonic()
    with client.stream("GET", url, headers=headers) as resp:
        if resp.status_code != 200:
            resp.read()
            return resp.status_code, [], time.monotonic() - started
        events = list(sse_events(resp.iter_lines()))
    return 200, events, time.monotonic() - started
