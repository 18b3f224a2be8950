"""Prometheus metrics of the ingress: an ingress of several processes counts them all."""

from __future__ import annotations

from collections.abc import Iterable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from system2.procs import Proc, free_port, wait_http
from tests.conftest import Stack, system2

pytestmark = pytest.mark.slow


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(url, timeout=5).text
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples: Iterable[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(
        value
        for n, have, value in samples
        if n == name and all(have.get(k) == v for k, v in labels.items())
    )


def test_an_ingress_of_several_processes_reports_the_requests_of_all(stack: Stack) -> None:
    port = free_port()
    proc = Proc(
        "ingress-2",
        system2("ingress", "--port", str(port), "--workers", "2"),
        env=stack.env(),
        log_path=stack.logs / "ingress-2.log",
    ).start()
    stack.procs["ingress-2"] = proc
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", proc=proc)
    for _ in range(30):  # a connection each: the two processes share them out
        assert httpx.get(url + "/readyz").status_code == 200
    for _ in range(5):  # whichever process answers the scrape counts all 30
        assert total(scrape(url + "/metrics"), "s2_http_requests_total", route="/readyz") == 30
