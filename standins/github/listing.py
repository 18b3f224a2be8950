"""The filters and orderings of ``GET /repos/{o}/{r}/issues`` and of the comments list.

``state`` (open, closed, all; default open), ``labels`` (comma-separated, all required),
``creator``, ``since`` (ISO 8601; updated at or after), ``sort`` (created, updated,
comments; default created) and ``direction`` (asc, desc; default desc). A value GitHub
would not take is refused with 422, as GitHub refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from standins.github.errors import validation_failed
from standins.github.repos import Comment, Issue

LIST_DOC = "https://docs.github.com/rest/issues/issues#list-repository-issues"
COMMENTS_DOC = "https://docs.github.com/rest/issues/comments#list-issue-comments"


def _choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...], doc: str) -> str:
    value = params.get(name) or allowed[0]
    if value not in allowed:
        raise validation_failed(doc, {"resource": "Issue", "field": name, "code": "invalid"})
    return value


def since_of(params: Mapping[str, str], doc: str) -> float | None:
    text = params.get("since")
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        error = validation_failed(doc, {"resource": "Issue", "field": "since", "code": "invalid"})
        raise error from None
    if moment.tzinfo is None:  # no offset given: GitHub reads it as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _sort_key(sort: str) -> str:
    return {"created": "created_at", "updated": "updated_at", "comments": "comments"}[sort]


def issues(found: list[Issue], params: Mapping[str, str]) -> list[Issue]:
    state = _choice(params, "state", ("open", "closed", "all"), LIST_DOC)
    sort = _choice(params, "sort", ("created", "updated", "comments"), LIST_DOC)
    direction = _choice(params, "direction", ("desc", "asc"), LIST_DOC)
    since = since_of(params, LIST_DOC)
    wanted = {n.strip().lower() for n in (params.get("labels") or "").split(",") if n.strip()}
    creator = (params.get("creator") or "").lower()
    picked = [
        issue
        for issue in found
        if state in ("all", issue.state)
        and wanted <= {label.name.lower() for label in issue.labels}
        and (not creator or issue.login.lower() == creator)
        and (since is None or issue.updated_at >= since)
    ]
    return order(picked, sort, direction)


def order(found: list[Issue], sort: str, direction: str) -> list[Issue]:
    """Sorted by ``sort``, ties broken by number, in ``direction``."""
    key = _sort_key(sort)

    def rank(issue: Issue) -> tuple[float, int]:
        value = len(issue.comments) if key == "comments" else getattr(issue, key)
        return float(value), issue.number

    return sorted(found, key=rank, reverse=direction == "desc")


def comments(found: list[Comment], params: Mapping[str, str]) -> list[Comment]:
    since = since_of(params, COMMENTS_DOC)
    return [c for c in found if since is None or c.updated_at >= since]
