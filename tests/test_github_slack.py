"""GitHub and Slack on real parts: their loopback stand-ins (each provider's wire format:
GitHub's REST API and App tokens, Slack's Web API with token rotation), connected through the
OAuth flow at the ingress, and the workers' real tools, in worker processes or on the tests'
loop as a worker runs them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import redis
from pydantic import SecretStr

from integrations.providers import github as github_provider
from runtime.settings import Settings
from runtime.wiring import build_vault
from store import activity as activity_store
from store.activity import ActivityFilter
from system2.procs import Proc, free_port, wait_http
from tests.conftest import Stack, Tenant
from tests.support import InTenant, submit, wait_finished, wait_for
from tests.test_integrations import fresh_key, worker_clients
from tests.test_quest_runner import start
from workers.errors import ProviderUnavailable, TryLater
from workers.integrations.errors import NeedsReconnect, ProviderRateLimited
from workers.integrations.registry import integration_tools
from workers.tools import TOOL_RESULT_MAX_CHARS, Tool, ToolCall, ToolOutcome, bounded

pytestmark = pytest.mark.slow


def _standin(module: str, tmp: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp.mktemp("logs") / f"{module}.log"
    argv = [sys.executable, "-m", f"standins.{module}", "--port", str(port)]
    proc = Proc(module, argv, log_path=log).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/", proc=proc)
        yield url
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def github(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _standin("github", tmp_path_factory)


@pytest.fixture(scope="session")
def slack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _standin("slack", tmp_path_factory)


@pytest.fixture
def key() -> str:
    return fresh_key()


@pytest.fixture
def pstack(stack: Stack, github: str, slack: str, key: str) -> Iterator[Stack]:
    """A stack whose processes reach both stand-ins and hold the vault's key."""
    for url in (github, slack):
        httpx.delete(url + "/_faults")
    stack.base_env.update(
        S2_VAULT_KEYS=key,
        S2_GITHUB_PROVIDER_URL=github,
        S2_GITHUB_OAUTH_URL=github,
        S2_SLACK_PROVIDER_URL=slack + "/api",
        S2_SLACK_OAUTH_URL=slack,
    )
    yield stack
    for url in (github, slack):
        httpx.delete(url + "/_faults")


@dataclass(frozen=True)
class Places:
    """Where one company works: its GitHub user and repository, its Slack workspace and
    channel, and a message in that channel to reply to."""

    login: str
    owner: str
    repo: str
    team: str
    channel: str
    thread_ts: str


def places(github: str, slack: str) -> Places:
    tag = uuid.uuid4().hex[:8]
    login, team = f"user-{tag}", f"T{tag.upper()}"
    seeded = httpx.post(
        github + "/_repos", json={"owner": f"org-{tag}", "name": "widgets", "logins": [login]}
    )
    assert seeded.status_code in (200, 201), seeded.text
    channel = httpx.post(slack + "/_channels", json={"team": team, "name": "ops", "member": True})
    assert channel.status_code in (200, 201), channel.text
    said = httpx.post(
        slack + "/_messages",
        json={"team": team, "channel": channel.json()["id"], "text": "printer?", "user": "U1"},
    ).json()
    return Places(login, f"org-{tag}", "widgets", team, channel.json()["id"], said["ts"])


def connect_both(stack: Stack, tenant: Tenant, where: Places) -> None:
    for name, login in (("github", {"login": where.login}), ("slack", {"team": where.team})):
        page = stack.connect(tenant, name, **login)
        assert page.status_code == 200 and 'data-reason="connected"' in page.text, page.text


def repo_state(github: str, where: Places) -> dict[str, Any]:
    repos = httpx.get(github + "/_state").json()["repos"]
    (found,) = [r for r in repos if r["owner"] == where.owner and r["name"] == where.repo]
    return dict(found)


def channel_messages(slack: str, where: Places) -> list[dict[str, Any]]:
    team = httpx.get(slack + "/_state").json()["teams"][where.team]
    (channel,) = [c for c in team["channels"] if c["id"] == where.channel]
    return list(channel["messages"])


