"""The Claude client: one Messages API call through the real anthropic SDK.

The SDK reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` itself, so the same code path
talks to the offline Claude in the demo and tests and to Anthropic in production. The reply
is kept as the API's own JSON, which is what the transcript stores and sends back.

Calls are the async SDK's, awaited on the worker's event loop: a quest's cancel cancels the
task of its call (``workers.call_scope``), which closes the connection at any point. The SDK
does not retry (``max_retries=0``): the step
does, each attempt under its own charge key, so that what an attempt may have cost is known
from how it failed (``Sent``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import json
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Literal

import anthropic
import httpx2

from workers.claude_stream import ReplyBuilder, StreamError, server_sent_events
from workers.errors import QuestFailed, QuestHalted, TryLater

SPEND_LIMIT = "enforced_spend_limit_reached"
# Failures that mean nothing reached the API: no connection, or no free one in time.
NOT_SENT = (
    httpx2.ConnectError,
    httpx2.ConnectTimeout,
    httpx2.PoolTimeout,
    httpx2.UnsupportedProtocol,
    httpx2.ProxyError,
)
RETRY_AFTER_MAX_MS = 300_000
# Error types that pass: the status of an error sent mid-stream (an ``error`` event) is 200.
TRANSIENT = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})
# The longest a step waits on one call, whatever the stream does: under the step's time limit
# (``workers.step.STEP_TIME_LIMIT``, 10 minutes), so that a call that runs long ends as a
# failed call, charged by how far it got, before the consumer stops the whole step.
CALL_MAX_S = 540
LANE_CONNECTIONS = 64  # connections of one HTTP client (see ``Claude``)
# All of them are kept open between calls: a quest's next step reuses one instead of paying
# a new connection (TCP and TLS) each call. An idle one is dropped after KEEPALIVE_S, under
# the 5 s after which common servers (uvicorn, nginx's default is longer) close it: a request
# written on a connection the server is closing fails as "sent, never answered", which
# charges its whole reservation.
LANE_IDLE = LANE_CONNECTIONS
KEEPALIVE_S = 4.0


@dataclass(frozen=True)
class ClaudeRequest:
    """``system``: text, or text blocks (which may carry cache breakpoints)."""

    model: str
    max_tokens: int
    system: str | list[dict[str, Any]]
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    # the size of its body's JSON, when the request was derived from one whose size is known
    # (a marked copy of a long transcript need not be serialized again to be admitted)
    size: int | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def _size(self) -> int:
        if self.size is not None:
            return self.size
        return json_size({"system": self.system, "messages": self.messages, "tools": self.tools})

    def input_bound(self) -> int:
        """An upper bound of the input tokens, for when they cannot be counted: a token is at
        least one byte of the request."""
        return self._size

    @property
    def cache_writes(self) -> Literal["5m", "1h"] | None:
        """The longest TTL of the request's cache breakpoints, if it has any: its prompt may
        then be billed at that cache-write rate, dearer than plain input."""
        blocks = self.system if isinstance(self.system, list) else []
        blocks = [*blocks, *self.tools]
        for message in self.messages:
            content = message["content"]
            blocks += content if isinstance(content, list) else []
        ttls = {b["cache_control"].get("ttl", "5m") for b in blocks if "cache_control" in b}
        return "1h" if "1h" in ttls else "5m" if ttls else None


def json_size(value: object) -> int:
    """Bytes of ``value`` as the compact JSON the SDK sends."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class Sent(StrEnum):
    """How far a failed call got, which is what it may have cost."""

    nothing = "nothing"  # it never reached the API: not billed
    answered = "answered"  # the API answered with an error: not billed
    unanswered = "unanswered"  # sent, and no answer came: it may have been billed in full
    partly = "partly"  # its stream began and was cut: billed what the stream reported


@dataclass
class Progress:
    """How far a call got: whether its request left in full (the HTTP stack's trace), and
    what its stream reported — the prompt's usage (``message_start``), the output tokens
    (``message_delta``, cumulative), and its end (``message_stop``)."""

    request_sent: bool = False
    input_usage: dict[str, Any] | None = None
    output_tokens: int | None = None
    stopped: bool = False

    @property
    def sent(self) -> Sent:
        if self.input_usage is not None:
            return Sent.partly
        return Sent.unanswered if self.request_sent else Sent.nothing

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        """An httpcore ``trace`` extension: notes when the request's body has left in full
        (a request cut before that cannot have been processed)."""
        if event.endswith("send_request_body.complete"):
            self.request_sent = True


