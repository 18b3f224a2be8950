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

Each request opens its own connection (no keep-alive) and registers its socket with the
step's call scope, so a cancel can cut a call that hangs before the provider answers.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from vault import Secret
from workers import worker_metrics
from workers.call_scope import Interrupted, current_scope, trace
from workers.errors import ProviderUnavailable
from workers.integrations.breaker import Breaker
from workers.integrations.errors import ProviderRateLimited
from workers.integrations.ratelimit import reset_after_ms


class ProviderClient:
    def __init__(
        self, http: httpx.Client, breaker: Breaker, *, retries: int = 2, backoff_s: float = 0.25
    ) -> None:
        self.http = http
        self.breaker = breaker
        self.retries = retries
        self.backoff_s = backoff_s

    def request(
        self,
        provider: str,
        method: str,
        url: httpx.URL,
        token: Secret,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """One logical call; a 4xx answer is returned (the caller decides), except a 429:
        ``ProviderRateLimited``, at once. 5xx and transport failures are retried, then
        reported as ``ProviderUnavailable``. ``url`` comes from
        ``workers.integrations.routes``; a redirect is never followed, so the token goes to
        that URL and nowhere else."""
        scope = current_scope()
        if scope is not None and scope.cancelled.is_set():
            worker_metrics.PROVIDER_CALLS.labels(provider, "cancelled").inc()
            raise Interrupted(f"the {provider} call was not made: the quest was cancelled")
        closed_in = self.breaker.open_for_ms(provider)
        if closed_in:
            worker_metrics.PROVIDER_CALLS.labels(provider, "breaker_open").inc()
            raise ProviderUnavailable(
                f"{provider} is failing; its circuit breaker is open", retry_after_ms=closed_in
            )
        headers = {"Authorization": f"Bearer {token.reveal()}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                resp = self.http.request(
                    method,
                    url,
                    headers=headers,
                    json=json,
                    params=params,
                    follow_redirects=False,
                    extensions={"trace": trace},
                )
            except httpx.TransportError as exc:
                if scope is not None and scope.cancelled.is_set():
                    worker_metrics.PROVIDER_CALLS.labels(provider, "cancelled").inc()
                    raise Interrupted(
                        f"the {provider} call was cut: the quest was cancelled"
                    ) from None
                problem = f"{type(exc).__name__} calling {provider}"
                worker_metrics.PROVIDER_ERRORS.labels(provider, "transport").inc()
            else:
                if self._answered(provider, resp):
                    return resp
                problem = f"{provider} answered {resp.status_code}"
                worker_metrics.PROVIDER_ERRORS.labels(provider, "http_5xx").inc()
            if self.breaker.failure(provider):
                worker_metrics.BREAKER_TRIPS.labels(provider).inc()
                problem += "; its circuit breaker is open"
                break
        worker_metrics.PROVIDER_CALLS.labels(provider, "unavailable").inc()
        raise ProviderUnavailable(
            problem, retry_after_ms=self.breaker.open_for_ms(provider) or 2_000
        )

    def _answered(self, provider: str, resp: httpx.Response) -> bool:
        """Whether ``resp`` is an answer for the caller (below 500); a 429 raises
        ``ProviderRateLimited``. Only a 2xx or 3xx (the provider working) resets the breaker:
        a 4xx is about one company's call and neither counts nor resets."""
        status = resp.status_code
        if status == 429:  # this company's limit: no breaker, no retry here
            worker_metrics.PROVIDER_ERRORS.labels(provider, "http_429").inc()
            worker_metrics.PROVIDER_CALLS.labels(provider, "rate_limited").inc()
            raise ProviderRateLimited(
                f"{provider} is rate-limiting this company's calls",
                retry_after_ms=reset_after_ms(resp.headers, time.time()),
            )
        if status >= 500:
            return False
        if status < 400:
            self.breaker.success(provider)
        worker_metrics.PROVIDER_CALLS.labels(provider, "answered").inc()
        return True
