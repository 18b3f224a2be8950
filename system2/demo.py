"""``system2 demo``: the main job, end to end, on this machine's Redis and Postgres.

Two companies with a member each submit quests over HTTP with signed tokens; Dramatiq
workers in separate processes run them against the offline Claude; one company has
connected the demo task list, GitHub and Slack over OAuth, so Ted creates a task there with
its sealed token, and files a GitHub issue and posts its link in Slack (their stand-ins);
a quest with a tiny USD cap is halted by the guard and a slow one is cancelled mid-call;
every step and action is printed as it happens from the companies' live event streams; at
the end each company's audit trail is read back from Postgres and cross-tenant attempts are
refused.

The demo is a sync program (threads, HTTP); its three brief visits to the store each run
with ``asyncio.run`` on a database of their own, opened and closed within that visit.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import redis
from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from messages import Envelope, QuestEvent
from messages.notices import StreamReply
from messages.redis_keys import company_stream_key
from runtime.settings import Settings
from runtime.wiring import vault_keys_configured
from store import Database
from store import companies as companies_store
from store.migrate import migrate
from store.quests import TERMINAL
from system2 import demo_github_slack as github_slack
from system2.demo_auth import DemoAuth
from system2.errors import System2Error
from system2.procs import Proc, free_port, wait_http, wait_workers
from vault import new_key_entry

GOALS = (
    (  # Acme Robotics, which connects the demo task list
        "[script:tasks] Put 'renew the robot insurance before July' on the team's task list",
        "[script:notes] Draft the launch checklist for the Q3 robot release and note it",
        "[script:pause] Compare the two shipping quotes and recommend one",
    ),
    (  # Globex Foods
        "Summarise this week's open support tickets for the Monday standup",
        "[script:notes] Record the decision to move the offsite to October",
        "[script:refusal] Write a fake invoice to send to a customer",
    ),
)
CAPPED_GOAL = "[script:loop] Keep taking notes on every supplier until told to stop"
CAPPED_MAX_USD = "0.006"
SLOW_GOAL = "[script:slow] Think very hard about next year's pricing page"
COLORS = ("cyan", "magenta")
console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)


@dataclass
class DemoCompany:
    id: uuid.UUID
    name: str
    user: str
    token: str
    color: str
    quests: list[str]


def run(settings: Settings, *, signing_keys: bool = False) -> None:
    console.rule("[bold]System2 workers — demo")
    report = migrate(settings.admin_database_url, settings.database_url)
    console.print(
        f"schema at version {report.current} ({', '.join(report.applied) or 'up to date'})"
    )
    logs = Path(tempfile.mkdtemp(prefix="s2-demo-"))
    settings = _with_providers(settings)
    auth = DemoAuth.open(settings, signing_keys=signing_keys, directory=logs)
    console.print(auth.description)
    try:
        procs, ingress = _start_processes(settings, logs, auth.env)
    except System2Error:
        auth.close()
        raise
    try:
        companies = _make_companies(settings, auth.mint)
        console.print(  # one unwrapped line, to open in a browser while the demo runs
            f"operator console, as {companies[0].user} of {companies[0].name}: "
            f"{ingress}/console#token={companies[0].token}",
            soft_wrap=True,
        )
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(settings, companies, stop), daemon=True)
        with httpx.Client(base_url=ingress, timeout=10) as http:
            _connect_task_list(http, companies[0])
            places = _connect_github_and_slack(http, settings, companies[0])
            watcher.start()
            _submit(http, companies[0], {"goal": github_slack.goal(places)}, "github-slack")
            _submit_all(http, companies)
            _wait_all(http, companies)
            _guard_and_cancel(http, companies)
            time.sleep(0.5)  # the last events and audit rows
            stop.set()
            watcher.join(2)
            _show_results(http, companies)
            _show_audit(http, companies)
            _show_task_list(http, settings, companies)
            console.rule("GitHub and Slack: what Ted did there, read back from the stand-ins")
            github_slack.show(console, settings, places, companies[0].color)
            _cross_tenant(http, companies, settings)
    finally:
        for proc in reversed(list(procs.values())):
            proc.stop()
        auth.close()
    console.print(f"[dim]process logs: {logs}[/dim]")


def _with_providers(settings: Settings) -> Settings:
    """A free port for each stand-in and the ingress and, if no vault keys are configured, a
    key that lives only as long as this demo (printed by id, never by value)."""
    demo, github, slack = (f"http://127.0.0.1:{free_port()}" for _ in range(3))
    update: dict[str, Any] = {"public_url": f"http://127.0.0.1:{free_port()}"}
    if not vault_keys_configured(settings):
        update["vault_keys"] = SecretStr(new_key_entry(datetime.now(UTC)))
    changed = (
        settings.with_integration("demo", api_url=demo, oauth_url=demo)
        .with_integration("github", api_url=github, oauth_url=github)
        .with_integration("slack", api_url=slack + "/api", oauth_url=slack)
    )
    return changed.model_copy(update=update)


def _start_processes(
    settings: Settings, logs: Path, auth_env: dict[str, str]
) -> tuple[dict[str, Proc], str]:
    bin_dir = Path(sys.executable).parent
    claude_port = free_port()
    ingress_port = httpx.URL(settings.public_url).port
    urls = {name: settings.integration(name).oauth_url for name in ("demo", "github", "slack")}
    env = dict(os.environ)
    env.update(
        ANTHROPIC_BASE_URL=f"http://127.0.0.1:{claude_port}",
        ANTHROPIC_API_KEY="offline-demo-key",
        S2_DEMO_PROVIDER_URL=urls["demo"],
        S2_GITHUB_PROVIDER_URL=urls["github"],
        S2_GITHUB_OAUTH_URL=urls["github"],
        S2_SLACK_PROVIDER_URL=urls["slack"] + "/api",
        S2_SLACK_OAUTH_URL=urls["slack"],
        S2_PUBLIC_URL=settings.public_url,
        **auth_env,
    )
    if settings.vault_keys is not None:
        env["S2_VAULT_KEYS"] = settings.vault_keys.get_secret_value()
    system2 = str(bin_dir / "system2")
    port = {name: str(httpx.URL(url).port) for name, url in urls.items()}
    commands = {
        "demo-provider": [system2, "demo-provider", "--port", port["demo"]],
        "github": [sys.executable, "-m", "standins.github", "--port", port["github"]],
        "slack": [sys.executable, "-m", "standins.slack", "--port", port["slack"]],
        "offline-claude": [system2, "offline-claude", "--port", str(claude_port)],
        "workers": [system2, "worker", "--processes", "2"],
        "ingress": [system2, "ingress", "--port", str(ingress_port)],
    }
    procs = {
        name: Proc(name, argv, env=env, log_path=logs / f"{name}.log")
        for name, argv in commands.items()
    }
    try:
        for proc in procs.values():
            proc.start()
        wait_http(f"http://127.0.0.1:{claude_port}/", proc=procs["offline-claude"])
        for name, started in (("demo", "demo-provider"), ("github", "github"), ("slack", "slack")):
            wait_http(urls[name] + "/", proc=procs[started])
        wait_http(f"http://127.0.0.1:{ingress_port}/healthz", proc=procs["ingress"])
        wait_workers(settings.redis_url, 2, proc=procs["workers"])
    except (RuntimeError, TimeoutError, OSError) as exc:
        for proc in procs.values():
            proc.stop()
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise System2Error(
            f"the demo's processes did not start ({first}); logs in {logs}"
        ) from None
    console.print(
        f"started offline Claude (pid {procs['offline-claude'].pid}), stand-ins for the demo "
        f"task list, GitHub and Slack (pids {procs['demo-provider'].pid}, "
        f"{procs['github'].pid}, {procs['slack'].pid}), ingress (pid {procs['ingress'].pid}) "
        f"and 2 worker processes (pid {procs['workers'].pid})"
    )
    return procs, f"http://127.0.0.1:{ingress_port}"


def _make_companies(settings: Settings, mint: Callable[[str], str]) -> list[DemoCompany]:
    made = []

    async def create() -> None:
        async with Database(settings.database_url, max_size=2, name="demo") as db:
            for (name, user), color in zip(
                (("Acme Robotics", "alice"), ("Globex Foods", "bob")), COLORS, strict=True
            ):
                cid = uuid.uuid4()
                async with db.tenant(cid) as tx:
                    await companies_store.create(tx, name)
                    await companies_store.add_member(tx, user, "admin")
                made.append(DemoCompany(cid, name, user, mint(user), color, []))
                console.print(f"company [{color}]{name}[/] {cid} with admin [bold]{user}[/]")

    asyncio.run(create())
    return made


def _connect_task_list(http: httpx.Client, c: DemoCompany) -> None:
    """The company's admin connects the demo task list: the API answers the provider's
    consent page, and "the browser" (here, a GET that follows redirects, logged in at the
    provider as the company) approves it and lands on the ingress's callback."""
    auth = {"Authorization": f"Bearer {c.token}"}
    begun = http.post(f"/v1/companies/{c.id}/integrations/demo/authorize", headers=auth)
    if begun.status_code != 200:
        raise System2Error(f"authorize failed: {begun.status_code} {begun.text}")
    consent = httpx.URL(begun.json()["authorize_url"]).copy_add_param("login_hint", str(c.id))
    landed = httpx.get(consent, follow_redirects=True, timeout=10)
    if landed.status_code != 200:
        raise System2Error(f"the OAuth callback refused: {landed.status_code}")
    listed = http.get(f"/v1/companies/{c.id}/integrations", headers=auth).json()
    key_id = next(i["key_id"] for i in listed if i["integration"] == "demo")
    console.print(
        f"[{c.color}]{c.name}[/] connected the demo task list over OAuth; its tokens are "
        f"stored sealed (AES-256-GCM, key [bold]{key_id}[/])"
    )


