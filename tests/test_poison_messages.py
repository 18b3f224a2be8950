"""Queue entries no actor can run — a body that is not JSON, JSON that is not a Dramatiq
message, a Dramatiq message whose envelope is invalid — are dead-lettered by the consumer
with their reason, on every queue, and everything queued behind them still runs.

Real Redis, Postgres and worker processes. The bad entries are planted the way a stray
producer or a hand edit would leave them: a body in ``dramatiq:<queue>.msgs`` and its id on
the queue's list (or, for a worker that died holding one, in its acks set).
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable
from functools import partial
from typing import Any, cast

import dramatiq
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from messages.redis_keys import DEAD_LETTER_REASONS as REASONS
from messages.redis_keys import DEAD_LETTER_REASONS_AT as REASONS_AT
from messages.redis_keys import NAMESPACE
from messages.transport import build_broker
from runtime.settings import Settings
from store import activity as activity_store
from store.activity import ActivityFilter
from system2.procs import free_port
from tests.conftest import Stack, Tenant, system2
from tests.consumer_support import consumer, publish
from tests.support import InTenant, submit, wait_finished, wait_for
from tests.test_metrics import scrape, total, worker_ports
from workers import dead_letters, refusals
from workers.beacon import live_workers

pytestmark = pytest.mark.slow

RAW_KEPT = 4096  # the first 4 KiB of an undecodable body are kept, no more
FAST = {"S2_BROKER_HEARTBEAT_MS": "5000", "S2_BROKER_MAINTENANCE_CHANCE": "1000000"}
REJECTED_LINE = "message dead-lettered before delivery"


def envelope(company_id: uuid.UUID, marker: str, **payload: Any) -> dict[str, Any]:
    return {
        "message_id": str(uuid.uuid4()),
        "schema_version": 1,
        "company_id": str(company_id),
        "actor": {"type": "user", "id": marker},
        "issued_at": "2026-11-29T00:00:00Z",
        "correlation_id": str(uuid.uuid4()),
        "payload": payload or {"quest_id": str(uuid.uuid4()), "step": 1},
    }


def plant(rds: redis.Redis, queue: str, body: bytes, rid: str | None = None) -> str:
    """A raw entry on ``queue``, as Dramatiq's Redis broker stores one; returns its id."""
    rid = rid or f"planted-{uuid.uuid4()}"
    rds.hset(f"dramatiq:{queue}.msgs", rid, body)
    rds.rpush(f"dramatiq:{queue}", rid)
    return rid


def enqueue(redis_url: str, queue: str, actor: str, arg: object) -> str:
    """A well-formed Dramatiq message carrying ``arg``; returns its Redis id."""
    broker = build_broker(redis_url)
    try:
        sent = broker.enqueue(
            dramatiq.Message(queue_name=queue, actor_name=actor, args=(arg,), kwargs={}, options={})
        )
    finally:
        broker.close()
    return str(sent.options["redis_message_id"])


def dramatiq_body(arg: object, **fields: Any) -> bytes:
    """The body Dramatiq's Redis broker stores for a ``quest_step`` carrying ``arg`` (any
    field replaced by ``fields``)."""
    base = {
        "queue_name": "quests",
        "actor_name": "quest_step",
        "args": [arg],
        "kwargs": {},
        "options": {"redis_message_id": f"planted-{uuid.uuid4()}"},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }
    return json.dumps({**base, **fields}).encode()


def log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in text.splitlines() if x.startswith("{")]


def held_anywhere(rds: redis.Redis, rid: str, queues: Iterable[str]) -> list[str]:
    """Where the entry ``rid`` could still be delivered from: a queue, its bodies, an acks set."""
    places = []
    for q in queues:
        if rid.encode() in rds.lrange(f"dramatiq:{q}", 0, -1):
            places.append(f"list {q}")
        if rds.hexists(f"dramatiq:{q}.msgs", rid):
            places.append(f"bodies {q}")
    for key in rds.scan_iter(match="dramatiq:__acks__.*"):
        if rds.sismember(key, rid):
            places.append(key.decode())
    return places


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        system2(*args), env=stack.env(), capture_output=True, text=True, check=False
    )


