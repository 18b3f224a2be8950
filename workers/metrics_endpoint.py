"""The HTTP endpoint a worker machine's Prometheus metrics are scraped on.

``system2 worker`` (``workers.fleet``) serves one per machine, on ``S2_METRICS_PORT``: its
parent process opens a ``GroupEndpoint``, which makes a fresh directory; every worker process
the parent starts has that directory as ``PROMETHEUS_MULTIPROC_DIR`` in its environment from
its first instruction, so prometheus-client keeps its collectors (``workers.worker_metrics``)
in memory-mapped files there (multiprocess mode); each scrape sums the files, read by the
directory's path, and adds the queue statistics (``runtime.queue_metrics``) and each
provider's circuit-breaker state, read from Redis at scrape time, once. A ``python -m
workers.app`` run alone serves its own registry through ``listen`` instead
(``workers.worker_metrics.serve``).

This module constructs no metric: the group's parent imports it, and writes no metric file of
its own whatever its environment holds.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import redis
import structlog
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector, CollectorRegistry

from integrations import PROVIDERS
from runtime import queue_metrics
from runtime.settings import Settings
from workers.integrations.breaker import Breaker

log = structlog.get_logger(__name__)

PORTS_TRIED = 64


class BreakerCollector(Collector):
    """Each provider's circuit-breaker state (shared in Redis), read at scrape time."""

    STATES = ("closed", "probing", "open")

    def __init__(self, breaker: Breaker) -> None:
        self.breaker = breaker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "s2_provider_breaker_state",
            "1 for the state each provider's circuit breaker is in (closed, probing, open)",
            labels=["provider", "state"],
        )
        for provider in PROVIDERS:
            try:
                now = self.breaker.state(provider)
            except redis.RedisError:
                continue
            for state in self.STATES:
                family.add_metric([provider, state], 1.0 if state == now else 0.0)
        yield family


def install_shared(client: redis.Redis, registry: CollectorRegistry) -> None:
    """The collectors a machine exports once: the queue statistics and the breaker states."""
    queue_metrics.install(client, registry, per_company=True)  # a private endpoint
    registry.register(BreakerCollector(Breaker(client)))


def listen(
    host: str, base: int, registry: CollectorRegistry, preferred: int | None = None
) -> tuple[int, WSGIServer] | None:
    """Serve ``registry`` on ``preferred`` (default ``base``), or on the first free port of
    ``base .. base+PORTS_TRIED-1`` if that one is taken; None if none is free. The server
    answers from a daemon thread of prometheus-client's."""
    first = base if preferred is None else preferred
    for port in [first, *(p for p in range(base, base + PORTS_TRIED) if p != first)]:
        try:
            server, _thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return port, server
    log.warning("no free metrics port", first=base, tried=PORTS_TRIED)
    return None


class GroupEndpoint:
    """The one metrics endpoint of a group of worker processes, served by their parent.

    ``open`` makes the directory and starts serving it (None, and no directory, when
    ``S2_METRICS_PORT`` is 0 or no port is free: the parent then gives its processes no
    directory); ``process_died`` drops a dead process's gauges of the ``live*`` modes
    (its counters and histograms stay in the sums, so they never go down); ``close`` stops
    serving and removes the directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory: str | None = None
        self.port: int | None = None
        self._server: WSGIServer | None = None
        self._client: redis.Redis | None = None

    def open(self) -> int | None:
        s = self.settings
        if not s.metrics_port:
            return None
        directory = tempfile.mkdtemp(prefix="s2-worker-metrics-")
        client = redis.Redis.from_url(s.redis_url, client_name="system2-worker-group")
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        install_shared(client, registry)
        found = listen(s.metrics_host, s.metrics_port, registry)
        if found is None:
            client.close()
            shutil.rmtree(directory, ignore_errors=True)
            return None
        self.port, self._server = found
        self.directory, self._client = directory, client
        log.info("metrics served", port=self.port, host=s.metrics_host, directory=directory)
        return self.port

    def process_died(self, pid: int) -> None:
        if self.directory is not None:
            mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