def _connect_github_and_slack(
    http: httpx.Client, settings: Settings, c: DemoCompany
) -> github_slack.Places:
    places = github_slack.seed(settings)
    for name in ("github", "slack"):
        account = github_slack.connect(http, c.id, c.token, name)
        console.print(f"[{c.color}]{c.name}[/] connected {name} over OAuth (as {account})")
    return places


def _submit(http: httpx.Client, c: DemoCompany, body: dict[str, str], key: str) -> str:
    resp = http.post(
        f"/v1/companies/{c.id}/quests",
        json=body,
        headers={"Authorization": f"Bearer {c.token}", "Idempotency-Key": f"demo-{c.id}-{key}"},
    )
    if resp.status_code != 202:
        raise System2Error(f"submit failed: {resp.status_code} {resp.text}")
    quest_id: str = resp.json()["quest_id"]
    c.quests.append(quest_id)
    cap = f" [dim](cap ${body['max_usd']})[/dim]" if "max_usd" in body else ""
    console.print(
        f"[{c.color}]{c.name:14}[/] {quest_id[:8]} submitted: {escape(body['goal'])}{cap}"
    )
    return quest_id


def _submit_all(http: httpx.Client, companies: list[DemoCompany]) -> None:
    console.rule("quests submitted over HTTP, running live")
    for i in range(len(GOALS[0])):
        for c, goals in zip(companies, GOALS, strict=True):
            _submit(http, c, {"goal": goals[i]}, str(i))
            time.sleep(0.8)


