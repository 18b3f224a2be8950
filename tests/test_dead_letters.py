"""Bad messages are dead-lettered with their reason; the worker keeps working."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any

import dramatiq
import psycopg
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from ingress.submit import QuestSpec, create_quest
from messages.redis_keys import DEAD_LETTER_REASONS as REASONS
from messages.redis_keys import DEAD_LETTER_REASONS_AT as REASONS_AT
from messages.redis_keys import NAMESPACE
from messages.transport import build_broker
from runtime.loop_thread import LoopThread
from runtime.settings import Settings
from tests.conftest import Stack, Tenant, system2
from tests.support import OPERATOR, InTenant, quest_state, submit, wait_finished, wait_for
from workers.queue_protocol import QueueProtocol
from workers.refusals import DeadLetterBox

pytestmark = pytest.mark.slow


async def _async_client(url: str) -> AsyncRedis:
    return AsyncRedis.from_url(url)


def raw_message(queue: str, actor: str, arg: object) -> dramatiq.Message[object]:
    return dramatiq.Message(queue_name=queue, actor_name=actor, args=(arg,), kwargs={}, options={})


def test_malformed_messages_are_dead_lettered_with_a_reason(
    stack: Stack,
    tenant: Tenant,
    other_tenant: Tenant,
    in_tenant: InTenant,
    rds: redis.Redis,
    admin_conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    # Counted exactly below: what earlier tests left (this process's database and Redis
    # database are shared by the files it runs) must not become dead letters here: their
    # quests still open (the sweeper would send their steps) and their queued messages.
    admin_conn.execute(
        "UPDATE quests SET status = 'failed', reason = 'left by an earlier test', "
        "finished_at = now() WHERE status IN ('queued', 'running')"
    )
    rds.flushdb()
    theirs, _ = in_tenant(  # a real quest, never enqueued by its company
        other_tenant.id,
        lambda tx: create_quest(tx, OPERATOR, QuestSpec(goal="theirs", model="claude-sonnet-5-5")),
    )
    stack.start_workers(processes=1)
    good = {
        "message_id": str(uuid.uuid4()),
        "schema_version": 1,
        "company_id": str(tenant.id),
        "actor": {"type": "user", "id": "u"},
        "issued_at": "2026-11-29T00:00:00Z",
        "correlation_id": str(uuid.uuid4()),
        "payload": {"quest_id": str(uuid.uuid4()), "step": 1},
    }
    no_company = {k: v for k, v in good.items() if k != "company_id"}
    newer = {**good, "schema_version": 99}
    wrong_schema = {**good, "payload": {"quest_id": "not-a-uuid", "step": "first"}}
    stolen = {**good, "payload": {"quest_id": str(theirs.id), "step": 1}}
    cases = {
        "not an envelope": raw_message("quests", "quest_step", "just text"),
        "no company id": raw_message("quests", "quest_step", no_company),
        "unknown version": raw_message("quests", "quest_step", newer),
        "quest of nobody": raw_message("quests", "quest_step", good),
        "wrong schema": raw_message("quests", "quest_step", wrong_schema),
        "another company's quest": raw_message("quests", "quest_step", stolen),
        "cancel that is not JSON": raw_message("control", "cancel_quest", [1, 2]),
        "audit for no company": raw_message(
            "audit",
            "write_audit",
            {
                **good,
                "company_id": str(uuid.uuid4()),
                "payload": {
                    "events": [
                        {
                            "idempotency_key": "k",
                            "actor": {"type": "ted", "id": "ted"},
                            "action": "a",
                            "target": "t",
                        }
                    ]
                },
            },
        ),
    }
    broker = build_broker(stack.settings.redis_url)
    for message in cases.values():
        broker.enqueue(message)
    broker.close()

    def dead() -> set[str] | None:
        ids = {
            m.decode()
            for q in ("quests", "audit", "control")
            for m in rds.zrange(f"dramatiq:{q}.XQ", 0, -1)
        }
        return ids if len(ids) == len(cases) else None

    wait_for(dead, timeout=30)
    log = stack.procs["workers"].output()
    for reason in (
        "not JSON",
        "company_id: Field required",
        "schema_version 99",
        "no such quest",
        "does not exist",
        "quest_id",
    ):
        assert reason in log, reason
    assert log.count("message dead-lettered") == len(cases)
    reasons = rds.hgetall("s2:dlq:reasons")
    assert len(reasons) == len(cases), reasons
    # The stamped company could not see the other's quest, so nothing of it ran.
    untouched = quest_state(in_tenant, other_tenant.id, theirs.id)
    assert (untouched.status, untouched.steps_done) == ("queued", 0)

    quest = submit(in_tenant, stack.settings.redis_url, tenant.id, "[script:answer] still working?")
    assert wait_finished(in_tenant, tenant.id, quest.id).status == "succeeded"


def test_dlq_list_and_replay_take_dead_letters_of_any_shape(stack: Stack, rds: redis.Redis) -> None:
    """A dead letter is whatever body reached ``<queue>.XQ``: an envelope that is no object,
    arguments or options of the wrong type, a reason record that is not JSON, an id that is
    not UTF-8. ``dlq list`` lists them all; ``dlq replay`` sends back a whole one and refuses
    the others in one line."""

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            system2(*args), env=stack.env(), capture_output=True, text=True, check=False
        )

    good: dict[str, Any] = {
        "message_id": str(uuid.uuid4()),
        "schema_version": 1,
        "company_id": str(uuid.uuid4()),
        "actor": {"type": "user", "id": "u"},
        "issued_at": "2026-11-29T00:00:00Z",
        "correlation_id": str(uuid.uuid4()),
        "payload": {"quest_id": str(uuid.uuid4()), "step": 1},
    }

    def body(**fields: Any) -> bytes:
        base = {
            "queue_name": "quests",
            "actor_name": "quest_step",
            "args": [good],
            "kwargs": {},
            "options": {"redis_message_id": "r", "retries": 1},
            "message_id": str(uuid.uuid4()),
            "message_timestamp": 1,
        }
        return json.dumps({**base, **fields}).encode()

    shapes: dict[str, tuple[bytes, bytes | None]] = {  # name -> (body, its reason record)
        "payload a string": (body(args=[{**good, "payload": "not-an-object"}]), None),
        "payload a list": (body(args=[{**good, "payload": [1]}]), None),
        "payload null": (body(args=[{**good, "payload": None}]), None),
        "envelope a string": (body(args=["just text"]), None),
        "envelope a list": (body(args=[[1, 2]]), None),
        "args an object": (body(args={"0": good}), None),
        "args a string": (body(args="abc"), None),
        "args empty": (body(args=[]), None),
        "args null": (body(args=None), None),
        "options a list": (body(options=[1]), None),
        "options null": (body(options=None), None),
        "message id a number": (body(message_id=5), None),
        "not JSON": (b"\x00\xff", None),
        "a JSON array": (b"[1]", None),
        "nested too deeply": (b"[" * 5000 + b"]" * 5000, None),
        "reason not JSON": (body(), b"{not json"),
        "reason a list": (body(), b"[1]"),
        "reason fields odd": (body(), json.dumps({"reason": [1], "detail": {}}).encode()),
    }
    now = int(time.time() * 1000)
    rids: dict[str, bytes] = {}
    for name, (raw, record) in shapes.items():
        rid = f"dead-{uuid.uuid4()}".encode()
        rids[name] = rid
        rds.zadd("dramatiq:quests.XQ", {rid: now})
        rds.hset("dramatiq:quests.XQ.msgs", rid, raw)
        if record is not None:
            rds.hset(REASONS, json.loads(raw)["message_id"], record)
    invalid = json.loads(shapes["payload a string"][0])
    reason = {"queue": "quests", "actor": "quest_step", "reason": "invalid_envelope", "at": 1}
    rds.hset(REASONS, invalid["message_id"], json.dumps({**reason, "detail": "payload: bad"}))
    odd_id = b"dead-\xff\xfe-" + uuid.uuid4().hex.encode()  # a Redis id that is not UTF-8
    rds.zadd("dramatiq:quests.XQ", {odd_id: now})
    rds.hset("dramatiq:quests.XQ.msgs", odd_id, b"whatever")

    listed = cli("dlq", "list")
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)
    assert len(shown) == len(shapes) + 1
    assert all(d["queue"] == "quests" and d["reason"] for d in shown)
    (entry,) = [d for d in shown if d["id"] == invalid["message_id"]]
    assert (entry["reason"], entry["detail"]) == ("invalid_envelope", "payload: bad")
    assert (entry["company_id"], entry["quest_id"]) == (good["company_id"], None)
    assert cli("dlq", "list", "--raw").returncode == 0

    replayed = cli("dlq", "replay", invalid["message_id"])  # kept whole: it can go back
    assert replayed.returncode == 0, replayed.stderr
    assert rds.zscore("dramatiq:quests.XQ", rids["payload a string"]) is None
    assert not rds.hexists(REASONS, invalid["message_id"])
    back = [json.loads(b) for b in rds.hvals("dramatiq:quests.msgs")]
    assert [m["args"] for m in back if m["message_id"] == invalid["message_id"]] == [
        invalid["args"]
    ]

    for name in ("options a list", "args an object", "args null"):
        (entry,) = [d for d in shown if d["id"] == json.loads(shapes[name][0])["message_id"]]
        refused = cli("dlq", "replay", entry["id"])
        assert refused.returncode == 1, (name, refused.stderr)
        assert len(refused.stderr.strip().splitlines()) == 1, (name, refused.stderr)
        assert rds.zscore("dramatiq:quests.XQ", rids[name]) is not None, name


def test_reasons_expire_with_their_dead_letters(
    settings: Settings, rds: redis.Redis, call_loop: LoopThread
) -> None:
    """Dramatiq drops a dead letter once it is older than its ``dead_message_ttl``; its
    reason goes too: writing a reason (the consumer's refusal of an entry, or a message
    dead-lettered after its retries) prunes the reasons older than that, those written before
    reasons had a time index included. A fresh one stays."""
    ttl_ms = 2000
    queue = f"test-expiry-{uuid.uuid4().hex[:8]}"
    client = call_loop.run(_async_client(settings.redis_url))
    protocol = QueueProtocol(client, f"test-{uuid.uuid4().hex[:8]}", heartbeat_timeout_ms=60_000)
    box = DeadLetterBox(client, {"quest_step"}, ttl_ms=ttl_ms)
    written: list[str] = []  # removed at the end, for the tests after this one

    def refused() -> str:
        """The consumer dead-letters an undecodable entry: its reason is under its Redis id."""
        rid = f"planted-{uuid.uuid4()}"
        rds.hset(f"{NAMESPACE}:{queue}.msgs", rid, b"not a message")
        rds.rpush(f"{NAMESPACE}:{queue}", rid)
        written.append(rid)

        async def fetch_and_refuse() -> None:
            await protocol.start()
            (body,) = await protocol.fetch(queue, 1)
            verdict = box.check(body, queue)
            assert not isinstance(verdict, dramatiq.Message)
            await box.reject(protocol, queue, body, verdict)

        call_loop.run(fetch_and_refuse())
        assert rds.hexists(REASONS, rid)
        return rid

    def failed() -> str:
        """A message out of retries: the consumer records its reason under its id."""
        message = raw_message(queue, "gone", 1)
        written.append(message.message_id)
        call_loop.run(box.record(message, RuntimeError("no")))
        assert rds.hexists(REASONS, message.message_id)
        return message.message_id

    def legacy(age_s: float) -> str:
        """A reason written before reasons were indexed by time: in the hash only."""
        field = f"legacy-{uuid.uuid4()}"
        written.append(field)
        rds.hset(REASONS, field, json.dumps({"reason": "x", "at": time.time() - age_s}))
        return field

    try:
        first, old_legacy, fresh_legacy = refused(), legacy(3600), legacy(0)
        time.sleep(1.2)
        second = failed()
        time.sleep(1.2)  # first is past the TTL, second within it
        third = failed()
        assert not rds.hexists(REASONS, first), "a reason older than the TTL is pruned"
        assert not rds.hexists(REASONS, old_legacy), "so is one written before the index"
        for field in (second, third):
            assert rds.hexists(REASONS, field), "a fresh reason stays"
        time.sleep(1.2)  # now second is past it
        fourth = refused()
        assert not rds.hexists(REASONS, second) and not rds.hexists(REASONS, fresh_legacy)
        assert rds.hexists(REASONS, third) and rds.hexists(REASONS, fourth)
    finally:
        call_loop.run(client.aclose())
        for key in rds.scan_iter(match=f"{NAMESPACE}:*{queue}*"):
            rds.delete(key)
        for field in written:
            rds.hdel(REASONS, field)
            rds.zrem(REASONS_AT, field)