def requests_of(github: str, login: str) -> list[dict[str, Any]]:
    return list(httpx.get(github + "/_requests", params={"login": login}).json()["requests"])


def audited(in_tenant: InTenant, tenant: Tenant, quest_id: uuid.UUID) -> list[Any]:
    rows, _ = in_tenant(
        tenant.id, lambda tx: activity_store.page(tx, ActivityFilter(quest_id=quest_id))
    )
    return list(rows)


# -- a whole quest, in worker processes ------------------------------------------------------------


def test_ted_files_an_issue_tells_slack_and_closes_it_through_every_tool(
    pstack: Stack, in_tenant: InTenant, tenant: Tenant, github: str, slack: str
) -> None:
    where = places(github, slack)
    connect_both(pstack, tenant, where)
    pstack.start_workers(processes=1)
    goal = f"[script:github_to_slack] {where.owner} {where.repo} {where.channel} {where.thread_ts}"
    quest = submit(in_tenant, pstack.settings.redis_url, tenant.id, goal)
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=60)
    assert done.status == "succeeded", done.reason

    (issue,) = repo_state(github, where)["issues"]
    assert issue["title"] == "The printer is on fire" and issue["state"] == "closed"
    assert issue["state_reason"] == "completed"
    assert set(issue["labels"]) == {"ted", "triaged"}
    assert "<!-- system2-action:" in issue["body"], "the hidden mark of our call"
    assert [c["body"].split("\n\n<!--")[0] for c in issue["comments"]] == ["Posted to Slack."]
    html_url = f"https://github.com/{where.owner}/{where.repo}/issues/{issue['number']}"

    messages = channel_messages(slack, where)
    (posted,) = [m for m in messages if m["text"].startswith("Filed:")]
    assert html_url in posted["text"], "the link of the issue Ted filed"
    assert posted["metadata"]["event_type"] == "system2_action"
    (reply,) = [
        m for m in messages if m.get("thread_ts") == where.thread_ts and m["ts"] != where.thread_ts
    ]
    assert reply["text"] == "On it: see the issue."

    for request in requests_of(github, where.login):  # every call as GitHub asks to be called
        assert request["api_version"] == "2022-11-28"
        assert request["accept"] == "application/vnd.github+json"

    actions = {
        "github.issue.created",
        "slack.message.posted",
        "slack.message.replied",
        "github.comment.created",
        "github.labels.added",
        "github.issue.closed",
    }

    def all_rows() -> list[Any] | None:
        rows = [r for r in audited(in_tenant, tenant, quest.id) if r.action in actions]
        return rows if len(rows) == len(actions) else None

    rows = wait_for(all_rows)
    assert {r.action for r in rows} == actions
    for row in rows:
        assert row.rationale, row.action
        assert row.originating_message_id == quest.origin_message_id


def test_a_rate_limit_delays_the_step_which_then_files_the_issue_once(
    pstack: Stack, in_tenant: InTenant, tenant: Tenant, github: str, slack: str
) -> None:
    where = places(github, slack)
    connect_both(pstack, tenant, where)
    pstack.start_workers(processes=1)
    issues = f"/repos/{where.owner}/{where.repo}/issues"
    fault = {"kind": "primary_rate_limit", "reset_s": 2, "count": 1, "paths": [issues]}
    httpx.post(github + "/_faults", json={**fault, "methods": ["POST"]}).raise_for_status()
    quest = submit(
        in_tenant,
        pstack.settings.redis_url,
        tenant.id,
        f"[script:github_issue] {where.owner} {where.repo} Replace the fan",
    )
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=60)
    assert done.status == "succeeded", done.reason
    assert len(repo_state(github, where)["issues"]) == 1
    posts = [
        r for r in requests_of(github, where.login) if r["method"] == "POST" and r["path"] == issues
    ]
    assert [r["status"] for r in posts] == [403, 201], "refused once, then performed once"
    assert redis.Redis.from_url(pstack.settings.redis_url).get("s2:breaker:github:failures") is None


