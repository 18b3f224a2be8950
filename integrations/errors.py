"""Errors of ``integrations``, one tree:

- ``IntegrationError``: the base of everything raised here.
  - ``UnknownIntegration``: no provider by that name, or one this deployment has switched
    off (one line from the CLI, a 404 at the ingress).
  - ``SchemaError``, ``RouteError``: a tool declared in a way that cannot be checked or built
    safely (a wiring error, raised when the tools are built, never for a call).
  - ``UnsafePath``: a tool input that cannot stand as one path segment (its text is for
    Claude).
  - ``OAuthError``: the provider refused a code or a refresh token.
  - ``TokenEndpointTrouble``: the provider's token endpoint is rate-limiting us (429) or
    failing (5xx, unreachable): nobody's grant was refused; try again after
    ``retry_after_ms``.

No message holds a token, a secret or the provider's free text.
"""

from __future__ import annotations


class IntegrationError(Exception):
    """Base of every error raised by ``integrations``."""


class UnknownIntegration(IntegrationError):
    """No integration by that name here."""


class SchemaError(IntegrationError):
    """A tool's schema uses JSON Schema this validator does not enforce (a wiring error)."""


class RouteError(IntegrationError):
    """A route, base URL or schema that cannot be built from safely (a wiring error)."""


class UnsafePath(IntegrationError):
    """A value that cannot stand as one path segment; the text is for Claude."""


class OAuthError(IntegrationError):
    """The provider refused the grant. ``error`` is its RFC 6749 §5.2 code, with a
    provider's own word for a refused refresh token (GitHub's ``bad_refresh_token``,
    Slack's ``invalid_refresh_token``) given as ``invalid_grant``; "" when it gave none.
    ``status`` is the HTTP status (``None`` when the refusal is ours)."""

    def __init__(self, error: str, *, status: int | None = None) -> None:
        said = " ".join(part for part in (f"HTTP {status}" if status else "", error) if part)
        super().__init__(f"the provider refused the token request: {said or 'no reason given'}")
        self.error = error
        self.status = status


class TokenEndpointTrouble(IntegrationError):
    """The token endpoint answered 429 (``rate_limited``) or 5xx, or could not be reached."""

    def __init__(
        self, message: str, *, retry_after_ms: int | None = None, rate_limited: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms
        self.rate_limited = rate_limited
