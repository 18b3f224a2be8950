"""Prompt caching as Anthropic's Messages API does it, written from its public reference.

**Blocks.** A prompt is read in the order tools → system → messages, one block at a time:
each tool definition is a block; ``system`` is one block (a string) or one per text block (a
list); each message content block is one, and a string ``content`` is one text block (the
string is shorthand for ``[{"type": "text", "text": ...}]`` upstream, and counts and caches
the same here). A block's tokens are ``approx_tokens`` of its compact, key-sorted JSON
without its ``cache_control``, and the first block of each message also carries that
message's ``MESSAGE_TOKENS`` (its role and framing); a prompt's input tokens are the sum over
its blocks. ``count_tokens`` and ``/v1/messages`` use this same sum.

**Breakpoints.** ``cache_control`` (``{"type": "ephemeral"}``, optional ``"ttl": "5m" |
"1h"``, default 5m) may sit on a tool, a system text block, a message content block other
than thinking, or a block inside a ``tool_result``'s content (a breakpoint at the end of the
``tool_result`` here). A top-level ``cache_control`` (automatic caching) puts one on the last
block that can take one, unless that block carries its own. At most 4 breakpoints; a 1h one
may not follow a 5m one; none on an empty text block. Anything else is a 400, as upstream.

**Cache.** Each block's prefix (everything up to and including it) is named by a running
SHA-256 over the blocks, seeded with the model and a hash of the API key, so entries are
per key and per model and the key itself is never kept. For each breakpoint the cache looks
back over its block and the 19 before it for the longest cached, unexpired prefix; the
longest over all breakpoints is read (``cache_read_input_tokens``), and every hit is
refreshed by its own TTL. Every breakpoint past the read point whose prefix reaches the
model's minimum (``minimum_cacheable_tokens``; shorter ones are silently not cached) is
written with its TTL: ``cache_creation_input_tokens`` runs from the read point to the last
breakpoint written, the part up to the last 1h breakpoint written counted as 1h and the rest
as 5m; ``input_tokens`` is what remains. TTLs are 300 s and 3600 s on the clock the cache is
given; an app's cache keeps at most ``MAX_ENTRIES`` entries, dropping the oldest (and any
expired ones at the front) when it writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

TTL_SECONDS: Mapping[str, float] = {"5m": 300.0, "1h": 3600.0}
MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
"""A breakpoint finds a cached prefix ending at its own block or one of the 19 before it."""
CONTEXT_WINDOW = 200_000
"""Every model's context window, in input tokens."""
MAX_ENTRIES = 50_000
MESSAGE_TOKENS = 8
"""Each message's own tokens (role and framing): about its JSON's ``{"role": "assistant",
"content": []}``, so a conversation counts much as its whole JSON does."""

_UNCACHEABLE = frozenset({"thinking", "redacted_thinking"})
_MODEL = re.compile(
    r"claude-(?:(?P<family>opus|sonnet|haiku)-(?P<major>\d+)(?:-(?P<minor>\d{1,2}))?"
    r"|(?P<old_major>\d+)(?:-(?P<old_minor>\d{1,2}))?-(?P<old_family>opus|sonnet|haiku))"
    r"(?:-\d{8}|-latest)?"
)


def approx_tokens(data: str | bytes) -> int:
    """ceil(UTF-8 bytes / 4): cheap, deterministic, and close enough for budgets and tests."""
    return tokens_in(len(data) if isinstance(data, bytes) else len(data.encode()))