def test_a_worker_killed_while_github_performs_the_call_files_the_issue_once(
    pstack: Stack, in_tenant: InTenant, tenant: Tenant, github: str, slack: str
) -> None:
    """kill -9 at the worst moment: the provider has the request and will perform it, and
    the worker dies before it hears the answer, let alone records it."""
    where = places(github, slack)
    connect_both(pstack, tenant, where)
    issues = f"/repos/{where.owner}/{where.repo}/issues"
    hold = {"delay_s": 3, "count": 1, "paths": [issues], "methods": ["POST"]}
    httpx.post(github + "/_faults", json=hold).raise_for_status()
    workers = pstack.start_workers("doomed", processes=1)
    quest = submit(
        in_tenant,
        pstack.settings.redis_url,
        tenant.id,
        f"[script:github_issue] {where.owner} {where.repo} Order toner",
    )
    wait_for(lambda: any(r["path"] == issues for r in requests_of(github, where.login)) or None)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(workers.pid, signal.SIGKILL)
    workers.stop()
    wait_for(lambda: len(repo_state(github, where)["issues"]) == 1 or None)  # GitHub did it
    pstack.start_workers("after", processes=1)
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=120)
    assert done.status == "succeeded", done.reason
    (issue,) = repo_state(github, where)["issues"]
    assert issue["title"].endswith(" Order toner")
    posts = [r for r in requests_of(github, where.login) if r["method"] == "POST"]
    assert len(posts) == 1, "found by its mark, not filed again"


# -- the tools as a worker runs them, on the tests' loop -------------------------------------------


@dataclass
class Wired:
    """Both providers' tools, wired as a worker wires them, for one started quest."""

    store: InTenant
    tools: dict[str, Tool]
    quest_id: uuid.UUID
    company_id: uuid.UUID

    def call(self, name: str, use: str = "toolu_1", **inp: Any) -> ToolOutcome:
        return self.store.run(self.tools[name].run(self.tool_call(use, inp)))

    def tool_call(self, use: str, inp: dict[str, Any]) -> ToolCall:
        return ToolCall(self.company_id, self.quest_id, 1, use, inp)


@contextlib.contextmanager
def wired(
    settings: Settings, in_tenant: InTenant, rds: redis.Redis, key: str, github: str, slack: str
) -> Iterator[dict[str, Tool]]:
    s = (
        settings.with_integration("github", api_url=github, oauth_url=github)
        .with_integration("slack", api_url=slack + "/api", oauth_url=slack)
        .model_copy(
            update={"vault_keys": SecretStr(key), "provider_timeout_s": 1.0, "provider_retries": 0}
        )
    )
    with worker_clients(s, in_tenant.loop, in_tenant.db) as clients:
        tools = integration_tools(s, clients.db, clients.redis, build_vault(s, rds), clients.http)
        yield {t.name: t for name in ("github", "slack") for t in tools[name]}


@pytest.fixture
def tools(
    pstack: Stack,
    settings: Settings,
    in_tenant: InTenant,
    rds: redis.Redis,
    key: str,
    github: str,
    slack: str,
) -> Iterator[dict[str, Tool]]:
    with wired(settings, in_tenant, rds, key, github, slack) as found:
        yield found


def for_quest(tools: dict[str, Tool], in_tenant: InTenant, tenant: Tenant) -> Wired:
    quest_id = start(in_tenant, tenant, "[script:answer] work").payload.quest_id
    return Wired(in_tenant, tools, quest_id, tenant.id)


