"""Every error the ingress answers is an RFC 9457 problem (``application/problem+json``):
``type`` (``urn:system2:problem:<code>``), ``title``, ``status``, ``detail`` (words for
people, never a value the caller sent) and ``code``, the stable machine-readable word a
client branches on. A problem may carry more members (``errors`` of a 422, the budget
window of a 429); ``Problem`` documents them all in the OpenAPI document.

``Refused`` is how a route or dependency says no: an ``HTTPException`` with a code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from ingress.errors import IngressError

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:system2:problem:"

ProblemCode = Literal[
    "token_missing",
    "token_invalid",
    "token_expired",
    "not_a_member",
    "admins_only",
    "not_allowed",
    "not_found",
    "method_not_allowed",
    "idempotency_conflict",
    "body_too_large",
    "validation_failed",
    "bad_cursor",
    "bad_last_event_id",
    "cap_above_ceiling",
    "rate_limited",
    "concurrency_limited",
    "budget_exhausted",
    "too_many_streams",
    "unavailable",
    "internal_error",
]
CODES: tuple[str, ...] = get_args(ProblemCode)

TITLES: Mapping[str, str] = {
    "token_missing": "No bearer token",
    "token_invalid": "The bearer token is not valid",
    "token_expired": "The bearer token has expired",
    "not_a_member": "Not a member of this company",
    "admins_only": "Company admins only",
    "not_allowed": "Not allowed",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "idempotency_conflict": "Idempotency key used for another request",
    "body_too_large": "Request body too large",
    "validation_failed": "The request is not valid",
    "bad_cursor": "Not a cursor this API gave",
    "bad_last_event_id": "Not an event id of this stream",
    "cap_above_ceiling": "The quest's cap is above the company's ceiling",
    "rate_limited": "Too many quests started this minute",
    "concurrency_limited": "Too many quests running",
    "budget_exhausted": "The company's budget is spent",
    "too_many_streams": "Too many live streams open",
    "unavailable": "A dependency is unavailable",
    "internal_error": "Internal error",
}
assert set(TITLES) == set(CODES)


class FieldProblem(BaseModel):
    field: str = Field(description="where: `body.goal`, `query.limit`, `header.last-event-id`")
    problem: str


class Problem(BaseModel):
    """What every error answer holds (RFC 9457), and the members some add."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="`urn:system2:problem:<code>`")
    title: str
    status: int
    detail: str = Field(description="for people; says what to do, never echoes input")
    code: ProblemCode
    errors: list[FieldProblem] | None = Field(None, description="validation_failed: each field")
    reason: str | None = Field(
        None,
        description="429: the finer word (`daily_budget_exhausted`, `monthly_budget_exhausted`, "
        "`too_many_running_quests`, `too_many_quest_starts`, `too_many_streams_for_user`, "
        "`too_many_streams_for_company`); 413: `body_too_large`",
    )
    window: Literal["daily", "monthly"] | None = Field(
        None, description="budget_exhausted: the window that resets last"
    )
    period: str | None = Field(None, description="budget_exhausted: `2026-12-04` or `2026-12`")
    resets_at: str | None = Field(None, description="budget_exhausted: when it resets (UTC)")
    exhausted: list[str] | None = Field(None, description="budget_exhausted: every window spent")
    limit: int | None = Field(None, description="too_many_streams: the cap reached")
    max_body_bytes: int | None = None
    dependency: str | None = Field(None, description="unavailable: what is down")


class Refused(HTTPException, IngressError):
    """A refusal with its problem code (and any extra members of the answer)."""

    def __init__(
        self,
        status: int,
        code: ProblemCode,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status, detail, headers=dict(headers) if headers else None)
        self.code: ProblemCode = code
        self.extra = extra


def answer(
    status: int,
    code: ProblemCode,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": TYPE_PREFIX + code,
        "title": TITLES[code],
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


_BY_STATUS: Mapping[int, ProblemCode] = {
    400: "validation_failed",  # a body that is not JSON (FastAPI's own 400)
    401: "token_invalid",
    403: "not_allowed",
    404: "not_found",
    405: "method_not_allowed",
    409: "idempotency_conflict",
    413: "body_too_large",
    422: "validation_failed",
    429: "rate_limited",
    503: "unavailable",
}


def from_http_exception(exc: StarletteHTTPException) -> JSONResponse:
    """The answer for a ``Refused``, or for an ``HTTPException`` raised by FastAPI or
    Starlette themselves (an unknown route, a method not allowed)."""
    if isinstance(exc, Refused):
        code, extra = exc.code, exc.extra
    else:
        code, extra = _BY_STATUS.get(exc.status_code, "internal_error"), {}
    return answer(exc.status_code, code, str(exc.detail), headers=exc.headers, **extra)


_DESCRIPTIONS: Mapping[int, str] = {
    400: "the body is not JSON (`validation_failed`)",
    401: "no valid bearer token (`token_missing`, `token_invalid`, `token_expired`)",
    403: "the caller may not do this here (`not_a_member`, `admins_only`, `not_allowed`)",
    404: "no such thing in this company (`not_found`)",
    409: "the idempotency key was used for a different request (`idempotency_conflict`)",
    413: "the body is larger than `S2_MAX_BODY_BYTES` (`body_too_large`)",
    422: "the request is not valid (`validation_failed` with `errors`, `bad_cursor`, "
    "`bad_last_event_id`, `cap_above_ceiling`)",
    429: "not now; retry after `Retry-After` seconds (`rate_limited`, `concurrency_limited`, "
    "`budget_exhausted`, `too_many_streams`)",
    503: "a dependency is down; nothing was done; retry after `Retry-After` (`unavailable`)",
    500: "a fault of ours, reported to us (`internal_error`)",
}
# What every authenticated route may answer.
COMMON = (401, 403, 422, 500, 503)


def documented(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each a ``Problem``
    (``descriptions``: ``_429="..."`` overrides a status's words). ``ingress.contract``
    gives them their media type."""
    return {
        status: {
            "model": Problem,
            "description": descriptions.get(f"_{status}", _DESCRIPTIONS[status]),
        }
        for status in statuses
    }