def tokens_in(size: int) -> int:
    """``approx_tokens`` of ``size`` bytes."""
    return -(-size // 4)


def minimum_cacheable_tokens(model: str) -> int:
    """The shortest prefix the model caches (public docs): 4096 for Opus 4.5 and later and
    Haiku 4.5 and later, 2048 for older Haiku, 1024 for Sonnet, older Opus and unknown names."""
    found = _MODEL.fullmatch(model)
    if found is None:
        return 1024
    family = found["family"] or found["old_family"]
    major = int(found["major"] or found["old_major"])
    minor = int(found["minor"] or found["old_minor"] or 0)
    if family in ("opus", "haiku") and (major, minor) >= (4, 5):
        return 4096
    return 2048 if family == "haiku" else 1024


class InvalidPrompt(ValueError):
    """A prompt the API refuses with a 400 ``invalid_request_error``; the message says why."""


@dataclass(frozen=True, slots=True)
class Breakpoint:
    path: str
    """Where its ``cache_control`` is, e.g. ``messages.2.content.0.cache_control``."""
    ttl: str


@dataclass(frozen=True, slots=True)
class Block:
    role: str
    """``tool``, ``system``, ``user`` or ``assistant``: part of the prefix's identity."""
    canonical: bytes
    """Compact, key-sorted JSON, ``cache_control`` left out."""
    tokens: int
    breakpoints: tuple[Breakpoint, ...]
    cacheable: bool
    """Whether a breakpoint may sit on it (not on thinking, nor on empty text)."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """A request's prompt as blocks in prefix order; ``tokens`` is its input token count."""

    blocks: tuple[Block, ...]
    tokens: int


def read_prompt(body: Mapping[str, Any]) -> Prompt:
    """The blocks of an already well-formed request body (its ``tools``, ``system`` and
    ``messages`` have the right shapes); raises ``InvalidPrompt`` for bad ``cache_control``."""
    blocks = [
        *(_block("tool", f"tools.{i}", tool) for i, tool in enumerate(body.get("tools") or ())),
        *_system_blocks(body.get("system")),
        *_message_blocks(body["messages"]),
    ]
    if (automatic := body.get("cache_control")) is not None:
        _mark_automatically(blocks, Breakpoint("cache_control", _ttl("cache_control", automatic)))
    _check_breakpoints([mark for block in blocks for mark in block.breakpoints])
    return Prompt(tuple(blocks), sum(block.tokens for block in blocks))


def _mark_automatically(blocks: list[Block], mark: Breakpoint) -> None:
    """Top-level ``cache_control``: a breakpoint on the last block that can take one, unless
    that block already has its own."""
    for index in range(len(blocks) - 1, -1, -1):
        if blocks[index].cacheable:
            if not blocks[index].breakpoints:
                blocks[index] = dataclasses.replace(blocks[index], breakpoints=(mark,))
            return


def _system_blocks(system: object) -> Iterator[Block]:
    if isinstance(system, str):
        yield _block("system", "system", {"type": "text", "text": system})
    elif isinstance(system, list):
        for index, block in enumerate(system):
            yield _block("system", f"system.{index}", block)


def _message_blocks(messages: Sequence[Mapping[str, Any]]) -> Iterator[Block]:
    for index, message in enumerate(messages):
        content, role = message["content"], message["role"]
        if isinstance(content, str):  # shorthand for one text block (with no cache_control)
            content = [{"type": "text", "text": content}]
        for position, block in enumerate(content):
            extra = MESSAGE_TOKENS if position == 0 else 0
            yield _block(role, f"messages.{index}.content.{position}", block, extra)


def _block(role: str, path: str, value: Mapping[str, Any], extra_tokens: int = 0) -> Block:
    marks: list[Breakpoint] = []
    core = {key: item for key, item in value.items() if key != "cache_control"}
    inner = value.get("content")
    if value.get("type") == "tool_result" and isinstance(inner, list):
        for index, block in enumerate(inner):
            if isinstance(block, Mapping):
                marks += _marks(f"{path}.content.{index}", block)
        core["content"] = [_without_mark(block) for block in inner]
    marks += _marks(path, value)
    canonical = json.dumps(core, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    encoded = canonical.encode()
    tokens = approx_tokens(encoded) + extra_tokens
    return Block(role, encoded, tokens, tuple(marks), _cacheable(value))


def _cacheable(block: Mapping[str, Any]) -> bool:
    kind = block.get("type")
    return kind not in _UNCACHEABLE and (kind != "text" or bool(block.get("text")))


def _without_mark(block: object) -> object:
    if not isinstance(block, Mapping):
        return block
    return {key: item for key, item in block.items() if key != "cache_control"}


def _marks(path: str, block: Mapping[str, Any]) -> list[Breakpoint]:
    control = block.get("cache_control")
    if control is None:
        return []
    where = f"{path}.cache_control"
    kind = block.get("type")
    if kind in _UNCACHEABLE:
        raise InvalidPrompt(f"{where}: cache_control cannot be set on {kind} blocks")
    ttl = _ttl(where, control)
    if not _cacheable(block):
        raise InvalidPrompt(f"{path}.text: cache_control cannot be set for empty text blocks")
    return [Breakpoint(where, ttl)]


def _ttl(where: str, control: object) -> str:
    if not isinstance(control, Mapping):
        raise InvalidPrompt(f"{where}: Input should be a valid dictionary or object")
    if control.get("type") != "ephemeral":
        raise InvalidPrompt(f"{where}.type: Input should be 'ephemeral'")
    for key in control:
        if key not in ("type", "ttl"):
            raise InvalidPrompt(f"{where}.{key}: Extra inputs are not permitted")
    ttl = control.get("ttl", "5m")
    if ttl not in TTL_SECONDS:
        raise InvalidPrompt(f"{where}.ttl: Input should be '5m' or '1h'")
    return str(ttl)


def _check_breakpoints(marks: Sequence[Breakpoint]) -> None:
    if len(marks) > MAX_BREAKPOINTS:
        raise InvalidPrompt(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(marks)}."
        )
    short: Breakpoint | None = None
    for mark in marks:
        if mark.ttl == "5m":
            short = short or mark
        elif short is not None:
            raise InvalidPrompt(
                f"{mark.path}: a cache_control with ttl '1h' cannot come after one with ttl "
                f"'5m' ({short.path}): in the order tools, system, messages, longer TTLs "
                "must come first."
            )


# --- the cache ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheUsage:
    """A request's input tokens as ``usage`` reports them."""

    input_tokens: int
    cache_read_input_tokens: int = 0
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0

    @property
    def cache_creation_input_tokens(self) -> int:
        return self.ephemeral_5m_input_tokens + self.ephemeral_1h_input_tokens


@dataclass(slots=True)
class _Entry:
    ttl_s: float
    expires_at: float


class PromptCache:
    """One app's cached prefixes, by prefix digest, oldest first."""

    def __init__(self, clock: Callable[[], float], max_entries: int = MAX_ENTRIES) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def use(self, prompt: Prompt, *, model: str, api_key: str) -> CacheUsage:
        """Reads the longest cached prefix, writes the breakpoints past it, and says so."""
        marks: dict[int, str] = {}  # block index -> TTL; a 1h mark comes first at a block
        for index, block in enumerate(prompt.blocks):
            for mark in block.breakpoints:
                marks.setdefault(index, mark.ttl)
        if not marks:
            return CacheUsage(prompt.tokens)
        now = self._clock()
        digests = list(_prefix_digests(prompt.blocks, model, api_key))
        ends = list(accumulate(block.tokens for block in prompt.blocks))
        read_at = max((self._hit(digests, index, now) for index in marks), default=-1)
        read = ends[read_at] if read_at >= 0 else 0
        written = hour = read
        minimum = minimum_cacheable_tokens(model)
        for index, ttl in marks.items():
            if index <= read_at or ends[index] < minimum:
                continue
            self._put(digests[index], TTL_SECONDS[ttl], now)
            written = ends[index]
            if ttl == "1h":
                hour = written
        return CacheUsage(prompt.tokens - written, read, written - hour, hour - read)

    def _hit(self, digests: Sequence[bytes], index: int, now: float) -> int:
        """The longest cached prefix within the breakpoint's lookback (refreshed), or -1."""
        for at in range(index, max(-1, index - LOOKBACK_BLOCKS), -1):
            entry = self._entries.get(digests[at])
            if entry is None:
                continue
            if entry.expires_at <= now:
                del self._entries[digests[at]]
                continue
            entry.expires_at = now + entry.ttl_s
            self._entries.move_to_end(digests[at])
            return at
        return -1

    def _put(self, digest: bytes, ttl_s: float, now: float) -> None:
        self._entries.pop(digest, None)
        while self._entries:
            oldest, entry = next(iter(self._entries.items()))
            if entry.expires_at > now and len(self._entries) < self._max_entries:
                break
            del self._entries[oldest]
        self._entries[digest] = _Entry(ttl_s, now + ttl_s)


def _prefix_digests(blocks: Iterable[Block], model: str, api_key: str) -> Iterator[bytes]:
    """Each block's prefix digest: a running SHA-256 seeded with the model and the key's hash."""
    running = hashlib.sha256()
    for part in (b"offline-claude prompt cache", model.encode(), _key_hash(api_key)):
        running.update(_framed(part))
    for block in blocks:
        running.update(_framed(block.role.encode()))
        running.update(_framed(block.canonical))
        yield running.copy().digest()


def _key_hash(api_key: str) -> bytes:
    return hashlib.sha256(api_key.encode()).digest()


def _framed(part: bytes) -> bytes:
    return len(part).to_bytes(8, "big") + part
