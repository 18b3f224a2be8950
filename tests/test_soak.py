"""The soak, small enough for CI: workers killed every few seconds while quests use the demo
integration's tools and wait on a slow Claude; every quest completes, nothing is done or
charged twice, and the steps a killed process held run again within the bound."""

from __future__ import annotations

import re

import pytest

from bench import soak

# Serial: a benchmark that measures CPU and time must not share the cores (Makefile, "pytest").
pytestmark = [pytest.mark.slow, pytest.mark.serial]


def test_the_soak_loses_nothing_repeats_nothing_and_redelivers_in_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = soak.main(
        [
            *("--quests", "40", "--rate", "4", "--claude-hold", "2"),
            *("--kill-every", "7", "--deadline", "150"),
        ]
    )
    out = capsys.readouterr().out
    assert (
        "completed 40 / lost 0 / duplicated mutations 0 / duplicated audit rows 0 / double charges 0"
        in out
    ), out
    assert "workers killed" in out and "(0 workers killed" not in out, "workers were really killed"
    held = [int(n) for n in re.findall(r"had (\d+) steps in flight", out)]
    assert sum(held) > 0, f"no kill landed on a step in flight:\n{out}"
    found = re.search(r"redelivery max ([\d.]+) s \(bound 15 s\), never ran again 0;", out)
    assert found is not None, out
    assert float(found.group(1)) <= soak.REDELIVERY_BOUND_S, out
    assert code == 0, out