def test_secondary_limits_and_slack_429s_delay_without_failing_or_tripping_the_breaker(
    pstack: Stack,
    tools: dict[str, Tool],
    in_tenant: InTenant,
    tenant: Tenant,
    github: str,
    slack: str,
    rds: redis.Redis,
) -> None:
    where = places(github, slack)
    connect_both(pstack, tenant, where)
    ted = for_quest(tools, in_tenant, tenant)
    repo = {"owner": where.owner, "repo": where.repo}
    for status in (403, 429):
        secondary = {"kind": "secondary_rate_limit", "status": status, "retry_after_s": 7}
        httpx.post(github + "/_faults", json={**secondary, "count": 1}).raise_for_status()
        with pytest.raises(ProviderRateLimited) as waited:
            ted.call("github_list_issues", **repo)
        assert waited.value.retry_after_ms is not None and waited.value.retry_after_ms >= 7_000
    assert not ted.call("github_list_issues", **repo).is_error
    httpx.post(
        slack + "/_faults",
        json={"status": 429, "retry_after_s": 3, "count": 1, "methods": ["chat.postMessage"]},
    ).raise_for_status()
    with pytest.raises(ProviderRateLimited) as waited:
        ted.call("slack_post_message", channel=where.channel, text="hello")
    assert waited.value.retry_after_ms is not None and waited.value.retry_after_ms >= 3_000
    posted = ted.call("slack_post_message", channel=where.channel, text="hello")
    assert not posted.is_error and posted.action == "slack.message.posted"
    assert [m["text"] for m in channel_messages(slack, where)].count("hello") == 1
    assert rds.get("s2:breaker:github:failures") is None
    assert rds.get("s2:breaker:slack:failures") is None


@pytest.mark.parametrize("provider", ["github", "slack"])
def test_a_revoked_grant_marks_the_connection_for_reconnection(
    provider: str,
    pstack: Stack,
    tools: dict[str, Tool],
    in_tenant: InTenant,
    tenant: Tenant,
    github: str,
    slack: str,
) -> None:
    where = places(github, slack)
    connect_both(pstack, tenant, where)
    ted = for_quest(tools, in_tenant, tenant)
    if provider == "github":
        httpx.post(github + "/_revoke", json={"login": where.login}).raise_for_status()
        tool, inp = "github_list_issues", {"owner": where.owner, "repo": where.repo}
    else:
        httpx.post(slack + "/_revoke", json={"team": where.team}).raise_for_status()
        tool, inp = "slack_read_messages", {"channel": where.channel}
    with pytest.raises(NeedsReconnect):
        ted.call(tool, **inp)
    listed = httpx.get(
        f"{pstack.ingress_url}/v1/companies/{tenant.id}/integrations", headers=tenant.headers()
    ).json()
    status = {i["integration"]: i["status"] for i in listed}
    assert status[provider] == "needs_reconnect"
    assert status[{"github": "slack", "slack": "github"}[provider]] == "connected"


@pytest.mark.parametrize("provider", ["github", "slack"])
def test_sixteen_concurrent_calls_on_an_expired_token_refresh_it_once(
    provider: str,
    pstack: Stack,
    tools: dict[str, Tool],
    in_tenant: InTenant,
    tenant: Tenant,
    github: str,
    slack: str,
    admin_conn: psycopg.Connection[Any],
) -> None:
    where = places(github, slack)
    connect_both(pstack, tenant, where)
    ted = for_quest(tools, in_tenant, tenant)
    admin_conn.execute(
        "UPDATE integration_credentials SET access_expires_at = now() - interval '1 minute' "
        "WHERE company_id = %s AND integration = %s",
        (tenant.id, provider),
    )
    url = {"github": github, "slack": slack}[provider]

    def refreshes() -> int:
        stats = httpx.get(url + "/_stats").json()
        return int(stats["refreshes"] if provider == "github" else stats["totals"]["refreshes"])

    before = refreshes()
    name, inp = (
        ("github_list_issues", {"owner": where.owner, "repo": where.repo})
        if provider == "github"
        else ("slack_read_messages", {"channel": where.channel})
    )

    async def sixteen() -> list[ToolOutcome]:
        tool = tools[name]
        return list(
            await asyncio.gather(*(tool.run(ted.tool_call(f"toolu_{i}", inp)) for i in range(16)))
        )

    outcomes = in_tenant.run(sixteen())
    assert not [o.content for o in outcomes if o.is_error]
    assert refreshes() == before + 1, "one refresh, whose rotated token the other 15 used"


