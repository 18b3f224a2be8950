"""A step's Claude request: the system prompt, the transcript fitted to the model's context
window (``workers.context_window``) and its prompt-cache breakpoints (``workers.prompt_cache``).

Built in two parts: ``whole`` in the step's look (pure, from what the look read), ``prepare``
after it, outside any transaction, because fitting a long transcript asks the API for its
token count (a network call must not hold a connection or a row).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from guard import PriceTable
from store.quests import Step
from workers import context_window, prompt_cache
from workers.claude import ClaudeRequest, json_size
from workers.context_window import TooLong
from workers.errors import TryLater
from workers.step import transcript
from workers.tools import TOOL_RESULT_MAX_CHARS

SYSTEM_PROMPT = (
    "You are Ted, an AI agent working on behalf of the company {company} (id {company_id}). "
    "Use only this company's information and the tools offered. Before each tool call, say in "
    "one sentence why you are making it. When the goal is met, answer with the result."
)
# Tokens per byte when the API cannot count a long request: high, so that a transcript is
# elided too early rather than refused.
UNCOUNTED_TOKENS_PER_BYTE = 0.5
FIT_TRIES = 4  # elisions counted before a transcript that still does not fit fails


@dataclass(frozen=True)
class PromptPolicy:
    """``cache``: mark prompt-cache breakpoints (``S2_PROMPT_CACHE``); ``elide``: elide older
    tool results to fit the context window (``S2_TRANSCRIPT_ELISION``); without it a quest
    whose transcript outgrows the window fails when the API refuses it;
    ``tool_result_max_chars``: the most of a tool's result that reaches Claude
    (``S2_TOOL_RESULT_MAX_CHARS``, ``workers.tools.bounded``)."""

    max_tokens: int
    cache: bool = True
    elide: bool = True
    tool_result_max_chars: int = TOOL_RESULT_MAX_CHARS


@dataclass(frozen=True)
class Prepared:
    """The request to admit and send; ``counted``: the API's count of its input tokens, when
    it was asked for (admission then need not ask again); ``elided``: tool results elided."""

    request: ClaudeRequest
    counted: int | None = None
    elided: int = 0


CountTokens = Callable[[ClaudeRequest], Awaitable[int | None]]


class Prompts:
    """How a step's Claude request is built: one per worker process, from its settings
    (``workers.app.prompts``)."""

    def __init__(
        self, prices: PriceTable, policy: PromptPolicy, count_tokens: CountTokens | None = None
    ) -> None:
        self.prices = prices
        self.policy = policy
        self.count_tokens = count_tokens

    def whole(
        self,
        model: str,
        company_name: str,
        company_id: UUID,
        goal: str,
        steps: list[Step],
        tools: list[dict[str, Any]],
    ) -> ClaudeRequest:
        """The request with the whole transcript of ``steps``, unmarked."""
        return ClaudeRequest(
            model=model,
            max_tokens=self.policy.max_tokens,
            system=SYSTEM_PROMPT.format(company=company_name, company_id=company_id),
            messages=transcript(goal, steps),
            tools=tools,
        )

    async def prepare(
        self, request: ClaudeRequest, history: list[Step], now: datetime
    ) -> Prepared | TooLong:
        """``request`` fitted to the window and marked for the cache (as the policy says).
        Raises ``TryLater`` when only an estimate says the transcript cannot fit."""
        facts = self.prices.facts(request.model)
        fitted = Prepared(request)
        budget = context_window.budget(facts.context_window, request.max_tokens)
        if self.policy.elide and request.input_bound() > budget:  # a token is at least a byte
            fit = await self._fit(request, budget)
            if isinstance(fit, TooLong):
                return fit
            fitted = fit
        if not self.policy.cache or not isinstance(request.system, str):
            return fitted
        system, messages = prompt_cache.mark(
            request.system,
            fitted.request.messages,
            request.tools,
            ttl=prompt_cache.ttl_for(_since_last_call(history, now)),
            min_tokens=facts.cache_min_tokens,
        )
        base = fitted.request
        size = base.input_bound() + json_size(system) - json_size(request.system)
        for before, after in zip(base.messages, messages, strict=True):
            if after is not before:  # a message that carries a breakpoint
                size += json_size(after) - json_size(before)
        marked = ClaudeRequest(
            request.model, request.max_tokens, system, messages, request.tools, size
        )
        return Prepared(marked, fitted.counted, fitted.elided)

    async def _fit(self, request: ClaudeRequest, budget: int) -> Prepared | TooLong:
        """The request with older tool results elided until the API's count says it fits:
        elision saves by an estimate (the request's tokens a byte), which is short when the
        results elided are denser than the rest; then it elides a stride more and counts
        again. Only a count fails the quest: an estimate alone (the API could not count)
        makes the step wait and try again."""
        count = self.count_tokens or _never
        counted = await count(request)
        per_byte = (
            counted / request.input_bound() * 1.02
            if counted is not None
            else UNCOUNTED_TOKENS_PER_BYTE
        )
        total = counted if counted is not None else int(request.input_bound() * per_byte)
        elided, recounted = -1, total
        for further in range(FIT_TRIES):
            fit = context_window.fit(
                request.messages,
                total_tokens=total,
                budget=budget,
                tokens_per_byte=per_byte,
                further=further,
            )
            if isinstance(fit, TooLong):
                if counted is None:
                    raise TryLater(fit.reason + " (by an estimate)", retry_after_ms=5_000)
                return fit
            if not fit.elided:
                return Prepared(request, counted)
            if fit.elided == elided:  # nothing more to elide: the count said it is too long
                return TooLong(recounted, budget)
            smaller = ClaudeRequest(
                request.model, request.max_tokens, request.system, fit.messages, request.tools
            )
            again = await count(smaller) if counted is not None else None
            if again is None or again <= budget:
                return Prepared(smaller, again, fit.elided)
            elided, recounted = fit.elided, again
        return TooLong(recounted, budget)


async def _never(request: ClaudeRequest) -> int | None:
    return None


def _since_last_call(history: list[Step], now: datetime) -> timedelta | None:
    """How long ago the quest's latest Claude call answered (None before its first): what
    that call wrote to the cache was last touched then. A step's row is made when its reply
    is stored, before its tools run, so ``started_at`` is that time, and a tool's long wait
    (a provider's rate limit) counts in the gap."""
    replies = [s.started_at for s in history if s.content is not None]
    return now - max(replies) if replies else None
