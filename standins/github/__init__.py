"""A loopback stand-in for GitHub: the GitHub App OAuth endpoints of github.com (user access
tokens: web flow with PKCE, rotating refresh tokens) and the REST API of api.github.com
(issues, issue comments, labels, search, rate limits, ``Link`` pagination), in GitHub's wire
format, so System2's real GitHub integration (httpx) runs without the internet.

Repositories are seeded by tests (``POST /_repos``); ``/_faults``, ``/_revoke``,
``/_state``, ``/_stats`` and ``/_requests`` are for tests only. Start it with
``python -m standins.github --port P``, ``serve(host, port)``, or mount ``create_app()``.
"""

from standins.github.oauth import ACCESS_PREFIX, REFRESH_PREFIX, pkce_challenge
from standins.github.presented import DEFAULT_VERSION, VERSIONS
from standins.github.server import CLIENT_ID, CLIENT_SECRET, create_app, serve
from standins.github.state import GitHub

__all__ = [
    "ACCESS_PREFIX",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "DEFAULT_VERSION",
    "REFRESH_PREFIX",
    "VERSIONS",
    "GitHub",
    "create_app",
    "pkce_challenge",
    "serve",
]
