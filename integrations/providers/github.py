"""GitHub: a GitHub App acting for the user who connected it (user-to-server tokens).

The REST API (``Accept: application/vnd.github+json``, ``X-GitHub-Api-Version``). Its
tokens expire after 8 hours and its refresh tokens rotate on use (the token broker refreshes
once under a lock). A rate limit is a 403 or 429 with ``x-ratelimit-remaining: 0`` (the
primary limit, reset at ``x-ratelimit-reset``) or with ``retry-after`` (a secondary limit):
the step waits, it is never failed nor counted against the breaker. GitHub takes no
idempotency key, so an issue or a comment we create carries a hidden HTML comment with a
digest of the call's key, and a retry of a call that may have been performed looks for it
first. Adding labels and closing an issue are idempotent by nature.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from integrations.routes import Route
from integrations.spec import (
    Answer,
    Effect,
    Lookup,
    OAuthSpec,
    Provider,
    ToolOutcome,
    ToolSpec,
    Verdict,
    http_verdict,
)

API_VERSION = "2022-11-28"
ISSUES = "/repos/{owner}/{repo}/issues"
ISSUE = "/repos/{owner}/{repo}/issues/{number}"
COMMENTS = "/repos/{owner}/{repo}/issues/{number}/comments"
LABELS = "/repos/{owner}/{repo}/issues/{number}/labels"
BODY_MAX = 60_000  # GitHub's limit is 65,536 characters; the marker needs a few
CLOCK_MARGIN = timedelta(minutes=10)  # GitHub's clock against ours, for the lookups' since

_OWNER = {
    "type": "string",
    "description": "The repository's owner (a user or an organisation), e.g. acme.",
    "pattern": "^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$",
    "maxLength": 39,
}
_REPO = {
    "type": "string",
    "description": "The repository's name, e.g. widgets.",
    "pattern": r"^(?!\.{1,2}$)[A-Za-z0-9._-]{1,100}$",
    "maxLength": 100,
}
_NUMBER = {"type": "integer", "minimum": 1, "maximum": 10**9, "description": "The issue's number."}
_LABEL_LIST = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": 50},
    "maxItems": 10,
}
_TEXT = {"type": "string", "minLength": 1, "maxLength": BODY_MAX}


def _verdict(resp: httpx.Response) -> Verdict:
    """GitHub's rate limits answer 403 as well as 429 (the REST docs' "Rate limits"): with
    ``x-ratelimit-remaining: 0`` (primary), ``retry-after``, or neither but saying so
    (secondary: then wait at least a minute)."""
    if resp.status_code in (403, 429) and (
        resp.headers.get("x-ratelimit-remaining") == "0"
        or "retry-after" in resp.headers
        or "rate limit" in resp.text.lower()
    ):
        return Verdict.RATE_LIMITED
    return http_verdict(resp)


def _marker(key: str) -> str:
    """What a body we write carries: a digest of the call's idempotency key, in a comment
    GitHub does not show."""
    return f"<!-- system2-action: {hashlib.sha256(key.encode()).hexdigest()[:32]} -->"


_MARK = re.compile(r"\s*<!-- system2-action: [0-9a-f]{32} -->")


def _mark_body(body: dict[str, Any], key: str) -> dict[str, Any]:
    return body | {"body": f"{body.get('body') or ''}\n\n{_marker(key)}".lstrip()}


def _find_marked(page: Any, key: str) -> Mapping[str, Any] | None:
    marker = _marker(key)
    items = page if isinstance(page, list) else []
    return next((i for i in items if isinstance(i, dict) and marker in (i.get("body") or "")), None)


def _since(started: datetime) -> str:
    return (started - CLOCK_MARGIN).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _problem(answer: Answer) -> ToolOutcome:
    try:
        body = answer.json()
    except ValueError:
        body = {}
    said = body.get("message", "") if isinstance(body, dict) else ""
    fields = [
        f"{e.get('field')} {e.get('code')}"
        for e in (body.get("errors") or [] if isinstance(body, dict) else [])
        if isinstance(e, dict)
    ]
    detail = f"{said} ({', '.join(fields)})" if fields else said
    hint = " (or the connected account cannot see it)" if answer.status_code == 404 else ""
    return ToolOutcome(
        f"GitHub refused: {answer.status_code} {detail or answer.response.reason_phrase}{hint}",
        is_error=True,
    )


def _labels(issue: Mapping[str, Any]) -> str:
    names = [
        str(label.get("name")) for label in issue.get("labels") or [] if isinstance(label, dict)
    ]
    return f" (labels: {', '.join(names)})" if names else ""


def _issue_line(issue: Mapping[str, Any]) -> str:
    return f"#{issue['number']} [{issue['state']}] {issue['title']}{_labels(issue)} {issue.get('html_url', '')}"


def _target(inp: Mapping[str, Any], number: object) -> str:
    return f"github:{inp['owner']}/{inp['repo']}#{number}"


def _render_list(answer: Answer, _: Mapping[str, Any]) -> ToolOutcome:
    if answer.status_code != 200:
        return _problem(answer)
    issues = [i for page in (answer.response, *answer.pages) for i in page.json()]
    lines = [_issue_line(i) for i in issues if "pull_request" not in i]
    last = (answer.response, *answer.pages)[-1]
    more = " (more pages not read)" if "next" in last.links else ""
    return ToolOutcome("\n".join([f"{len(lines)} issues, newest first{more}", *lines]))


def _render_search(answer: Answer, _: Mapping[str, Any]) -> ToolOutcome:
    if answer.status_code != 200:
        return _problem(answer)
    found = answer.json()
    lines = [
        f"{i.get('repository_url', '').rsplit('/repos/', 1)[-1]} {_issue_line(i)}"
        for i in found.get("items", [])
    ]
    return ToolOutcome(f"{found.get('total_count', 0)} found\n" + "\n".join(lines))


def _unmarked(body: str | None) -> str:
    """A body as its readers see it: our hidden marks left out."""
    return _MARK.sub("", body or "").rstrip()


def _render_issue(answer: Answer, _: Mapping[str, Any]) -> ToolOutcome:
    if answer.status_code != 200:
        return _problem(answer)
    issue = answer.json()
    lines = [_issue_line(issue), f"by {issue['user']['login']} at {issue['created_at']}"]
    lines.append(_unmarked(issue.get("body")) or "(no description)")
    for comments in answer.also:
        if comments.status_code == 200:
            for c in comments.json():
                said = _unmarked(c.get("body"))
                lines.append(f"--- {c['user']['login']} at {c['created_at']}:\n{said}")
    return ToolOutcome("\n".join(lines))


def _issue_made(issue: Mapping[str, Any], inp: Mapping[str, Any]) -> ToolOutcome:
    return ToolOutcome(
        f"created {_issue_line(issue)}",
        action="github.issue.created",
        target=_target(inp, issue["number"]),
        data={"number": issue["number"], "url": issue.get("html_url")},
    )


def _comment_made(comment: Mapping[str, Any], inp: Mapping[str, Any]) -> ToolOutcome:
    return ToolOutcome(
        f"commented on #{inp['number']}: {comment.get('html_url', '')}",
        action="github.comment.created",
        target=_target(inp, inp["number"]),
        data={"comment_id": comment.get("id"), "url": comment.get("html_url")},
    )


def _made(expected: int, made: Any) -> Any:
    def render(answer: Answer, inp: Mapping[str, Any]) -> ToolOutcome:
        return made(answer.json(), inp) if answer.status_code == expected else _problem(answer)

    return render


def _labels_added(answer: Answer, inp: Mapping[str, Any]) -> ToolOutcome:
    if answer.status_code != 200:
        return _problem(answer)
    names = [str(label.get("name")) for label in answer.json()]
    return ToolOutcome(
        f"#{inp['number']} now has labels: {', '.join(names)}",
        action="github.labels.added",
        target=_target(inp, inp["number"]),
        data={"labels": list(inp["labels"])},
    )


def _closed(answer: Answer, inp: Mapping[str, Any]) -> ToolOutcome:
    if answer.status_code != 200:
        return _problem(answer)
    return ToolOutcome(
        f"closed {_issue_line(answer.json())}",
        action="github.issue.closed",
        target=_target(inp, inp["number"]),
        data={"state_reason": inp.get("state_reason", "completed")},
    )


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"owner": _OWNER, "repo": _REPO, **properties},
        "required": ["owner", "repo", *required],
        "additionalProperties": False,
    }


_CREATED = Effect(
    mark=_mark_body,
    lookup=Lookup(
        ISSUES,
        lambda _, started: {
            "state": "all",
            "sort": "created",
            "direction": "desc",
            "per_page": "100",
            "since": _since(started),
        },
        _find_marked,
        answered=lambda page: isinstance(page, list),
    ),
    made=_issue_made,
)
_COMMENTED = Effect(
    mark=_mark_body,
    lookup=Lookup(
        COMMENTS,
        lambda _, started: {"per_page": "100", "since": _since(started)},
        _find_marked,
        answered=lambda page: isinstance(page, list),
        pages=5,
    ),
    made=_comment_made,
)

TOOLS = (
    ToolSpec(
        "github_list_issues",
        "List issues of a GitHub repository, newest first (pull requests left out).",
        _schema(
            {
                "state": {"type": "string", "enum": ["open", "closed", "all"]},
                "labels": {
                    "type": "string",
                    "maxLength": 200,
                    "description": "Comma-separated label names; issues carrying all of them.",
                },
            },
            [],
        ),
        Route("GET", ISSUES, query=("state", "labels"), fixed_query={"per_page": "50"}),
        _render_list,
        pages=3,
    ),
    ToolSpec(
        "github_search_issues",
        "Search issues with GitHub's search syntax, e.g. 'repo:acme/widgets is:issue is:open "
        "label:bug crash'.",
        {
            "type": "object",
            "properties": {"q": {"type": "string", "minLength": 1, "maxLength": 256}},
            "required": ["q"],
            "additionalProperties": False,
        },
        Route("GET", "/search/issues", query=("q",), fixed_query={"per_page": "30"}),
        _render_search,
    ),
    ToolSpec(
        "github_get_issue",
        "Read one issue of a GitHub repository with its comments.",
        _schema({"number": _NUMBER}, ["number"]),
        Route("GET", ISSUE),
        _render_issue,
        also=(Route("GET", COMMENTS, fixed_query={"per_page": "50"}),),
    ),
    ToolSpec(
        "github_create_issue",
        "Create an issue in a GitHub repository.",
        _schema(
            {
                "title": {"type": "string", "minLength": 1, "maxLength": 256},
                "body": {"type": "string", "maxLength": BODY_MAX},
                "labels": _LABEL_LIST,
            },
            ["title"],
        ),
        Route("POST", ISSUES, body=("title", "body", "labels")),
        _made(201, _issue_made),
        mutates=True,
        action="github.issue.created",
        effect=_CREATED,
    ),
    ToolSpec(
        "github_comment",
        "Comment on an issue of a GitHub repository.",
        _schema({"number": _NUMBER, "body": _TEXT}, ["number", "body"]),
        Route("POST", COMMENTS, body=("body",)),
        _made(201, _comment_made),
        mutates=True,
        action="github.comment.created",
        effect=_COMMENTED,
    ),
    ToolSpec(
        "github_add_labels",
        "Add labels to an issue of a GitHub repository (labels it already has stay).",
        _schema({"number": _NUMBER, "labels": _LABEL_LIST | {"minItems": 1}}, ["number", "labels"]),
        Route("POST", LABELS, body=("labels",)),
        _labels_added,
        mutates=True,
        action="github.labels.added",
    ),
    ToolSpec(
        "github_close_issue",
        "Close an issue of a GitHub repository, as completed or as not planned.",
        _schema(
            {
                "number": _NUMBER,
                "state_reason": {"type": "string", "enum": ["completed", "not_planned"]},
            },
            ["number"],
        ),
        Route("PATCH", ISSUE, body=("state_reason",), fixed_body={"state": "closed"}),
        _closed,
        mutates=True,
        action="github.issue.closed",
    ),
)

PROVIDER = Provider(
    name="github",
    title="GitHub",
    api_url="https://api.github.com",
    oauth_url="https://github.com",
    client_id="system2-github",
    client_secret="github-secret",  # noqa: S106 - the stand-in's, public in this repository
    oauth=OAuthSpec(
        authorize_path="/login/oauth/authorize",
        token_path="/login/oauth/access_token",  # noqa: S106 - a URL path
        scopes=(),  # a GitHub App's permissions are set on the app, not asked per grant
        client_auth="form",
        refused_refresh=("bad_refresh_token", "invalid_grant"),
        whoami=("/user", "login"),
    ),
    headers={
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": "system2-ted",
    },
    verdict=_verdict,
    rate_limit_wait_s=60,  # a secondary limit with no retry-after: "at least one minute"
    rate_limit_max_s=3_660,  # the primary limit resets within the hour
    tools=TOOLS,
)
