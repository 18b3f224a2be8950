"""The smoke test: one real quest through a deployed environment's ingress.

It checks ``/healthz`` and ``/readyz``, submits a quest for the smoke company as its smoke
user, waits for it to succeed, and reads it back. Anything else raises ``SmokeFailed`` with
one line that says what went wrong.

The smoke user and company are set up once per environment (DEPLOY.md, "Smoke tests"): a
company whose only member is the smoke user, with a small budget. The token is that user's
access token (``S2_SMOKE_TOKEN``), or — outside production — one minted for ``S2_SMOKE_USER``
with the environment's JWT secret.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

import httpx

from store.quests import TERMINAL
from system2.errors import System2Error
from system2_client import AuthenticatedClient, Client
from system2_client.api.ops import healthz, readyz
from system2_client.api.quests import show_quest, submit_quest
from system2_client.models import QuestAccepted, QuestSubmit, QuestView
from system2_client.types import Response

DEFAULT_GOAL = "Smoke test: reply with one short sentence confirming you are working."


class SmokeFailed(System2Error):
    """The environment failed its smoke test; the message says how, in one line."""


@dataclass
class SmokeResult:
    url: str
    quest_id: UUID
    status: str
    seconds: float
    steps: list[str] = field(default_factory=list)


def run_smoke(
    url: str,
    token: str,
    company: UUID,
    *,
    timeout_s: float = 120.0,
    goal: str = DEFAULT_GOAL,
    max_usd: str = "0.10",
    poll_s: float = 0.5,
) -> SmokeResult:
    """Through ``system2_client``, the client generated from the checked-in contract: the
    smoke test is also the proof that the contract is usable as published."""
    url = url.rstrip("/")
    started = time.monotonic()
    steps: list[str] = []
    timeout = httpx.Timeout(10.0)
    with (
        Client(base_url=url, timeout=timeout) as anyone,
        AuthenticatedClient(base_url=url, token=token, timeout=timeout) as user,
    ):
        _expect(_call(url, "GET /healthz", lambda: healthz.sync_detailed(client=anyone)), 200)
        steps.append("healthz ok")
        ready = _call(url, "GET /readyz", lambda: readyz.sync_detailed(client=anyone))
        if ready.status_code != 200:
            raise SmokeFailed(f"{url} is not ready: /readyz answered {_said(ready)}")
        steps.append("readyz ok")
        submitted = _call(
            url,
            f"POST /v1/companies/{company}/quests",
            lambda: submit_quest.sync_detailed(
                company,
                client=user,
                body=QuestSubmit(goal=goal, max_usd=max_usd),
                idempotency_key=f"smoke-{uuid.uuid4()}",
            ),
        )
        if submitted.status_code == 401:
            raise SmokeFailed(f"the smoke token was refused by {url} (401): {_said(submitted)}")
        if submitted.status_code == 403:
            raise SmokeFailed(
                f"the smoke user is not a member of company {company} (403): set it up as "
                "DEPLOY.md says"
            )
        accepted = _expect(submitted, 202)
        if not isinstance(accepted, QuestAccepted):
            raise SmokeFailed(f"{submitted.what} answered a body the contract does not describe")
        quest_id = accepted.quest_id
        steps.append(f"submitted quest {quest_id}")
        quest = _wait(url, user, company, quest_id, started + timeout_s, poll_s)
        status = str(quest.status)
        if status != "succeeded":
            reason = quest.reason or "no reason given"
            raise SmokeFailed(f"smoke quest {quest_id} ended {status}: {reason}")
        if not quest.result:
            raise SmokeFailed(f"smoke quest {quest_id} succeeded without a result")
        steps.append(f"quest {quest_id} succeeded in {len(quest.steps)} step(s)")
    return SmokeResult(url, quest_id, status, time.monotonic() - started, steps)


def _wait(
    url: str,
    user: AuthenticatedClient,
    company: UUID,
    quest_id: UUID,
    deadline: float,
    poll_s: float,
) -> QuestView:
    while True:
        found = _call(
            url,
            f"GET /v1/companies/{company}/quests/{quest_id}",
            lambda: show_quest.sync_detailed(company, quest_id, client=user),
        )
        quest = _expect(found, 200)
        if not isinstance(quest, QuestView):
            raise SmokeFailed(f"{found.what} answered a body the contract does not describe")
        if str(quest.status) in TERMINAL:
            return quest
        if time.monotonic() >= deadline:
            raise SmokeFailed(
                f"smoke quest {quest_id} still {quest.status} after the timeout: "
                "are workers running and consuming?"
            )
        time.sleep(poll_s)


T = TypeVar("T")


@dataclass(frozen=True)
class _Answer(Generic[T]):
    """An answer of the generated client, with the request it answers (for the one line)."""

    what: str
    response: Response[T]

    @property
    def status_code(self) -> int:
        return int(self.response.status_code)


def _call(url: str, what: str, call: Callable[[], Response[T]]) -> _Answer[T]:
    """``what`` is ``"METHOD /path"``."""
    try:
        return _Answer(what, call())
    except httpx.HTTPError as exc:
        path = what.partition(" ")[2]
        raise SmokeFailed(f"cannot reach {url}{path}: {type(exc).__name__}") from None


def _expect(answer: _Answer[T], status: int) -> T | None:
    if answer.status_code != status:
        raise SmokeFailed(f"{answer.what} answered {_said(answer)} (expected {status})")
    return answer.response.parsed


def _said(answer: _Answer[Any]) -> str:
    text = " ".join(answer.response.content.decode(errors="replace").split())
    return f"{answer.status_code} {text[:200]}".strip()
