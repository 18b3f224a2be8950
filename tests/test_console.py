"""The operator console, in a real headless Chromium, against a real stack: the ingress and
worker processes, the offline Claude, Redis and Postgres. An admin signs in from the link
``make demo`` prints, watches a quest run live, cancels one mid-call and pages the audit trail;
a member sees only their company and none of the admins' views; a goal made of markup is shown
as text; and the page's strict Content-Security-Policy is never violated."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from playwright.sync_api import Page, expect

from ingress.routes_console import ASSETS, CSP, PAGE
from runtime.settings import Settings
from tests.browser import WatchedPage
from tests.conftest import Stack, Tenant, running_stack
from tests.support import InTenant, add_activity, quest_state, wait_for
from vault import new_key_entry

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "ingress" / "console"
SCREENSHOT = ROOT / ".s2" / "console.png"
STREAM_LIFE_S = 3


@pytest.fixture(scope="module")
def console_stack(
    settings: Settings,
    offline_claude: str,
    demo_provider: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """One ingress and one worker process for the module's tests (each test has companies of
    its own). Its live streams end every few seconds, so the console resumes them (with
    ``Last-Event-ID``) while the tests watch: nothing may be missed or shown twice."""
    with running_stack(settings, offline_claude, tmp_path_factory.mktemp("console")) as stack:
        stack.base_env.update(
            S2_SSE_MAX_LIFE_S=str(STREAM_LIFE_S),
            S2_VAULT_KEYS=new_key_entry(datetime.now(UTC)),  # integrations can be connected
            S2_DEMO_PROVIDER_URL=demo_provider,
        )
        stack.start_ingress()
        stack.start_workers(processes=1)
        yield stack


def submit(stack: Stack, tenant: Tenant, goal: str, user: str | None = None) -> str:
    r = httpx.post(
        f"{stack.ingress_url}/v1/companies/{tenant.id}/quests",
        json={"goal": goal},
        headers=tenant.headers(user),
        timeout=10,
    )
    assert r.status_code == 202, r.text
    return str(r.json()["quest_id"])


def quest(stack: Stack, tenant: Tenant, quest_id: str) -> dict[str, Any]:
    r = httpx.get(
        f"{stack.ingress_url}/v1/companies/{tenant.id}/quests/{quest_id}",
        headers=tenant.headers(),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def finished(stack: Stack, tenant: Tenant, quest_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: q if (q := quest(stack, tenant, quest_id))["finished_at"] else None, timeout=30
    )


def sign_in(page: Page, stack: Stack, tenant: Tenant, user: str | None = None) -> None:
    """Open the console from the link ``make demo`` prints: the token in the fragment."""
    page.goto(f"{stack.ingress_url}/console#token={tenant.token(user)}")
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#company")).to_have_value(str(tenant.id))


def open_quest(page: Page, quest_id: str) -> None:
    page.fill("#open-quest-input", quest_id)
    page.click("#open-quest-form button")
    expect(page.locator("#quest-id")).to_have_text(quest_id)


def assert_no_csp_violation(watched: WatchedPage) -> None:
    assert watched.csp_violations() == [], watched.console
    assert watched.errors == [], watched.errors


# --- the page itself ----------------------------------------------------------------------


def test_the_console_is_served_without_a_token_under_a_strict_policy(
    console_stack: Stack,
) -> None:
    for path in ("/console", "/console/", *(f"/console/{name}" for name in ASSETS)):
        r = httpx.get(console_stack.ingress_url + path, timeout=10)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    for policy in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"):
        assert policy in CSP
    assert "unsafe" not in CSP
    page = httpx.get(console_stack.ingress_url + "/console", timeout=10)
    assert page.headers["content-type"].startswith("text/html")
    for name in ("../routes_console.py", "index.html.bak", "%2e%2e%2fapp.py"):
        assert httpx.get(f"{console_stack.ingress_url}/console/{name}").status_code == 404
    assert "/console" not in httpx.get(console_stack.ingress_url + "/openapi.json").text


def test_the_console_has_no_inline_code_and_builds_its_page_from_text_only() -> None:
    html = (CONSOLE / PAGE).read_text()
    scripts_js = "\n".join(p.read_text() for p in sorted(CONSOLE.glob("*.js")))
    js = re.sub(r"^\s*//.*$", "", scripts_js, flags=re.M)  # code only
    # Every script is a file of this origin; no inline script, style or event handler.
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler"
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "Function(",
    ):
        assert sink not in js, sink
    # The token goes to this origin only: every request is a relative /v1/ path.
    assert re.findall(r"\bfetch\((?!ownPath\()", js) == [], "a fetch not checked by ownPath"
    assert "XMLHttpRequest" not in js and "EventSource(" not in js and "WebSocket" not in js
    sizes = {p.name: p.stat().st_size for p in sorted(CONSOLE.iterdir())}
    print(f"console static files: {sizes}, {sum(sizes.values())} bytes in all")
    assert set(sizes) == {PAGE, *ASSETS}


def test_the_pages_policy_refuses_inline_script_and_the_tests_see_it(
    console_stack: Stack, browser_page: WatchedPage
) -> None:
    """The control for every ``assert_no_csp_violation`` below: an injected inline script is
    refused by the browser, and reported."""
    page = browser_page.page
    page.goto(console_stack.ingress_url + "/console")
    expect(page.locator("#sign-in")).to_be_visible()
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__ran = 1'; document.body.append(s); }"
    )
    assert page.evaluate("window.__ran") is None
    wait_for(browser_page.csp_violations, timeout=5)


# --- signed in ----------------------------------------------------------------------------


def test_a_pasted_token_signs_in_and_a_refused_one_signs_out(
    console_stack: Stack, tenant: Tenant, browser_page: WatchedPage
) -> None:
    page = browser_page.page
    page.goto(console_stack.ingress_url + "/console")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    page.fill("#token-input", tenant.token())
    page.click("#sign-in-form button")
    expect(page.locator("#company")).to_have_value(str(tenant.id))
    expect(page.locator("#who")).to_have_text(f"signed in as {tenant.admin}")
    page.reload()  # the tab keeps the token
    expect(page.locator("#company")).to_have_value(str(tenant.id))
    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('s2.console.token')") is None

    page.fill("#token-input", tenant.token(f"nobody-{tenant.id.hex[:6]}"))  # no company
    page.click("#sign-in-form button")
    expect(page.locator("#notice")).to_have_text("You are not a member of any company.")
    expect(page.locator("#app")).to_be_hidden()
    page.click("#sign-out")

    page.fill("#token-input", tenant.token(ttl_s=-60))  # expired
    page.click("#sign-in-form button")
    expect(page.locator("#notice")).to_contain_text("token expired")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    assert_no_csp_violation(browser_page)


def test_an_admin_signs_in_from_the_link_and_watches_a_quest_run_live(
    console_stack: Stack, tenant: Tenant, browser_page: WatchedPage
) -> None:
    page = browser_page.page
    streams: list[tuple[str, str | None]] = []
    page.on(
        "request",
        lambda r: (
            streams.append((r.url, r.headers.get("last-event-id")))
            if r.url.endswith("/events")
            else None
        ),
    )
    sign_in(page, console_stack, tenant)
    assert "token" not in page.url, "the token stays in the address bar"
    assert page.evaluate("sessionStorage.getItem('s2.console.token')")
    page.evaluate("window.__notReloaded = true")

    quest_id = submit(console_stack, tenant, "[script:watched_notes] plan the offsite")
    row = page.locator(f'#quest-rows tr[data-quest-id="{quest_id}"]')
    expect(row).to_be_visible()  # from the company's live feed, no reload
    row.click()
    status = page.locator("#quest-status")
    timeline = page.locator("#timeline")
    # Step 1 comes and goes while the quest runs on (step 2 thinks for 8 s): each event
    # appears as it happens, with Ted's rationale and the step's cost.
    called = timeline.locator("li[data-kind='tool.called']")
    expect(called.first).to_contain_text("calls add_note")
    expect(called.first).to_contain_text("I'll write the goal down first.")
    expect(timeline.locator("li[data-kind='step.finished']").first).to_contain_text("step 1")
    expect(page.locator("#step-rows tr[data-step='1']")).to_contain_text("add_note")
    expect(page.locator("#step-rows tr[data-step='1']")).to_contain_text("$0.")
    expect(row.locator("td").nth(2)).to_have_text("1")  # the list's step count, from the feed
    expect(status).to_have_text("running")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"screenshot of the console during a live quest: {SCREENSHOT}")

    expect(called).to_have_count(2, timeout=30_000)
    expect(called.nth(1)).to_contain_text("Now a second note, after some thought.")
    expect(status).to_have_text("succeeded", timeout=30_000)
    expect(page.locator("#step-rows tr")).to_have_count(3)
    # The streams were resumed a few times meanwhile: every event shown once, in order.
    # Every step's step.finished, the last one's included: it comes before the quest.state
    # where the stream ends.
    expect(timeline.locator("li[data-kind='step.finished']")).to_have_count(3)
    expect(timeline.locator("li[data-kind='quest.state']").last).to_contain_text("succeeded")
    expect(called).to_have_count(2)
    quest_streams = [last for url, last in streams if f"/quests/{quest_id}/" in url]
    assert len(quest_streams) >= 2 and quest_streams[0] is None, streams
    assert all(quest_streams[1:]), "a resumed stream names the last event it saw"
    feed = [last for url, last in streams if url.endswith(f"/companies/{tenant.id}/events")]
    assert len(feed) >= 2 and any(feed), streams
    steps = timeline.locator("li .step").all_inner_texts()
    assert steps == sorted(steps, key=lambda t: int(t.split()[-1]) if t else 0), steps
    expect(page.locator("#quest-outcome")).to_contain_text("Two notes taken: plan the offsite")
    expect(page.locator("#quest-facts")).to_contain_text("$0.")
    expect(row.locator("[data-status]")).to_have_text("succeeded")
    assert page.evaluate("window.__notReloaded") is True
    assert_no_csp_violation(browser_page)


def test_an_admin_cancels_a_quest_from_the_console_while_it_waits_on_claude(
    console_stack: Stack, tenant: Tenant, in_tenant: InTenant, browser_page: WatchedPage
) -> None:
    page = browser_page.page
    sign_in(page, console_stack, tenant)
    quest_id = submit(console_stack, tenant, "[script:slow_notes] think hard, then note it")
    open_quest(page, quest_id)
    expect(page.locator("#quest-status")).to_have_text("running", timeout=15_000)
    wait_for(
        lambda: (q := quest_state(in_tenant, tenant.id, UUID(quest_id))).step_claimed > q.steps_done
    )
    time.sleep(0.5)  # the call is out: the offline Claude holds its reply for 30 s
    t0 = time.monotonic()
    page.click("#quest-cancel")
    expect(page.locator("#quest-status")).to_have_text("cancelled", timeout=10_000)
    assert time.monotonic() - t0 < 10
    expect(page.locator("#quest-cancel")).to_be_hidden()
    expect(page.locator("#timeline li[data-kind='quest.state']").last).to_contain_text(
        "quest cancelled"
    )
    ended = quest(console_stack, tenant, quest_id)
    assert ended["status"] == "cancelled"
    assert "cancelled from the operator console" in ended["reason"]
    assert_no_csp_violation(browser_page)


def test_an_admin_sees_the_guards_spend_against_caps_and_the_integrations_status(
    console_stack: Stack, tenant: Tenant, browser_page: WatchedPage
) -> None:
    page_answer = console_stack.connect(tenant, "demo", login_hint=str(tenant.id))
    assert page_answer.status_code == 200, page_answer.text
    quest_id = submit(console_stack, tenant, "[script:tasks] renew the robot insurance")
    assert finished(console_stack, tenant, quest_id)["status"] == "succeeded"
    page = browser_page.page
    sign_in(page, console_stack, tenant)
    day = page.locator("#guard-rows tr[data-scope='day']")
    expect(day).to_contain_text("$100.0000")  # the default daily budget
    expect(day.locator(".badge")).to_have_text("ok")
    spent = day.locator("td").nth(2)
    expect(spent).not_to_have_text("$0.0000")  # the quest's calls, settled
    expect(page.locator("#guard-rows tr[data-scope='month']")).to_contain_text("$1000.0000")
    assert day.locator("meter").get_attribute("max") == "100000000"
    integration = page.locator("#integration-rows tr[data-integration='demo']")
    expect(integration).to_contain_text("connected")
    expect(page.locator("#integrations-status")).to_have_text("")
    # The task Ted created is an action in the audit trail, with its rationale.
    expect(page.locator("#audit-rows")).to_contain_text("task.created")
    expect(page.locator("#audit-rows")).to_contain_text("I'll put this on the team's task list")
    assert_no_csp_violation(browser_page)


def test_an_admin_pages_and_filters_the_audit_trail(
    console_stack: Stack, tenant: Tenant, in_tenant: InTenant, browser_page: WatchedPage
) -> None:
    ids = add_activity(in_tenant, tenant.id, 12)  # newest first
    page = browser_page.page
    sign_in(page, console_stack, tenant)
    form = page.locator("#audit-form")
    form.locator("select[name=limit]").select_option("5")
    form.locator("input[name=action]").fill("note.added")
    form.locator("input[name=actor]").fill("ted")
    form.locator("button[type=submit]").click()
    rows = page.locator("#audit-rows tr")

    def shown() -> list[int]:
        return [int(i) for i in rows.evaluate_all("rs => rs.map(r => r.dataset.activityId)")]

    seen = []
    for number, expected in ((1, ids[0:5]), (2, ids[5:10]), (3, ids[10:12])):
        expect(page.locator("#audit-page")).to_have_text(f"page {number}")
        expect(rows).to_have_count(len(expected))
        assert shown() == expected
        seen += shown()
        if number < 3:
            page.click("#audit-next")
    expect(page.locator("#audit-next")).to_be_disabled()
    assert seen == ids
    expect(rows.first).to_contain_text("because the test said so")

    page.click("#audit-first")
    expect(page.locator("#audit-page")).to_have_text("page 1")
    expect(rows).to_have_count(5)
    assert shown() == ids[0:5]

    form.locator("input[name=action]").fill("quest.nothing_like_it")
    form.locator("button[type=submit]").click()
    expect(page.locator("#audit-status")).to_have_text("No entries.")
    expect(rows).to_have_count(0)
    assert_no_csp_violation(browser_page)


def test_a_member_sees_their_company_only_and_none_of_the_admins_views(
    console_stack: Stack,
    make_tenant: Callable[[str], Tenant],
    browser_page: WatchedPage,
) -> None:
    a, b = make_tenant("Acme Robotics"), make_tenant("Globex Foods")
    mine = submit(console_stack, a, "[script:answer] the member's own errand", user=a.member)
    theirs = submit(console_stack, b, "[script:answer] Globex's secret plan")
    finished(console_stack, b, theirs)
    finished(console_stack, a, mine)
    page = browser_page.page
    sign_in(page, console_stack, a, user=a.member)
    expect(page.locator("#role")).to_have_text("member")
    expect(page.locator("#company option")).to_have_count(1)
    expect(page.locator("#company option")).to_contain_text("Acme Robotics")
    expect(page.locator(f'#quest-rows tr[data-quest-id="{mine}"]')).to_be_visible()
    expect(page.locator("#guard")).to_be_hidden()
    expect(page.locator("#audit")).to_be_hidden()
    expect(page.locator("#integrations")).to_be_visible()
    page.select_option("#quest-filter", "live")  # the member's quest has ended
    expect(page.locator("#quests-status")).to_have_text("No quests match.")
    page.select_option("#quest-filter", "ended")
    expect(page.locator(f'#quest-rows tr[data-quest-id="{mine}"]')).to_be_visible()

    open_quest(page, theirs)  # another company's quest, by its id
    expect(page.locator("#notice")).to_contain_text("no such quest")
    expect(page.locator("#quest")).to_be_hidden()
    body = page.locator("body").inner_text()
    assert "Globex" not in body and str(b.id) not in body
    assert page.locator(f'#quest-rows tr[data-quest-id="{theirs}"]').count() == 0

    # What the console hides, the API refuses anyway.
    for path in ("guard", "activity"):
        r = httpx.get(
            f"{console_stack.ingress_url}/v1/companies/{a.id}/{path}",
            headers=a.headers(a.member),
            timeout=10,
        )
        assert r.status_code == 403, (path, r.text)
    assert_no_csp_violation(browser_page)


def test_a_goal_made_of_markup_is_shown_as_text(
    console_stack: Stack, tenant: Tenant, browser_page: WatchedPage
) -> None:
    markup = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script> & "done"'
    quest_id = submit(console_stack, tenant, "[script:answer] " + markup)
    finished(console_stack, tenant, quest_id)
    page = browser_page.page
    sign_in(page, console_stack, tenant)
    row = page.locator(f'#quest-rows tr[data-quest-id="{quest_id}"]')
    expect(row).to_contain_text(markup)
    row.click()
    expect(page.locator("#quest-goal")).to_have_text("[script:answer] " + markup)
    expect(page.locator("#quest-outcome")).to_contain_text(markup)  # Claude's answer quotes it
    assert page.evaluate("window.__xss") is None
    assert page.locator("img").count() == 0
    assert page.locator("body script").count() == 0
    assert_no_csp_violation(browser_page)
