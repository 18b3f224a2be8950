"""Ending a quest from outside its steps: a cancel while no step runs, or a step that keeps
crashing its worker or runs out of retries.

The quest ends with its reason, calls left open are kept at their reservation, and the
ending itself (final state, running slot, count, audit row, live event) is
``workers.ending``'s, as it is for a step that ends its quest.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog

from guard import Limits
from messages import BadMessage, CancelQuest, Envelope
from runtime import logs
from store import Database, TenantTx
from store import charges as charges_store
from store import quests as quests_store
from store.charges import Charge
from store.quests import Quest
from workers import worker_metrics
from workers.ending import Ending, QuestEnding
from workers.events import QuestEvents
from workers.publisher import QueuePublisher
from workers.step import STALE_CLAIM_AFTER, Outcome, cancelled, claim_fresh, ended_from_row
from workers.step_budget import StepBudget

log = structlog.get_logger(__name__)


class QuestEnder:
    def __init__(
        self,
        db: Database,
        publisher: QueuePublisher,
        events: QuestEvents,
        budget: StepBudget,
        *,
        stale_claim_after: timedelta = STALE_CLAIM_AFTER,
    ) -> None:
        self.db = db
        self.budget = budget
        self.ending = QuestEnding(publisher, events, budget)
        self.stale_claim_after = stale_claim_after

    async def cancel(self, env: Envelope[CancelQuest]) -> None:
        """A cancel on the control queue. A running step stops itself (its calls are cut);
        a quest that is queued or between steps is ended here."""
        ended = await self.end(
            env,
            env.payload.quest_id,
            cancelled,
            unless_running=True,
            cancel=(env.actor.ref, env.payload.reason),
        )
        if ended:
            log.info("quest cancelled", quest_id=str(env.payload.quest_id))

    async def end(
        self,
        env: Envelope[Any],
        quest_id: UUID,
        outcome: Callable[[Quest], Outcome],
        *,
        unless_running: bool = False,
        cancel: tuple[str, str] | None = None,
    ) -> bool:
        """End the quest now (unless a live step runs it and ``unless_running``). True if ended.

        A quest that has already ended gets its ending's audit row sent again: if this is a
        redelivery after the send failed, that is the only copy; otherwise the log writer
        drops it by its key, which is the one the ending step used (``workers.ending``)."""
        logs.bind(quest_id=str(quest_id))
        company = env.company_id
        if await self._keep_abandoned(company, quest_id, unless_running=unless_running):
            log.info("left to the running step", quest_id=str(quest_id))
            return False

        async def end_in(tx: TenantTx) -> tuple[Ending, bool] | None:
            quest = await quests_store.get(tx, quest_id, for_update=True)
            if quest is None:
                raise BadMessage("no such quest for this company")
            if quest.finished:
                return Ending(env, quest, ended_from_row(quest), quest.steps_done), True
            if unless_running and self._step_running(quest):
                log.info("left to the running step", quest_id=str(quest.id))
                return None
            # not asked for yet: e.g. a replayed message
            if cancel is not None and quest.cancel_requested_at is None:
                asked = await quests_store.request_cancel(
                    tx, quest.id, by=cancel[0], reason=cancel[1]
                )
                quest = asked or quest
            ending = Ending(env, quest, outcome(quest), quest.steps_done)
            await self.ending.record(tx, ending)
            return ending, False

        done = await self.db.in_tenant(company, end_in)
        if done is None:
            return False
        ending, already = done
        # What is sent goes after the commit: a publish is a network call.
        if already:
            await self.ending.announce(ending)
            return False
        await self.ending.ended(ending)
        await self.ending.announce(ending)
        return True

    async def _keep_abandoned(self, company: UUID, quest_id: UUID, *, unless_running: bool) -> bool:
        """Before the ending's transaction (the guard is Redis: no row lock waits on it), keep
        the calls left open by steps that died, unless a live step may still settle them.
        True if, with ``unless_running``, a live step runs the quest: it ends the quest
        itself, and a cancel takes no lock its step's ending would wait behind."""

        async def look(tx: TenantTx) -> tuple[Quest, Limits, list[Charge]] | bool:
            quest = await quests_store.get(tx, quest_id)
            if quest is None or quest.finished:
                return False
            if unless_running and self._step_running(quest):
                return True
            return quest, await self.budget.limits(tx), await charges_store.for_quest(tx, quest.id)

        found = await self.db.in_tenant(company, look)
        if isinstance(found, bool):
            return found
        quest, limits, charges = found
        kept = await self.budget.keep_abandoned(self.db, quest, charges, limits)
        worker_metrics.spent(quest.model, kept)
        return False

    def _step_running(self, quest: Quest) -> bool:
        return quest.step_claimed > quest.steps_done and claim_fresh(
            quest, datetime.now(UTC), self.stale_claim_after
        )
