"""The offline Claude's HTTP side: Anthropic's Messages API wire protocol on Starlette.

It answers ``POST /v1/messages`` (JSON or Server-Sent Events) and
``POST /v1/messages/count_tokens`` the way anthropic-version 2026-10-21 does, so the real
``anthropic`` SDK can drive quests without the network. Replies come from ``scripts.py``;
prompt caching and the input token count from ``prompt_cache.py``.

Token counts use one documented approximation, ``approx_tokens``: ceil(UTF-8 bytes / 4).
Input is counted block by block (``prompt_cache``); output is the text of text blocks plus
name and JSON input of tool_use blocks. Ids are derived from a SHA-256 of the compact,
key-sorted JSON of the request's ``system``, ``messages`` and ``tools``, so identical
requests get identical replies. A prompt longer than the context window is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from standins.offline_claude import prompt_cache
from standins.offline_claude.prompt_cache import (
    CONTEXT_WINDOW,
    CacheUsage,
    InvalidPrompt,
    PromptCache,
    tokens_in,
)
from standins.offline_claude.scripts import BUILTIN_SCRIPTS, Failure, Script, Text, Turn

DEFAULT_SCRIPT = "answer"
MARKER = re.compile(r"\[script:([A-Za-z0-9_.-]+)\]")
"""Selects a script: ``[script:NAME]`` anywhere in the first user message's text."""

_SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
_PING_EVERY_S = 5.0
_GOAL_CHARS = 200
_CHUNK_CHARS = 32
_MAX_TRACKED_REQUESTS = 10_000
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _dumps(value: object, *, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)


def _b62(data: bytes, width: int) -> str:
    number = int.from_bytes(data, "big")
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(_B62[digit])
    return "".join(digits)


def _stop_details(stop_reason: str | None) -> dict[str, Any] | None:
    """Upstream, only a refusal carries ``stop_details`` (a ``RefusalStopDetails``)."""
    if stop_reason != "refusal":
        return None
    return {"type": "refusal", "category": None, "explanation": None}


def _request_id() -> str:
    return "req_01" + _b62(os.urandom(16), 22)


# --- errors ---------------------------------------------------------------------------


