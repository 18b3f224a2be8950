"""``system2 demo``, the main job end to end, run as a user runs it (after ``make demo``)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect

from runtime.settings import Settings
from tests.browser import WatchedPage
from tests.conftest import settings_env
from tests.support import wait_for

pytestmark = pytest.mark.slow
SYSTEM2 = str(Path(sys.executable).parent / "system2")


CONSOLE_LINK = re.compile(
    r"operator console, as .+: (http://127\.0\.0\.1:\d+/console#token=[\w.-]{100,})\n"
)


@pytest.mark.parametrize("sessions", [[], ["--signing-keys"]], ids=["hs256", "signing-keys"])
def test_the_demo_runs_the_whole_job_and_proves_what_it_claims(
    settings: Settings, sessions: list[str], browser_page: WatchedPage
) -> None:
    """Either way a Supabase project signs sessions: the shared secret, or signing keys. The
    operator console's link the demo prints opens the console, signed in, while it runs."""
    demo = subprocess.Popen(
        [SYSTEM2, "demo", *sessions],
        env=settings_env(settings, COLUMNS="200"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout or ()), daemon=True)
    reader.start()
    try:
        link = wait_for(lambda: (m := CONSOLE_LINK.search("".join(lines))) and m[1], timeout=120)
        page = browser_page.page
        page.goto(link)
        acme = re.search(r"company Acme Robotics ([0-9a-f-]{36}) with admin", "".join(lines))
        assert acme, "".join(lines)[-2000:]
        # (alice is the admin of every demo's Acme this database has seen: this one is listed)
        expect(page.locator(f'#company option[value="{acme[1]}"]')).to_have_text(
            "Acme Robotics (admin)"
        )
        expect(page.locator("#app")).to_be_visible()
        assert "token" not in page.url
        assert browser_page.csp_violations() == []
        demo.wait(timeout=180)
    finally:
        if demo.poll() is None:  # the test failed first: the demo stops what it started
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
    reader.join(10)
    out = "".join(lines)
    assert demo.returncode == 0, out[-4000:]
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
    # The operator console's link, with a token of Acme's admin in its fragment, on one line.
    assert re.search(
        r"operator console, as .+: http://127\.0\.0\.1:\d+/console#token=[\w.-]{100,}\n", out
    )
