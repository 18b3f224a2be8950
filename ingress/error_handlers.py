"""How the ingress answers what went wrong (``ingress.errors``): a status, a reason, and
never a stack trace."""

from __future__ import annotations

import redis
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from guard import GuardUnavailable
from ingress import http_metrics
from ingress.errors import SubmissionRefused, Throttled, VaultUnavailable
from ingress.live import TooManyStreams
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
# Errors whose own message is the answer, with this status.
REFUSALS: dict[type[Exception], int] = {
    SubmissionRefused: 422,
    BadCursor: 422,
    UnknownIntegration: 404,
    Conflict: status.HTTP_409_CONFLICT,
}


def install_error_handlers(app: FastAPI) -> None:
    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        what, dependency = next(v for k, v in UNAVAILABLE.items() if isinstance(exc, k))
        http_metrics.UNAVAILABLE.labels(dependency).inc()
        return JSONResponse(
            {"detail": f"{what} is unavailable; nothing was done, retry later"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    async def refused(_: Request, exc: Exception) -> JSONResponse:
        code = next(v for k, v in REFUSALS.items() if isinstance(exc, k))
        return JSONResponse({"detail": str(exc)}, status_code=code)

    async def throttled(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Throttled)
        http_metrics.THROTTLED.inc()
        body: dict[str, object] = {
            "detail": f"{exc}; nothing was queued, retry later",
            "reason": exc.reason,
        }
        if isinstance(exc, BudgetExhausted):
            body |= {
                "window": exc.window,
                "period": exc.period,
                "resets_at": exc.resets_at.isoformat().replace("+00:00", "Z"),
                "exhausted": exc.windows,
            }
        return JSONResponse(
            body,
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(exc.retry_after_s)},
        )

    async def too_many_streams(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TooManyStreams)
        return JSONResponse(
            {"detail": f"{exc}; retry later", "reason": exc.reason, "limit": exc.limit},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(exc.retry_after_s)},
        )

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        # Name the bad fields; never echo the values back (they may hold secrets).
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())),
                "problem": e.get("msg", "invalid"),
            }
            for e in exc.errors()
        ]
        summary = "; ".join(f"{e['field']}: {e['problem']}" for e in errors[:5])
        return JSONResponse({"detail": summary, "errors": errors}, status_code=422)

    for exc_type in UNAVAILABLE:
        app.add_exception_handler(exc_type, unavailable)
    for exc_type in REFUSALS:
        app.add_exception_handler(exc_type, refused)
    app.add_exception_handler(Throttled, throttled)
    app.add_exception_handler(TooManyStreams, too_many_streams)
    app.add_exception_handler(RequestValidationError, invalid)
