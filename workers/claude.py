"""The Claude client: one Messages API call through the real anthropic SDK.

The SDK reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` itself, so the same code path
talks to the offline Claude in the demo and tests and to Anthropic in production. The reply
is kept as the API's own JSON, which is what the transcript stores and sends back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2

from workers.cancel import Interrupted, current_scope, track_network_stream
from workers.errors import QuestFailed, QuestHalted, TryLater

SPEND_LIMIT = "enforced_spend_limit_reached"


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


class ClaudeInterrupted(Interrupted):
    """The call was cut because the quest was cancelled. ``input_usage``: the prompt's usage
    from ``message_start`` if it arrived (the output is unknown: keep its reservation)."""

    def __init__(self, input_usage: dict[str, Any] | None) -> None:
        super().__init__("the Claude call was cut: the quest was cancelled")
        self.input_usage = input_usage


class ClaudeUnavailable(TryLater):
    """Claude could not be used now. ``answered``: the API replied with an error (such
    calls are not billed), as opposed to no reply at all (the call may have been billed)."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


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
        self, *, timeout_s: float, max_retries: int, client: anthropic.Anthropic | None = None
    ):
        self._client = client or anthropic.Anthropic(timeout=timeout_s, max_retries=max_retries)

    def count_input_tokens(self, request: ClaudeRequest, *, timeout_s: float = 5.0) -> int | None:
        """The API's own count of the request's input tokens, or None if it cannot say now."""
        try:
            counted = self._client.with_options(
                max_retries=0, timeout=timeout_s
            ).messages.count_tokens(
                model=request.model,
                system=request.system,
                messages=request.messages,  # type: ignore[arg-type]
                tools=request.tools,  # type: ignore[arg-type]
            )
        except anthropic.APIError:
            return None
        return int(counted.input_tokens)

    def create(self, request: ClaudeRequest) -> ClaudeReply:
        """One call, streamed, so a cancel can cut its connection (see ``workers.cancel``).

        Failures become ``ClaudeUnavailable`` (worth retrying), ``QuestHalted`` (the account's
        spend limit), ``QuestFailed`` (the request itself is wrong) or ``ClaudeInterrupted``
        (the quest was cancelled during the call)."""
        scope = current_scope()
        if scope is not None and scope.cancelled.is_set():
            raise ClaudeInterrupted(None)
        started: dict[str, Any] | None = None
        try:
            with self._client.messages.stream(
                model=request.model,
                max_tokens=request.max_tokens,
                system=request.system,
                messages=request.messages,  # type: ignore[arg-type]
                tools=request.tools,  # type: ignore[arg-type]
            ) as stream:
                track_network_stream(stream.response.extensions.get("network_stream"))
                for event in stream:
                    if event.type == "message_start":
                        started = event.message.usage.model_dump(exclude_none=True)
                message = stream.get_final_message()
        except Exception as exc:
            if scope is not None and scope.cancelled.is_set():
                raise ClaudeInterrupted(started) from None
            raise _classify(exc) from None
        body = message.model_dump(mode="json", exclude_none=True)
        return ClaudeReply(
            id=str(body.get("id", "")),
            model=str(body.get("model", request.model)),
            content=list(body.get("content") or []),
            stop_reason=body.get("stop_reason"),
            usage=dict(body.get("usage") or {}),
        )


def _classify(exc: Exception) -> Exception:  # noqa: PLR0911 - one answer per kind of failure
    """What a failed call means for the quest."""
    if isinstance(exc, anthropic.RateLimitError):
        if exc.error_code == SPEND_LIMIT:
            return QuestHalted("the Anthropic account's spend limit is reached")
        return ClaudeUnavailable("Claude rate limit; retrying later", answered=True)
    if isinstance(exc, anthropic.InternalServerError):
        return ClaudeUnavailable(f"Claude error {exc.status_code}; retrying later", answered=True)
    if isinstance(exc, anthropic.APIStatusError):
        if exc.status_code in (408, 409):
            return ClaudeUnavailable(
                f"Claude error {exc.status_code}; retrying later", answered=True
            )
        return QuestFailed(
            f"Claude refused the request ({exc.status_code} {exc.type or 'error'}): "
            f"{(exc.api_message or '')[:300]}"
        )
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return ClaudeUnavailable(f"Claude unreachable: {type(exc).__name__}", answered=False)
    return exc