@pytest.mark.parametrize("lost", ["answer", "timeout"])
@pytest.mark.parametrize("provider", ["github", "slack"])
def test_a_call_performed_but_not_recorded_is_found_by_its_mark_and_not_repeated(
    provider: str,
    lost: str,
    pstack: Stack,
    tools: dict[str, Tool],
    in_tenant: InTenant,
    tenant: Tenant,
    github: str,
    slack: str,
) -> None:
    """The provider performs the mutation and we never hear it: its answer lost (a 502 sent
    after the work, as a proxy does) or ours timed out while it worked. A retry waits until
    the first attempt cannot still be in flight, then finds what it made."""
    where = places(github, slack)
    connect_both(pstack, tenant, where)
    ted = for_quest(tools, in_tenant, tenant)
    trouble: dict[str, Any] = (
        {"status": 502, "after": True} if lost == "answer" else {"delay_s": 1.5}
    )
    if provider == "github":
        path = f"/repos/{where.owner}/{where.repo}/issues"
        rule = {**trouble, "count": 1, "paths": [path], "methods": ["POST"]}
        httpx.post(github + "/_faults", json=rule).raise_for_status()
        name = "github_create_issue"
        inp: dict[str, Any] = {"owner": where.owner, "repo": where.repo, "title": "Fix the door"}
    else:
        rule = {**trouble, "count": 1, "methods": ["chat.postMessage"]}
        httpx.post(slack + "/_faults", json=rule).raise_for_status()
        name, inp = "slack_post_message", {"channel": where.channel, "text": "Door fixed"}

    def made() -> int:
        if provider == "github":
            return len(repo_state(github, where)["issues"])
        return sum(1 for m in channel_messages(slack, where) if m["text"] == "Door fixed")

    with pytest.raises(ProviderUnavailable):
        ted.call(name, **inp)
    wait_for(lambda: made() == 1 or None)
    with pytest.raises(TryLater):  # the first attempt may still be in flight
        ted.call(name, **inp)
    time.sleep(2.1)  # twice the provider timeout
    outcome = ted.call(name, **inp)
    assert not outcome.is_error, outcome.content
    assert outcome.action in ("github.issue.created", "slack.message.posted")
    assert made() == 1, "found by its mark, not made again"
    again = ted.call(name, **inp)  # and a redelivery after that returns the record
    assert again == outcome and made() == 1


def test_one_companys_token_never_serves_another_company(
    pstack: Stack,
    tools: dict[str, Tool],
    in_tenant: InTenant,
    tenant: Tenant,
    other_tenant: Tenant,
    github: str,
    slack: str,
) -> None:
    mine, theirs = places(github, slack), places(github, slack)
    connect_both(pstack, tenant, mine)
    connect_both(pstack, other_tenant, theirs)
    acme, globex = for_quest(tools, in_tenant, tenant), for_quest(tools, in_tenant, other_tenant)
    for who, where in ((tenant, mine), (other_tenant, theirs)):
        listed = httpx.get(
            f"{pstack.ingress_url}/v1/companies/{who.id}/integrations", headers=who.headers()
        ).json()
        accounts = {i["integration"]: i["account"] for i in listed}
        assert accounts == {"github": where.login, "slack": f"Workspace {where.team}"}
    assert not acme.call("github_list_issues", owner=mine.owner, repo=mine.repo).is_error
    refused = globex.call("github_list_issues", owner=mine.owner, repo=mine.repo)
    assert refused.is_error and "404" in refused.content, "their user cannot see our repository"
    assert not globex.call("slack_read_messages", channel=theirs.channel).is_error
    assert globex.call("slack_read_messages", channel=mine.channel).is_error
    assert {r["login"] for r in requests_of(github, mine.login)} == {mine.login}
    theirs_seen = httpx.get(github + "/_requests", params={"login": theirs.login}).json()
    assert [r["path"] for r in theirs_seen["requests"] if r["path"] != "/user"] == [
        f"/repos/{mine.owner}/{mine.repo}/issues"
    ]


