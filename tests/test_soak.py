"""The soak, small enough for CI: workers killed every few seconds while quests use the demo
integration's tools; every quest completes, nothing is done or charged twice."""

from __future__ import annotations

import pytest

from bench import soak

pytestmark = pytest.mark.slow


def test_the_soak_loses_nothing_and_repeats_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code = soak.main(["--quests", "24", "--kill-every", "3", "--rate", "1.5", "--deadline", "150"])
    out = capsys.readouterr().out
    assert (
        "completed 24 / lost 0 / duplicated mutations 0 / duplicated audit rows 0 / double charges 0"
        in out
    ), out
    assert code == 0
    assert "workers killed" in out and "(0 workers killed" not in out, "workers were really killed"
