"""Request bodies of the issue endpoints, checked the way GitHub checks them.

Two layers, as on GitHub: a JSON-schema check (wrong types, a missing required field) answers
422 ``Invalid request.\\n\\n…``; a model check (blank, too long) answers 422 ``Validation
Failed`` with an ``errors`` list. A body that is not JSON at all is 400 ``Problems parsing
JSON``. The limits are the observed ones: an issue body up to 65536 characters, a comment
body up to 262144 bytes of UTF-8 (GitHub's message still says "65536 characters").
"""

from __future__ import annotations

import json
from typing import Any

from standins.github.errors import (
    invalid_request,
    problems_parsing_json,
    validation_failed,
)
from standins.github.repos import Changes

ISSUE_BODY_MAX_CHARS = 65536
COMMENT_BODY_MAX_BYTES = 262144
TITLE_MAX_CHARS = 256
_STATES = ("open", "closed")
_REASONS = ("completed", "not_planned", "reopened", "duplicate")


def _show(value: Any) -> str:
    """A value as GitHub's schema messages print it (Ruby's ``nil`` for null)."""
    return "nil" if value is None else json.dumps(value)


def parse_object(raw: bytes, doc: str) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise problems_parsing_json(doc) from None
    if not isinstance(body, dict):
        raise problems_parsing_json(doc)
    return body


def _title(value: Any, doc: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise invalid_request(
            f"For 'properties/title', {_show(value)} is not a string or integer.", doc
        )
    title = str(value)
    if not title.strip():
        raise validation_failed(
            doc, {"resource": "Issue", "code": "missing_field", "field": "title"}
        )
    if len(title) > TITLE_MAX_CHARS:
        message = f"title is too long (maximum is {TITLE_MAX_CHARS} characters)"
        raise validation_failed(
            doc, {"resource": "Issue", "code": "custom", "field": "title", "message": message}
        )
    return title


def _issue_body(value: Any, doc: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise invalid_request(
            f"For 'properties/body', {_show(value)} is not a string or null.", doc
        )
    if value and len(value) > ISSUE_BODY_MAX_CHARS:
        message = f"body is too long (maximum is {ISSUE_BODY_MAX_CHARS} characters)"
        error = {"resource": "Issue", "code": "invalid", "field": "body", "message": message}
        raise validation_failed(doc, {**error, "value": None})
    return value or None


def _names(value: Any, field: str, doc: str) -> list[str]:
    """A list of names; labels may also be ``{"name": …}`` objects."""
    if not isinstance(value, list):
        raise invalid_request(f"For 'properties/{field}', {_show(value)} is not an array.", doc)
    names: list[str] = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) and field == "labels" else item
        if not isinstance(name, str):
            raise invalid_request(f"For 'items', {_show(item)} is not a string.", doc)
        names.append(name)
    return names


def new_issue(body: dict[str, Any], doc: str) -> tuple[str, str | None, dict[str, Any]]:
    """``POST /repos/{o}/{r}/issues``: (title, body, {"labels", "assignees"})."""
    if "title" not in body:
        raise invalid_request('"title" wasn\'t supplied.', doc)
    title = _title(body["title"], doc)
    text = _issue_body(body.get("body"), doc)
    fields = {
        name: _names(body[name], name, doc)
        for name in ("labels", "assignees")
        if body.get(name) is not None
    }
    return title, text, fields


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], doc: str) -> str | None:
    value = body.get(name)
    if value is not None and value not in allowed:
        choices = ", ".join(json.dumps(a) for a in allowed)
        raise invalid_request(
            f"For 'properties/{name}', {_show(value)} is not one of [{choices}].", doc
        )
    return value


def changes(body: dict[str, Any], doc: str) -> Changes:
    """``PATCH /repos/{o}/{r}/issues/{n}``: only what the body names changes."""
    found = Changes(
        state=_choice(body, "state", _STATES, doc),
        state_reason=_choice(body, "state_reason", _REASONS, doc),
    )
    if "title" in body and body["title"] is not None:
        found.title = _title(body["title"], doc)
    if "body" in body:
        found.body, found.body_set = _issue_body(body["body"], doc), True
    if body.get("labels") is not None:
        found.labels = _names(body["labels"], "labels", doc)
    if body.get("assignees") is not None:
        found.assignees = _names(body["assignees"], "assignees", doc)
    return found


def comment_body(body: dict[str, Any], doc: str) -> str:
    """``POST …/comments``: the observed refusals, word for word."""
    if "body" not in body:
        raise invalid_request('"body" wasn\'t supplied.', doc)
    value = body["body"]
    if not isinstance(value, str):
        raise invalid_request(f"For 'properties/body', {_show(value)} is not a string.", doc)
    problem = None
    if not value.strip():
        problem = "Body cannot be blank"
    elif len(value.encode()) > COMMENT_BODY_MAX_BYTES:
        problem = "Body is too long (maximum is 65536 characters)"
    if problem is not None:
        error = {"resource": "IssueComment", "code": "unprocessable", "field": "data"}
        raise validation_failed(doc, {**error, "message": problem})
    return value


def label_names(raw: bytes, doc: str) -> list[str]:
    """``POST …/labels``: ``{"labels": [...]}`` or a bare array, of names or ``{"name"}``."""
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise problems_parsing_json(doc) from None
    if isinstance(body, dict):
        if "labels" not in body:
            raise invalid_request('"labels" wasn\'t supplied.', doc)
        body = body["labels"]
    return _names(body, "labels", doc)
