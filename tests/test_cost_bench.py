"""The cost benchmark, small (``bench/cost.py --small``): a 20-step quest run through the real
step path against the offline Claude's honest prompt cache costs at least 3x less input and
2x less in all with caching than without, and a 60-step quest past the 200,000-token window
succeeds with elision where, without it, the API refuses its prompt. Costs are computed from
the usage the offline Claude reports, so they do not depend on the machine's speed; the step
time is printed, not asserted (timing belongs to the benchmark)."""

from __future__ import annotations

import pytest

from bench import cost

pytestmark = [pytest.mark.slow]


def test_caching_cuts_a_quests_cost_and_elision_keeps_a_long_quest_within_the_window(
    capsys: pytest.CaptureFixture[str],
) -> None:
    f = cost.run(quests=1)
    out = capsys.readouterr().out
    assert 2_500 <= f["first_prompt_tokens"] <= 3_500, out  # system, tools and goal
    assert f["input_ratio"] >= 3, out
    assert f["total_ratio"] >= 2, out
    assert f["cache_read_share"] >= 0.8, out
    assert (f["long_status"], f["long_steps"]) == ("succeeded", 60), out
    assert f["long_max_prompt_tokens"] <= 200_000, out
    assert f["long_unelided_status"] == "failed", out
    assert "prompt is too long" in (f["long_unelided_reason"] or ""), out
