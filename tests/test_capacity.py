"""The capacity benchmark, small enough for CI: one worker process drains 200 held quests,
each in one attempt, within its RSS and connection bounds, and the benchmark reports the
floor a Claude call puts under any step."""

from __future__ import annotations

import re

import pytest

from bench import capacity

# Serial: a benchmark that measures CPU and time must not share the cores (Makefile, "pytest").
pytestmark = [pytest.mark.slow, pytest.mark.serial]


def test_one_process_drains_held_quests_in_one_attempt_each_within_its_bounds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = capacity.main(["--small"])
    out = capsys.readouterr().out
    assert code == 0, out
    row = re.search(r"\| 200 x 2 s \| [\d.]+ s \| (\d+) \| (\d+) \|.*\| 200 \| 200 \|", out)
    assert row is not None, out
    assert int(row.group(2)) >= 100, f"most quests should wait on Claude at once:\n{out}"
    floor = re.search(r"floor: one streamed Claude call costs the process ([\d.]+) ms", out)
    assert floor is not None and float(floor.group(1)) > 0, out
