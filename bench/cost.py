"""What a quest costs, with the prompt cache and without, and a long quest kept within the
model's context window.

A scripted 20-step quest of realistic sizes (system prompt and tools about 3,000 tokens; each
step adds Claude's rationale, one tool call and a result of about 1,000 tokens) runs through
the real step path (``workers.quest.QuestRunner``, built as a worker process builds it, on a
scratch Postgres and Redis) against the offline Claude, which caches like the API and reports
``usage`` from what it finds; the guard prices every reply. The same quest runs with caching
(``S2_PROMPT_CACHE``) and without, alternately, in the same run: input cost and total cost
per quest on each side, and the p50 time of a step (from the step message to its end,
Claude's reply and the tool included).

Then a 60-step quest whose transcript (about 4,000 tokens a step) would pass the 200,000-token
window: it must succeed with elision, and, on the other side, fail without it.

    python -m bench.cost            # full: 5 quests a side
    python -m bench.cost --small    # CI size: 1 quest a side
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import uvicorn
from redis.asyncio import Redis as AsyncRedis

from guard import PriceTable, Usage
from ingress.submit import QuestSpec, create_quest
from integrations import PROVIDERS, ToolOutcome
from messages import Actor, ActorType, Envelope, QuestStep
from runtime import logs
from runtime.settings import Settings
from standins.offline_claude import Script, Text, ToolUse, Turn, create_app
from store import Database
from store import companies as companies_store
from store import quests as quests_store
from system2.procs import Proc, free_port, wait_http
from system2.scratch import scratch_postgres, scratch_redis
from workers.app import prompts, step_budget
from workers.claude import Claude
from workers.events import QuestEvents
from workers.publisher import QueuePublisher
from workers.quest import QuestRunner
from workers.queue_protocol import QueueProtocol
from workers.tools import AddNote, ListNotes, Tool, Toolbox, ToolCall

MODEL = "claude-sonnet-5-5"
OPERATOR = Actor(type=ActorType.operator, id="bench")
GOAL = (
    "Go through this quarter's customer escalation reports one page at a time, note for each "
    "the customer, the product area, the severity and whether a fix shipped, and finish with "
    "a summary of the three areas that produced the most severe escalations and what the team "
    "should change first. Quote report numbers so that the summary can be checked."
)
# The tools of the integrations a company connects, as Claude is shown them, with a CRM and a
# mailbox beside the ones we ship: what a realistic company's quest is offered.
EXTRA_TOOLS = {
    "crm_find_account": "Find a customer account in the CRM by name, domain or account id; "
    "returns the account's owner, plan, renewal date, open opportunities and health score.",
    "crm_update_opportunity": "Update an opportunity's stage, amount, close date or next step; "
    "each change is recorded in the opportunity's history with Ted as its author.",
    "crm_log_activity": "Log a call, meeting or email against an account or a contact, with a "
    "subject, a body and the people involved, so the account team sees it in the timeline.",
    "mail_search": "Search the shared mailbox by sender, recipient, subject words and a date "
    "range; returns message ids, subjects, senders, dates and the first lines of each body.",
    "mail_read": "Read one message of the shared mailbox in full by its id, with its headers, "
    "its body as plain text and the names and sizes of its attachments.",
    "mail_draft_reply": "Draft a reply to a message of the shared mailbox for a person to review "
    "and send; never sends by itself. The draft quotes the message it answers.",
    "calendar_find_slots": "Find free slots shared by a list of people in a date range, in "
    "their own time zones, skipping holidays and the hours each marked as focus time.",
    "calendar_book": "Book a meeting in a free slot with a title, an agenda and a video link; "
    "every invitee gets the invitation from the company's calendar, not from Ted.",
    "docs_search": "Search the company's shared documents by words, owner and last change; "
    "returns titles, links, owners and the passage that matched each search.",
    "docs_read": "Read one shared document as plain text, with its title, owner, last editor "
    "and the date of its last change; long documents are read a section at a time.",
}


def report(page: int, chars: int) -> str:
    """A page of the escalation report, about ``chars`` characters of JSON records."""
    records, n = [], 0
    while len(json.dumps(records)) < chars:
        n += 1
        records.append(
            {
                "report": f"ESC-{page:03d}-{n:02d}",
                "customer": f"Customer {(page * 7 + n) % 97}",
                "area": ["billing", "sync", "search", "exports", "login"][(page + n) % 5],
                "severity": ["low", "medium", "high", "critical"][(page * n) % 4],
                "fix_shipped": (page + n) % 3 == 0,
                "summary": "Escalated after repeated failures reported by the account team.",
            }
        )
    return json.dumps(records)[:chars]


@dataclass
class ReadReport:
    """A tool that reads one page of the escalation report (the provider is not what is
    measured here: its answer is made locally, of a set size)."""

    chars: int
    name: str = "read_report"
    description: str = "Read one page of this quarter's escalation report, as JSON records."
    mutates: bool = False

    @property
    def input_schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": {"page": {"type": "string"}}, "required": ["page"]}

    async def run(self, call: ToolCall) -> ToolOutcome:
        page = int(str(call.input.get("page") or "1"))
        return ToolOutcome(report(page, self.chars))


@dataclass
class Catalogued:
    """A tool the quest is offered and never calls: its schema is part of every prompt."""

    name: str
    description: str
    input_schema: dict[str, Any]
    mutates: bool = False

    async def run(self, call: ToolCall) -> ToolOutcome:
        return ToolOutcome(f"{self.name} is not connected in this benchmark", is_error=True)


def catalogue() -> list[Tool]:
    tools: list[Tool] = [
        Catalogued(t.name, t.description, t.input_schema)
        for provider in PROVIDERS.values()
        for t in provider.tools
    ]
    text = {"type": "string", "description": "free text"}
    for name, description in EXTRA_TOOLS.items():
        schema = {
            "type": "object",
            "properties": {"query": text, "id": text, "fields": {"type": "object"}},
        }
        tools.append(Catalogued(name, description, schema))
    return tools


def script(steps: int) -> Script:
    """``steps`` - 1 pages read, each with a sentence of rationale, then the summary."""
    read = Turn(
        (
            Text("I'll read page {turn} of the report next and note its escalations."),
            ToolUse("read_report", {"page": "{turn}"}),
        ),
        stop_reason="tool_use",
    )
    done = Turn((Text("Summary: billing, sync and exports produced the most severe ones."),))
    return Script(turns=(*([read] * (steps - 1)), done))


SCRIPTS = {"cost20": script(20), "long60": script(60)}


def serve_claude(port: int) -> None:
    uvicorn.run(create_app(SCRIPTS), host="127.0.0.1", port=port, log_level="warning")


@dataclass
class QuestCost:
    status: str
    reason: str | None
    steps: int
    step_ms: list[float]
    input_micros: int  # uncached input, cache writes and cache reads
    total_micros: int
    prompt_tokens: list[int]  # of each step's call
    cache_read_tokens: int


class Bench:
    def __init__(self, settings: Settings, claude_url: str) -> None:
        self.settings = settings
        self.claude_url = claude_url
        self.prices = PriceTable.load()

    async def quest(
        self, db: Database, redis: AsyncRedis, script_name: str, *, cache: bool, elide: bool,
        result_chars: int, max_steps: int,
    ) -> QuestCost:  # fmt: skip
        """One quest of ``script_name`` through the real step path, steps run back to back."""
        settings = self.settings.model_copy(
            update={
                "prompt_cache": cache,
                "transcript_elision": elide,
                "tool_result_max_chars": result_chars + 100,
            }
        )
        claude = Claude(timeout_s=60, base_url=self.claude_url, api_key="offline-bench")
        protocol = QueueProtocol(
            redis, f"bench-{uuid.uuid4().hex[:8]}", heartbeat_timeout_ms=60_000
        )
        budget = step_budget(settings, redis, self.prices, claude)
        builtin: list[Tool] = [AddNote(db), ListNotes(db), ReadReport(result_chars), *catalogue()]
        runner = QuestRunner(
            db=db,
            publisher=QueuePublisher(protocol),
            claude=claude,
            toolbox=Toolbox(builtin),
            prices=self.prices,
            budget=budget,
            events=QuestEvents(redis, maxlen=1000),
            prompts=prompts(settings, self.prices, claude),
            max_steps=max_steps,
        )
        company = uuid.uuid4()
        async with db.tenant(company) as tx:
            await companies_store.create(tx, "Northwind Traders")
            quest, _ = await create_quest(
                tx, OPERATOR, QuestSpec(goal=f"[script:{script_name}] {GOAL}", model=MODEL)
            )
        env = Envelope[QuestStep](
            message_id=quest.origin_message_id,
            company_id=company,
            actor=OPERATOR,
            correlation_id=quest.correlation_id,
            payload=QuestStep(quest_id=quest.id, step=1),
        )
        step_ms = []
        try:
            for n in range(1, max_steps + 1):
                started = time.perf_counter()
                await runner.run(env.follow_up(QuestStep(quest_id=quest.id, step=n)), str(n))
                step_ms.append((time.perf_counter() - started) * 1000)
                async with db.tenant(company) as tx:
                    row = await quests_store.get(tx, quest.id)
                assert row is not None
                if row.finished:
                    break
        finally:
            await claude.close()
        async with db.tenant(company) as tx:
            steps = await quests_store.steps(tx, quest.id)
        return self._priced(row.status, row.reason, steps, step_ms)

    def _priced(
        self, status: str, reason: str | None, steps: list[Any], step_ms: list[float]
    ) -> QuestCost:
        input_micros = total = read = 0
        prompt_tokens = []
        for s in steps:
            if s.usage is None:
                continue
            usage = Usage.from_api(s.usage)
            parts = self.prices.cost_parts(MODEL, usage)
            input_micros += parts.input + parts.cache_write + parts.cache_read
            total += self.prices.cost(MODEL, usage)
            prompt_tokens.append(usage.prompt_tokens)
            read += usage.cache_read
        return QuestCost(
            status, reason, len(steps), step_ms, input_micros, total, prompt_tokens, read
        )


def _p50(values: list[float]) -> float:
    return statistics.median(values)


def run(quests: int) -> dict[str, Any]:
    """Both sides of the 20-step quest (``quests`` each, alternating) and the 60-step quest
    with elision and without; what it prints is returned as figures."""
    admin = os.environ.get("S2_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_base = os.environ.get("S2_REDIS_URL", "redis://127.0.0.1:6379/0")
    with ExitStack() as resources:
        admin_url, app_url = resources.enter_context(scratch_postgres(admin, prefix="s2bench"))
        redis_url = resources.enter_context(scratch_redis(redis_base))
        port = free_port()
        claude = Proc(
            "cost-claude",
            [sys.executable, "-m", "bench.cost", "--serve-claude", str(port)],
            env=dict(os.environ),
        ).start()
        resources.callback(claude.stop)
        claude_url = f"http://127.0.0.1:{port}"
        wait_http(claude_url + "/", proc=claude)
        settings = Settings(
            database_url=app_url,
            admin_database_url=admin_url,
            redis_url=redis_url,
            guard_quest_cap_usd=100,
            guard_quest_ceiling_usd=100,
            guard_quests_per_minute=10**6,
        )
        return asyncio.run(_measure(Bench(settings, claude_url), app_url, redis_url, quests))


async def _measure(bench: Bench, app_url: str, redis_url: str, quests: int) -> dict[str, Any]:
    redis = AsyncRedis.from_url(redis_url)
    async with Database(app_url, max_size=8) as db:
        sides: dict[bool, list[QuestCost]] = {True: [], False: []}
        for i in range(quests * 2):
            cache = i % 2 == 0
            sides[cache].append(
                await bench.quest(
                    db, redis, "cost20", cache=cache, elide=True, result_chars=4_000, max_steps=20
                )
            )
        long = {
            elide: await bench.quest(
                db, redis, "long60", cache=True, elide=elide, result_chars=16_000, max_steps=60
            )
            for elide in (True, False)
        }
    await redis.aclose()
    return _report(sides, long)


def _report(sides: dict[bool, list[QuestCost]], long: dict[bool, QuestCost]) -> dict[str, Any]:
    def mean(values: list[int]) -> int:
        return int(statistics.fmean(values))

    cached, plain = sides[True], sides[False]
    for q in (*cached, *plain):
        assert q.status == "succeeded" and q.steps == 20, (q.status, q.reason, q.steps)
    figures = {
        "first_prompt_tokens": cached[0].prompt_tokens[0],
        "last_prompt_tokens": cached[0].prompt_tokens[-1],
        "input_cached": mean([q.input_micros for q in cached]),
        "input_plain": mean([q.input_micros for q in plain]),
        "total_cached": mean([q.total_micros for q in cached]),
        "total_plain": mean([q.total_micros for q in plain]),
        "cache_read_share": sum(q.cache_read_tokens for q in cached)
        / sum(sum(q.prompt_tokens) for q in cached),
        "step_p50_cached_ms": _p50([ms for q in cached for ms in q.step_ms]),
        "step_p50_plain_ms": _p50([ms for q in plain for ms in q.step_ms]),
        "long_status": long[True].status,
        "long_steps": long[True].steps,
        "long_max_prompt_tokens": max(long[True].prompt_tokens),
        "long_total_cached": long[True].total_micros,
        "long_unelided_status": long[False].status,
        "long_unelided_steps": long[False].steps,
        "long_unelided_reason": long[False].reason,
    }
    figures["input_ratio"] = figures["input_plain"] / figures["input_cached"]
    figures["total_ratio"] = figures["total_plain"] / figures["total_cached"]
    figures["step_time_ratio"] = figures["step_p50_cached_ms"] / figures["step_p50_plain_ms"]
    f = figures
    print(
        f"20-step quest ({len(cached)} a side; prompt {f['first_prompt_tokens']:,} tokens at "
        f"step 1, {f['last_prompt_tokens']:,} at step 20; {MODEL}):\n"
        f"  input cost per quest: {f['input_plain']:,} micro-USD without caching, "
        f"{f['input_cached']:,} with: {f['input_ratio']:.2f}x lower (target >= 3)\n"
        f"  total cost per quest: {f['total_plain']:,} micro-USD without caching, "
        f"{f['total_cached']:,} with: {f['total_ratio']:.2f}x lower (target >= 2)\n"
        f"  prompt tokens read from the cache: {f['cache_read_share']:.0%}\n"
        f"  step p50: {f['step_p50_plain_ms']:.1f} ms without caching, "
        f"{f['step_p50_cached_ms']:.1f} ms with (ratio {f['step_time_ratio']:.2f}, target <= 1)\n"
        f"60-step quest, ~4,000 tokens a step, 200,000-token window:\n"
        f"  with elision: {f['long_status']} after {f['long_steps']} steps, largest prompt "
        f"{f['long_max_prompt_tokens']:,} tokens, cost {f['long_total_cached']:,} micro-USD\n"
        f"  without elision: {f['long_unelided_status']} at step {f['long_unelided_steps']}: "
        f"{f['long_unelided_reason']}"
    )
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="CI size: one quest a side")
    ap.add_argument("--quests", type=int, default=5, help="20-step quests a side")
    ap.add_argument("--serve-claude", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_claude:
        serve_claude(args.serve_claude)
        return
    logs.configure(level="WARNING")
    run(1 if args.small else args.quests)


if __name__ == "__main__":
    main()
