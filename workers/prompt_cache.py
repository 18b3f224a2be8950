"""Prompt-cache breakpoints: where a step's request asks Claude to cache its prefix.

Every step sends the tools, the system prompt and the whole transcript so far. Marked, step k
reads what steps 1..k-1 sent at a tenth of the input price instead of paying for it again, so
a quest's input cost grows with its steps instead of with their square. Three breakpoints, of
the API's four (its prefix order is tools, system, messages):

- the system prompt, after the tools: the same for every quest of a company on a model (the
  prompt names the company), so a quest's first step reads what the company's last quest wrote;
- the block that ended the previous step's request: what that step wrote, read back even when
  the step added more blocks than the API's lookback (20 blocks) reaches from the last one;
- the last block: what the next step reads.

A breakpoint whose prefix is below the model's minimum cacheable length is not marked (the API
would not cache it anyway). All breakpoints of a request share one TTL, so the API's rule that
longer-lived breakpoints come first always holds.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from workers.claude import json_size

Ttl = Literal["5m", "1h"]
# A 5-minute entry is refreshed by each read. When a quest's steps come further apart than
# this, the next step would find it gone and write the whole transcript again at 1.25x the
# input price, step after step; a one-hour entry costs 2x once and is then read at 0.1x.
LONG_GAP = timedelta(minutes=4)
BYTES_PER_TOKEN = 4  # the estimate of a prefix's length for the minimum: about 4 bytes a token


def ttl_for(gap: timedelta | None) -> Ttl:
    """The TTL for a step whose quest last moved ``gap`` ago: what a quest did lately (the slow
    tier's delays, a provider's rate limit, a retry's backoff, a Claude outage) is the best
    guess at how long its next step waits to read what this one writes."""
    return "1h" if gap is not None and gap >= LONG_GAP else "5m"


def mark(
    system: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    *,
    ttl: Ttl,
    min_tokens: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The system prompt (as text blocks) and messages with the breakpoints above; the
    caller's lists and blocks are left unchanged (they are the stored transcript)."""
    control = {"type": "ephemeral", "ttl": ttl}
    head = json_size(tools) + len(system.encode())
    system_blocks: list[dict[str, Any]] = [{"type": "text", "text": system}]
    if system and _tokens(head) >= min_tokens:
        system_blocks[0]["cache_control"] = control
    if not messages:
        return system_blocks, messages
    long_from = _long_from(head, messages, min_tokens)
    marked = list(messages)
    for index in {len(messages) - 1, _previous_end(messages)} - {None}:
        assert index is not None
        if index >= long_from and _has_content(messages[index]):
            marked[index] = _with_control_on_last_block(messages[index], control)
    return system_blocks, marked


def _long_from(head: int, messages: list[dict[str, Any]], min_tokens: int) -> int:
    """The first message whose prefix reaches ``min_tokens`` (``len(messages)`` if none):
    messages are measured only until then, so a prompt whose tools and system alone reach
    it costs no measuring at all."""
    total = head
    for index, message in enumerate(messages):
        if _tokens(total) >= min_tokens:
            return index
        total += json_size(message["content"])
        if _tokens(total) >= min_tokens:
            return index
    return len(messages)


def _previous_end(messages: list[dict[str, Any]]) -> int | None:
    """The last message of the previous step's request: the latest user message before the
    last message (a step's request ends with the tool results it answers, or with a reply it
    continues after ``pause_turn``)."""
    for index in range(len(messages) - 2, -1, -1):
        if messages[index]["role"] == "user":
            return index
    return None


def _has_content(message: dict[str, Any]) -> bool:
    """Whether the message's last block can carry a breakpoint (not an empty text)."""
    content = message["content"]
    if not isinstance(content, list):
        return bool(content)
    return bool(content) and not (content[-1].get("type") == "text" and not content[-1].get("text"))


def _with_control_on_last_block(message: dict[str, Any], control: dict[str, str]) -> dict[str, Any]:
    content = message["content"]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    blocks[-1] = {**blocks[-1], "cache_control": control}
    return {**message, "content": blocks}


def _tokens(size: int) -> int:
    return size // BYTES_PER_TOKEN
