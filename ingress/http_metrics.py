"""The ingress's Prometheus metrics, served at ``GET /metrics``.

Module-level collectors (the prometheus-client norm). Requests are labelled by route
*template* (``/v1/companies/{company_id}/quests``), never by the raw path, so no tenant id
becomes a label and the series stay few. ``system2 ingress --workers N`` (N > 1) runs N
uvicorn processes behind one port, and a scrape reaches any one of them; so they start with
``PROMETHEUS_MULTIPROC_DIR`` set to a fresh directory in their environment, each process
writes its counters there, and ``/metrics`` answers the sum over all of them
(prometheus-client's multiprocess mode; ``exposition`` is given the directory from settings).
With one process the ordinary registry is served. The queue statistics
(``runtime.queue_metrics``) are read from Redis at scrape time, once, in their own registry.
"""

from __future__ import annotations

import time

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SUBMIT_ROUTE = "/v1/companies/{company_id}/quests"

REQUESTS = Counter(
    "s2_http_requests", "HTTP requests answered by the ingress", ["method", "route", "status"]
)
LATENCY = Histogram(
    "s2_http_request_duration_seconds",
    "Time to answer an HTTP request (to the response start; SSE streams excluded)",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SUBMITS = Counter("s2_ingress_submits", "Quest submissions, by HTTP status", ["status"])
THROTTLED = Counter(
    "s2_ingress_throttled", "Requests refused with 429: a company over its quest limits"
)
UNAVAILABLE = Counter(
    "s2_ingress_unavailable",
    "Requests answered 503 because a dependency was down, by dependency",
    ["dependency"],
)


QUEUES = CollectorRegistry(auto_describe=True)  # queue statistics, collected at scrape time


def exposition(shared: str | None) -> bytes:
    """The text ``/metrics`` answers: this process's (or, with ``shared``, the settings'
    ``PROMETHEUS_MULTIPROC_DIR``, all processes') metrics and the queue statistics."""
    registry = REGISTRY
    if shared:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=shared)  # type: ignore[no-untyped-call]
    return generate_latest(registry) + generate_latest(QUEUES)


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestMetrics:
    """Pure ASGI middleware counting each request by method, route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler becomes a 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                LATENCY.labels(route_of(scope)).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            route = route_of(scope)
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            if route == SUBMIT_ROUTE and scope["method"] == "POST":
                SUBMITS.labels(str(status)).inc()
