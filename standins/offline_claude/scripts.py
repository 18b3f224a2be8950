"""Scripts: what the offline Claude answers, turn by turn, as plain data.

A quest picks its script with a ``[script:NAME]`` marker anywhere in the text of its first
user message (no marker: ``answer``). The server is stateless, so the turn it plays is the
number of assistant messages already in the request; past the last turn it plays
``Script.after`` (by default ``DONE``, a plain "Done." ``end_turn``).

Strings in a turn may use placeholders, filled in per request so replies can mention the
quest without the script knowing it: ``{goal}`` (the first user message's text, marker
removed, whitespace collapsed, at most 200 characters), ``{turn}`` (1-based turn number),
``{arg1}`` to ``{arg9}`` (the goal's words: a test passes a repository or a channel id this
way) and ``{last_result}`` (the text of the last tool result Claude was sent, at most 500
characters: a reply can quote what a tool answered, such as the link of an issue it made).

To add a script, add an entry to ``BUILTIN_SCRIPTS`` below, or pass
``create_app(scripts={"mine": Script(turns=(...,))})`` from a test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

StopReason = Literal[
    "end_turn",
    "tool_use",
    "pause_turn",
    "max_tokens",
    "stop_sequence",
    "refusal",
    "model_context_window_exceeded",
]
ErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "timeout_error",
    "api_error",
    "overloaded_error",
]


@dataclass(frozen=True, slots=True)
class Text:
    """A text block."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolUse:
    """A ``tool_use`` block; its id is derived from the request, so it is not scripted."""

    name: str
    input: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            json.dumps(self.input)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"tool_use {self.name!r}: input must be JSON-serializable") from exc


Block = Text | ToolUse


@dataclass(frozen=True, slots=True)
class Turn:
    """One assistant reply.

    ``hold_s`` delays the reply (streaming: after ``message_start``), for cancel and timeout
    tests; ``start_after_s`` delays its first byte, the status line included, as the real API
    does when it is slow to start or reads a long prompt. ``error_mid_stream`` ends a streamed
    reply after ``message_start`` (and the hold) with an ``error`` event of that type, as the
    real API does when it is overloaded mid-reply; ``cut_mid_stream`` ends it there with no
    ``message_stop``, as a connection lost mid-reply does. ``stop_sequence`` is what a
    scripted ``stop_sequence`` stop reports. Usage is not scripted: the server counts and
    caches the prompt it is sent (``prompt_cache``).
    """

    content: tuple[Block, ...] = ()
    stop_reason: StopReason = "end_turn"
    stop_sequence: str | None = None
    hold_s: float = 0.0
    start_after_s: float = 0.0
    error_mid_stream: ErrorType | None = None
    cut_mid_stream: bool = False

    def __post_init__(self) -> None:
        seen_tool = False
        for block in self.content:
            if isinstance(block, ToolUse):
                seen_tool = True
            elif seen_tool:
                raise ValueError("a turn's text (the rationale) must come before its tool_use")
        if min(self.hold_s, self.start_after_s) < 0:
            raise ValueError("hold_s and start_after_s must not be negative")


@dataclass(frozen=True, slots=True)
class Failure:
    """An error reply in the API's error shape, e.g. ``Failure(529, "overloaded_error")``.

    ``retry_after`` (seconds) is sent as the ``retry-after`` header, which the SDK honours.
    """

    status: int
    type: ErrorType
    message: str = "Scripted failure."
    retry_after: float | None = None
    hold_s: float = 0.0


DONE = Turn(content=(Text("Done."),))


@dataclass(frozen=True, slots=True)
class Script:
    """A conversation: ``turns[i]`` answers a request holding ``i`` assistant messages.

    ``flaky`` failures are served, in order, to the first attempts of each distinct request
    (same prompt) before its turn is played; the app counts attempts in memory and forgets a
    request once it has succeeded, so the next identical request fails again.
    """

    turns: tuple[Turn | Failure, ...] = ()
    after: Turn | Failure = DONE
    flaky: tuple[Failure, ...] = ()

    def turn_at(self, index: int) -> Turn | Failure:
        """The reply for a request that already holds ``index`` assistant messages."""
        return self.turns[index] if index < len(self.turns) else self.after


