"""The demo's GitHub and Slack part: Acme Robotics connects both through the OAuth flow, and
one quest files a GitHub issue, posts its link in Slack, answers a thread, triages and
closes the issue — against the stand-ins, whose state is then read back and shown."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from rich.console import Console

from runtime.settings import Settings
from system2.errors import System2Error

OWNER, REPO, LOGIN, TEAM = "acme-robotics", "robots", "alice-acme", "T0ACMEROBO"


@dataclass(frozen=True)
class Places:
    channel: str  # the Slack channel's id
    thread_ts: str  # a colleague's question in it, which Ted answers in its thread


def seed(settings: Settings) -> Places:
    """A private repository Alice can see, and a #robots channel with a question in it."""
    github = settings.integration("github").api_url
    slack = settings.integration("slack").oauth_url
    httpx.post(
        github + "/_repos", json={"owner": OWNER, "name": REPO, "logins": [LOGIN]}
    ).raise_for_status()
    channel = httpx.post(slack + "/_channels", json={"team": TEAM, "name": REPO, "member": True})
    channel.raise_for_status()
    asked = httpx.post(
        slack + "/_messages",
        json={
            "team": TEAM,
            "channel": channel.json()["id"],
            "user": "U0BOB",
            "text": "Is anyone looking at the printer?",
        },
    )
    asked.raise_for_status()
    return Places(channel.json()["id"], asked.json()["ts"])


def connect(http: httpx.Client, company_id: object, token: str, name: str) -> str:
    """The admin begins at the API and approves in "the browser" (a GET following redirects,
    signed in at the stand-in); answers the account the provider names."""
    auth = {"Authorization": f"Bearer {token}"}
    begun = http.post(f"/v1/companies/{company_id}/integrations/{name}/authorize", headers=auth)
    if begun.status_code != 200:
        raise System2Error(f"authorize {name} failed: {begun.status_code} {begun.text}")
    login = {"github": {"login": LOGIN}, "slack": {"team": TEAM}}[name]
    consent = httpx.URL(begun.json()["authorize_url"]).copy_merge_params(login)
    landed = httpx.get(consent, follow_redirects=True, timeout=10)
    if landed.status_code != 200:
        raise System2Error(f"the {name} OAuth callback refused: {landed.status_code}")
    listed = http.get(f"/v1/companies/{company_id}/integrations", headers=auth).json()
    return next(str(i["account"] or LOGIN) for i in listed if i["integration"] == name)


def goal(places: Places) -> str:
    return f"[script:github_to_slack] {OWNER} {REPO} {places.channel} {places.thread_ts}"


def show(console: Console, settings: Settings, places: Places, color: str) -> None:
    """What Ted left in GitHub and Slack, read back from the stand-ins."""
    repos = httpx.get(settings.integration("github").api_url + "/_state").json()["repos"]
    (repo,) = [r for r in repos if r["owner"] == OWNER and r["name"] == REPO]
    team = httpx.get(settings.integration("slack").oauth_url + "/_state").json()["teams"][TEAM]
    (channel,) = [c for c in team["channels"] if c["id"] == places.channel]
    if len(repo["issues"]) != 1:
        raise System2Error(f"GitHub has {len(repo['issues'])} issues, not 1")
    issue = repo["issues"][0]
    link = f"https://github.com/{OWNER}/{REPO}/issues/{issue['number']}"
    posted = [m for m in channel["messages"] if link in m["text"]]
    if len(posted) != 1:
        raise System2Error(f"Slack has {len(posted)} messages with the issue's link, not 1")
    console.print(
        f"[{color}]GitHub[/] {OWNER}/{REPO}#{issue['number']} {issue['title']!r}: "
        f"{issue['state']} ({issue['state_reason']}), labels {', '.join(issue['labels'])}, "
        f"{len(issue['comments'])} comment, filed by {issue['user']}"
    )
    console.print(f"[{color}]Slack[/]  #{channel['name']}: {posted[0]['text']}")
    replies = [m for m in channel["messages"] if m.get("thread_ts") == places.thread_ts]
    for reply in replies[1:] if replies and replies[0]["ts"] == places.thread_ts else replies:
        console.print(f"[{color}]Slack[/]  in the thread of the question: {reply['text']}")
