"""Tools that act through a connected integration.

Each tool's input is validated against its schema and turned into a request by
``integrations.routes`` (the one place that builds provider URLs) before anything else: an
input refused there is an error for Claude, with no token fetched, no call made and nothing
recorded. A tool that changes state records its call by idempotency key
(quest:step:tool-use-id), so a redelivered step that finds it done does not call again. If
the worker died mid-call (or the call timed out), the provider may have performed it: a
provider that takes an idempotency key gets the same key again; at one that takes none, the
call carries a hidden mark of its key (``integrations.spec.Effect``), is sent at most once
per attempt (no quick retries), and a later attempt first waits until the earlier one cannot
still be in flight, then looks for the mark and reports what it finds instead of sending
again. A provider that stays down past the bound fails the quest with the reason; until then
the step waits and is retried. A list follows ``Link: rel="next"`` up to the tool's
``pages``, never off the provider's base URL; what reaches Claude is bounded by the step, as
every tool's result is (``workers.tools.bounded``).

A rate limit (the provider's ``verdict``: a 429, or GitHub's 403 with its headers) is this
company's (or, at the token endpoint during a refresh, our client app's), not the provider's
health: the call was not performed (its record stays open, so the retry performs it, with
the same key, and looks for nothing), and only this step waits, until the provider's reset
(``Retry-After`` or a reset header), at least a backoff that doubles with each 429 of the
same call. One tool call waits at most ``rate_limit_max_s`` in all, counted from its first
429 (a quest making several calls may wait that long for each); a reset further away fails
the quest with the reason. A refused token (401; Slack's ``token_revoked`` on a 200) that
survives the one refresh marks the company's
credential as needing reconnection (``TokenBroker.needs_reconnect``, its audit row carrying
the call's ``origin_message_id``) and fails the quest with a reason that says so.

``run`` is awaited on the worker's event loop. Its Postgres work is short transactions (the
call's record opened, then closed), none held across the provider call; its Redis markers
(when the call first met an outage or a 429) each take one pipelined round trip. A quest's
cancel cancels the step's task wherever it is: a mutating call cut after the provider
performed it leaves its record open, so any later run sends the same Idempotency-Key, or
looks for its mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import httpx
import redis
import redis.asyncio
import structlog

from integrations import (
    Answer,
    Provider,
    ProviderBase,
    ProviderRequest,
    RequestBuilder,
    RouteError,
    ToolOutcome,
    ToolSpec,
    Verdict,
    ratelimit,
)
from integrations.routes import Route
from messages.redis_keys import provider_outage_key, provider_rate_limited_key
from store import Database
from store import tool_calls as tool_calls_store
from store.tool_calls import ToolCallRecord
from vault import Secret
from workers.errors import ProviderUnavailable, QuestFailed, TryLater
from workers.integrations.errors import ProviderRateLimited
from workers.integrations.provider import ProviderClient
from workers.integrations.token_broker import TokenBroker
from workers.tools import ToolCall

log = structlog.get_logger(__name__)

OnSend = Callable[[], Awaitable[None]]
UNKNOWN_RETRY_MS = 5_000  # a lookup with no answer, a send with none: try again after


class ConnectedTool:
    """One tool of one provider, runnable for any company that connected it."""

    def __init__(
        self,
        provider: Provider,
        spec: ToolSpec,
        *,
        base_url: str,
        db: Database,
        tokens: TokenBroker,
        client: ProviderClient,
        outages: redis.asyncio.Redis,
        outage_max_s: int,
        rate_limit_max_s: int = 300,
        send_timeout_s: float = 10.0,
    ) -> None:
        self.provider = provider
        self.spec = spec
        self.name = spec.name
        self.description = spec.description
        self.input_schema = spec.input_schema
        self.mutates = spec.mutates
        self.base = ProviderBase(base_url)
        self.requests = RequestBuilder(self.base, spec.input_schema, spec.route)
        variables = set(spec.route.variables)
        later = [*spec.also, *([Route("GET", spec.effect.lookup.path)] if spec.effect else [])]
        for route in later:
            if not set(route.variables) <= variables:
                raise RouteError(f"{spec.name}: {route.path} needs a variable the tool has not")
            self.base.url(route.path, {name: "x" for name in route.variables})
        self.db = db
        self.tokens = tokens
        self.client = client
        self.outages = outages
        self.outage_max_s = outage_max_s
        self.rate_limit_max_s = rate_limit_max_s
        self.send_timeout_s = send_timeout_s  # a marked mutation's send, as a whole
        # an attempt is over send_timeout_s after its claim; the provider may still be
        # performing it a while after: a retry waits twice that before looking for it
        self.settle_s = 2 * send_timeout_s

    async def run(self, call: ToolCall) -> ToolOutcome:
        built = self.requests.build(call.input)
        if isinstance(built, str):  # refused: no token, no call, no record, no audit row
            return ToolOutcome(f"{self.name} was not called: {built}", is_error=True)
        record = None
        if self.mutates:
            record = await self.db.in_tenant(
                call.company_id,
                lambda tx: tool_calls_store.begin(
                    tx, call.idempotency_key, call.quest_id, call.step, self.name
                ),
            )
            if record.status == "done" and record.result is not None:
                return ToolOutcome(**record.result)  # done before this redelivery: nothing again
        try:
            outcome = await self._perform(call, built, record)
        except ProviderUnavailable as exc:
            await self._give_up_after_bound(call, exc)
            raise
        except ProviderRateLimited as exc:  # not performed: the record stays open for the retry
            raise await self._wait_for_rate_limit(call, exc) from None
        if self.mutates:
            await self.db.in_tenant(
                call.company_id,
                lambda tx: tool_calls_store.finish(tx, call.idempotency_key, outcome.__dict__),
            )
        with contextlib.suppress(redis.RedisError):  # the call is done: the markers only lapse
            await self.outages.delete(self._outage_key(call), self._rate_limit_key(call))
        return outcome

    async def _perform(
        self, call: ToolCall, request: ProviderRequest, record: ToolCallRecord | None
    ) -> ToolOutcome:
        """The call's outcome: found where an earlier attempt made it, else from a call."""
        effect = self.spec.effect
        if effect is None or record is None:
            return await self._call(call, request)
        if record.sent_s_ago is not None:  # sent before: it may have been performed
            if record.sent_s_ago < self.settle_s:
                raise TryLater(
                    f"{self.name}: waiting for an earlier attempt to settle before looking "
                    "for what it made",
                    retry_after_ms=int((self.settle_s - record.sent_s_ago) * 1000) + 1,
                )
            found = await self._look_up(call, request, record)
            log.info(
                "looked for what an earlier attempt made",
                tool=self.name,
                found=found is not None,
                sent_s_ago=round(record.sent_s_ago, 1),
            )
            if found is not None:
                return effect.made(found, call.input)
        marked = ProviderRequest(
            request.method,
            request.url,
            effect.mark(dict(request.json or {}), call.idempotency_key),
            request.params,
            request.path_values,
        )
        claim = _Claim(self.db, call, record.attempted_at)
        try:
            return await self._call(call, marked, on_send=claim.take)
        except ProviderRateLimited:  # the provider says it did not perform it
            await claim.release()
            raise

    async def _look_up(
        self, call: ToolCall, request: ProviderRequest, record: ToolCallRecord
    ) -> Mapping[str, Any] | None:
        """What an earlier attempt of this call made, if the provider has it. Any answer
        that is not a listing, or a listing longer than the pages read, leaves it unknown:
        ``ProviderUnavailable`` (the step waits, up to the outage bound), never a resend."""
        assert self.spec.effect is not None
        lookup = self.spec.effect.lookup
        url: httpx.URL | None = self.base.url(lookup.path, request.path_values)
        params: dict[str, str] | None = lookup.params(call.input, record.started_at)
        for _ in range(lookup.pages):
            assert url is not None
            resp = await self._authorized(call, "GET", url, None, params, retry=True)
            page = _json(resp) if resp.status_code == 200 else None
            if page is None or not lookup.answered(page):
                break
            if (found := lookup.find(page, call.idempotency_key)) is not None:
                return found
            if lookup.cursor is not None:
                cursor = lookup.cursor(page)
                url, params = (
                    (url, {**(params or {}), "cursor": cursor}) if cursor else (None, None)
                )
            else:
                url, params = _next_page(resp, self.base), None
            if url is None:
                return None  # every page since the first attempt read: it was not made
        raise ProviderUnavailable(
            f"{self.provider.title} did not say whether an earlier attempt of {self.name} "
            "was made; trying again before sending it again",
            retry_after_ms=UNKNOWN_RETRY_MS,
        )

    async def _call(
        self, call: ToolCall, request: ProviderRequest, *, on_send: OnSend | None = None
    ) -> ToolOutcome:
        retry = not (self.mutates and self.provider.idempotency_header is None)
        answer = await self._send(
            call,
            request.method,
            request.url,
            request.json,
            request.params,
            retry=retry,
            pages=self.spec.pages,
            on_send=on_send,
        )
        if self.spec.also and answer.status_code < 300:
            also = [
                await self._send(
                    call, "GET", self.base.url(r.path, request.path_values), None,
                    dict(r.fixed_query) or None, retry=True, pages=1,
                )
                for r in self.spec.also
            ]  # fmt: skip
            answer = Answer(answer.response, answer.pages, tuple(a.response for a in also))
        try:
            return self.spec.render(answer, call.input)
        except (ValueError, KeyError, TypeError, AttributeError):  # not the answer it documents
            log.warning("a provider answer did not read", tool=self.name, status=answer.status_code)
            return ToolOutcome(
                f"{self.provider.title} answered {self.name} with something it does not "
                f"document (HTTP {answer.status_code}); nothing more is known",
                is_error=True,
            )

    async def _send(
        self,
        call: ToolCall,
        method: str,
        url: httpx.URL,
        body: dict[str, Any] | None,
        params: dict[str, str] | None,
        *,
        retry: bool,
        pages: int,
        on_send: OnSend | None = None,
    ) -> Answer:
        """One request with the company's token (refreshed once on a refusal), then up to
        ``pages - 1`` more by ``Link: rel="next"`` on the provider's base URL, while they
        answer 200."""
        resp = await self._authorized(call, method, url, body, params, retry=retry, on_send=on_send)
        more: list[httpx.Response] = []
        while len(more) + 1 < pages and resp.status_code == 200:
            following = _next_page(resp if not more else more[-1], self.base)
            if following is None:
                break
            page = await self._authorized(call, "GET", following, None, None, retry=True)
            if page.status_code != 200:
                break
            more.append(page)
        return Answer(resp, tuple(more))

    async def _authorized(
        self,
        call: ToolCall,
        method: str,
        url: httpx.URL,
        body: dict[str, Any] | None,
        params: dict[str, str] | None,
        *,
        retry: bool,
        on_send: OnSend | None = None,
    ) -> httpx.Response:
        name = self.provider.name
        purpose = f"tool {self.name}"
        token, version = await self.tokens.access_token(
            call.company_id,
            name,
            purpose=purpose,
            quest_id=call.quest_id,
            origin_message_id=call.origin_message_id,
        )
        resp = await self._request(call, method, url, token, body, params, retry, on_send)
        if self.provider.verdict(resp) is Verdict.UNAUTHORIZED:  # revoked or expired early
            token, version = await self.tokens.refreshed_token(
                call.company_id,
                name,
                stale_version=version,
                purpose=purpose,
                quest_id=call.quest_id,
                origin_message_id=call.origin_message_id,
            )
            resp = await self._request(call, method, url, token, body, params, retry, on_send)
            if self.provider.verdict(resp) is Verdict.UNAUTHORIZED:  # refused again: act
                code = _error_code(resp)
                raise await self.tokens.needs_reconnect(
                    call.company_id,
                    name,
                    version,
                    f"{self.provider.title} refused its token even after a refresh "
                    f"({resp.status_code} {code}); a company admin must connect it again",
                    quest_id=call.quest_id,
                    origin_message_id=call.origin_message_id,
                    data={"status": resp.status_code, "error": code, "tool": self.name},
                )
        return resp

    async def _request(
        self,
        call: ToolCall,
        method: str,
        url: httpx.URL,
        token: Secret,
        body: dict[str, Any] | None,
        params: dict[str, str] | None,
        retry: bool,
        on_send: OnSend | None,
    ) -> httpx.Response:
        """One send. With ``on_send`` (a marked mutation), it is awaited just before, and the
        send is bounded as a whole by ``send_timeout_s``, so an attempt that got no answer is
        over by then (the wait before looking for it counts from ``on_send``)."""
        key = call.idempotency_key if self.mutates else None
        sending = self.client.request(
            self.provider, method, url, token, json=body, params=params, idempotency_key=key,
            retry=retry,
        )  # fmt: skip
        if on_send is None:
            return await sending
        try:
            await on_send()
            async with asyncio.timeout(self.send_timeout_s):
                return await sending
        except TimeoutError:
            raise ProviderUnavailable(
                f"{self.provider.title} did not answer {self.name} within {self.send_timeout_s:g}s",
                retry_after_ms=UNKNOWN_RETRY_MS,
            ) from None
        finally:
            sending.close()  # never awaited when on_send refused: no warning

    def _outage_key(self, call: ToolCall) -> str:
        return provider_outage_key(call.company_id, call.idempotency_key)

    def _rate_limit_key(self, call: ToolCall) -> str:
        return provider_rate_limited_key(call.company_id, call.idempotency_key)

    async def _wait_for_rate_limit(
        self, call: ToolCall, exc: ProviderRateLimited
    ) -> ProviderRateLimited | QuestFailed:
        """The step waits until the provider's reset (this company's only); past the bound
        (for this call, from its first 429), or with a reset beyond it, the quest fails. The
        marker (hash: first 429's time, how many) lapses on its own."""
        key = self._rate_limit_key(call)
        now = time.time()
        pipe = self.outages.pipeline()
        pipe.hsetnx(key, "since", now)
        pipe.hincrby(key, "times", 1)
        pipe.hget(key, "since")
        pipe.expire(key, self.rate_limit_max_s * 4)
        _, times, since, _ = await pipe.execute()
        waited = max(0.0, now - float(since or now))
        said = exc.retry_after_ms
        wait = ratelimit.delay_ms(said, int(times), waited_s=waited, max_s=self.rate_limit_max_s)
        title, limited = self.provider.title, exc.limited
        if wait is None:
            if said is not None and said > self.rate_limit_max_s * 1000:
                why = f"its limit resets in {said / 1000:.0f}s"
            else:
                why = f"it has refused this call for {waited:.0f}s"
            return QuestFailed(
                f"{title} is rate-limiting {limited}: {why} (a tool call waits at most "
                f"{self.rate_limit_max_s}s)"
            )
        return ProviderRateLimited(
            f"{title} is rate-limiting {limited}; trying again in {wait / 1000:.0f}s",
            retry_after_ms=wait,
            limited=limited,
        )

    async def _give_up_after_bound(self, call: ToolCall, exc: ProviderUnavailable) -> None:
        """Remember when this call first met the outage; past the bound, fail the quest.
        One round trip: the marker set if absent, and read."""
        key = self._outage_key(call)
        now = time.time()
        pipe = self.outages.pipeline()
        pipe.set(key, now, nx=True, ex=self.outage_max_s * 4)
        pipe.get(key)
        _, since_text = await pipe.execute()
        since = float(since_text or now)
        if now - since >= self.outage_max_s:
            raise QuestFailed(
                f"{self.provider.title} has been unavailable for {now - since:.0f}s "
                f"(the limit is {self.outage_max_s}s): {exc}"
            ) from None