def _guard_and_cancel(http: httpx.Client, companies: list[DemoCompany]) -> None:
    acme, globex = companies
    console.rule("the guard halts a runaway loop; an operator cancels a quest mid-call")
    capped = _submit(http, globex, {"goal": CAPPED_GOAL, "max_usd": CAPPED_MAX_USD}, "capped")
    slow = _submit(http, acme, {"goal": SLOW_GOAL}, "slow")
    url = f"/v1/companies/{acme.id}/quests/{slow}"
    auth = {"Authorization": f"Bearer {acme.token}"}
    _wait_status(http, url, auth, {"running"})
    time.sleep(1.0)  # well into its (30 s) Claude call
    asked = time.monotonic()
    resp = http.post(url + "/cancel", json={"reason": "taking too long"}, headers=auth)
    if resp.status_code != 202:
        raise System2Error(f"cancel failed: {resp.status_code} {resp.text}")
    ended = _wait_status(http, url, auth, TERMINAL)
    took_ms = (time.monotonic() - asked) * 1000
    console.print(
        f"[{acme.color}]{acme.name:14}[/] {slow[:8]} [bold]{acme.user}[/] asked to cancel; "
        f"[bold]{ended}[/] {took_ms:.0f} ms later, mid-call"
    )
    if ended != "cancelled":
        raise System2Error(f"the cancelled quest ended {ended}")
    gurl = f"/v1/companies/{globex.id}/quests/{capped}"
    status = _wait_status(http, gurl, {"Authorization": f"Bearer {globex.token}"}, TERMINAL)
    if status != "halted":
        raise System2Error(f"the capped quest ended {status}, not halted")


