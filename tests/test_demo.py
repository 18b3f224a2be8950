"""``system2 demo``, the main job end to end, run as a user runs it (after ``make demo``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.settings import Settings
from tests.conftest import settings_env

pytestmark = pytest.mark.slow
SYSTEM2 = str(Path(sys.executable).parent / "system2")


@pytest.mark.parametrize("sessions", [[], ["--signing-keys"]], ids=["hs256", "signing-keys"])
def test_the_demo_runs_the_whole_job_and_proves_what_it_claims(
    settings: Settings, sessions: list[str]
) -> None:
    """Either way a Supabase project signs sessions: the shared secret, or signing keys."""
    done = subprocess.run(
        [SYSTEM2, "demo", *sessions],
        env=settings_env(settings, COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    statuses = re.findall(r"│ (?:Acme Robotics|Globex Foods) +│ \w{8} +│ (\w+)", out)
    assert sorted(statuses) == sorted(["succeeded"] * 6 + ["failed", "halted", "cancelled"]), (
        statuses
    )
    assert "tasks created at the provider: 1" in out
    assert "connected github over OAuth" in out and "connected slack over OAuth" in out
    assert "acme-robotics/robots#1 'The printer is on fire': closed (completed)" in out
    assert re.search(r"Slack\s+#robots: Filed: created #1 .*issues/1", out), out[-3000:]
    assert "github.issue.created" in out and "slack.message.posted" in out
    assert "integration.connected" in out  # the OAuth connection is in the audit trail
    assert "task.created" in out and "guard.warn" in out and "quest.cancelled" in out
    assert "404 no such quest" in out and "403 not a member" in out
    assert "both refused" in out
    assert ("sessions: ES256" if sessions else "sessions: HS256") in out