def _one(turn: Turn | Failure) -> Script:
    return Script(turns=(turn,))


def _say(text: str) -> tuple[Block, ...]:
    return (Text(text),)


_NOTE = ToolUse("add_note", {"text": "Goal: {goal}"})
_TASK = ToolUse("demo_create_task", {"title": "{goal}", "notes": "Created by Ted"})
_OVERLOADED = Failure(529, "overloaded_error", "Overloaded")
_RATE_LIMITED = Failure(
    429, "rate_limit_error", "Number of request tokens has exceeded your rate limit.", 1.0
)

# "[script:github_to_slack] OWNER REPO CHANNEL THREAD_TS": every GitHub and Slack tool once.
# The issue is the repository's first (#1): the scripts cannot read a number back.
_REPO = {"owner": "{arg1}", "repo": "{arg2}"}
_GITHUB_TO_SLACK = Script(
    turns=(
        Turn(
            (
                Text("First I'll look at what is already filed."),
                ToolUse("github_list_issues", {**_REPO, "state": "all"}),
                ToolUse("github_search_issues", {"q": "repo:{arg1}/{arg2} is:issue printer"}),
            ),
            stop_reason="tool_use",
        ),
        Turn(
            (
                Text("Nothing yet: I'll file it."),
                ToolUse(
                    "github_create_issue",
                    {
                        **_REPO,
                        "title": "The printer is on fire",
                        "body": "Seen at 9am.",
                        "labels": ["ted"],
                    },
                ),
            ),
            stop_reason="tool_use",
        ),
        Turn(
            (
                Text("Now I'll tell the team."),
                ToolUse(
                    "slack_post_message", {"channel": "{arg3}", "text": "Filed: {last_result}"}
                ),
            ),
            stop_reason="tool_use",
        ),
        Turn(
            (
                Text("The thread asked about it: I'll answer there."),
                ToolUse("slack_read_messages", {"channel": "{arg3}", "limit": 5}),
                ToolUse(
                    "slack_reply_in_thread",
                    {"channel": "{arg3}", "thread_ts": "{arg4}", "text": "On it: see the issue."},
                ),
            ),
            stop_reason="tool_use",
        ),
        Turn(
            (
                Text("I'll note on the issue that the team knows, and triage it."),
                ToolUse("github_get_issue", {**_REPO, "number": 1}),
                ToolUse("github_comment", {**_REPO, "number": 1, "body": "Posted to Slack."}),
                ToolUse("github_add_labels", {**_REPO, "number": 1, "labels": ["triaged"]}),
            ),
            stop_reason="tool_use",
        ),
        Turn(
            (
                Text("The printer is fixed: I'll close the issue."),
                ToolUse("github_close_issue", {**_REPO, "number": 1, "state_reason": "completed"}),
                ToolUse("slack_list_channels", {}),
            ),
            stop_reason="tool_use",
        ),
        Turn(_say("Filed, announced, triaged and closed.")),
    )
)

_FILE_ISSUE = ToolUse("github_create_issue", {**_REPO, "title": "{goal}", "body": "Filed by Ted."})
_POST = ToolUse("slack_post_message", {"channel": "{arg1}", "text": "Ted says: {goal}"})

