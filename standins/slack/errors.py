"""Slack's answer shape: HTTP 200 and ``{"ok": false, "error": CODE}`` for nearly everything.

The Web API reports failures in the body, not the status; only an unknown method (404),
rate limiting (429) and trouble in front of Slack (5xx) change the status. Every Web API
answer carries ``x-slack-req-id``, which clients log to quote in support requests.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse

NO_STORE = {"Cache-Control": "no-store"}


class SlackError(Exception):
    """An ``ok: false`` answer, raised anywhere in a handler and rendered by the app."""

    def __init__(
        self,
        error: str,
        *,
        status: int = 200,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error, **self.extra}


def req_id() -> str:
    return uuid.uuid4().hex[:20]


def slack_json(
    body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A Web API answer, stamped with a fresh ``x-slack-req-id``."""
    return JSONResponse(dict(body), status, {"x-slack-req-id": req_id(), **(headers or {})})


def error_response(error: SlackError) -> JSONResponse:
    return slack_json(error.body(), error.status, error.headers)


def bad_request(detail: str) -> SlackError:
    """For the test-only routes: a caller's mistake, said plainly with a 400."""
    return SlackError("invalid_arguments", status=400, extra={"detail": detail})


def html_page(
    status: int, title: str, detail: str, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    """A browser page (the OAuth screens) or a proxy's error page."""
    page = (
        f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(detail)}</p></body></html>"
    )
    return HTMLResponse(page, status, dict(headers or {}))
