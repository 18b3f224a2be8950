"""A quest ends here, whichever way it ends.

Two paths end a quest. The step that runs it ends it when it succeeds, fails, is halted, or
is cut by a cancel (``QuestRunner._finish``); the control path ends it from outside its
steps: a cancel while no step runs it, a step that keeps crashing its worker, a step out of
retries (``QuestEnder.end``). Both go through ``QuestEnding``, which holds what ending is:

- the ending's idempotency key, built in one place (``Ending.key``): ``{quest}:{steps
  done}:finished``, where the step that ends the quest counts itself as done. The ending
  step ``n`` writes ``{quest}:{n}:finished``; an ending from outside writes the row's
  ``steps_done`` (a step that crashed its worker never got done); an ending sent again from
  an ended quest's row reads ``steps_done`` back, which is the ending step's ``n`` — the
  same key, so the log writer drops the copy.
- the state transition (``record``), in the caller's transaction beside the caller's own
  writes; after the commit, never inside it, the company's running slot released and the
  ending counted (``ended``);
- the audit row and the live ``quest.state`` event, and how they go out (``announce``).

What the two paths tell differs, and each keeps what it has always sent (``Ending.by_step``):
the ending step knows the result, so its audit row carries ``result_chars`` and its live
event the result's summary; an ending from outside carries neither, even when it re-sends a
succeeded quest's ending from the row. How they go out differs too: the ending step's row is
one of the step's audit events, stored with the step (a redelivered step re-sends it) and
sent in the step's batch once the quest's lease is released, after the step's live events;
an ending from outside sends its row alone, then its live event (``announce``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from messages import AuditBatch, AuditEvent, Envelope, QuestEvent
from store import TenantTx
from store import quests as quests_store
from store.quests import Final, Quest
from workers import worker_metrics
from workers.events import QuestEvents, event_data, summarize
from workers.publisher import QueuePublisher
from workers.step import TED, Outcome, Spend, StepRecord, finished_key
from workers.step_budget import StepBudget


@dataclass(frozen=True)
class Ending:
    """How one quest ended. ``env``: the message that ended it (what the ending sends follows
    up on it); ``steps_done``: the quest's steps done once it has ended; ``by_step``: told
    by the step that ended it (see the module's docstring)."""

    env: Envelope[Any]
    quest: Quest
    outcome: Outcome
    steps_done: int
    by_step: bool = False
    spend: Spend | None = None  # what its Claude replies cost, when a step ended it

    @property
    def final(self) -> Final:
        return Final(self.outcome.status, self.outcome.result, self.outcome.reason)

    @classmethod
    def of_step(cls, record: StepRecord, outcome: Outcome) -> Ending:
        """The ending of the step in ``record``, which is done once the quest has ended."""
        return cls(
            record.env,
            record.quest,
            outcome,
            steps_done=record.step,
            by_step=True,
            spend=record.spend,
        )

    @property
    def key(self) -> str:
        """The idempotency key of the ending's audit row (the only place it is built)."""
        return finished_key(self.quest.id, self.steps_done)

    def audit_row(self) -> AuditEvent:
        """The audit row saying who ended the quest and why."""
        result = self.outcome.result if self.by_step else None
        return AuditEvent(
            idempotency_key=self.key,
            actor=self.outcome.by,
            action=f"quest.{self.outcome.status}",
            target=f"quest:{self.quest.id}",
            rationale=self.outcome.reason,
            originating_message_id=self.quest.origin_message_id,
            quest_id=self.quest.id,
            data=event_data(
                result_chars=len(result) if result else None,
                **(self.spend.data() if self.spend else {}),
            ),
        )

    def state(self) -> Envelope[QuestEvent]:
        """The live ``quest.state`` event watchers see the quest end by."""
        result = self.outcome.result if self.by_step else None
        event = QuestEvent(
            quest_id=self.quest.id,
            kind="quest.state",
            step=self.steps_done or None,
            data=event_data(
                status=self.outcome.status,
                reason=self.outcome.reason,
                result=summarize(result) if result else None,
            ),
        )
        return self.env.follow_up(event, actor=TED)


class QuestEnding:
    """Ends quests: the state transition, the running slot, the count, the audit row and the
    live event of each ending, for the step runner and the control path alike."""

    def __init__(self, publisher: QueuePublisher, events: QuestEvents, budget: StepBudget) -> None:
        self.publisher = publisher
        self.events = events
        self.budget = budget

    def in_step(self, record: StepRecord, outcome: Outcome) -> Ending:
        """The step in ``record`` ends its quest: its ending's audit row joins the step's
        audit events (stored with the step, sent in its batch) and its live event the step's
        live events."""
        ending = Ending.of_step(record, outcome)
        record.audit.append(ending.audit_row())
        record.live.append(ending.state())
        return ending

    async def record(self, tx: TenantTx, ending: Ending) -> None:
        """The quest's final state, in the caller's transaction (a step records it with the
        step itself: ``Ending.final``)."""
        final = ending.final
        await quests_store.finish(
            tx, ending.quest.id, final.status, result=final.result, reason=final.reason
        )

    async def ended(self, ending: Ending) -> None:
        """After the commit: the company's running slot is released and the ending counted."""
        await self.budget.release(ending.quest)
        worker_metrics.quest_ended(ending.outcome.status, ending.outcome.cancel_requested_at)

    async def announce(self, ending: Ending) -> None:
        """An ending from outside the steps goes out on its own: its audit row, then its live
        event. Never inside a transaction: both are network calls."""
        batch = AuditBatch(events=[ending.audit_row()])
        await self.publisher.publish(ending.env.follow_up(batch, actor=TED))
        await self.events.emit([ending.state()])
