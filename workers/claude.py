"""The Claude client: one Messages API call through the real anthropic SDK.

The SDK reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` itself, so the same code path
talks to the offline Claude in the demo and tests and to Anthropic in production. The reply
is kept as the API's own JSON, which is what the transcript stores and sends back.

Calls are the async SDK's, run on the process's ``CallLoop`` so that a cancel can cut one at
any point (see ``workers.call_loop``). The SDK does not retry (``max_retries=0``): the step
does, each attempt under its own charge key, so that what an attempt may have cost is known
from how it failed (``Sent``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

import anthropic
import httpx2

from workers.call_loop import CallLoop, CancelledError
from workers.cancel import Interrupted, current_scope
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


@dataclass(frozen=True)
class ClaudeRequest:
    model: str
    max_tokens: int
    system: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]

    def input_bound(self) -> int:
        """An upper bound of the input tokens, for when they cannot be counted: a token is at
        least one byte of the request."""
        body = {"system": self.system, "messages": self.messages, "tools": self.tools}
        return len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())


class Sent(StrEnum):
    """How far a failed call got, which is what it may have cost."""

    nothing = "nothing"  # it never reached the API: not billed
    answered = "answered"  # the API answered with an error: not billed
    unanswered = "unanswered"  # sent, and no answer came: it may have been billed in full
    partly = "partly"  # its stream began and was cut: billed what the stream reported


@dataclass
class Progress:
    """What a call's stream has reported so far: the prompt's usage (``message_start``) and
    the output tokens (``message_delta``, cumulative)."""

    input_usage: dict[str, Any] | None = None
    output_tokens: int | None = None

    @property
    def sent(self) -> Sent:
        return Sent.partly if self.input_usage is not None else Sent.unanswered


class ClaudeInterrupted(Interrupted):
    """The call was cut because the quest was cancelled."""

    def __init__(self, progress: Progress) -> None:
        super().__init__("the Claude call was cut: the quest was cancelled")
        self.progress = progress


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

    def __init__(self, message: str, *, status: int, error_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


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
        loop: CallLoop,
        timeout_s: float,
        client: anthropic.AsyncAnthropic | None = None,
    ) -> None:
        self._loop = loop
        self._client = (client or anthropic.AsyncAnthropic()).with_options(
            timeout=timeout_s, max_retries=0
        )

    def count_input_tokens(self, request: ClaudeRequest, *, timeout_s: float = 5.0) -> int | None:
        """The API's own count of the request's input tokens, or None if it cannot say now."""
        try:
            return self._loop.run(self._count(request, timeout_s))
        except (anthropic.APIError, CancelledError):
            return None

    def create(self, request: ClaudeRequest) -> ClaudeReply:
        """One call, streamed; a cancel cuts it wherever it is.

        Failures become ``ClaudeUnavailable`` (worth retrying), ``QuestHalted`` (the account's
        spend limit), ``ClaudeRejected`` (the request itself is wrong) or
        ``ClaudeInterrupted`` (the quest was cancelled during the call)."""
        scope = current_scope()
        progress = Progress()
        if scope is not None and scope.cancelled.is_set():
            raise ClaudeInterrupted(progress)
        try:
            return self._loop.run(self._stream(request, progress))
        except CancelledError:
            raise ClaudeInterrupted(progress) from None
        except Exception as exc:
            if scope is not None and scope.cancelled.is_set():
                raise ClaudeInterrupted(progress) from None
            raise _classify(exc, progress) from None

    async def _count(self, request: ClaudeRequest, timeout_s: float) -> int:
        counted = await self._client.with_options(timeout=timeout_s).messages.count_tokens(
            model=request.model,
            system=request.system,
            messages=request.messages,  # type: ignore[arg-type]
            tools=request.tools,  # type: ignore[arg-type]
        )
        return int(counted.input_tokens)

    async def _stream(self, request: ClaudeRequest, progress: Progress) -> ClaudeReply:
        async with self._client.messages.stream(
            model=request.model,
            max_tokens=request.max_tokens,
            system=request.system,
            messages=request.messages,  # type: ignore[arg-type]
            tools=request.tools,  # type: ignore[arg-type]
        ) as stream:
            async for event in stream:
                if event.type == "message_start":
                    progress.input_usage = event.message.usage.model_dump(exclude_none=True)
                elif event.type == "message_delta":
                    progress.output_tokens = event.usage.output_tokens
            message = await stream.get_final_message()
        body = message.model_dump(mode="json", exclude_none=True)
        return ClaudeReply(
            id=str(body.get("id", "")),
            model=str(body.get("model", request.model)),
            content=list(body.get("content") or []),
            stop_reason=body.get("stop_reason"),
            usage=dict(body.get("usage") or {}),
        )


def _classify(exc: Exception, progress: Progress) -> Exception:
    """What a failed call means for the quest, and how far it got."""
    if isinstance(exc, anthropic.APIStatusError):
        return _answered(exc, progress)
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        cause = _transport_cause(exc)
        sent = Sent.nothing if isinstance(cause, NOT_SENT) else progress.sent
        name = type(cause or exc).__name__
        return ClaudeUnavailable(f"Claude unreachable: {name}", sent=sent, progress=progress)
    return exc


def _answered(exc: anthropic.APIStatusError, progress: Progress) -> Exception:
    """The API answered with an error — before the stream began, or as an ``error`` event in
    it (then what the stream reported may be billed)."""
    sent = progress.sent if progress.input_usage is not None else Sent.answered
    status, kind = exc.status_code, str(exc.type or "error")
    if isinstance(exc, anthropic.RateLimitError) and exc.error_code == SPEND_LIMIT:
        return QuestHalted("the Anthropic account's spend limit is reached")
    if status in (408, 409, 429) or status >= 500 or kind in ("overloaded_error", "api_error"):
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
