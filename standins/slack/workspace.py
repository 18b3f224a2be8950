"""Workspaces, their channels and messages, as Slack's Web API describes them.

A workspace appears when the app is first installed into it (or when a test seeds a
channel in it) with a ``general`` channel, the app's bot user and the installing human.
A new channel does not include the bot: like a real Slack app, it must be a member to
read a channel's history or post there (``chat:write.public`` lifts the latter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from standins.slack.errors import SlackError
from standins.slack.ids import micros, new_id, ts_text

BOT_NAME = "system2"
DEFAULT_TEAM = "T0000DEMO"


@dataclass(slots=True)
class Message:
    ts: int  # microseconds; the message's identity within its channel
    text: str
    user: str
    team: str
    bot_id: str | None = None
    app_id: str | None = None
    parent: int | None = None  # the thread's parent ts, for a reply
    broadcast: bool = False  # a reply also shown in the channel
    metadata: dict[str, Any] | None = None
    blocks: list[Any] | None = None
    replies: list[int] = field(default_factory=list)  # for a parent: its replies' ts
    reply_users: list[str] = field(default_factory=list)

    def view(self, *, metadata: bool, parent_user: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "message", "user": self.user, "text": self.text}
        if self.bot_id is not None:
            body |= {"bot_id": self.bot_id, "app_id": self.app_id}
        if self.broadcast:
            body["subtype"] = "thread_broadcast"
        body |= {"ts": ts_text(self.ts), "team": self.team}
        if self.blocks is not None:
            body["blocks"] = self.blocks
        if self.parent is not None:
            body |= {"thread_ts": ts_text(self.parent), "parent_user_id": parent_user}
        elif self.replies:
            body |= {
                "thread_ts": ts_text(self.ts),
                "reply_count": len(self.replies),
                "reply_users_count": len(self.reply_users),
                "latest_reply": ts_text(self.replies[-1]),
                "reply_users": list(self.reply_users),
            }
        if metadata and self.metadata is not None:
            body["metadata"] = self.metadata
        return body


@dataclass(slots=True)
class Channel:
    id: str
    name: str
    team: str
    created: int
    creator: str
    is_private: bool = False
    is_member: bool = False
    is_archived: bool = False
    is_general: bool = False
    messages: dict[int, Message] = field(default_factory=dict)  # ascending ts
    last_ts: int = 0

    def next_ts(self, now: float) -> int:
        """Unique and increasing within the channel, even within one microsecond."""
        self.last_ts = max(micros(now), self.last_ts + 1)
        return self.last_ts

    def post(self, message: Message, parent: Message | None = None) -> Message:
        """Adds ``message`` (its ``ts`` already taken from ``next_ts``), threading it."""
        if parent is not None:
            message.parent = parent.ts
            parent.replies.append(message.ts)
            if message.user not in parent.reply_users:
                parent.reply_users.append(message.user)
        self.messages[message.ts] = message
        return message

    def timeline(self) -> list[Message]:
        """What ``conversations.history`` shows: top-level messages and broadcast replies."""
        return [m for m in self.messages.values() if m.parent is None or m.broadcast]

    def thread_of(self, ts: int) -> Message:
        found = self.messages.get(ts)
        if found is None:
            raise SlackError("thread_not_found")
        return self.messages[found.parent] if found.parent is not None else found

    def parent_user(self, message: Message) -> str | None:
        return None if message.parent is None else self.messages[message.parent].user

    def view(self) -> dict[str, Any]:
        """A conversation object, as ``conversations.list`` gives it."""
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "created": self.created,
            "creator": self.creator,
            "is_archived": self.is_archived,
            "is_general": self.is_general,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_member": self.is_member,
            "num_members": 2 if self.is_member else 1,
            "context_team_id": self.team,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
        }


@dataclass(slots=True)
class Team:
    id: str
    name: str
    domain: str
    bot_user_id: str
    bot_id: str
    installer_id: str  # the human who installed the app
    channels: dict[str, Channel] = field(default_factory=dict)  # by id, in creation order

    @property
    def url(self) -> str:
        return f"https://{self.domain}.slack.com/"

    def find(self, ref: object, *, by_name: bool = False) -> Channel | None:
        """A channel by id, or (for posting) by ``name`` or ``#name`` too."""
        if not isinstance(ref, str) or not ref:
            return None
        if ref in self.channels:
            return self.channels[ref]
        if by_name:
            name = ref.removeprefix("#")
            return next((c for c in self.channels.values() if c.name == name), None)
        return None

    def add_channel(
        self, name: str, now: float, *, is_private: bool = False, is_general: bool = False
    ) -> Channel:
        channel = Channel(new_id("C"), name, self.id, int(now), self.installer_id)
        channel.is_private, channel.is_general = is_private, is_general
        self.channels[channel.id] = channel
        return channel


@dataclass(slots=True)
class Directory:
    """Every workspace this stand-in knows, by team id."""

    teams: dict[str, Team] = field(default_factory=dict)

    def ensure(self, team_id: str, now: float) -> Team:
        team = self.teams.get(team_id)
        if team is None:
            team = Team(
                team_id,
                name=f"Workspace {team_id}",
                domain=team_id.lower(),
                bot_user_id=new_id("U"),
                bot_id=new_id("B"),
                installer_id=new_id("U"),
            )
            team.add_channel("general", now, is_general=True)
            self.teams[team_id] = team
        return team

    def get(self, team_id: str) -> Team:
        return self.teams[team_id]