def audited(in_tenant: InTenant, tenant: Tenant, quest_id: uuid.UUID) -> bool:
    wanted = ActivityFilter(quest_id=quest_id, action="quest.succeeded")
    rows, _ = in_tenant(tenant.id, lambda tx: activity_store.page(tx, wanted))
    return bool(rows)


def test_bad_entries_are_dead_lettered_on_every_queue_and_the_queues_keep_flowing(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, rds: redis.Redis
) -> None:
    marker = f"POISON-{uuid.uuid4().hex}"
    url = stack.settings.redis_url
    big = b"\xff\xfe" + (marker.encode() + b" not a message ") * 1000  # ~50 KB, not UTF-8
    bare_envelope = json.dumps(envelope(tenant.id, marker)).encode()  # JSON, no Dramatiq wrapper
    no_company = {k: v for k, v in envelope(tenant.id, marker).items() if k != "company_id"}
    no_events = envelope(tenant.id, marker, events=[])
    # Planted ahead of the good quests: (queue, reason, id, body or None for an enqueued one).
    bad = [
        ("quests", "undecodable", plant(rds, "quests", big), big),
        ("quests", "undecodable", plant(rds, "quests", bare_envelope), bare_envelope),
        ("quests", "invalid_envelope", enqueue(url, "quests", "quest_step", no_company), None),
        ("quests", "undecodable", plant(rds, "quests.DQ", b"{not json " + marker.encode()), None),
        ("audit", "undecodable", plant(rds, "audit", b"\x80" + marker.encode()), None),
        ("audit", "undecodable", plant(rds, "audit", json.dumps([marker, 1]).encode()), None),
        ("audit", "invalid_envelope", enqueue(url, "audit", "write_audit", no_events), None),
        ("control", "undecodable", plant(rds, "control", marker.encode()), None),
        ("maintenance", "undecodable", plant(rds, "maintenance", b""), None),
    ]
    quests = [
        submit(in_tenant, url, tenant.id, f"[script:answer] after the poison {i}") for i in range(6)
    ]

    stack.start_workers(processes=2, S2_METRICS_PORT=str(free_port()))
    pids = {w["pid"] for w in live_workers(rds)}
    ports = wait_for(lambda: worker_ports(stack))

    for quest in quests:  # the quests queue flows past the bad entries...
        assert wait_finished(in_tenant, tenant.id, quest.id, timeout=45).status == "succeeded"
    for quest in quests:  # ...and so does the audit queue
        wait_for(partial(audited, in_tenant, tenant, quest.id), timeout=20)

    def dead_ids() -> set[str]:
        return {
            bytes(m).decode()
            for q in ("quests", "audit", "control", "maintenance")
            for m in cast(list[bytes], rds.zrange(f"dramatiq:{q}.XQ", 0, -1))
        }

    wait_for(lambda: dead_ids() >= {rid for _, _, rid, _ in bad}, timeout=20)
    assert dead_ids() == {rid for _, _, rid, _ in bad}, "nothing else was dead-lettered"
    all_queues = [q + s for q in ("quests", "audit", "control", "maintenance") for s in ("", ".DQ")]
    for queue, reason, rid, body in bad:
        assert held_anywhere(rds, rid, all_queues) == [], (queue, reason)
        kept = rds.hget(f"dramatiq:{queue}.XQ.msgs", rid)
        assert kept is not None
        if reason == "undecodable":
            record = json.loads(rds.hget(REASONS, rid) or b"{}")
            assert record["reason"] == "undecodable" and record["queue"] == queue
            assert len(kept) <= RAW_KEPT and record["kept_bytes"] == len(kept)
            if body is not None:
                assert kept == body[:RAW_KEPT] and record["raw_bytes"] == len(body)
        else:
            message_id = json.loads(kept)["message_id"]
            record = json.loads(rds.hget(REASONS, message_id) or b"{}")
            assert record["reason"] == "invalid_envelope" and record["queue"] == queue
    big_record = json.loads(rds.hget(REASONS, bad[0][2]) or b"{}")
    assert big_record["raw_bytes"] == len(big) > RAW_KEPT == big_record["kept_bytes"]

    samples = [s for port in ports for s in scrape(f"http://127.0.0.1:{port}/metrics")]
    for queue in ("quests", "audit", "control", "maintenance"):
        for reason in ("undecodable", "invalid_envelope"):
            expected = sum(1 for q, r, _, _ in bad if (q, r) == (queue, reason))
            got = total(samples, "s2_messages_rejected_total", queue=queue, reason=reason)
            assert got == expected, (queue, reason)

    log = stack.procs["workers"].output()
    assert marker not in log, "a bad body (or its envelope) reached the log"
    assert "Consumer encountered" not in log and "Traceback" not in log
    lines = [x for x in log_lines(log) if x.get("event") == REJECTED_LINE]
    assert sorted(x["redis_message_id"] for x in lines) == sorted(rid for _, _, rid, _ in bad)
    assert {x["bytes"] for x in lines if x["redis_message_id"] == bad[0][2]} == {len(big)}
    assert {w["pid"] for w in live_workers(rds)} == pids, "no worker process was replaced"

    listed = cli(stack, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    shown = {d["id"]: d for d in json.loads(listed.stdout)}
    for queue, reason, rid, _ in bad:
        if reason == "undecodable":
            assert shown[rid]["reason"] == "undecodable" and shown[rid]["queue"] == queue
    assert shown[bad[0][2]]["raw_bytes"] == len(big)
    envelopes = [d for d in shown.values() if d["reason"] == "invalid_envelope"]
    assert sorted(d["queue"] for d in envelopes) == ["audit", "quests"]
    assert marker not in listed.stdout, "the raw start is shown only with --raw"
    raw = {d["id"]: d for d in json.loads(cli(stack, "dlq", "list", "--raw").stdout)}
    assert base64.b64decode(raw[bad[0][2]]["raw_base64"]) == big[:RAW_KEPT]

    refused = cli(stack, "dlq", "replay", bad[1][2])
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "undecodable" in refused.stderr and marker not in refused.stderr
    assert bad[1][2] in dead_ids(), "a refused replay leaves the dead letter where it was"
    # An invalid envelope is kept whole: it can be replayed (here, unchanged, it is refused
    # again, once, with the same reason).
    (again,) = [d for d in envelopes if d["queue"] == "quests"]
    assert cli(stack, "dlq", "replay", again["id"]).returncode == 0
    wait_for(
        lambda: (
            len(dead_ids()) == len(bad)
            and bad[2][2] not in dead_ids()
            and json.loads(rds.hget(REASONS, again["id"]) or b"{}").get("reason")
            == "invalid_envelope"
        ),
        timeout=20,
    )


def test_a_bad_entry_held_by_a_dead_worker_comes_back_once_and_never_again(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, rds: redis.Redis
) -> None:
    """Dramatiq's maintenance puts a dead worker's unacknowledged entries back on the queue:
    a bad one is then dead-lettered once, and a worker killed after that has nothing of it
    left to hand back."""
    marker = f"POISON-{uuid.uuid4().hex}"
    dead_worker = str(uuid.uuid4())
    rid = f"planted-{uuid.uuid4()}"
    rds.hset("dramatiq:quests.msgs", rid, marker.encode())
    rds.sadd(f"dramatiq:__acks__.{dead_worker}.quests", rid)
    rds.zadd("dramatiq:__heartbeats__", {dead_worker: 0})  # silent since 1970

    first = stack.start_workers("first", processes=1, **FAST)
    quest = submit(
        in_tenant, stack.settings.redis_url, tenant.id, "[script:answer] behind the poison"
    )
    assert wait_finished(in_tenant, tenant.id, quest.id, timeout=45).status == "succeeded"
    wait_for(lambda: rds.zscore("dramatiq:quests.XQ", rid) is not None, timeout=20)
    assert held_anywhere(rds, rid, ["quests", "quests.DQ"]) == []

    first.signal(signal.SIGKILL)  # its acks set is left as it was, for maintenance to find
    assert first.popen is not None
    first.popen.wait(10)
    second = stack.start_workers("second", processes=1, **FAST)
    time.sleep(5 + 2)  # past the heartbeat timeout: the first worker's entries are handed back
    again = submit(in_tenant, stack.settings.redis_url, tenant.id, "[script:answer] still flowing")
    assert wait_finished(in_tenant, tenant.id, again.id, timeout=45).status == "succeeded"

    logs = first.output() + second.output()
    assert logs.count(REJECTED_LINE) == 1, "dead-lettered once, never delivered again"
    assert marker not in logs and "Consumer encountered" not in logs
    assert rds.zcard("dramatiq:quests.XQ") == 1
    record = json.loads(rds.hget(REASONS, rid) or b"{}")
    assert (record["reason"], record["raw_bytes"]) == ("undecodable", len(marker))


def test_what_the_consumer_refuses_and_why() -> None:
    """``inspect``: the verdict on one fetched body, its detail naming no value of it."""
    from workers import dead_letters
    from workers.dead_letters import decode, envelope_types, inspect

    assert dead_letters.RAW_KEPT == RAW_KEPT
    actors = {"quest_step": None, "write_audit": None}
    envelopes = envelope_types()
    company = uuid.uuid4()

    def message(**fields: Any) -> bytes:
        base = {
            "queue_name": "quests",
            "actor_name": "quest_step",
            "args": [envelope(company, "someone")],
            "kwargs": {},
            "options": {"redis_message_id": "r-1"},
            "message_id": "m-1",
            "message_timestamp": 1,
        }
        return json.dumps({**base, **fields}).encode()

    def verdict(body: bytes) -> tuple[str, str]:
        found = inspect(body, "quests", actors, envelopes)
        assert not isinstance(found, dramatiq.Message), body
        return found.reason, found.detail

    secret = "sk-ant-" + "x" * 40
    cases = {
        b"\xff" + secret.encode(): ("undecodable", "not UTF-8 text"),
        secret.encode(): ("undecodable", "not JSON"),
        json.dumps([secret]).encode(): ("undecodable", "a JSON array, not a Dramatiq message"),
        json.dumps({"token": secret}).encode(): ("undecodable", "missing queue_name"),
        message(args=secret): ("undecodable", "wrong type: args"),
        message(options=[secret]): ("undecodable", "wrong type: options"),
        message(message_timestamp=True): ("undecodable", "wrong type: message_timestamp"),
        message(options={}): ("undecodable", "no redis_message_id"),
        message(queue_name="control"): ("undecodable", "another queue"),
        message(actor_name=secret): ("unknown_actor", "no actor of that name"),
        message(args=[1, 2]): ("invalid_envelope", "one positional argument"),
        message(args=[secret]): ("invalid_envelope", "not JSON"),
        message(args=[{"token": secret}]): ("invalid_envelope", "company_id: Field required"),
        message(actor_name="write_audit"): ("invalid_envelope", "payload.events"),
    }
    for body, (reason, detail) in cases.items():
        got = verdict(body)
        assert got[0] == reason and detail in got[1], (body, got)
        assert secret not in got[1] and "sk-ant" not in got[1]
    good = inspect(message(), "quests", actors, envelopes)
    assert isinstance(good, dramatiq.Message) and good.options["redis_message_id"] == "r-1"
    assert isinstance(decode(message(queue_name="quests.DQ"), "quests.DQ"), dramatiq.Message)


# A body nested deeper than any recursive JSON decoder goes: json.loads raises RecursionError.
NESTED = b"[" * 100_000 + b"]" * 100_000
HUGE_ID = "m" * (1 << 20)


def test_hostile_bodies_are_dead_lettered_and_the_consumer_never_stops(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, rds: redis.Redis
) -> None:
    """Bodies that make a decoder raise something other than a decode error, or that are
    valid JSON of the wrong shape or size, are dead-lettered like any other bad entry: the
    entries fetched with them run, none is stranded in an acks set, the consumer thread never
    restarts."""
    marker = f"POISON-{uuid.uuid4().hex}"
    url = stack.settings.redis_url
    good = envelope(tenant.id, marker)
    huge = json.dumps({"queue_name": "quests", "pad": marker * ((8 << 20) // len(marker))})
    bodies: dict[str, tuple[bytes, str]] = {}  # Redis id -> (body, what its detail says)

    def hostile(body: bytes, detail: str, rid: str | None = None) -> None:
        bodies[plant(rds, "quests", body, rid)] = (body, detail)

    hostile(NESTED, "nested too deeply")  # first: the entries fetched with it are quests
    quests = [
        submit(in_tenant, url, tenant.id, f"[script:answer] past the nesting {i}") for i in range(4)
    ]
    hostile(huge.encode(), "missing")
    rid = f"planted-{uuid.uuid4()}"  # valid JSON after a byte that is not UTF-8
    hostile(b"\xff" + dramatiq_body(good, options={"redis_message_id": rid}), "not UTF-8", rid)
    hostile(b"42", "a JSON number")
    hostile(b"[1, 2]", "a JSON array")
    hostile(b"null", "a JSON null")
    hostile(dramatiq_body(good, options={}), "no redis_message_id")
    rid = f"planted-{uuid.uuid4()}"
    long_id = dramatiq_body(good, message_id=HUGE_ID, options={"redis_message_id": rid})
    hostile(long_id, "message_id longer than", rid)
    hostile(dramatiq_body(good, options={"redis_message_id": HUGE_ID}), "redis_message_id longer")
    quests += [
        submit(in_tenant, url, tenant.id, f"[script:answer] past the rest {i}") for i in range(2)
    ]

    stack.start_workers(processes=1)
    pids = {w["pid"] for w in live_workers(rds)}
    for quest in quests:
        assert wait_finished(in_tenant, tenant.id, quest.id, timeout=45).status == "succeeded"

    def dead_ids() -> set[str]:
        return {
            bytes(m).decode() for m in cast(list[bytes], rds.zrange("dramatiq:quests.XQ", 0, -1))
        }

    wait_for(lambda: dead_ids() >= set(bodies), timeout=20)
    assert dead_ids() == set(bodies), "nothing else was dead-lettered"
    for rid, (body, detail) in bodies.items():
        assert held_anywhere(rds, rid, ["quests", "quests.DQ"]) == [], detail
        record = json.loads(rds.hget(REASONS, rid) or b"{}")
        assert record["reason"] == "undecodable" and detail in record["detail"], (detail, record)
        assert record["raw_bytes"] == len(body) and marker not in record["detail"]
        assert rds.hget("dramatiq:quests.XQ.msgs", rid) == body[:RAW_KEPT]
    assert not rds.hexists(REASONS, HUGE_ID), "no reason is filed under a megabyte-long id"

    log = stack.procs["workers"].output()
    assert "Consumer encountered" not in log and "Traceback" not in log
    assert marker not in log and "m" * 1000 not in log
    lines = [x for x in log_lines(log) if x.get("event") == REJECTED_LINE]
    assert sorted(x["redis_message_id"] for x in lines) == sorted(bodies)
    assert {w["pid"] for w in live_workers(rds)} == pids, "no worker process was replaced"

    listed = cli(stack, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    shown = {d["id"]: d for d in json.loads(listed.stdout)}
    assert {rid: shown[rid]["reason"] for rid in bodies} == dict.fromkeys(bodies, "undecodable")
    assert marker not in listed.stdout and "m" * 1000 not in listed.stdout


def test_hostile_bodies_get_a_verdict_never_an_exception() -> None:
    """``inspect`` answers every body with a message or a rejection; it never raises."""
    from workers.dead_letters import Rejection, envelope_types

    actors = {"quest_step": None, "write_audit": None}
    good = envelope(uuid.uuid4(), "someone")
    deep_payload = {
        **good,
        "payload": {**good["payload"], "extra": json.loads("[" * 900 + "]" * 900)},
    }
    cases = {
        NESTED: "nested too deeply",
        b"[" * 100_000: "nested too deeply",
        b'{"a": ' * 100_000: "nested too deeply",
        b"42": "a JSON number",
        b"1e999": "a JSON number",
        b"null": "a JSON null",
        b"[1, 2]": "a JSON array",
        b'"text"': "a JSON string",
        b"\xff" + dramatiq_body(good): "not UTF-8 text",
        b"\xef\xbb\xbf" + dramatiq_body(good): "not JSON",  # a byte-order mark
        dramatiq_body(good, options={}): "no redis_message_id",
        dramatiq_body(good, options={"redis_message_id": 7}): "no redis_message_id",
        dramatiq_body(good, message_id=HUGE_ID): "message_id longer than",
        dramatiq_body(good, options={"redis_message_id": HUGE_ID}): "redis_message_id longer than",
    }
    for body, detail in cases.items():
        found = dead_letters.inspect(body, "quests", actors, envelope_types())
        assert isinstance(found, Rejection), body[:80]
        assert detail in found.detail, (body[:80], found)
        assert "m" * 1000 not in repr(found)
    # Deep, but within what JSON decodes: a verdict either way, as long as it is one.
    deep = dead_letters.inspect(dramatiq_body(deep_payload), "quests", actors, envelope_types())
    assert isinstance(deep, Rejection | dramatiq.Message)


def test_an_entry_whose_inspection_raises_is_dead_lettered_and_the_next_delivered(
    settings: Settings, rds: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever inspecting an entry raises, the consumer dead-letters that entry as
    ``uninspectable: <exception type>`` and runs the one fetched after it."""
    queue = f"test-uninspectable-{uuid.uuid4().hex[:8]}"
    secret = f"SECRET-{uuid.uuid4().hex}"
    real = dead_letters.inspect

    def inspect_or_fail(data: bytes, *rest: Any) -> Any:
        if b"boom" in data:
            raise ZeroDivisionError(secret)
        return real(data, *rest)

    boom = plant(rds, queue, b'{"boom": true}')
    (sent,) = publish(settings.redis_url, queue, 1)
    monkeypatch.setattr(refusals, "inspect", inspect_or_fail)
    ran: list[str] = []

    async def record(message: dramatiq.Message[Any]) -> None:
        ran.append(message.message_id)

    async def main() -> None:
        c = consumer(AsyncRedis.from_url(settings.redis_url), queue, record)
        task = asyncio.create_task(c.run())
        for _ in range(100):
            if ran:
                break
            await asyncio.sleep(0.1)
        c.stop()
        await task

    try:
        asyncio.run(main())
        assert ran == [sent]
        assert rds.zscore(f"{NAMESPACE}:{queue}.XQ", boom) is not None
        record_ = json.loads(rds.hget(REASONS, boom) or b"{}")
        assert (record_["reason"], record_["detail"]) == (
            "undecodable",
            "uninspectable: ZeroDivisionError",
        )
        assert secret not in json.dumps(record_)
        assert held_anywhere(rds, boom, [queue]) == []
    finally:
        for key in rds.scan_iter(match=f"{NAMESPACE}:*{queue}*"):
            rds.delete(key)
        rds.hdel(REASONS, boom)
        rds.zrem(REASONS_AT, boom)
