"""The Web API methods this stand-in speaks, and what every method call carries.

A handler runs under the state lock with the caller already authenticated; it returns the
body after ``"ok": true`` or raises ``SlackError``. Scopes are checked the way Slack checks
them: a missing one is ``missing_scope`` naming what was ``needed`` and what the token has
(``provided``), before any argument is looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from standins.slack.errors import SlackError
from standins.slack.oauth import Grant
from standins.slack.workspace import BOT_NAME, Team


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated method call."""

    grant: Grant
    team: Team
    args: Mapping[str, Any]
    now: float
    app_id: str

    def require(self, scope: str) -> None:
        if scope not in self.grant.scopes:
            extra = {"needed": scope, "provided": self.grant.scope_text}
            raise SlackError("missing_scope", extra=extra)

    def has(self, scope: str) -> bool:
        return scope in self.grant.scopes

    def text(self, name: str) -> str | None:
        """A string argument; JSON's other types are ``invalid_arguments``."""
        value = self.args.get(name)
        if value is None or isinstance(value, str):
            return value
        raise SlackError("invalid_arguments")


Handler = Callable[[Call], dict[str, Any]]


def auth_test(call: Call) -> dict[str, Any]:
    team = call.team
    return {
        "url": team.url,
        "team": team.name,
        "user": BOT_NAME,
        "team_id": team.id,
        "user_id": team.bot_user_id,
        "bot_id": team.bot_id,
        "is_enterprise_install": False,
    }
