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
        """One call. Failures become ``ClaudeUnavailable`` (worth retrying), ``QuestHalted``
        (the account's spend limit) or ``QuestFailed`` (the request itself is wrong)."""
        try:
            raw = self._client.messages.with_raw_response.create(
                model=request.model,
                max_tokens=request.max_tokens,
                system=request.system,
                messages=request.messages,  # type: ignore[arg-type]
                tools=request.tools,  # type: ignore[arg-type]
            )
            body = raw.http_response.json()
        except anthropic.APIConnectionError as exc:
            raise ClaudeUnavailable(
                f"Claude unreachable: {type(exc).__name__}", answered=False
            ) from None
        except anthropic.RateLimitError as exc:
            if exc.error_code == SPEND_LIMIT:
                raise QuestHalted("the Anthropic account's spend limit is reached") from None
            raise ClaudeUnavailable("Claude rate limit; retrying later", answered=True) from None
        except anthropic.InternalServerError as exc:
            raise ClaudeUnavailable(
                f"Claude error {exc.status_code}; retrying later", answered=True
            ) from None
        except anthropic.APIStatusError as exc:
            if exc.status_code in (408, 409):
                raise ClaudeUnavailable(
                    f"Claude error {exc.status_code}; retrying later", answered=True
                ) from None
            raise QuestFailed(
                f"Claude refused the request ({exc.status_code} {exc.type or 'error'}): "
                f"{(exc.api_message or '')[:300]}"
            ) from None
        return ClaudeReply(
            id=str(body.get("id", "")),
            model=str(body.get("model", request.model)),
            content=list(body.get("content") or []),
            stop_reason=body.get("stop_reason"),
            usage=dict(body.get("usage") or {}),
        )
