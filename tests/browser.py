"""A real browser for the tests: the machine's Chromium (Debian's ``chromium`` package, which
``make browser`` and ``.ci/run`` install when missing), driven by Playwright's Python API.
Playwright's own browser downloads are never used (``playwright install`` is not run).

``chromium`` is one headless browser per test module; ``browser_page`` a fresh context and page
per test that records what the page's console said and every Content-Security-Policy
violation, so a test can assert there were none. A missing Chromium fails the tests that need
it, never skips them: a browser test that did not run must not pass.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

DEBIAN_CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 15_000  # what a page may take to show something, on a loaded 2-core CI machine
# Seen by the page before any of its own scripts: CSP violations as the page's own event.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


def chromium_path() -> Path:
    """Debian's Chromium, or the one ``S2_TEST_CHROMIUM`` names (another distribution's)."""
    named = os.environ.get("S2_TEST_CHROMIUM")
    if named:
        found = Path(named) if Path(named).is_file() else None
    else:
        named = DEBIAN_CHROMIUM
        on_path = shutil.which("chromium")
        found = Path(named) if Path(named).is_file() else Path(on_path) if on_path else None
    if found is None:
        pytest.fail(
            f"no Chromium at {named}: `make browser` installs Debian's chromium package "
            "(as root), or set S2_TEST_CHROMIUM to a Chromium binary"
        )
    return found


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Chromium for the module's tests."""
    executable = chromium_path()
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(executable), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class WatchedPage:
    """A page, and what its console said while the test ran."""

    page: Page
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        reported = [m for m in self.console if "Content Security Policy" in m]
        try:
            seen = self.page.evaluate("window.__cspViolations || []")
        except Exception:  # the page is gone (closed, navigating): its console still counts
            seen = []
        return reported + [f"securitypolicyviolation: {v}" for v in seen]


@pytest.fixture
def browser_page(chromium: Browser) -> Iterator[WatchedPage]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    watched = WatchedPage(page)

    def on_console(message: ConsoleMessage) -> None:
        watched.console.append(f"{message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.errors.append(str(exc)))
    try:
        yield watched
    finally:
        context.close()
