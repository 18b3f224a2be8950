"""Repositories, their issues, comments and labels: the REST API's memory.

Pure data and mutations, no HTTP and no locking (``GitHub`` holds its lock around every
call). Repositories exist only when a test seeds them (``POST /_repos``); ``logins`` lists
who can see one, and an empty list means everyone. Issue numbers count from 1 per
repository, ids are global, as on GitHub. A new repository gets GitHub's default labels;
any other label name is created on first use, with a color derived from its name.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_LABELS = (
    ("bug", "d73a4a", "Something isn't working"),
    ("documentation", "0075ca", "Improvements or additions to documentation"),
    ("duplicate", "cfd3d7", "This issue or pull request already exists"),
    ("enhancement", "a2eeef", "New feature or request"),
    ("good first issue", "7057ff", "Good for newcomers"),
    ("help wanted", "008672", "Extra attention is needed"),
    ("invalid", "e4e669", "This doesn't seem right"),
    ("question", "d876e3", "Further information is requested"),
    ("wontfix", "ffffff", "This will not be worked on"),
)


@dataclass(slots=True)
class Label:
    id: int
    name: str
    color: str
    description: str | None
    default: bool


@dataclass(slots=True)
class Comment:
    id: int
    body: str
    login: str
    created_at: float
    updated_at: float


@dataclass(slots=True)
class Issue:
    id: int
    number: int
    title: str
    body: str | None
    login: str
    created_at: float
    updated_at: float
    state: str = "open"
    state_reason: str | None = None
    closed_at: float | None = None
    closed_by: str | None = None
    labels: list[Label] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)


@dataclass(slots=True)
class Repo:
    id: int
    owner: str
    name: str
    logins: tuple[str, ...]  # who may see it; empty: everyone
    issues: dict[int, Issue] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)  # by lowercased name

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def visible_to(self, login: str) -> bool:
        return not self.logins or login.lower() in (name.lower() for name in self.logins)

    def association(self, login: str) -> str:
        if login.lower() == self.owner.lower():
            return "OWNER"
        return "COLLABORATOR" if self.logins and self.visible_to(login) else "NONE"


def _color(name: str) -> str:
    return hashlib.sha256(name.lower().encode()).hexdigest()[:6]


@dataclass(slots=True)
class Changes:
    """A validated ``PATCH`` of an issue; ``None`` leaves a field as it is."""

    title: str | None = None
    body: str | None = None
    body_set: bool = False  # "body": null clears it
    state: str | None = None
    state_reason: str | None = None
    labels: list[str] | None = None
    assignees: list[str] | None = None


class RepoBook:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.repos: dict[str, Repo] = {}
        self._repo_ids = itertools.count(100_000_001)
        self._issue_ids = itertools.count(1_000_000_001)
        self._comment_ids = itertools.count(2_000_000_001)
        self._label_ids = itertools.count(3_000_000_001)

    def add(self, owner: str, name: str, logins: tuple[str, ...]) -> Repo:
        """Seeds a repository; seeding it again only replaces who can see it."""
        key = f"{owner}/{name}".lower()
        repo = self.repos.get(key)
        if repo is None:
            repo = self.repos[key] = Repo(next(self._repo_ids), owner, name, logins)
            for label_name, color, description in DEFAULT_LABELS:
                repo.labels[label_name] = Label(
                    next(self._label_ids), label_name, color, description, True
                )
        repo.logins = logins
        return repo

    def find(self, owner: str, name: str, login: str) -> Repo | None:
        repo = self.repos.get(f"{owner}/{name}".lower())
        return repo if repo is not None and repo.visible_to(login) else None

    def visible(self, login: str) -> list[Repo]:
        return [repo for repo in self.repos.values() if repo.visible_to(login)]

    def label(self, repo: Repo, name: str) -> Label:
        found = repo.labels.get(name.lower())
        if found is None:
            found = Label(next(self._label_ids), name, _color(name), None, False)
            repo.labels[name.lower()] = found
        return found

    def create_issue(
        self, repo: Repo, login: str, title: str, body: str | None, fields: dict[str, Any]
    ) -> Issue:
        now = self.clock()
        number = len(repo.issues) + 1
        issue = Issue(next(self._issue_ids), number, title, body, login, now, now)
        self._relabel(repo, issue, fields.get("labels") or [])
        issue.assignees = list(dict.fromkeys(fields.get("assignees") or []))
        repo.issues[number] = issue
        return issue

    def comment(self, issue: Issue, login: str, body: str) -> Comment:
        now = self.clock()
        found = Comment(next(self._comment_ids), body, login, now, now)
        issue.comments.append(found)
        issue.updated_at = now
        return found

    def add_labels(self, repo: Repo, issue: Issue, names: list[str]) -> None:
        self._relabel(repo, issue, [label.name for label in issue.labels] + names)
        issue.updated_at = self.clock()

    def update(self, repo: Repo, issue: Issue, login: str, changes: Changes) -> None:
        now = self.clock()
        if changes.title is not None:
            issue.title = changes.title
        if changes.body_set:
            issue.body = changes.body
        if changes.labels is not None:
            self._relabel(repo, issue, changes.labels)
        if changes.assignees is not None:
            issue.assignees = list(dict.fromkeys(changes.assignees))
        self._move(issue, login, changes, now)
        issue.updated_at = now

    def _move(self, issue: Issue, login: str, changes: Changes, now: float) -> None:
        """Open/closed transitions and ``state_reason``, as GitHub records them."""
        state = changes.state or issue.state
        if state == "closed" and issue.state == "open":
            issue.state, issue.closed_at, issue.closed_by = "closed", now, login
            issue.state_reason = changes.state_reason or "completed"
        elif state == "open" and issue.state == "closed":
            issue.state, issue.closed_at, issue.closed_by = "open", None, None
            issue.state_reason = "reopened"
        elif changes.state_reason is not None and state == "closed":
            issue.state_reason = changes.state_reason

    def _relabel(self, repo: Repo, issue: Issue, names: list[str]) -> None:
        unique: dict[str, str] = {}
        for name in names:
            if name:
                unique.setdefault(name.lower(), name)
        issue.labels = [self.label(repo, name) for name in unique.values()]
