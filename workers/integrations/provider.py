"""Calling a provider's API: timeouts, a few quick retries with backoff on 5xx and connection
errors, and the provider's circuit breaker. When the provider is down the caller gets
``ProviderUnavailable`` and the step waits; it is never dropped.

Each request opens its own connection (no keep-alive) and registers its socket with the
step's call scope, so a cancel can cut a call that hangs before the provider answers.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from vault import Secret
from workers import metrics
from workers.cancel import Interrupted, current_scope, trace
from workers.errors import ProviderUnavailable
from workers.integrations.breaker import Breaker


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
        """One logical call; a 4xx answer is returned (the caller decides), 5xx and transport
        failures are retried, then reported as ``ProviderUnavailable``. ``url`` comes from
        ``workers.integrations.routes``; a redirect is never followed, so the token goes to
        that URL and nowhere else."""
        scope = current_scope()
        if scope is not None and scope.cancelled.is_set():
            metrics.PROVIDER_CALLS.labels(provider, "cancelled").inc()
            raise Interrupted(f"the {provider} call was not made: the quest was cancelled")
        closed_in = self.breaker.open_for_ms(provider)
        if closed_in:
            metrics.PROVIDER_CALLS.labels(provider, "breaker_open").inc()
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
                    metrics.PROVIDER_CALLS.labels(provider, "cancelled").inc()
                    raise Interrupted(
                        f"the {provider} call was cut: the quest was cancelled"
                    ) from None
                problem = f"{type(exc).__name__} calling {provider}"
                metrics.PROVIDER_ERRORS.labels(provider, "transport").inc()
            else:
                if resp.status_code < 500 and resp.status_code != 429:
                    self.breaker.success(provider)
                    metrics.PROVIDER_CALLS.labels(provider, "answered").inc()
                    return resp
                problem = f"{provider} answered {resp.status_code}"
                error = "http_429" if resp.status_code == 429 else "http_5xx"
                metrics.PROVIDER_ERRORS.labels(provider, error).inc()
            if self.breaker.failure(provider):
                metrics.BREAKER_TRIPS.labels(provider).inc()
                problem += "; its circuit breaker is open"
                break
        metrics.PROVIDER_CALLS.labels(provider, "unavailable").inc()
        raise ProviderUnavailable(
            problem, retry_after_ms=self.breaker.open_for_ms(provider) or 2_000
        )
