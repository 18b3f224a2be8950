"""The Claude client: one Messages API call through the real anthropic SDK.

The SDK reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` itself, so the same code path
talks to the offline Claude in the demo and tests and to Anthropic in production. The reply
is kept as the API's own JSON, which is what the transcript stores and sends back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anthropic

from workers.errors import QuestFailed, QuestHalted, TryLater

SPEND_LIMIT = "enforced_spend_limit_reached"


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

    def create(
        self,
        *,
        model: str,
        max_tokens: int,
        system: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
    ) -> ClaudeReply:
        """One call. Failures become ``TryLater`` (worth retrying), ``QuestHalted`` (the
        account's spend limit) or ``QuestFailed`` (the request itself is wrong)."""
        try:
            raw = self._client.messages.with_raw_response.create(
                model=model,
                max_tokens=max_tokens,
                system=system,
                messages=messages,  # type: ignore[arg-type]
                tools=tools,  # type: ignore[arg-type]
            )
            body = raw.http_response.json()
        except anthropic.APIConnectionError as exc:
            raise TryLater(f"Claude unreachable: {type(exc).__name__}") from None
        except anthropic.RateLimitError as exc:
            if exc.error_code == SPEND_LIMIT:
                raise QuestHalted("the Anthropic account's spend limit is reached") from None
            raise TryLater("Claude rate limit; retrying later") from None
        except anthropic.InternalServerError as exc:
            raise TryLater(f"Claude error {exc.status_code}; retrying later") from None
        except anthropic.APIStatusError as exc:
            if exc.status_code in (408, 409):
                raise TryLater(f"Claude error {exc.status_code}; retrying later") from None
            raise QuestFailed(
                f"Claude refused the request ({exc.status_code} {exc.type or 'error'}): "
                f"{(exc.api_message or '')[:300]}"
            ) from None
        return ClaudeReply(
            id=str(body.get("id", "")),
            model=str(body.get("model", model)),
            content=list(body.get("content") or []),
            stop_reason=body.get("stop_reason"),
            usage=dict(body.get("usage") or {}),
        )