class ApiError(Exception):
    """An error reply in the API's shape; raised anywhere in a handler."""

    def __init__(
        self, status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = dict(headers or {})


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def _error_response(error: ApiError, hold_s: float = 0.0) -> Response:
    request_id = _request_id()
    payload = {
        "type": "error",
        "error": {"type": error.kind, "message": error.message},
        "request_id": request_id,
    }
    return _json_response(
        error.status, payload, {**error.headers, "request-id": request_id}, hold_s
    )


_HTTP_ERROR_KINDS = {404: "not_found_error", 413: "request_too_large"}


async def _on_api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error_response(exc)


async def _on_http_error(_: Request, exc: Exception) -> Response:
    """Unknown routes and methods answer in the API's error shape too."""
    assert isinstance(exc, HTTPException)
    kind = _HTTP_ERROR_KINDS.get(exc.status_code, "invalid_request_error")
    return _error_response(ApiError(exc.status_code, kind, exc.detail, exc.headers))


async def _on_crash(_: Request, exc: Exception) -> Response:
    return _error_response(ApiError(500, "api_error", "Internal server error"))


# --- responses --------------------------------------------------------------------------


async def _unless_disconnected(receive: Receive, work: Awaitable[None]) -> None:
    """Runs ``work`` until it ends or the client hangs up, so a held reply frees its task."""

    async def hang_up() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    worker = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(hang_up())
    try:
        await asyncio.wait((worker, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        worker.cancel()
        watcher.cancel()
        outcome, _ = await asyncio.gather(worker, watcher, return_exceptions=True)
    if isinstance(outcome, Exception) and not isinstance(outcome, OSError):
        raise outcome  # a bug, not a hang-up: let Starlette log it


class _HeldResponse(Response):
    """A response (JSON, or a whole event stream) begun after ``hold_s`` seconds, or never if
    the client leaves first."""

    def __init__(self, inner: Response, hold_s: float) -> None:
        super().__init__(status_code=inner.status_code)
        self._inner = inner
        self._hold_s = hold_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_later() -> None:
            await asyncio.sleep(self._hold_s)
            await self._inner(scope, receive, send)

        await _unless_disconnected(receive, send_later())


class _EventStream(StreamingResponse):
    """SSE that stops quietly when the client closes the stream mid-way."""

    def __init__(self, events: AsyncGenerator[bytes, None], request_id: str) -> None:
        headers = {"request-id": request_id, "cache-control": "no-cache"}
        super().__init__(events, headers=headers, media_type="text/event-stream")
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await _unless_disconnected(receive, self.stream_response(send))
        finally:
            await self._events.aclose()


def _json_response(
    status: int, payload: object, headers: Mapping[str, str], hold_s: float = 0.0
) -> Response:
    response = Response(_dumps(payload), status, headers, "application/json")
    return _HeldResponse(response, hold_s) if hold_s > 0 else response


# --- request validation -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prompt:
    """What the model reads: its blocks (counted and cached) and its JSON (hashed for ids)."""

    model: str
    messages: list[dict[str, Any]]
    blocks: prompt_cache.Prompt
    serialized: bytes


def _api_key(request: Request) -> str:
    """The SDK sends ``Authorization: Bearer <key>``; ``x-api-key`` works too, as upstream."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if key := request.headers.get("x-api-key", "").strip():
        return key
    raise ApiError(401, "authentication_error", "Missing or empty bearer token.")


async def _read_body(request: Request) -> dict[str, Any]:
    if not request.headers.get("anthropic-version"):
        raise _invalid("anthropic-version: header is required")
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise _invalid("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    return body


def _check_content(index: int, content: object) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid(f"messages.{index}.content: Input should be a string or a list of blocks")
    for position, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _invalid(f"messages.{index}.content.{position}: Input should be a block object")


def _check_tool_results(messages: list[dict[str, Any]]) -> None:
    """Every tool_use must be answered by a tool_result in the very next message, as upstream."""
    pending: set[str] = set()
    for index, message in enumerate(messages):
        content = message["content"]
        blocks = content if isinstance(content, list) else []
        if message["role"] == "assistant":
            pending = {str(b.get("id")) for b in blocks if b["type"] == "tool_use"}
            continue
        answered = {str(b.get("tool_use_id")) for b in blocks if b["type"] == "tool_result"}
        if stray := answered - pending:
            raise _invalid(
                f"messages.{index}.content: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {', '.join(sorted(stray))}. Each `tool_result` block must have a "
                "corresponding `tool_use` block in the previous message."
            )
        if missing := pending - answered:
            raise _invalid(
                f"messages.{index - 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(sorted(missing))}. Each `tool_use` block must "
                "have a corresponding `tool_result` block in the next message."
            )
        pending = set()


def _check_messages(messages: object) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages: at least one message is required")
    expected = "user"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _invalid(f"messages.{index}: expected an object with role 'user' or 'assistant'")
        if index == 0 and message["role"] != "user":
            raise _invalid('messages: first message must use the "user" role')
        if message["role"] != expected:
            raise _invalid(
                'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{message["role"]}" roles in a row'
            )
        _check_content(index, message.get("content"))
        expected = "assistant" if expected == "user" else "user"
    _check_tool_results(messages)
    return messages


def _check_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    if isinstance(system, list) and all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        for b in system
    ):
        return
    raise _invalid("system: Input should be a string or a list of text blocks")


def _check_tools(tools: object) -> None:
    if tools is None:
        return
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) and t["name"] for t in tools
    ):
        raise _invalid("tools: Input should be a list of tool objects with a name")
    names = [t["name"] for t in tools]
    if len(set(names)) != len(names):
        raise _invalid("tools: Tool names must be unique.")


def _read_prompt(body: Mapping[str, Any]) -> _Prompt:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model: Field required")
    messages = _check_messages(body.get("messages"))
    _check_system(body.get("system"))
    _check_tools(body.get("tools"))
    try:
        blocks = prompt_cache.read_prompt(body)
    except InvalidPrompt as exc:
        raise _invalid(str(exc)) from None
    seen = {key: body[key] for key in ("system", "messages", "tools") if key in body}
    return _Prompt(model, messages, blocks, _dumps(seen, sort_keys=True).encode())


@dataclass(frozen=True, slots=True)
class _Call:
    prompt: _Prompt
    max_tokens: int
    stop_sequences: tuple[str, ...]
    stream: bool


def _read_call(body: Mapping[str, Any]) -> _Call:
    for name in _SAMPLING_PARAMS:
        if name in body:
            raise _invalid(f"{name}: not supported by anthropic-version 2026-10-21; remove it")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("max_tokens: Input should be an integer greater than or equal to 1")
    stops = body.get("stop_sequences", [])
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise _invalid("stop_sequences: Input should be a list of non-empty strings")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict) or not isinstance(metadata.get("user_id", ""), str | None):
        raise _invalid("metadata: Input should be an object with an optional string user_id")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream: Input should be a valid boolean")
    return _Call(_read_prompt(body), max_tokens, tuple(stops), stream)


# --- replies ----------------------------------------------------------------------------


def _first_user_text(message: Mapping[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "\n".join(
        b["text"] for b in content if b["type"] == "text" and isinstance(b.get("text"), str)
    )


def _select(scripts: Mapping[str, Script], text: str) -> Script:
    found = MARKER.search(text)
    name = found.group(1) if found else DEFAULT_SCRIPT
    if name not in scripts:
        raise _invalid(f"Unknown offline script {name!r}; known: {', '.join(sorted(scripts))}")
    return scripts[name]


def _goal(text: str) -> str:
    goal = " ".join(MARKER.sub(" ", text).split())
    return goal if len(goal) <= _GOAL_CHARS else goal[: _GOAL_CHARS - 1] + "…"


def _fills(goal: str, messages: Sequence[Mapping[str, Any]], number: int) -> dict[str, str]:
    """What the placeholders of a turn stand for in this request: ``{goal}``, ``{turn}``,
    ``{arg1}``..``{arg9}`` (the goal's words) and ``{last_result}`` (the text of the last
    ``tool_result`` in the request, at most 500 characters)."""
    words = goal.split()
    fills = {"goal": goal, "turn": str(number), "last_result": _last_result(messages)}
    fills |= {f"arg{i}": words[i - 1] if i <= len(words) else "" for i in range(1, 10)}
    return fills


def _last_result(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        content = message.get("content")
        for block in reversed(content) if isinstance(content, list) else []:
            if isinstance(block, Mapping) and block.get("type") == "tool_result":
                inner = block.get("content")
                if isinstance(inner, list):
                    inner = " ".join(b.get("text", "") for b in inner if isinstance(b, Mapping))
                return str(inner or "")[:500]
    return ""


def _fill(value: object, fills: Mapping[str, str]) -> object:
    """Fills the placeholders (``_fills``) in strings, however deep in a tool input they sit."""
    if isinstance(value, str):
        if "{" not in value:
            return value
        for name, text in fills.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, Mapping):
        return {key: _fill(item, fills) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_fill(item, fills) for item in value]
    return value


def _render(turn: Turn, digest: bytes, fills: Mapping[str, str]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for index, block in enumerate(turn.content):
        if isinstance(block, Text):
            blocks.append({"type": "text", "text": _fill(block.text, fills)})
        else:
            seed = hashlib.sha256(digest + index.to_bytes(4, "big")).digest()
            blocks.append(
                {
                    "type": "tool_use",
                    "id": "toolu_01" + _b62(seed, 22),
                    "name": block.name,
                    "input": _fill(block.input, fills),
                }
            )
    return blocks


def _size(block: Mapping[str, Any]) -> int:
    if block["type"] == "text":
        return len(block["text"].encode())
    return len(block["name"].encode()) + len(_dumps(block["input"]).encode())


def _cut_at_stop_sequence(
    blocks: list[dict[str, Any]], stops: tuple[str, ...]
) -> tuple[list[dict[str, Any]], str | None]:
    """Ends the reply before the first requested stop sequence, as the model would."""
    for index, block in enumerate(blocks):
        if block["type"] != "text":
            continue
        hits = [(block["text"].find(s), s) for s in stops if s in block["text"]]
        if hits:
            at, stop = min(hits)
            head = [*blocks[:index], {"type": "text", "text": block["text"][:at]}]
            return [b for b in head if b["type"] != "text" or b["text"]], stop
    return blocks, None


def _cut_to_budget(blocks: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """Keeps what fits in ``budget`` bytes; text is cut, a tool_use that does not fit is dropped."""
    kept: list[dict[str, Any]] = []
    for block in blocks:
        size = _size(block)
        if size <= budget:
            kept.append(block)
            budget -= size
            continue
        if block["type"] == "text" and budget > 0:
            text = block["text"].encode()[:budget].decode(errors="ignore")
            if text:
                kept.append({"type": "text", "text": text})
        break
    return kept


@dataclass(frozen=True, slots=True)
class _Reply:
    id: str
    model: str
    content: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    usage: dict[str, Any]
    hold_s: float
    error_mid_stream: str | None = None
    cut_mid_stream: bool = False

    def message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.content,
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "stop_details": _stop_details(self.stop_reason),
            "usage": self.usage,
        }


def _usage(cache: CacheUsage, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": cache.input_tokens,
        "cache_creation_input_tokens": cache.cache_creation_input_tokens,
        "cache_read_input_tokens": cache.cache_read_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache.ephemeral_5m_input_tokens,
            "ephemeral_1h_input_tokens": cache.ephemeral_1h_input_tokens,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _reply(
    call: _Call, turn: Turn, digest: bytes, fills: Mapping[str, str], cache: CacheUsage
) -> _Reply:
    blocks = _render(turn, digest, fills)
    stop_reason: str = turn.stop_reason
    stop_sequence = turn.stop_sequence
    if call.stop_sequences:
        blocks, hit = _cut_at_stop_sequence(blocks, call.stop_sequences)
        if hit is not None:
            stop_reason, stop_sequence = "stop_sequence", hit
    budget = call.max_tokens * 4
    if sum(_size(b) for b in blocks) > budget:
        blocks = _cut_to_budget(blocks, budget)
        stop_reason, stop_sequence = "max_tokens", None
    output_tokens = max(1, tokens_in(sum(_size(b) for b in blocks)))
    usage = _usage(cache, output_tokens)
    message_id = "msg_01" + _b62(digest, 22)
    return _Reply(
        message_id,
        call.prompt.model,
        blocks,
        stop_reason,
        stop_sequence,
        usage,
        turn.hold_s,
        turn.error_mid_stream,
        turn.cut_mid_stream,
    )


# --- server-sent events -------------------------------------------------------------------


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {_dumps(data)}\n\n".encode()


_PING = _sse("ping", {"type": "ping"})
_DELTA_USAGE_KEYS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


def _chunks(text: str) -> list[str]:
    return [text[i : i + _CHUNK_CHARS] for i in range(0, len(text), _CHUNK_CHARS)]


def _block_events(index: int, block: Mapping[str, Any]) -> list[bytes]:
    if block["type"] == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in _chunks(block["text"])]
    else:
        start = {**block, "input": {}}
        pieces = ["", *_chunks(_dumps(block["input"]))]
        deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
    events = [_sse("content_block_start", _block_event("start", index, content_block=start))]
    events += [_sse("content_block_delta", _block_event("delta", index, delta=d)) for d in deltas]
    events.append(_sse("content_block_stop", _block_event("stop", index)))
    return events


def _block_event(kind: str, index: int, **fields: object) -> dict[str, Any]:
    return {"type": f"content_block_{kind}", "index": index, **fields}


async def _events(reply: _Reply) -> AsyncGenerator[bytes, None]:
    """The event sequence the real API streams, holding (with pings) after message_start."""
    started = {
        **reply.message(),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "stop_details": None,
        "usage": {**reply.usage, "output_tokens": 1},
    }
    yield _sse("message_start", {"type": "message_start", "message": started})
    yield _PING
    loop = asyncio.get_running_loop()
    deadline = loop.time() + reply.hold_s
    while (left := deadline - loop.time()) > 0:
        await asyncio.sleep(min(left, _PING_EVERY_S))
        if deadline > loop.time():
            yield _PING
    if reply.cut_mid_stream:
        return
    if reply.error_mid_stream is not None:
        error = {"type": reply.error_mid_stream, "message": "Scripted error mid-stream."}
        yield _sse("error", {"type": "error", "error": error})
        return
    for index, block in enumerate(reply.content):
        for event in _block_events(index, block):
            yield event
    usage = {key: reply.usage[key] for key in _DELTA_USAGE_KEYS}
    delta = {
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "stop_details": _stop_details(reply.stop_reason),
    }
    yield _sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
    yield _sse("message_stop", {"type": "message_stop"})


# --- the app ------------------------------------------------------------------------------


def _take_flaky_failure(
    script: Script, digest: bytes, attempts: dict[bytes, int]
) -> Failure | None:
    """The scripted failure for this attempt of this request, if any (see ``Script.flaky``)."""
    if not script.flaky:
        return None
    seen = attempts.pop(digest, 0)
    if seen >= len(script.flaky):
        return None
    if len(attempts) >= _MAX_TRACKED_REQUESTS:
        attempts.pop(next(iter(attempts)))
    attempts[digest] = seen + 1
    return script.flaky[seen]


def _failure_response(failure: Failure) -> Response:
    headers = {} if failure.retry_after is None else {"retry-after": f"{failure.retry_after:g}"}
    error = ApiError(failure.status, failure.type, failure.message, headers)
    return _error_response(error, failure.hold_s)


def create_app(
    scripts: Mapping[str, Script] | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    context_window: int = CONTEXT_WINDOW,
) -> Starlette:
    """A fresh offline Claude; ``scripts`` add to (or replace) the built-in ones by name.

    Its prompt cache (``prompt_cache``) expires entries on ``clock`` (seconds); a prompt of
    more than ``context_window`` input tokens is refused, as upstream."""
    known = {**BUILTIN_SCRIPTS, **(scripts or {})}
    for name in known:
        if not MARKER.fullmatch(f"[script:{name}]"):
            raise ValueError(f"script name {name!r} cannot be written as a [script:NAME] marker")
    attempts: dict[bytes, int] = {}  # per app: flaky attempts by request digest
    cache = PromptCache(clock)  # per app, like the flaky attempts

    async def create_message(request: Request) -> Response:
        api_key = _api_key(request)
        call = _read_call(await _read_body(request))
        tokens = call.prompt.blocks.tokens
        if tokens > context_window:
            raise _invalid(f"prompt is too long: {tokens} tokens > {context_window} maximum")
        messages = call.prompt.messages
        text = _first_user_text(messages[0])
        script = _select(known, text)
        digest = hashlib.sha256(call.prompt.serialized).digest()
        index = sum(1 for m in messages if m["role"] == "assistant")
        turn = _take_flaky_failure(script, digest, attempts) or script.turn_at(index)
        if isinstance(turn, Failure):
            return _failure_response(turn)
        usage = cache.use(call.prompt.blocks, model=call.prompt.model, api_key=api_key)
        reply = _reply(call, turn, digest, _fills(_goal(text), messages, index + 1), usage)
        if call.stream:
            response: Response = _EventStream(_events(reply), _request_id())
        else:
            response = _json_response(
                200, reply.message(), {"request-id": _request_id()}, reply.hold_s
            )
        return _HeldResponse(response, turn.start_after_s) if turn.start_after_s else response

    async def count_tokens(request: Request) -> Response:
        """Counted as a reply's prompt is; a script whose first turn starts late answers its
        counts late too (a slow API is slow for both)."""
        _api_key(request)
        prompt = _read_prompt(await _read_body(request))
        payload = {"input_tokens": prompt.blocks.tokens}
        first = _select(known, _first_user_text(prompt.messages[0])).turn_at(0)
        late = first.start_after_s if isinstance(first, Turn) else 0.0
        return _json_response(200, payload, {"request-id": _request_id()}, late)

    return Starlette(
        routes=[
            Route("/v1/messages", create_message, methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        ],
        exception_handlers={ApiError: _on_api_error, HTTPException: _on_http_error, 500: _on_crash},
    )


def serve(host: str, port: int) -> None:
    """Runs the offline Claude until interrupted (blocking)."""
    uvicorn.run(create_app(), host=host, port=port, log_level="warning", access_log=False)
