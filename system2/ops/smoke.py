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
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx

from store.quests import TERMINAL
from system2.errors import System2Error

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
    url = url.rstrip("/")
    started = time.monotonic()
    steps: list[str] = []
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=10.0) as http:
        _expect(_get(http, "/healthz"), 200, "GET /healthz")
        steps.append("healthz ok")
        ready = _get(http, "/readyz")
        if ready.status_code != 200:
            raise SmokeFailed(f"{url} is not ready: /readyz answered {_said(ready)}")
        steps.append("readyz ok")
        path = f"/v1/companies/{company}/quests"
        submitted = _call(
            http,
            "POST",
            path,
            headers={**auth, "Idempotency-Key": f"smoke-{uuid.uuid4()}"},
            json={"goal": goal, "max_usd": max_usd},
        )
        if submitted.status_code == 401:
            raise SmokeFailed(f"the smoke token was refused by {url} (401): {_said(submitted)}")
        if submitted.status_code == 403:
            raise SmokeFailed(
                f"the smoke user is not a member of company {company} (403): set it up as "
                "DEPLOY.md says"
            )
        _expect(submitted, 202, f"POST {path}")
        quest_id = UUID(str(submitted.json()["quest_id"]))
        steps.append(f"submitted quest {quest_id}")
        quest = _wait(http, f"{path}/{quest_id}", auth, started + timeout_s, poll_s)
        status = str(quest["status"])
        if status != "succeeded":
            reason = quest.get("reason") or "no reason given"
            raise SmokeFailed(f"smoke quest {quest_id} ended {status}: {reason}")
        if not quest.get("result"):
            raise SmokeFailed(f"smoke quest {quest_id} succeeded without a result")
        steps.append(f"quest {quest_id} succeeded in {len(quest.get('steps') or [])} step(s)")
    return SmokeResult(url, quest_id, status, time.monotonic() - started, steps)


def _wait(
    http: httpx.Client, path: str, auth: dict[str, str], deadline: float, poll_s: float
) -> dict[str, Any]:
    last = "queued"
    while True:
        resp = _call(http, "GET", path, headers=auth)
        _expect(resp, 200, f"GET {path}")
        quest: dict[str, Any] = resp.json()
        last = str(quest.get("status"))
        if last in TERMINAL:
            return quest
        if time.monotonic() >= deadline:
            raise SmokeFailed(
                f"smoke quest {path.rsplit('/', 1)[-1]} still {last} after the timeout: "
                "are workers running and consuming?"
            )
        time.sleep(poll_s)


def _get(http: httpx.Client, path: str) -> httpx.Response:
    return _call(http, "GET", path)


def _call(http: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response:
    try:
        return http.request(method, path, **kw)
    except httpx.HTTPError as exc:
        raise SmokeFailed(f"cannot reach {http.base_url}{path}: {type(exc).__name__}") from None


def _expect(resp: httpx.Response, status: int, what: str) -> None:
    if resp.status_code != status:
        raise SmokeFailed(f"{what} answered {_said(resp)} (expected {status})")


def _said(resp: httpx.Response) -> str:
    text = " ".join(resp.text.split())
    return f"{resp.status_code} {text[:200]}".strip()
