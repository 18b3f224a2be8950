"""One error shape for every route: ``{"error": CODE, "error_description": TEXT}``.

RFC 6749 §5.2 fixes that shape for the token endpoint; the task API and the test-only
routes reuse it so a client needs a single parser for everything this provider says.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
"""RFC 6749 §5.1: responses carrying (or refusing) credentials must never be cached."""

REALM = "demo-provider"
BASIC_CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}"'}


class ProviderError(Exception):
    """An error reply, raised anywhere in a handler and rendered by the app."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.headers = dict(headers or {})


def oauth_error(error: str, description: str) -> ProviderError:
    """An RFC 6749 §5.2 error: ``invalid_client`` is 401 with a Basic challenge, the rest 400."""
    if error == "invalid_client":
        return ProviderError(401, error, description, BASIC_CHALLENGE)
    return ProviderError(400, error, description)


def invalid_request(description: str) -> ProviderError:
    return ProviderError(400, "invalid_request", description)


def error_response(error: ProviderError) -> JSONResponse:
    body = {"error": error.error, "error_description": error.description}
    return JSONResponse(body, error.status, {**NO_STORE, **error.headers})