def _wait_status(
    http: httpx.Client,
    url: str,
    auth: dict[str, str],
    wanted: AbstractSet[str],
    timeout: float = 60.0,
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: str = http.get(url, headers=auth).json()["status"]
        if status in wanted:
            return status
        time.sleep(0.05)
    raise System2Error(f"{url} did not reach {sorted(wanted)} within {timeout:.0f}s")


def _watch(settings: Settings, companies: list[DemoCompany], stop: threading.Event) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    streams = {company_stream_key(c.id): "$" for c in companies}
    by_id = {str(c.id): c for c in companies}
    while not stop.is_set():
        reply = cast(StreamReply, client.xread(streams, block=200) or [])  # type: ignore[arg-type]
        for key, entries in reply:
            for entry_id, fields in entries:
                streams[key.decode()] = entry_id.decode()
                env = Envelope[QuestEvent].model_validate_json(fields[b"e"])
                _print_event(by_id[str(env.company_id)], env.payload)


def _print_event(c: DemoCompany, e: QuestEvent) -> None:
    d = {k: escape(str(v)) for k, v in e.data.items()}  # text from Claude is not markup
    said = f"Claude: {d.get('stop_reason')} {d.get('tools', '')} {d.get('text', '')}"
    detail = {
        "quest.state": f"[bold]{d.get('status')}[/]"
        + (f" — {d['reason']}" if d.get("reason") else ""),
        "claude.replied": f"{said[:110]}  [dim]{d.get('cost_usd_micros', 0)} µ$[/]",
        "tool.called": f"→ tool {d.get('tool')}",
        "tool.finished": f"← {d.get('tool')} {'ok' if d.get('ok') == 'True' else 'error'} {d.get('target', '')}",
        "guard.tier": f"[yellow]guard: {d.get('tier')}[/] — {d.get('scope')} spend "
        f"{d.get('spent_usd_micros')} of {d.get('cap_usd_micros')} µ$",
        "guard.slowed": f"[yellow]guard: next step held back {d.get('delay_ms')} ms[/]",
    }.get(e.kind)
    if detail is None:
        return
    console.print(f"[{c.color}]{c.name:14}[/] {str(e.quest_id)[:8]} step {e.step}  {detail}")


def _wait_all(http: httpx.Client, companies: list[DemoCompany], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    pending = {(c.id, q): c for c in companies for q in c.quests}
    while pending and time.monotonic() < deadline:
        for (cid, q), c in list(pending.items()):
            body = http.get(
                f"/v1/companies/{cid}/quests/{q}", headers={"Authorization": f"Bearer {c.token}"}
            ).json()
            if body["status"] not in ("queued", "running"):
                del pending[(cid, q)]
        time.sleep(0.2)
    if pending:
        raise System2Error(f"{len(pending)} quests did not finish within {timeout:.0f}s")


def _show_results(http: httpx.Client, companies: list[DemoCompany]) -> None:
    table = Table(title="quests", show_lines=False)
    for col in ("company", "quest", "status", "steps", "cost (µUSD)", "result or reason"):
        table.add_column(col)
    for c in companies:
        for q in c.quests:
            b = http.get(
                f"/v1/companies/{c.id}/quests/{q}", headers={"Authorization": f"Bearer {c.token}"}
            ).json()
            table.add_row(
                f"[{c.color}]{c.name}[/]",
                q[:8],
                b["status"],
                str(len(b["steps"])),
                str(b["cost_usd_micros"]),
                escape((b.get("result") or b.get("reason") or "")[:60]),
            )
    console.print(table)


def _show_audit(http: httpx.Client, companies: list[DemoCompany]) -> None:
    for c in companies:
        resp = http.get(
            f"/v1/companies/{c.id}/activity?limit=200",
            headers={"Authorization": f"Bearer {c.token}"},
        )
        items: list[dict[str, Any]] = resp.json()["items"]
        table = Table(title=f"audit trail of {c.name} (activity_log, newest first)")
        for col in ("when", "actor", "action", "target", "rationale"):
            table.add_column(col)
        for i in items:
            table.add_row(
                i["occurred_at"][11:23],
                f"{i['actor_type']}:{i['actor_id']}",
                i["action"],
                i["target"][:40],
                escape((i.get("rationale") or "")[:50]),
            )
        console.print(table)
        others = [x for x in items if x["quest_id"] and x["quest_id"] not in c.quests]
        if others:
            raise System2Error(f"{c.name}'s audit trail shows another company's quests")


def _show_task_list(http: httpx.Client, settings: Settings, companies: list[DemoCompany]) -> None:
    acme = companies[0]
    console.rule("the demo task list: what Ted did with the sealed token")
    stats = httpx.get(settings.integration("demo").api_url + "/_stats").json()["accounts"]
    for c in companies:
        created = stats.get(str(c.id), {}).get("mutations", 0)
        console.print(f"[{c.color}]{c.name:14}[/] tasks created at the provider: {created}")
    uses = http.get(
        f"/v1/companies/{acme.id}/integrations/demo/uses",
        headers={"Authorization": f"Bearer {acme.token}"},
    ).json()
    for use in uses:
        console.print(
            f"[{acme.color}]{acme.name:14}[/] credential decrypted by {use.get('worker')} "
            f"for {escape(str(use.get('purpose')))} (quest {str(use.get('quest_id'))[:8]})"
        )
    if stats.get(str(acme.id), {}).get("mutations") != 1 or str(companies[1].id) in stats:
        raise System2Error("the task list does not show exactly the one task Acme's quest made")


def _cross_tenant(http: httpx.Client, companies: list[DemoCompany], settings: Settings) -> None:
    acme, globex = companies
    console.rule("cross-tenant attempts")
    before = _quest_count(settings, globex.id)
    headers = {"Authorization": f"Bearer {acme.token}"}
    read = http.get(f"/v1/companies/{acme.id}/quests/{globex.quests[0]}", headers=headers)
    console.print(
        f"{acme.user} (of {acme.name}) reads {globex.name}'s quest through {acme.name}: "
        f"[bold]{read.status_code}[/] {read.json().get('detail')}"
    )
    post = http.post(
        f"/v1/companies/{globex.id}/quests", json={"goal": "exfiltrate"}, headers=headers
    )
    console.print(
        f"{acme.user} submits a quest to {globex.name}: [bold]{post.status_code}[/] {post.json().get('detail')}"
    )
    if (
        read.status_code != 404
        or post.status_code != 403
        or _quest_count(settings, globex.id) != before
    ):
        raise System2Error("a cross-tenant attempt was not refused")
    console.print(f"[green]both refused; {globex.name} still has {before} quests[/green]")


def _quest_count(settings: Settings, company_id: uuid.UUID) -> int:
    async def count() -> tuple[Any, ...] | None:
        async with (
            Database(settings.database_url, max_size=1, name="demo") as db,
            db.tenant(company_id) as tx,
        ):
            return await tx.one("SELECT count(*) FROM quests WHERE company_id = %s", (company_id,))

    row = asyncio.run(count())
    return int(row[0]) if row else 0
