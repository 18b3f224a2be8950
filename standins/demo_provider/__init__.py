"""The demo integration provider: a loopback stand-in for a third-party SaaS.

It speaks OAuth 2.0 (authorization code with optional PKCE, refresh-token rotation with
reuse detection, revocation) and a small bearer-protected task-list API honouring
``Idempotency-Key``, so System2's real integration code (httpx, the vault, the refresh lock)
can be exercised end to end without the internet. ``/_faults``, ``/_stats`` and
``/_requests`` (which paths were reached, and with whose token) are for tests only. Start
it with ``serve(host, port)`` or mount ``create_app()`` in uvicorn.
"""

from standins.demo_provider.oauth import (
    ACCESS_PREFIX,
    CODE_PREFIX,
    REFRESH_PREFIX,
    SCOPES,
    pkce_challenge,
)
from standins.demo_provider.server import create_app, serve
from standins.demo_provider.state import Provider

__all__ = [
    "ACCESS_PREFIX",
    "CODE_PREFIX",
    "REFRESH_PREFIX",
    "SCOPES",
    "Provider",
    "create_app",
    "pkce_challenge",
    "serve",
]
