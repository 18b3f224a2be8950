"""The control queue's work: ending a cancelled quest that no step is running.

A step that is running stops itself (its call scope is cut by the cancel notice). A quest
that is queued or between steps has no step to do that, so this ends it: the quest is
``cancelled``, calls left open are kept at their reservation, the running slot is released,
one audit row records who cancelled it and why.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from messages import AuditBatch, AuditEvent, BadMessage, CancelQuest, Envelope, QuestEvent
from messages.transport import Publisher
from store import Database
from store import charges as charges_store
from store import quests as quests_store
from system2 import logs
from workers import metrics
from workers.budget import StepBudget
from workers.events import QuestEvents, event_data
from workers.step import TED, cancelled

log = structlog.get_logger(__name__)


class CancelHandler:
    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        events: QuestEvents,
        budget: StepBudget,
        *,
        stale_claim_after: timedelta = timedelta(minutes=15),
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.events = events
        self.budget = budget
        self.stale_claim_after = stale_claim_after

    def run(self, env: Envelope[CancelQuest]) -> None:
        logs.bind(quest_id=str(env.payload.quest_id))
        with self.db.tenant(env.company_id) as tx:
            quest = quests_store.get(tx, env.payload.quest_id, for_update=True)
            if quest is None:
                raise BadMessage("no such quest for this company")
            if quest.finished:
                return
            claimed_at = quest.step_claimed_at or datetime.now(UTC)
            step_running = quest.step_claimed > quest.steps_done
            if step_running and datetime.now(UTC) - claimed_at < self.stale_claim_after:
                log.info("cancel left to the running step", quest_id=str(quest.id))
                return
            if quest.cancel_requested_at is None:  # sent without the ingress (e.g. replayed)
                quest = (
                    quests_store.request_cancel(
                        tx,
                        quest.id,
                        by=f"{env.actor.type.value}:{env.actor.id}",
                        reason=env.payload.reason,
                    )
                    or quest
                )
            outcome = cancelled(quest)
            limits = self.budget.limits(tx)
            kept = self.budget.keep_abandoned(
                tx, quest, charges_store.for_quest(tx, quest.id), limits
            )
            if kept:
                quests_store.add_cost(tx, quest.id, kept)
            quests_store.finish(tx, quest.id, "cancelled", reason=outcome.reason)
        self.budget.release(quest)
        metrics.spent(quest.model, kept)
        metrics.quest_ended("cancelled", outcome.cancel_requested_at)
        event = AuditEvent(
            idempotency_key=f"{quest.id}:cancelled",
            actor=outcome.by,
            action="quest.cancelled",
            target=f"quest:{quest.id}",
            rationale=outcome.reason,
            originating_message_id=quest.origin_message_id,
            quest_id=quest.id,
        )
        self.publisher.publish(env.follow_up(AuditBatch(events=[event]), actor=TED))
        state = QuestEvent(
            quest_id=quest.id,
            kind="quest.state",
            step=quest.steps_done or None,
            data=event_data(status="cancelled", reason=outcome.reason),
        )
        self.events.emit([env.follow_up(state, actor=TED)])
        log.info("quest cancelled", quest_id=str(quest.id))
