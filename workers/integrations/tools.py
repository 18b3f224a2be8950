"""Tools that act through a connected integration.

Each tool's input is validated against its schema and turned into a request by
``workers.integrations.routes`` (the one place that builds provider URLs) before anything
else: an input refused there is an error for Claude, with no token fetched, no call made and
nothing recorded. A tool that changes state records its call by idempotency key
(quest:step:tool-use-id) and sends the same key to the provider, so a redelivered step
neither calls twice nor, if the worker died mid-call, mutates twice. A provider that stays
down past the bound fails the quest with the reason; until then the step waits and is retried.

A 429 is this company's rate limit (or, at the token endpoint during a refresh, our client
app's), not the provider's health: the call was not performed (its record stays open, so the
retry performs it, with the same key), and only this step waits, until the provider's reset
(``Retry-After`` or a reset header), at least a backoff that doubles with each 429 of the
same call. One tool call waits at most ``rate_limit_max_s`` in all, counted from its first
429 (a quest making several calls may wait that long for each); a reset further away fails
the quest with the reason. A 401 that survives the one refresh marks the company's
credential as needing reconnection (``TokenBroker.needs_reconnect``, its audit row carrying
the call's ``origin_message_id``) and fails the quest with a reason that says so.

``run`` is awaited on the worker's event loop. Its Postgres work is short transactions (the
call's record opened, then closed), none held across the provider call; its Redis markers
(when the call first met an outage or a 429) each take one pipelined round trip. A quest's
cancel cancels the step's task wherever it is: a mutating call cut after the provider
performed it leaves its record open, so any later run sends the same Idempotency-Key.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import redis
import redis.asyncio

from messages.redis_keys import provider_outage_key, provider_rate_limited_key
from runtime.catalog import IntegrationSpec, ToolSpec
from store import Database
from store import tool_calls as tool_calls_store
from workers.errors import ProviderUnavailable, QuestFailed
from workers.integrations import ratelimit
from workers.integrations.errors import ProviderRateLimited
from workers.integrations.provider import ProviderClient
from workers.integrations.routes import ProviderBase, ProviderRequest, RequestBuilder, Route
from workers.integrations.token_broker import TokenBroker
from workers.tools import ToolCall, ToolOutcome

# What the provider's answer means, given the (validated) input the request was built from.
Render = Callable[[httpx.Response, Mapping[str, Any]], ToolOutcome]


@dataclass(frozen=True)
class Endpoint:
    route: Route
    render: Render


class ConnectedTool:
    """One tool of one integration, runnable for any company that connected it."""

    def __init__(
        self,
        integration: IntegrationSpec,
        spec: ToolSpec,
        endpoint: Endpoint,
        *,
        base_url: str,
        db: Database,
        tokens: TokenBroker,
        provider: ProviderClient,
        outages: redis.asyncio.Redis,
        outage_max_s: int,
        rate_limit_max_s: int = 300,
    ) -> None:
        self.integration = integration
        self.spec = spec
        self.endpoint = endpoint
        self.name = spec.name
        self.description = spec.description
        self.input_schema = spec.input_schema
        self.mutates = spec.mutates
        self.requests = RequestBuilder(ProviderBase(base_url), spec.input_schema, endpoint.route)
        self.db = db
        self.tokens = tokens
        self.provider = provider
        self.outages = outages
        self.outage_max_s = outage_max_s
        self.rate_limit_max_s = rate_limit_max_s

    async def run(self, call: ToolCall) -> ToolOutcome:
        built = self.requests.build(call.input)
        if isinstance(built, str):  # refused: no token, no call, no record, no audit row
            return ToolOutcome(f"{self.name} was not called: {built}", is_error=True)
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
            outcome = await self._call(call, built)
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

    async def _call(self, call: ToolCall, request: ProviderRequest) -> ToolOutcome:
        method, url, body, params = request.method, request.url, request.json, request.params
        purpose = f"tool {self.name}"
        token, version = await self.tokens.access_token(
            call.company_id,
            self.integration.name,
            purpose=purpose,
            quest_id=call.quest_id,
            origin_message_id=call.origin_message_id,
        )
        key = call.idempotency_key if self.mutates else None
        resp = await self.provider.request(
            self.integration.name, method, url, token, json=body, params=params, idempotency_key=key
        )
        if resp.status_code == 401:  # revoked or expired early: refresh once and try again
            token, version = await self.tokens.refreshed_token(
                call.company_id,
                self.integration.name,
                stale_version=version,
                purpose=purpose,
                quest_id=call.quest_id,
                origin_message_id=call.origin_message_id,
            )
            resp = await self.provider.request(
                self.integration.name,
                method,
                url,
                token,
                json=body,
                params=params,
                idempotency_key=key,
            )
            if resp.status_code == 401:  # refused again, freshly refreshed: the company must act
                code = _error_code(resp)
                raise await self.tokens.needs_reconnect(
                    call.company_id,
                    self.integration.name,
                    version,
                    f"{self.integration.title} refused its token even after a refresh "
                    f"(401 {code}); a company admin must connect it again",
                    quest_id=call.quest_id,
                    origin_message_id=call.origin_message_id,
                    data={"status": 401, "error": code, "tool": self.name},
                )
        return self.endpoint.render(resp, call.input)

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
        title, limited = self.integration.title, exc.limited
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
                f"{self.integration.title} has been unavailable for {now - since:.0f}s "
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
