"""The outage runbook's commands: pausing a provider opens the very circuit breaker the
workers consult (so its calls wait), resuming closes it; the queue view reads Dramatiq's keys."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest
import redis
from typer.testing import CliRunner, Result

from integrations import UnknownIntegration
from messages.transport import build_broker
from runtime.settings import Settings
from system2 import cli
from workers.integrations.breaker import Breaker


def ops(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(
        cli.app, ["ops", *args], env={"S2_REDIS_URL": settings.redis_url}, catch_exceptions=False
    )


def test_pause_and_resume_a_provider_through_its_breaker(
    settings: Settings, rds: redis.Redis
) -> None:
    breaker = Breaker(rds)
    assert breaker.state("demo") == "closed"

    paused = ops(settings, "provider", "pause", "demo", "--minutes", "2")
    assert paused.exit_code == 0, paused.output
    assert breaker.state("demo") == "open"
    assert 110_000 < breaker.open_for_ms("demo") <= 120_000  # what a worker's call sees
    status = json.loads(ops(settings, "provider", "status", "demo").stdout)
    assert status["state"] == "open" and 110 < status["open_for_s"] <= 120

    breaker.failure("demo")
    assert breaker.failure_count("demo") == 1
    assert json.loads(ops(settings, "provider", "status", "demo").stdout)["recent_failures"] == 1
    resumed = ops(settings, "provider", "resume", "demo")
    assert resumed.exit_code == 0
    assert breaker.state("demo") == "closed" and breaker.open_for_ms("demo") == 0
    assert json.loads(ops(settings, "provider", "status", "demo").stdout)["recent_failures"] == 0

    with pytest.raises(UnknownIntegration, match="no integration named 'nope'; known: demo"):
        ops(settings, "provider", "pause", "nope")


def test_queues_shows_depth_delay_and_age(settings: Settings, rds: redis.Redis) -> None:
    from dramatiq import Message

    broker = build_broker(settings.redis_url)
    try:
        for delay in (None, None, 60_000):
            broker.enqueue(
                Message(
                    queue_name="maintenance",
                    actor_name="nothing",
                    args=(),
                    kwargs={},
                    options={},
                    message_id=str(uuid4()),
                ),
                delay=delay,
            )
        shown = json.loads(ops(settings, "queues", "--json").stdout)
        row = next(q for q in shown if q["queue"] == "maintenance")
        assert (row["waiting"], row["delayed"], row["in_flight"]) == (2, 1, 0)
        assert row["oldest_age_s"] is not None and 0 <= row["oldest_age_s"] < 60
        table = ops(settings, "queues").stdout.splitlines()
        assert table[0].split() == ["queue", "waiting", "in-flight", "delayed", "dead", "oldest"]
        assert any(line.split()[:4] == ["maintenance", "2", "0", "1"] for line in table)
    finally:
        broker.close()
        rds.flushdb()