def test_a_list_follows_link_pages_up_to_its_bound(
    pstack: Stack,
    tools: dict[str, Tool],
    in_tenant: InTenant,
    tenant: Tenant,
    github: str,
    slack: str,
) -> None:
    where = places(github, slack)
    connect_both(pstack, tenant, where)
    ted = for_quest(tools, in_tenant, tenant)
    for i in range(160):
        made = ted.call(
            "github_create_issue", f"toolu_{i}", owner=where.owner, repo=where.repo, title=f"n{i}"
        )
        assert not made.is_error, made.content
    listed = ted.call("github_list_issues", "toolu_list", owner=where.owner, repo=where.repo)
    head, *lines = listed.content.splitlines()
    assert head == "150 issues, newest first (more pages not read)"
    assert lines[0].startswith("#160 ") and lines[-1].startswith("#11 ")
    # what reaches Claude is cut by the step's one rule for every tool's result
    cut = bounded(listed, TOOL_RESULT_MAX_CHARS).content.splitlines()
    assert cut[-1].startswith("[... ") and "more characters not shown]" in cut[-1]
    gets = [
        r
        for r in requests_of(github, where.login)
        if r["method"] == "GET" and r["path"].endswith("/issues")
    ]
    assert len(gets) == github_provider.TOOLS[0].pages


@pytest.mark.parametrize("provider", ["github", "slack"])
def test_a_lookup_that_gets_no_listing_waits_and_never_sends_again(
    provider: str,
    pstack: Stack,
    tools: dict[str, Tool],
    in_tenant: InTenant,
    tenant: Tenant,
    github: str,
    slack: str,
) -> None:
    """The first attempt's answer is lost; the lookup is then refused (GitHub 404, Slack
    ``ok: false``): nobody knows whether it was made, so nothing is sent again."""
    where = places(github, slack)
    connect_both(pstack, tenant, where)
    ted = for_quest(tools, in_tenant, tenant)
    if provider == "github":
        path = f"/repos/{where.owner}/{where.repo}/issues"
        lost = {"status": 502, "after": True, "count": 1, "paths": [path], "methods": ["POST"]}
        refused = {"status": 404, "paths": [path], "methods": ["GET"]}
        url, name = github, "github_create_issue"
        inp: dict[str, Any] = {"owner": where.owner, "repo": where.repo, "title": "Fix the lift"}
    else:
        lost = {"status": 502, "after": True, "count": 1, "methods": ["chat.postMessage"]}
        refused = {"error": "channel_not_found", "methods": ["conversations.history"]}
        url, name = slack, "slack_post_message"
        inp = {"channel": where.channel, "text": "Lift fixed"}
    httpx.post(url + "/_faults", json=lost).raise_for_status()
    with pytest.raises(ProviderUnavailable):
        ted.call(name, **inp)
    httpx.post(url + "/_faults", json=refused).raise_for_status()
    time.sleep(2.1)  # past the settle time: the retry looks
    with pytest.raises(ProviderUnavailable, match="did not say whether"):
        ted.call(name, **inp)
    httpx.delete(url + "/_faults")
    outcome = ted.call(name, **inp)  # the provider answers again: found, not made twice
    assert not outcome.is_error, outcome.content
    if provider == "github":
        assert len(repo_state(github, where)["issues"]) == 1
    else:
        assert [m["text"] for m in channel_messages(slack, where)].count("Lift fixed") == 1


def test_two_deliveries_cannot_both_claim_a_send(
    pstack: Stack, tools: dict[str, Tool], in_tenant: InTenant, tenant: Tenant
) -> None:
    """The claim is a Postgres fence: of two deliveries that read the same record, one sends."""
    from store import tool_calls as tool_calls_store

    quest = for_quest(tools, in_tenant, tenant)
    key = f"{quest.quest_id}:1:toolu_fence"

    async def both() -> list[Any]:
        async def one(tx: Any) -> Any:
            return await tool_calls_store.claim(tx, key, None)

        record = await in_tenant.db.in_tenant(
            tenant.id,
            lambda tx: tool_calls_store.begin(tx, key, quest.quest_id, 1, "github_create_issue"),
        )
        assert record.attempted_at is None
        first = await in_tenant.db.in_tenant(tenant.id, one)
        second = await in_tenant.db.in_tenant(tenant.id, one)
        again = await in_tenant.db.in_tenant(
            tenant.id, lambda tx: tool_calls_store.claim(tx, key, first)
        )
        return [first, second, again]

    first, second, again = in_tenant.run(both())
    assert first is not None and second is None, "the second delivery saw a stale record"
    assert again is not None and again > first, "the holder claims again for its next send"


