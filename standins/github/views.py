"""Issues, comments and labels as the REST API (version 2022-11-28) renders them.

``api`` is the request's own base URL without the trailing slash, so the ``url`` fields
point back at this stand-in and a client can follow them; ``html_url`` always points at
github.com, as it would in production.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from standins.github.repos import Comment, Issue, Label, Repo
from standins.github.users import WEB, node_id, user_view


def timestamp(seconds: float | None) -> str | None:
    """ISO 8601 in UTC to the second, ``2011-04-22T13:33:48Z``."""
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def label_view(repo: Repo, label: Label, api: str) -> dict[str, Any]:
    return {
        "id": label.id,
        "node_id": node_id("LA_kwDO", label.id),
        "url": f"{api}/repos/{repo.full_name}/labels/{quote(label.name, safe='')}",
        "name": label.name,
        "color": label.color,
        "default": label.default,
        "description": label.description,
    }


def issue_view(repo: Repo, issue: Issue, api: str) -> dict[str, Any]:
    url = f"{api}/repos/{repo.full_name}/issues/{issue.number}"
    assignees = [user_view(login, api) for login in issue.assignees]
    return {
        "url": url,
        "repository_url": f"{api}/repos/{repo.full_name}",
        "labels_url": f"{url}/labels{{/name}}",
        "comments_url": f"{url}/comments",
        "events_url": f"{url}/events",
        "html_url": f"{WEB}/{repo.full_name}/issues/{issue.number}",
        "id": issue.id,
        "node_id": node_id("I_kwDO", issue.id),
        "number": issue.number,
        "title": issue.title,
        "user": user_view(issue.login, api),
        "labels": [label_view(repo, label, api) for label in issue.labels],
        "state": issue.state,
        "locked": False,
        "assignee": assignees[0] if assignees else None,
        "assignees": assignees,
        "milestone": None,
        "comments": len(issue.comments),
        "created_at": timestamp(issue.created_at),
        "updated_at": timestamp(issue.updated_at),
        "closed_at": timestamp(issue.closed_at),
        "author_association": repo.association(issue.login),
        "active_lock_reason": None,
        "body": issue.body,
        "closed_by": None if issue.closed_by is None else user_view(issue.closed_by, api),
        "timeline_url": f"{url}/timeline",
        "performed_via_github_app": None,
        "state_reason": issue.state_reason,
    }


def comment_view(repo: Repo, issue: Issue, comment: Comment, api: str) -> dict[str, Any]:
    issue_url = f"{api}/repos/{repo.full_name}/issues/{issue.number}"
    return {
        "url": f"{api}/repos/{repo.full_name}/issues/comments/{comment.id}",
        "html_url": f"{WEB}/{repo.full_name}/issues/{issue.number}#issuecomment-{comment.id}",
        "issue_url": issue_url,
        "id": comment.id,
        "node_id": node_id("IC_kwDO", comment.id),
        "user": user_view(comment.login, api),
        "created_at": timestamp(comment.created_at),
        "updated_at": timestamp(comment.updated_at),
        "author_association": repo.association(comment.login),
        "body": comment.body,
        "performed_via_github_app": None,
    }


def state_view(repo: Repo) -> dict[str, Any]:
    """``GET /_state``: what a test counts (duplicates, comments), without URLs."""
    return {
        "owner": repo.owner,
        "name": repo.name,
        "logins": list(repo.logins),
        "issues": [
            {
                "number": issue.number,
                "title": issue.title,
                "body": issue.body,
                "state": issue.state,
                "state_reason": issue.state_reason,
                "user": issue.login,
                "labels": [label.name for label in issue.labels],
                "assignees": list(issue.assignees),
                "comments": [{"id": c.id, "body": c.body, "user": c.login} for c in issue.comments],
            }
            for issue in repo.issues.values()
        ],
    }