_WORD = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def _error_code(resp: httpx.Response) -> str:
    """The provider's error code for a refusal (RFC 6750's ``error=`` in the challenge, or
    the JSON body's ``error``), if it is one short word: never its free text."""
    challenge = re.search(r'error="([^"]*)"', resp.headers.get("www-authenticate", ""))
    code = challenge.group(1) if challenge else ""
    if not code:
        with contextlib.suppress(ValueError, AttributeError):
            code = str(resp.json().get("error") or "")
    return code if _WORD.fullmatch(code) else "unauthorized"


class _Claim:
    """This delivery's mark on the call's record, taken just before each send and only where
    the record still holds what this delivery saw (another delivery of the same step that
    claimed it in between wins: this one waits); released when the provider answers that it
    did not perform the call."""

    def __init__(self, db: Database, call: ToolCall, seen: datetime | None) -> None:
        self.db = db
        self.call = call
        self.seen = seen
        self.mine: datetime | None = None

    async def take(self) -> None:
        seen, call = self.mine or self.seen, self.call
        got = await self.db.in_tenant(
            call.company_id, lambda tx: tool_calls_store.claim(tx, call.idempotency_key, seen)
        )
        if got is None:
            raise TryLater(
                "another delivery of this step is making the same call", retry_after_ms=1_000
            )
        self.mine = got

    async def release(self) -> None:
        mine, call = self.mine, self.call
        if mine is not None:
            await self.db.in_tenant(
                call.company_id,
                lambda tx: tool_calls_store.unclaim(tx, call.idempotency_key, mine),
            )


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _next_page(resp: httpx.Response, base: ProviderBase) -> httpx.URL | None:
    """The ``Link: rel="next"`` URL, if it stays on the provider's base URL (the token goes
    nowhere else)."""
    target = resp.links.get("next", {}).get("url")
    if not target:
        return None
    url = resp.url.join(target)
    return url if base.contains(url) else None
