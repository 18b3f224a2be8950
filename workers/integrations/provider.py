"""Calling a provider's API: timeouts, a few quick retries with backoff on 5xx and connection
errors, and the provider's circuit breaker. When the provider is down the caller gets
``ProviderUnavailable`` and the step waits; it is never dropped.

The breaker is shared by every company, so only the provider's own failures count towards
it: 5xx, timeouts and connection errors; and only the provider working (a 2xx or 3xx answer)
forgets them. A 4xx is about one company's call, token or installation, so it neither counts
nor resets: one company's 401s and 404s during an outage do not keep the breaker closed for
everyone. A 429 (that company's rate limit) is not retried here: the caller gets
``ProviderRateLimited`` with the provider's reset, and only that company's step waits.
Other 4xx (401, 403, 404, 422...) are answers, returned to the caller.

Calls are awaited on the worker's one ``httpx.AsyncClient`` (keep-alive on, its pool bounded:
``workers.integrations.registry.provider_http``), so a call that waits on a provider costs a
suspended task, not a thread. A quest's cancel cancels the step's task: the request is
abandoned wherever it is (connecting, sent, mid-body) and httpx closes its connection; a
cancelled call counts towards nothing. Waiting for one of the pool's connections is our own
congestion, not the provider's failure: it is not counted towards the breaker either.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from integrations import Provider, Verdict
from integrations.ratelimit import reset_after_ms
from vault import Secret
from workers import worker_metrics
from workers.errors import ProviderUnavailable
from workers.integrations.breaker import AsyncBreaker
from workers.integrations.errors import ProviderRateLimited

BUSY_RETRY_MS = 1_000  # every connection of the pool was busy: try again soon
UNAVAILABLE_RETRY_MS = 2_000  # failed, the breaker still closed


@dataclass(frozen=True)
class _Call:
    """One logical call, as each attempt sends it."""

    provider: Provider
    method: str
    url: httpx.URL
    headers: dict[str, str] = field(repr=False)  # the Authorization header: never in a repr
    json: dict[str, Any] | None
    params: dict[str, str] | None


class ProviderClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        breaker: AsyncBreaker,
        *,
        retries: int = 2,
        backoff_s: float = 0.25,
    ) -> None:
        self.http = http
        self.breaker = breaker
        self.retries = retries
        self.backoff_s = backoff_s

    async def request(
        self,
        provider: Provider,
        method: str,
        url: httpx.URL,
        token: Secret,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """One logical call, read by the provider's ``verdict``: an answer (a 4xx included:
        the caller decides) is returned; a rate limit is ``ProviderRateLimited``, at once; the
        provider failing (5xx, transport errors) is retried, then reported as
        ``ProviderUnavailable``. ``retry=False`` for a mutation the provider cannot
        deduplicate: a failed attempt may have been performed, so only the caller, after
        looking for its effect, may send it again. ``url`` comes from
        ``integrations.routes``; a redirect is never followed, so the token goes to that URL
        and nowhere else."""
        name = provider.name
        breaker = await self.breaker.read(name)
        if breaker.open_for_ms:
            worker_metrics.PROVIDER_CALLS.labels(name, "breaker_open").inc()
            raise ProviderUnavailable(
                f"{provider.title} is failing; its circuit breaker is open",
                retry_after_ms=breaker.open_for_ms,
            )
        headers = {**provider.headers, "Authorization": f"Bearer {token.reveal()}"}
        if idempotency_key and provider.idempotency_header:
            headers[provider.idempotency_header] = idempotency_key
        try:
            call = _Call(provider, method, url, headers, json, params)
            return await self._attempts(
                call, counting=breaker.counting, retries=self.retries if retry else 0
            )
        except asyncio.CancelledError:
            worker_metrics.PROVIDER_CALLS.labels(name, "cancelled").inc()
            raise

    async def _attempts(self, call: _Call, *, counting: bool, retries: int) -> httpx.Response:
        """The first attempt and up to ``retries`` more, backing off, while the provider
        fails and its breaker stays closed. ``counting``: the breaker holds failures (or a
        trip) that an answer must forget; each failure here adds one."""
        provider = call.provider.name
        problem = ""
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                resp = await self.http.request(
                    call.method,
                    call.url,
                    headers=call.headers,
                    json=call.json,
                    params=call.params,
                    follow_redirects=False,
                )
            except httpx.PoolTimeout:
                worker_metrics.PROVIDER_CALLS.labels(provider, "busy").inc()
                raise ProviderUnavailable(
                    f"every connection to providers is busy; {provider} was not called",
                    retry_after_ms=BUSY_RETRY_MS,
                ) from None
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__} calling {provider}"
                worker_metrics.PROVIDER_ERRORS.labels(provider, "transport").inc()
            else:
                if await self._answered(call.provider, resp, forget=counting):
                    return resp
                problem = f"{provider} answered {resp.status_code}"
                worker_metrics.PROVIDER_ERRORS.labels(provider, "http_5xx").inc()
            counting = True
            if await self.breaker.failure(provider):
                worker_metrics.BREAKER_TRIPS.labels(provider).inc()
                problem += "; its circuit breaker is open"
                break
        worker_metrics.PROVIDER_CALLS.labels(provider, "unavailable").inc()
        raise ProviderUnavailable(
            problem, retry_after_ms=await self.breaker.open_for_ms(provider) or UNAVAILABLE_RETRY_MS
        )

    async def _answered(self, spec: Provider, resp: httpx.Response, *, forget: bool) -> bool:
        """Whether ``resp`` is an answer for the caller (not the provider failing); a rate
        limit raises ``ProviderRateLimited``. Only a plain 2xx or 3xx answer (the provider
        working) resets the breaker (when it has anything to ``forget``: otherwise no round
        trip); a refusal is about one company's call and neither counts nor resets."""
        provider = spec.name
        verdict = spec.verdict(resp)
        if verdict is Verdict.RATE_LIMITED:  # this company's limit: no breaker, no retry here
            worker_metrics.PROVIDER_ERRORS.labels(provider, "http_429").inc()
            worker_metrics.PROVIDER_CALLS.labels(provider, "rate_limited").inc()
            said = reset_after_ms(resp.headers, time.time())
            if said is None and spec.rate_limit_wait_s is not None:
                said = spec.rate_limit_wait_s * 1000
            raise ProviderRateLimited(
                f"{spec.title} is rate-limiting this company's calls", retry_after_ms=said
            )
        if verdict is Verdict.FAILING:
            return False
        if resp.status_code < 400 and verdict is Verdict.ANSWER and forget:
            await self.breaker.success(provider)
        worker_metrics.PROVIDER_CALLS.labels(provider, "answered").inc()
        return True
