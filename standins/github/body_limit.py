"""Request bodies over 1 MiB are refused with 413, in the API's JSON error shape.

A declared ``Content-Length`` over the limit is refused before the body is read; a chunked
body is counted as it is read and refused from inside the handler (so the refusal still
goes through the API gate and carries GitHub's headers). Innermost of the middleware.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from standins.github.errors import ApiError, error_response
from standins.github.presented import header

MAX_BODY_BYTES = 1 << 20


def too_large() -> ApiError:
    return ApiError(413, "Request body too large")


def _declared(scope: Scope) -> int:
    try:
        return int(header(scope, b"content-length") or 0)
    except ValueError:
        return 0


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared(scope) > self.limit:
            await error_response(too_large())(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise too_large()
            return message

        await self.app(scope, counted, send)
