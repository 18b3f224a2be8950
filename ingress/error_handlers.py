"""How the ingress answers what went wrong (``ingress.errors``): an RFC 9457 problem with a
status and a code (``ingress.problems``), and never a stack trace."""

from __future__ import annotations

import re
from typing import Any

import redis
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from guard import GuardUnavailable
from ingress import http_metrics, problems
from ingress.errors import SubmissionRefused, Throttled, VaultUnavailable
from ingress.live import TooManyStreams
from ingress.problems import ProblemCode
from ingress.submit import BudgetExhausted
from integrations import UnknownIntegration
from messages import PublishFailed
from store import BadCursor, Conflict, StoreUnavailable
from vault import CounterUnavailable, KeyExhausted

RETRY_AFTER_S = 5


# Errors that mean "a dependency is down": 503 with Retry-After, and nothing was done. Each
# with what the answer names and the dependency the ``s2_ingress_unavailable`` metric counts.
UNAVAILABLE: dict[type[Exception], tuple[str, str]] = {
    StoreUnavailable: ("the database", "postgres"),
    PublishFailed: ("the queue", "redis"),
    redis.RedisError: ("the queue", "redis"),
    GuardUnavailable: ("the guard store", "redis"),
    CounterUnavailable: ("the credential vault's encryption counter", "redis"),
    VaultUnavailable: ("the credential vault (no keys are configured)", "vault"),
    KeyExhausted: ("the credential vault (its primary key must be rotated)", "vault"),
}
# Errors whose own message is the answer, with this status and code.
REFUSALS: dict[type[Exception], tuple[int, ProblemCode]] = {
    SubmissionRefused: (422, "cap_above_ceiling"),
    BadCursor: (422, "bad_cursor"),
    UnknownIntegration: (404, "not_found"),
    Conflict: (status.HTTP_409_CONFLICT, "idempotency_conflict"),
}
# The 429s of a submit, by their reason.
THROTTLES: dict[str, ProblemCode] = {
    "too_many_running_quests": "concurrency_limited",
    "too_many_quest_starts": "rate_limited",
}


def install_error_handlers(app: FastAPI) -> None:
    async def unavailable(_: Request, exc: Exception) -> Response:
        what, dependency = next(v for k, v in UNAVAILABLE.items() if isinstance(exc, k))
        http_metrics.UNAVAILABLE.labels(dependency).inc()
        return problems.answer(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "unavailable",
            f"{what} is unavailable; nothing was done, retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
            dependency=dependency,
        )

    async def refused(_: Request, exc: Exception) -> Response:
        code, word = next(v for k, v in REFUSALS.items() if isinstance(exc, k))
        return problems.answer(code, word, str(exc))

    async def throttled(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Throttled)
        http_metrics.THROTTLED.inc()
        extra: dict[str, object] = {"reason": exc.reason}
        code: ProblemCode = THROTTLES.get(exc.reason, "rate_limited")
        if isinstance(exc, BudgetExhausted):
            code = "budget_exhausted"
            extra |= {
                "window": exc.window,
                "period": exc.period,
                "resets_at": exc.resets_at.isoformat().replace("+00:00", "Z"),
                "exhausted": exc.windows,
            }
        return problems.answer(
            status.HTTP_429_TOO_MANY_REQUESTS,
            code,
            f"{exc}; nothing was queued, retry later",
            headers={"Retry-After": str(exc.retry_after_s)},
            **extra,
        )

    async def too_many_streams(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, TooManyStreams)
        return problems.answer(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too_many_streams",
            f"{exc}; retry later",
            headers={"Retry-After": str(exc.retry_after_s)},
            reason=exc.reason,
            limit=exc.limit,
        )

    async def invalid(_: Request, exc: Exception) -> Response:
        # Name the bad fields; never echo the values back (they may hold secrets).
        assert isinstance(exc, RequestValidationError)
        errors = [_field_problem(e) for e in exc.errors()]
        summary = "; ".join(f"{e['field']}: {e['problem']}" for e in errors[:5])
        return problems.answer(422, "validation_failed", summary, errors=errors)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return problems.from_http_exception(exc)

    async def internal(_: Request, exc: Exception) -> Response:
        # Starlette re-raises it after this answer, so it is still logged and reported.
        return problems.answer(500, "internal_error", "something went wrong on our side")

    for exc_type in UNAVAILABLE:
        app.add_exception_handler(exc_type, unavailable)
    for exc_type in REFUSALS:
        app.add_exception_handler(exc_type, refused)
    app.add_exception_handler(Throttled, throttled)
    app.add_exception_handler(TooManyStreams, too_many_streams)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")  # an unknown key named back only if it is one


def _field_problem(error: Any) -> dict[str, str]:
    """Where and what, in words: never the value, nor an unknown key that is not a plain name
    (``company_id`` is named back; ``<script>…`` or a pasted token is not)."""
    where = [str(p) for p in error.get("loc", ())]
    if error.get("type") == "extra_forbidden" and where and not _NAME.fullmatch(where[-1]):
        return {"field": ".".join(where[:-1]), "problem": "has a field it does not know"}
    return {"field": ".".join(where), "problem": error.get("msg", "invalid")}
