"""The wire contract: the envelope, its forward compatibility, its refusals, its routing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from messages import (
    AUDIT,
    CONTROL,
    QUESTS,
    QUEUES,
    SCHEMA_VERSION,
    Actor,
    ActorType,
    AuditBatch,
    AuditEvent,
    BadMessage,
    CancelQuest,
    Envelope,
    Payload,
    QuestEvent,
    QuestStep,
    open_envelope,
)
from messages.transport import publisher, to_message

USER = Actor(type=ActorType.user, id="user-123")
TED = Actor(type=ActorType.ted, id="ted")
SECRET = "sk-ant-api03-" + "S3cr3t" * 8


def step_envelope(**overrides: Any) -> Envelope[QuestStep]:
    fields: dict[str, Any] = {
        "company_id": uuid.uuid4(),
        "actor": USER,
        "correlation_id": uuid.uuid4(),
        "payload": QuestStep(quest_id=uuid.uuid4(), step=1),
    }
    fields.update(overrides)
    return Envelope[QuestStep](**fields)


def audit_event() -> AuditEvent:
    return AuditEvent(
        idempotency_key="quest:1:note",
        actor=TED,
        action="note.added",
        target="note:1",
        rationale="the user asked for it",
        quest_id=uuid.uuid4(),
        data={"words": 3},
    )


def raw_step(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(step_envelope().model_dump_json())
    raw.update(overrides)
    return raw


# --- round trip and forward compatibility -----------------------------------------------


def test_envelope_round_trips_through_json() -> None:
    env = step_envelope()
    text = env.model_dump_json()
    back = open_envelope(text, QuestStep)
    assert back == env
    assert back.schema_version == SCHEMA_VERSION
    assert isinstance(back.payload, QuestStep)
    assert back.payload.quest_id == env.payload.quest_id
    assert back.issued_at == env.issued_at
    assert back.issued_at.tzinfo is not None
    # bytes and an already-decoded dict read the same
    assert open_envelope(text.encode(), QuestStep) == env
    assert open_envelope(json.loads(text), QuestStep) == env


def test_audit_batch_round_trips_through_json() -> None:
    env = Envelope[AuditBatch](
        company_id=uuid.uuid4(),
        actor=TED,
        correlation_id=uuid.uuid4(),
        payload=AuditBatch(events=[audit_event(), audit_event()]),
    )
    back = open_envelope(env.model_dump_json(), AuditBatch)
    assert back == env
    assert back.payload.events[0].actor == TED
    assert back.payload.events[0].data == {"words": 3}


def test_newer_producer_extra_fields_are_accepted_and_kept() -> None:
    raw = raw_step(trace_parent="00-abc-def-01", priority_hint=7)
    raw["payload"]["resume_from"] = "checkpoint-9"
    raw["actor"]["display_name"] = "Ada"

    env = open_envelope(json.dumps(raw), QuestStep)

    assert env.model_extra == {"trace_parent": "00-abc-def-01", "priority_hint": 7}
    assert env.payload.model_extra == {"resume_from": "checkpoint-9"}
    assert env.actor.model_extra == {"display_name": "Ada"}
    # Passed on untouched: the extras survive re-serialisation.
    again = json.loads(env.model_dump_json())
    assert again["trace_parent"] == "00-abc-def-01"
    assert again["payload"]["resume_from"] == "checkpoint-9"
    assert again["actor"]["display_name"] == "Ada"


def test_an_older_message_without_schema_version_reads_as_the_current_one() -> None:
    raw = raw_step()
    del raw["schema_version"]
    assert open_envelope(raw, QuestStep).schema_version == SCHEMA_VERSION


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "not-a-uuid"])
def test_missing_or_bad_company_id_is_refused_naming_it(value: Any) -> None:
    raw = raw_step()
    if value is None:
        del raw["company_id"]
    else:
        raw["company_id"] = value
    with pytest.raises(BadMessage, match="company_id"):
        open_envelope(raw, QuestStep)


def test_missing_company_id_cannot_be_built_either() -> None:
    with pytest.raises(ValueError, match="company_id"):
        Envelope[QuestStep](
            actor=USER,
            correlation_id=uuid.uuid4(),
            payload=QuestStep(quest_id=uuid.uuid4(), step=1),
        )  # type: ignore[call-arg]


def test_newer_schema_version_is_refused_saying_so() -> None:
    raw = raw_step(schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(BadMessage, match="newer") as info:
        open_envelope(raw, QuestStep)
    assert str(SCHEMA_VERSION + 1) in str(info.value)


@pytest.mark.parametrize("version", [0, -1, 1.5, None])
def test_nonsense_schema_version_is_refused(version: Any) -> None:
    with pytest.raises(BadMessage, match="schema_version"):
        open_envelope(raw_step(schema_version=version), QuestStep)


@pytest.mark.parametrize("text", ["not json", "{", b"\xff\xfe", ""])
def test_text_that_is_not_json_is_refused(text: str | bytes) -> None:
    with pytest.raises(BadMessage, match="not JSON"):
        open_envelope(text, QuestStep)


@pytest.mark.parametrize("raw", [[1, 2], "[1, 2]", 42, "null"])
def test_json_that_is_not_an_object_is_refused(raw: Any) -> None:
    with pytest.raises(BadMessage):
        open_envelope(raw, QuestStep)


def test_wrong_payload_shape_names_the_field_and_does_not_echo_values() -> None:
    raw = raw_step()
    raw["payload"] = {"quest_id": SECRET, "step": SECRET}
    with pytest.raises(BadMessage) as info:
        open_envelope(raw, QuestStep)
    reason = str(info.value)
    assert "payload.quest_id" in reason
    assert "payload.step" in reason
    assert SECRET not in reason
    assert SECRET not in repr(info.value)
    assert all(SECRET not in str(arg) for arg in info.value.args)
    # The validation error (which holds the input) is not chained for a log to print.
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_secret_in_any_bad_field_is_not_echoed() -> None:
    raw = raw_step(
        company_id=SECRET,
        correlation_id=SECRET,
        issued_at=SECRET,
        actor={"type": SECRET, "id": "x"},
    )
    with pytest.raises(BadMessage) as info:
        open_envelope(raw, QuestStep)
    assert SECRET not in str(info.value)
    assert "company_id" in str(info.value)


def test_payload_of_the_wrong_kind_is_refused() -> None:
    cancel = Envelope[CancelQuest](
        company_id=uuid.uuid4(),
        actor=USER,
        correlation_id=uuid.uuid4(),
        payload=CancelQuest(quest_id=uuid.uuid4(), reason="stop"),
    )
    with pytest.raises(BadMessage, match=r"payload\.step"):
        open_envelope(cancel.model_dump_json(), QuestStep)


def test_step_numbers_start_at_one() -> None:
    raw = raw_step()
    raw["payload"]["step"] = 0
    with pytest.raises(BadMessage, match=r"payload\.step"):
        open_envelope(raw, QuestStep)


# --- routing ----------------------------------------------------------------------------


def _envelope_of(payload: Payload) -> Envelope[Any]:
    model: Any = Envelope[type(payload)]  # type: ignore[misc]
    result: Envelope[Any] = model(
        company_id=uuid.uuid4(), actor=USER, correlation_id=uuid.uuid4(), payload=payload
    )
    return result


ROUTED: list[tuple[Payload, str, str]] = [
    (QuestStep(quest_id=uuid.uuid4(), step=3), QUESTS, "quest_step"),
    (CancelQuest(quest_id=uuid.uuid4(), reason="operator said so"), CONTROL, "cancel_quest"),
    (AuditBatch(events=[audit_event()]), AUDIT, "write_audit"),
]


@pytest.mark.parametrize(("payload", "queue", "actor"), ROUTED)
def test_to_message_routes_each_payload_and_keeps_the_envelope_id(
    payload: Payload, queue: str, actor: str
) -> None:
    env = _envelope_of(payload)
    message = to_message(env)
    assert queue in QUEUES
    assert message.queue_name == queue
    assert message.actor_name == actor
    assert message.message_id == str(env.message_id)
    assert message.kwargs == {}
    assert len(message.args) == 1
    # What travels is plain JSON that opens back into the same envelope.
    wire = json.loads(message.encode())
    assert open_envelope(wire["args"][0], type(payload)) == env


def test_a_stream_only_payload_is_not_put_on_a_queue() -> None:
    env = _envelope_of(QuestEvent(quest_id=uuid.uuid4(), kind="step.started", step=1))
    with pytest.raises(TypeError):
        to_message(env)


# --- follow-ups -------------------------------------------------------------------------


def test_follow_up_keeps_company_and_correlation_and_gets_a_new_id() -> None:
    env = step_envelope(issued_at=datetime(2020, 1, 1, tzinfo=UTC))
    nxt = env.follow_up(QuestStep(quest_id=env.payload.quest_id, step=2))
    assert nxt.company_id == env.company_id
    assert nxt.correlation_id == env.correlation_id
    assert nxt.message_id != env.message_id
    assert nxt.actor == env.actor
    assert nxt.issued_at > env.issued_at
    assert isinstance(nxt.payload, QuestStep)
    assert nxt.payload.step == 2
    assert to_message(nxt).queue_name == QUESTS


def test_follow_up_to_another_queue_with_another_actor() -> None:
    env = step_envelope()
    audit = env.follow_up(AuditBatch(events=[audit_event()]), actor=TED)
    assert audit.actor == TED
    assert audit.company_id == env.company_id
    assert audit.correlation_id == env.correlation_id
    assert audit.message_id != env.message_id
    message = to_message(audit)
    assert (message.queue_name, message.actor_name) == (AUDIT, "write_audit")
    back = open_envelope(message.args[0], AuditBatch)
    assert back == audit


def test_a_publisher_closes_its_broker_even_when_its_block_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dramatiq.brokers.redis import RedisBroker

    closed: list[RedisBroker] = []

    def close(broker: RedisBroker) -> None:
        closed.append(broker)

    monkeypatch.setattr(RedisBroker, "close", close)
    with pytest.raises(RuntimeError), publisher("redis://127.0.0.1:1/0") as queue:
        raise RuntimeError("the block failed")
    assert closed == [queue.broker]
