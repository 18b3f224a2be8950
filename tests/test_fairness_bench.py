"""The fair-share benchmark, small enough for CI (``bench/fairness.py --small``): behind one
company's backlog of 600 quests, three small companies' quests start far sooner with fair
dispatch than in arrival order, no quest of any company is lost either way, and taking
steps company by company does not collapse the workers' throughput. The loose bounds are
what a user would notice; the benchmark's own targets are for the full run."""

from __future__ import annotations

import pytest

from bench import fairness
from bench.stack import percentile

# Serial: a benchmark that measures CPU and time must not share the cores (Makefile, "pytest").
pytestmark = [pytest.mark.slow, pytest.mark.serial]


def test_small_companies_start_in_their_turn_behind_a_backlog_and_nothing_is_lost(
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = fairness.measure(fairness.SMALL)
    clean = fairness.report(c)
    out = capsys.readouterr().out
    fifo, fair = c.fifo.backlog, c.fair.backlog

    # Every quest of every company ended, as it should have: none lost, none left queued.
    assert clean, out
    for run in (c.fifo, c.fair):
        assert run.backlog.ended_as_expected == run.backlog.submitted, out
        assert run.shares.ended_as_expected == run.shares.submitted, out
    # B, C, D submitted behind A's backlog: in arrival order they wait for it, in turn not.
    assert fifo.queued_at_others >= fairness.SMALL.backlog // 2, out
    fair_p99 = percentile(fair.others_start_ms(), 99)
    fifo_p99 = percentile(fifo.others_start_ms(), 99)
    assert fair_p99 <= 0.5 * fifo_p99, out
    # With every company backlogged, none is starved (an equal share is 25 %).
    assert all(c.fair.shares.share(label) >= 0.15 for label in fairness.LABELS), out
    # Turns cost little: the fair run's throughput is not collapsed (CPU is shared in CI).
    assert fair.total_rate >= 0.5 * fifo.total_rate, out
