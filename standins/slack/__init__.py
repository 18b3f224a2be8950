"""The Slack stand-in: a loopback server speaking Slack's Web API and OAuth v2.

It answers as slack.com does — ``/oauth/v2/authorize`` (auto-approving), ``oauth.v2.access``
with token rotation (expiring ``xoxe.xoxb-1-`` bot tokens, single-use ``xoxe-1-`` refresh
tokens), and ``auth.test``, ``conversations.list|history|replies``, ``chat.postMessage``
(with message metadata) and ``chat.getPermalink`` under ``/api/`` — so System2's real
Slack integration (httpx) can be driven end to end without the internet. ``/_channels``
and ``/_messages`` seed workspaces; ``/_faults``, ``/_revoke``, ``/_state``, ``/_stats``
and ``/_requests`` are for tests only. Start it with ``python -m standins.slack --port P``,
``serve(host, port)``, or mount ``create_app()`` in uvicorn.
"""

from standins.slack.oauth import ACCESS_PREFIX, BOT_PREFIX, REFRESH_PREFIX
from standins.slack.server import create_app, serve
from standins.slack.state import Slack
from standins.slack.workspace import DEFAULT_TEAM

__all__ = [
    "ACCESS_PREFIX",
    "BOT_PREFIX",
    "DEFAULT_TEAM",
    "REFRESH_PREFIX",
    "Slack",
    "create_app",
    "serve",
]
