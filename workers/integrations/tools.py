"""Tools that act through a connected integration.

Each tool's input is validated against its schema and turned into a request by
``workers.integrations.routes`` (the one place that builds provider URLs) before anything
else: an input refused there is an error for Claude, with no token fetched, no call made and
nothing recorded. A tool that changes state records its call by idempotency key
(quest:step:tool-use-id) and sends the same key to the provider, so a redelivered step
neither calls twice nor, if the worker died mid-call, mutates twice. A provider that stays
down past the bound fails the quest with the reason; until then the step waits and is retried.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from store import Database
from store import tool_calls as tool_calls_store
from system2.catalog import IntegrationSpec, ToolSpec
from workers.errors import ProviderUnavailable, QuestFailed
from workers.integrations.provider import ProviderClient
from workers.integrations.routes import ProviderBase, ProviderRequest, RequestBuilder, Route
from workers.integrations.tokens import TokenBroker
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
        outages: redis.Redis,
        outage_max_s: int,
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

    def run(self, call: ToolCall) -> ToolOutcome:
        built = self.requests.build(call.input)
        if isinstance(built, str):  # refused: no token, no call, no record, no audit row
            return ToolOutcome(f"{self.name} was not called: {built}", is_error=True)
        if self.mutates:
            with self.db.tenant(call.company_id) as tx:
                record = tool_calls_store.begin(
                    tx, call.idempotency_key, call.quest_id, call.step, self.name
                )
            if record.status == "done" and record.result is not None:
                return ToolOutcome(**record.result)  # done before this redelivery: nothing again
        try:
            outcome = self._call(call, built)
        except ProviderUnavailable as exc:
            self._give_up_after_bound(call, exc)
            raise
        if self.mutates:
            with self.db.tenant(call.company_id) as tx:
                tool_calls_store.finish(tx, call.idempotency_key, outcome.__dict__)
        with contextlib.suppress(redis.RedisError):  # the call is done: the marker only lapses
            self.outages.delete(self._outage_key(call))
        return outcome

    def _call(self, call: ToolCall, request: ProviderRequest) -> ToolOutcome:
        method, url, body, params = request.method, request.url, request.json, request.params
        purpose = f"tool {self.name}"
        token, version = self.tokens.access_token(
            call.company_id, self.integration.name, purpose=purpose, quest_id=call.quest_id
        )
        key = call.idempotency_key if self.mutates else None
        resp = self.provider.request(
            self.integration.name, method, url, token, json=body, params=params, idempotency_key=key
        )
        if resp.status_code == 401:  # revoked or expired early: refresh once and try again
            token, _ = self.tokens.refreshed_token(
                call.company_id,
                self.integration.name,
                stale_version=version,
                purpose=purpose,
                quest_id=call.quest_id,
            )
            resp = self.provider.request(
                self.integration.name,
                method,
                url,
                token,
                json=body,
                params=params,
                idempotency_key=key,
            )
        return self.endpoint.render(resp, call.input)

    def _outage_key(self, call: ToolCall) -> str:
        return f"s2:outage:{call.company_id}:{call.idempotency_key}"

    def _give_up_after_bound(self, call: ToolCall, exc: ProviderUnavailable) -> None:
        """Remember when this call first met the outage; past the bound, fail the quest."""
        key = self._outage_key(call)
        now = time.time()
        self.outages.set(key, now, nx=True, ex=self.outage_max_s * 4)
        since = float(self.outages.get(key) or now)
        if now - since >= self.outage_max_s:
            raise QuestFailed(
                f"{self.integration.title} has been unavailable for {now - since:.0f}s "
                f"(the limit is {self.outage_max_s}s): {exc}"
            ) from None