def test_a_secondary_limit_without_headers_waits_a_minute() -> None:
    resp = httpx.Response(
        403,
        json={"message": "You have exceeded a secondary rate limit. Please wait a few minutes."},
        request=httpx.Request("POST", "https://api.github.com/repos/a/b/issues"),
    )
    assert github_provider.PROVIDER.verdict(resp).value == "rate_limited"
    assert github_provider.PROVIDER.rate_limit_wait_s == 60
    plain = httpx.Response(
        403,
        json={"message": "Resource not accessible by integration"},
        request=httpx.Request("POST", "https://api.github.com/repos/a/b/issues"),
    )
    assert github_provider.PROVIDER.verdict(plain).value == "answer", "a refusal, not a limit"


def test_a_lookup_window_is_in_utc_whatever_the_database_session_says() -> None:
    from datetime import datetime, timedelta, timezone

    plus_two = datetime(2026, 12, 4, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    (create,) = [t for t in github_provider.TOOLS if t.name == "github_create_issue"]
    assert create.effect is not None
    params = create.effect.lookup.params({}, plus_two)
    assert params["since"] == "2026-12-04T10:20:00Z", "10:30 UTC, less the clock margin"


def test_a_link_off_the_providers_base_url_is_not_followed() -> None:
    from integrations.routes import ProviderBase
    from workers.integrations.tools import _next_page

    base = ProviderBase("https://api.github.com")
    request = httpx.Request("GET", "https://api.github.com/repos/a/b/issues")
    for link in (
        '<https://evil.example/repos/a/b/issues?page=2>; rel="next"',
        '<http://api.github.com/repos/a/b/issues?page=2>; rel="next"',
        '<https://api.github.com:8443/repos/a/b/issues?page=2>; rel="next"',
    ):
        resp = httpx.Response(200, json=[], headers={"link": link}, request=request)
        assert _next_page(resp, base) is None, link
    good = '<https://api.github.com/repos/a/b/issues?page=2>; rel="next"'
    resp = httpx.Response(200, json=[], headers={"link": good}, request=request)
    assert str(_next_page(resp, base)) == "https://api.github.com/repos/a/b/issues?page=2"


def test_the_shared_provider_client_keeps_no_cookie_between_companies(
    settings: Settings,
) -> None:
    """One httpx client serves every company's calls: a ``Set-Cookie`` one provider answer
    carries must never ride on the next call, whoever's it is."""
    from workers.integrations.registry import provider_http

    client = provider_http(settings)
    request = httpx.Request("POST", "https://github.com/login/oauth/access_token")
    answer = httpx.Response(
        200,
        headers={"set-cookie": "_gh_sess=company-a-session; Path=/; Secure; HttpOnly"},
        request=request,
    )
    client.cookies.extract_cookies(answer)
    assert len(client.cookies.jar) == 0
    next_call = client.build_request("GET", "https://api.github.com/user")
    assert "cookie" not in next_call.headers


def test_an_answer_that_is_not_the_documented_shape_is_an_error_for_claude(
    pstack: Stack,
    tools: dict[str, Tool],
    in_tenant: InTenant,
    tenant: Tenant,
    github: str,
    slack: str,
) -> None:
    """A proxy's HTML page with a 200 (or any body GitHub does not document) is an error
    Claude reads, not a crash of the step."""
    where = places(github, slack)
    connect_both(pstack, tenant, where)
    ted = for_quest(tools, in_tenant, tenant)
    path = f"/repos/{where.owner}/{where.repo}/issues"
    page = {"status": 200, "html": True, "count": 1, "paths": [path], "methods": ["GET"]}
    httpx.post(github + "/_faults", json=page).raise_for_status()
    listed = ted.call("github_list_issues", owner=where.owner, repo=where.repo)
    assert listed.is_error and "does not document" in listed.content
    assert not ted.call("github_list_issues", owner=where.owner, repo=where.repo).is_error