BUILTIN_SCRIPTS: Mapping[str, Script] = MappingProxyType(
    {
        "github_to_slack": _GITHUB_TO_SLACK,
        # "[script:github_issue] OWNER REPO words": files one issue
        "github_issue": Script(
            turns=(
                Turn((Text("I'll file it."), _FILE_ISSUE), stop_reason="tool_use"),
                Turn(_say("Filed: {last_result}")),
            )
        ),
        # "[script:slack_post] CHANNEL words": posts one message
        "slack_post": Script(
            turns=(
                Turn((Text("I'll post it."), _POST), stop_reason="tool_use"),
                Turn(_say("Posted: {last_result}")),
            )
        ),
        "answer": _one(Turn(_say("Here is a summary of your goal: {goal}"))),
        "notes": Script(
            turns=(
                Turn((Text("I'll write the goal down first."), _NOTE), stop_reason="tool_use"),
                Turn(_say("I noted the goal and I'm done: {goal}")),
            )
        ),
        "tasks": Script(
            turns=(
                Turn(
                    (Text("I'll put this on the team's task list so nobody loses it."), _TASK),
                    stop_reason="tool_use",
                ),
                Turn(_say("The task is on the list: {goal}")),
            )
        ),
        "tasks_then_list": Script(
            turns=(
                Turn((Text("First I'll add the task."), _TASK), stop_reason="tool_use"),
                Turn(
                    (Text("Now let me check the list."), ToolUse("demo_list_tasks", {})),
                    stop_reason="tool_use",
                ),
                Turn(_say("Added and checked: {goal}")),
            )
        ),
        "pause": Script(
            turns=(
                Turn(_say("Working on it; this takes a while."), stop_reason="pause_turn"),
                Turn(_say("Finished after a pause: {goal}")),
            )
        ),
        "refusal": _one(Turn(_say("I can't help with that."), stop_reason="refusal")),
        "max_tokens": _one(Turn(_say("This answer runs long and is cut off in"), "max_tokens")),
        "context": _one(
            Turn(_say("The conversation no longer fits in"), "model_context_window_exceeded")
        ),
        "loop": Script(
            after=Turn(
                (Text("One more note."), ToolUse("add_note", {"text": "Note {turn}"})),
                stop_reason="tool_use",
            )
        ),
        "slow": _one(Turn(_say("Sorry for the wait: {goal}"), hold_s=30.0)),
        "brief": _one(Turn(_say("Done after a moment: {goal}"), hold_s=0.3)),
        "slow_start": _one(Turn(_say("Sorry for the slow start: {goal}"), start_after_s=30.0)),
        "cut_mid_stream": _one(Turn(_say("This reply is never finished"), cut_mid_stream=True)),
        "overloaded_mid_stream": _one(
            Turn(_say("This reply is cut short"), error_mid_stream="overloaded_error")
        ),
        "brief_hold_notes": Script(
            turns=(
                Turn(
                    (Text("Let me think, then note it."), _NOTE), stop_reason="tool_use", hold_s=4.0
                ),
                Turn(_say("Noted: {goal}")),
            )
        ),
        "tasks_two_tools": Script(
            turns=(
                Turn(
                    (
                        Text("I'll add the task, then check the list."),
                        _TASK,
                        ToolUse("demo_list_tasks", {}),
                    ),
                    stop_reason="tool_use",
                ),
                Turn(_say("Added and checked: {goal}")),
            )
        ),
        # a quest to watch: a note at once, then a second one after 8 s of thought, then done
        "watched_notes": Script(
            turns=(
                Turn((Text("I'll write the goal down first."), _NOTE), stop_reason="tool_use"),
                Turn(
                    (Text("Now a second note, after some thought."), _NOTE),
                    stop_reason="tool_use",
                    hold_s=8.0,
                ),
                Turn(_say("Two notes taken: {goal}")),
            )
        ),
        "slow_notes": Script(
            turns=(
                Turn(
                    (Text("After some thought, a note."), _NOTE),
                    stop_reason="tool_use",
                    hold_s=30.0,
                ),
                Turn(_say("Noted: {goal}")),
            )
        ),
        "flaky": Script(
            turns=(Turn(_say("Answered after a retry: {goal}")),), flaky=(_OVERLOADED,)
        ),
        "overloaded": _one(_OVERLOADED),
        "server_error": _one(Failure(500, "api_error", "Internal server error")),
        "rate_limited": _one(_RATE_LIMITED),
    }
)
"""The scripts every app knows; ``create_app(scripts=...)`` adds to (or overrides) these."""
