"""Submit-to-succeeded latency of one trivial quest at a time on an idle system.

The clock starts before the HTTP submit and stops when the quest's `succeeded` event arrives
on the company's live stream (XREAD BLOCK), so polling of the status endpoint adds nothing.
Beside it, the same measurement for raw Dramatiq: send one no-op message at a time and wait
for the actor's side effect, with Dramatiq's default poll cap (1000 ms) and with ours.
Requests are spaced by a random 0.1-0.6 s so that idle consumers back off as they would.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import httpx
import redis

from bench.noop_actor import COUNTER, QUEUE
from bench.stack import BIN, Stack, stack, summary
from messages.redis_keys import company_stream_key
from messages.transport import build_broker
from system2.procs import Proc


def raw_latency(s: Stack, n: int, poll_ms: int) -> list[float]:
    import dramatiq

    env = s.env(dramatiq_worker_timeout=str(poll_ms), PYTHONPATH=str(Path(__file__).parents[1]))
    proc = Proc(
        "noop",
        [
            str(BIN / "python"),
            "-m",
            "dramatiq",
            "bench.noop_actor:setup",
            "--processes",
            "1",
            "--threads",
            "8",
        ],
        env=env,
        log_path=s.logs / f"noop-{poll_ms}.log",
    ).start()
    r = redis.Redis.from_url(s.settings.redis_url)
    broker = build_broker(s.settings.redis_url)
    r.delete(COUNTER)
    try:
        time.sleep(3)
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            broker.enqueue(
                dramatiq.Message(
                    queue_name=QUEUE, actor_name="noop", args=(i,), kwargs={}, options={}
                )
            )
            while int(r.get(COUNTER) or 0) <= i:
                time.sleep(0.0005)
            out.append(1000 * (time.perf_counter() - t0))
            time.sleep(random.uniform(0.1, 0.6))
        return out
    finally:
        proc.stop()


def quest_latency(s: Stack, n: int) -> list[float]:
    s.start_claude()
    s.start_workers(2)
    s.start_ingress()
    company, token = s.company()
    r = redis.Redis.from_url(s.settings.redis_url)
    stream = company_stream_key(company)
    url = f"{s.ingress_url}/v1/companies/{company}/quests"
    headers = {"Authorization": f"Bearer {token}"}
    out = []
    with httpx.Client(timeout=10) as http:
        for i in range(n + 10):
            last = r.xinfo_stream(stream)["last-generated-id"] if r.exists(stream) else b"0-0"
            t0 = time.perf_counter()
            resp = http.post(url, json={"goal": "[script:answer] ping"}, headers=headers)
            quest_id = resp.json()["quest_id"]
            done = False
            while not done:
                for _, entries in r.xread({stream: last}, block=5000) or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        e = json.loads(fields[b"e"])["payload"]
                        done = done or (
                            e["quest_id"] == quest_id
                            and e["kind"] == "quest.state"
                            and e["data"].get("status") == "succeeded"
                        )
            if i >= 10:  # the first few warm the pools
                out.append(1000 * (time.perf_counter() - t0))
            time.sleep(random.uniform(0.1, 0.6))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quests", type=int, default=300)
    args = ap.parse_args()
    with stack() as s:
        for poll in (1000, s.settings.worker_poll_ms):
            print(
                f"raw Dramatiq one no-op at a time, poll cap {poll} ms (ms): {summary(raw_latency(s, 100, poll))}"
            )
        print(
            f"quest submit->succeeded, one at a time, poll cap {s.settings.worker_poll_ms} ms (ms): "
            f"{summary(quest_latency(s, args.quests))}  (target p99 <= 150)"
        )


if __name__ == "__main__":
    main()
