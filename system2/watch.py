"""``system2 quest watch``: a quest's live events in the terminal, until it ends."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, cast
from uuid import UUID

import redis
from rich.console import Console
from rich.markup import escape

from messages.notices import StreamReply
from messages.redis_keys import quest_stream_key
from runtime.settings import Settings
from store import Database, TenantTx
from store import quests as quests_store
from store import support as support_store
from store.quests import TERMINAL
from system2.errors import System2Error

GRANT_CHECK_S = 5.0  # while events keep coming, how often the grant is checked again


class Board:
    """What the watcher knows so far: the running totals each line shows."""

    def __init__(self) -> None:
        self.cost = 0
        self.tier = "ok"
        self.state = "queued"

    def line(self, event: dict[str, Any], at: str) -> str | None:
        kind, data, step = event["kind"], event.get("data", {}), event.get("step")
        if kind == "claude.replied":
            self.cost = data.get(
                "quest_cost_usd_micros", self.cost + data.get("cost_usd_micros", 0)
            )
            tools = f" {', '.join(data['tools'])}" if data.get("tools") else ""
            action = f"Claude {data.get('stop_reason')}{tools}: {data.get('text', '')}"
        elif kind == "tool.called":
            action = f"→ {data.get('tool')}"
        elif kind == "tool.finished":
            action = f"← {data.get('tool')} {'ok' if data.get('ok') else 'error'} {data.get('target', '')}"
        elif kind == "guard.tier":
            self.tier = data.get("tier", self.tier) if data.get("scope") == "quest" else self.tier
            action = f"guard: {data.get('scope')} budget at tier {data.get('tier')}"
        elif kind in ("quest.state", "step.waiting", "guard.slowed", "step.started"):
            self.state = data.get("status", self.state)
            action = {
                "quest.state": f"state {data.get('status')}"
                + (f" — {data['reason']}" if data.get("reason") else ""),
                "step.waiting": f"waiting: {data.get('reason')}",
                "guard.slowed": f"slowed: next step in {data.get('delay_ms')} ms",
                "step.started": "step started",
            }[kind]
            if kind == "step.started":
                self.state = "running"
        else:
            return None
        return (
            f"{at[11:19]}  step {step or '-':>2}  {escape(action)[:100]:<100}  "
            f"${self.cost / 1e6:.4f}  tier {self.tier:<4}  {self.state}"
        )


async def watch(settings: Settings, db: Database, company_id: UUID, quest_id: UUID) -> int:
    """Print the quest's events as they come, while the engineer's support grant lasts (``db``
    is their operator store); 0 once the quest has ended."""
    console = Console(highlight=False)
    client = redis.Redis.from_url(settings.redis_url)
    key, last, board = quest_stream_key(quest_id), "0", Board()
    quiet, checked = 0, time.monotonic()
    while True:
        if time.monotonic() - checked > GRANT_CHECK_S:
            checked = time.monotonic()
            async with db.tenant(company_id) as tx:
                await _still_granted(tx)
        # The blocking read in a thread, so that each read is an await: Ctrl-C (asyncio.run
        # cancels the body) ends the watch there, even while events keep coming.
        found = await asyncio.to_thread(client.xread, {key: last}, block=1000, count=200)
        reply = cast(StreamReply, found or [])
        if not reply:
            quiet += 1
            if quiet % 3 == 0 and await _ended(db, company_id, quest_id):
                console.print("[dim](the quest has ended)[/dim]")
                return 0
            continue
        quiet = 0
        for _, entries in reply:
            for entry_id, fields in entries:
                last = entry_id.decode()
                envelope = json.loads(fields[b"e"])
                event = envelope["payload"]
                text = board.line(event, envelope["issued_at"])
                if text:
                    console.print(text)
                if (
                    event["kind"] == "quest.state"
                    and event.get("data", {}).get("status") in TERMINAL
                ):
                    return 0


async def _ended(db: Database, company_id: UUID, quest_id: UUID) -> bool:
    async with db.tenant(company_id) as tx:
        await _still_granted(tx)
        quest = await quests_store.get(tx, quest_id)
    return quest is None or quest.finished


async def _still_granted(tx: TenantTx) -> None:
    if not await support_store.live(tx):
        raise System2Error("the support grant ended: the watch stops here")