_progress: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "s2_claude_progress", default=None
)


async def _trace_request(request: httpx2.Request) -> None:
    """The HTTP client's request hook: the call's ``Progress`` traces what is sent."""
    progress = _progress.get()
    if progress is not None:
        request.extensions["trace"] = progress.trace


class ClaudeUnavailable(TryLater):
    """Claude could not be used now; the step tries again (``retry_after_ms`` if the API said
    when). ``sent`` and ``progress``: how far the call got."""

    def __init__(
        self,
        message: str,
        *,
        sent: Sent,
        progress: Progress | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(message, retry_after_ms=retry_after_ms)
        self.sent = sent
        self.progress = progress or Progress()


class ClaudeRejected(QuestFailed):
    """The API refused the request itself (400, 401, 403, 404, 413…): our request or our
    configuration is wrong, and trying again will not help. ``error_type``: the API's."""

    def __init__(
        self, message: str, *, status: int, error_type: str, sent: Sent, progress: Progress
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.sent = sent
        self.progress = progress


class ClaudeSpendLimit(QuestHalted):
    """The Anthropic account's spend limit is reached: no call succeeds until it is raised."""

    def __init__(self, *, sent: Sent, progress: Progress) -> None:
        super().__init__("the Anthropic account's spend limit is reached")
        self.sent = sent
        self.progress = progress


@dataclass(frozen=True)
class ClaudeReply:
    id: str
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: dict[str, Any]

    @property
    def text(self) -> str:
        return "\n".join(b["text"] for b in self.content if b.get("type") == "text").strip()

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b.get("type") == "tool_use"]


class Claude:
    def __init__(
        self,
        *,
        timeout_s: float,
        base_url: str | None = None,
        api_key: str | None = None,
        in_flight: int = LANE_CONNECTIONS,
    ) -> None:
        """``base_url`` and ``api_key``: the SDK's environment variables when not given.
        ``in_flight``: how many calls may be open at once; they are spread over clients of
        ``LANE_CONNECTIONS`` connections each, because the HTTP stack looks at every
        connection of its pool for each request, and one pool of a thousand costs a step
        more CPU than its whole store work."""
        lanes = max(1, -(-in_flight // LANE_CONNECTIONS))
        tls = httpx2.create_ssl_context()  # one for every lane: loading the CAs takes ~50 ms
        self._clients = [
            anthropic.AsyncAnthropic(
                base_url=base_url,
                api_key=api_key,
                timeout=timeout_s,
                max_retries=0,
                http_client=anthropic.DefaultAsyncHttpxClient(
                    timeout=timeout_s,
                    verify=tls,
                    limits=httpx2.Limits(
                        max_connections=LANE_CONNECTIONS,
                        max_keepalive_connections=LANE_IDLE,
                        keepalive_expiry=KEEPALIVE_S,
                    ),
                    event_hooks={"request": [_trace_request]},
                ),
            )
            for _ in range(lanes)
        ]
        self._lanes = itertools.cycle(self._clients)

    @property
    def _client(self) -> anthropic.AsyncAnthropic:
        return next(self._lanes)

    async def close(self) -> None:
        for client in self._clients:
            await client.close()

    async def count_input_tokens(
        self, request: ClaudeRequest, *, timeout_s: float = 5.0
    ) -> int | None:
        """The API's own count of the request's input tokens, or None if it cannot say now."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self._count(request, timeout_s)
        except (anthropic.APIError, TimeoutError):
            return None

    async def create(self, request: ClaudeRequest, progress: Progress) -> ClaudeReply:
        """One call, streamed; ``progress`` says how far it got if it fails or is cut.

        Failures become ``ClaudeUnavailable`` (worth retrying), ``QuestHalted`` (the account's
        spend limit) or ``ClaudeRejected`` (the request itself is wrong); a cancel of the
        calling task passes through."""
        try:
            async with asyncio.timeout(CALL_MAX_S):
                return await self._stream(request, progress)
        except Exception as exc:
            raise _classify(exc, progress) from None

    async def _count(self, request: ClaudeRequest, timeout_s: float) -> int:
        counted = await self._client.with_options(timeout=timeout_s).messages.count_tokens(
            model=request.model,
            system=request.system,  # type: ignore[arg-type]
            messages=request.messages,  # type: ignore[arg-type]
            tools=request.tools,  # type: ignore[arg-type]
        )
        return int(counted.input_tokens)

    async def _stream(self, request: ClaudeRequest, progress: Progress) -> ClaudeReply:
        """The SDK sends the request and raises the API's errors before the stream; the
        stream's events are read as JSON (``workers.claude_stream``)."""
        _progress.set(progress)  # this task's context: the request hook finds it
        async with self._client.messages.with_streaming_response.create(
            model=request.model,
            max_tokens=request.max_tokens,
            system=request.system,  # type: ignore[arg-type]
            messages=request.messages,  # type: ignore[arg-type]
            tools=request.tools,  # type: ignore[arg-type]
            stream=True,
        ) as response:
            building = ReplyBuilder()
            try:
                async for event, data in server_sent_events(response.iter_lines()):
                    building.feed(event, data)
                    progress.input_usage = building.input_usage
                    progress.output_tokens = building.output_tokens
            except StreamError as exc:  # as the SDK's own stream raises it
                raise anthropic.APIStatusError(
                    str(exc.body), response=response.http_response, body=exc.body
                ) from None
        if not building.stopped:  # the connection ended mid-reply: a cut, not a reply
            raise ClaudeUnavailable(
                "Claude's stream ended before message_stop", sent=progress.sent, progress=progress
            )
        progress.stopped = True
        body = building.reply()
        return ClaudeReply(
            id=str(body.get("id", "")),
            model=str(body.get("model", request.model)),
            content=list(body.get("content") or []),
            stop_reason=body.get("stop_reason"),
            usage=dict(body.get("usage") or {}),
        )


def _classify(exc: Exception, progress: Progress) -> Exception:
    """What a failed call means for the quest, and how far it got. Anything not foreseen
    (an SSE line that does not parse, say) is a failure of the call, not of the step:
    retried within the outage bound and charged by how far it got."""
    if isinstance(exc, ClaudeUnavailable):
        return exc
    if isinstance(exc, anthropic.APIStatusError):
        return _answered(exc, progress)
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        cause = _transport_cause(exc)
        sent = Sent.nothing if isinstance(cause, NOT_SENT) else progress.sent
        name = type(cause or exc).__name__
        return ClaudeUnavailable(f"Claude unreachable: {name}", sent=sent, progress=progress)
    if isinstance(exc, TimeoutError):
        return ClaudeUnavailable(
            f"Claude call ran past {CALL_MAX_S} s", sent=progress.sent, progress=progress
        )
    return ClaudeUnavailable(
        f"Claude call failed: {type(exc).__name__}", sent=progress.sent, progress=progress
    )


def _answered(exc: anthropic.APIStatusError, progress: Progress) -> Exception:
    """The API answered with an error — before the stream began, or as an ``error`` event in
    it (then what the stream reported may be billed)."""
    sent = progress.sent if progress.input_usage is not None else Sent.answered
    status, kind = exc.status_code, str(exc.type or "error")
    if exc.error_code == SPEND_LIMIT:
        return ClaudeSpendLimit(sent=sent, progress=progress)
    if status in (408, 409, 429) or status >= 500 or kind in TRANSIENT:
        return ClaudeUnavailable(
            f"Claude answered {status} {kind}; retrying later",
            sent=sent,
            progress=progress,
            retry_after_ms=_retry_after_ms(exc.response),
        )
    return ClaudeRejected(
        f"Claude refused the request ({status} {kind}): {(exc.api_message or '')[:300]}",
        status=status,
        error_type=kind,
        sent=sent,
        progress=progress,
    )


def _transport_cause(exc: BaseException) -> BaseException | None:
    """The transport error under the SDK's wrapper, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, httpx2.TransportError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _retry_after_ms(response: httpx2.Response) -> int | None:
    """When the API asked to be tried again: ``retry-after-ms``, ``retry-after`` in seconds or
    as an HTTP date; bounded."""
    headers = response.headers
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            wait = float(ms)
        elif (value := headers.get("retry-after")) is None:
            return None
        elif value.strip().replace(".", "", 1).isdigit():
            wait = float(value) * 1000
        else:
            wait = (parsedate_to_datetime(value).timestamp() - time.time()) * 1000
    except (TypeError, ValueError):
        return None
    return int(min(max(wait, 0), RETRY_AFTER_MAX_MS))
