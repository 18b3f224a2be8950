"""Transcripts that stay within the model's context window.

A quest's request carries its whole transcript, and a long quest's outgrows the window: the API
refuses the prompt, after the quest spent its budget on the way there. Before that, the
oldest tool results are elided *in the request*: each is replaced by a line saying what was
removed, in the same ``tool_result`` block (same ``tool_use_id``), so every tool_use/tool_result
pair stays valid. The stored transcript and the audit trail keep everything.

The elision point moves rarely, so the prompt cache keeps hitting: a request's prefix up to
the first elided result changes whenever the point moves, and everything after it is written
to the cache again. So the point is not moved a result at a time as the transcript grows; it
jumps by a quarter of the budget (``STRIDE``) at once, to a place that depends only on the
transcript's earlier results, and stays there for the next quarter's growth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.claude import json_size

ELIDED = (
    "[elided from this request to fit the model's context window: the {tool} result "
    "({chars} characters). The quest's stored transcript keeps it.]"
)
KEEP_RECENT = 2  # the tool results of the latest steps are never elided: Claude works on them
STRIDE = 4  # the elision point jumps by 1/STRIDE of the budget at a time
HEADROOM_TOKENS = 1_000  # for the estimate's error
BYTES_PER_TOKEN = 4  # the grid's unit: a stride is budget x 4 bytes / STRIDE


@dataclass(frozen=True)
class Fitted:
    """The messages to send; ``elided``: how many tool results were elided in them."""

    messages: list[dict[str, Any]]
    elided: int = 0


@dataclass(frozen=True)
class TooLong:
    """Even with every older tool result elided, the prompt would not fit."""

    tokens: int
    budget: int

    @property
    def reason(self) -> str:
        return (
            f"the quest's transcript no longer fits the model's context window: about "
            f"{self.tokens:,} tokens with every older tool result elided, for "
            f"{self.budget:,} available"
        )


def budget(context_window: int, max_tokens: int) -> int:
    """The prompt tokens a request may hold: the window less the reply's room and headroom."""
    return max(0, context_window - max_tokens - HEADROOM_TOKENS)


def fit(
    messages: list[dict[str, Any]],
    *,
    total_tokens: int,
    budget: int,
    tokens_per_byte: float,
    further: int = 0,
) -> Fitted | TooLong:
    """``messages`` as they fit in ``budget`` tokens, given that the whole request holds
    ``total_tokens`` and that a tool result's byte is about ``tokens_per_byte`` tokens;
    ``further``: strides more than that estimate asks for (it was short: the results elided
    held fewer tokens a byte than the request as a whole).

    The grid is in bytes of the results elided, a stride being a quarter of the budget at
    ``BYTES_PER_TOKEN``: its cut points depend only on the transcript's earlier results, so
    the estimate's drift from step to step moves the need, never the points."""
    need = total_tokens - budget
    if need <= 0 and not further:
        return Fitted(messages)
    stride = max(1, budget * BYTES_PER_TOKEN // STRIDE)
    need_bytes = max(0, int(need / tokens_per_byte))
    target = (-(-need_bytes // stride) + further) * stride
    saved, chosen = 0, []
    for candidate in _candidates(messages):
        if saved >= target:
            break
        chosen.append(candidate)
        saved += candidate[2]
    if saved < need_bytes:
        return TooLong(total_tokens - int(saved * tokens_per_byte), budget)
    out = list(messages)
    names = _tool_names(messages)
    for index, position, _ in chosen:
        if out[index] is messages[index]:  # copied once: the stored transcript is not touched
            out[index] = {**messages[index], "content": list(messages[index]["content"])}
        block = out[index]["content"][position]
        chars = len(_text(block.get("content")))
        note = ELIDED.format(tool=names.get(str(block.get("tool_use_id")), "tool"), chars=chars)
        out[index]["content"][position] = {**block, "content": note}
    return Fitted(out, len(chosen))


def _candidates(messages: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """The tool results that may be elided, oldest first, as (message, block, bytes saved)."""
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    recent = set(users[-KEEP_RECENT:])
    found = []
    for index in users:
        content = messages[index]["content"]
        if index in recent or not isinstance(content, list):
            continue
        for position, block in enumerate(content):
            if block.get("type") != "tool_result":
                continue
            gain = json_size(block.get("content")) - len(ELIDED.encode()) - 40
            if gain > 0:
                found.append((index, position, gain))
    return found


def _tool_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    return {
        str(b.get("id")): str(b.get("name"))
        for m in messages
        if m["role"] == "assistant" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_use"
    }


def _text(content: object) -> str:
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return "" if content is None else str(content)
