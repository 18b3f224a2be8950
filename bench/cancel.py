"""Cancel latency and live-event latency.

Cancel: quests blocked in a Claude call are cancelled over HTTP, in two cases: the call has
not begun answering (the offline Claude holds its first byte, the status line included, 30 s)
and the call is mid-stream (it holds after `message_start`, 30 s). The clock runs from just
before the cancel request to the moment the quest reads `cancelled` in Postgres (polled every
2 ms). Beside it, the same cancels' latency as Postgres itself recorded it
(cancel_requested_at -> finished_at).

Under load: the same cancels with one worker process holding ``--load`` other steps in flight
(1,000 in all with the wave, the process's default bound), each waiting on Claude's first
byte: a cancel must not queue behind them.

Events: SSE clients follow quests as they run; each event's latency runs from its XADD (the
stream entry id is the Redis server's clock, in ms) to its arrival at the client.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import uuid

import httpx
import psycopg

from bench.stack import Stack, stack, summary


def setup(s: Stack) -> tuple[uuid.UUID, str]:
    s.start_claude()
    s.start_workers(2)
    s.start_ingress()
    return s.company()


def cancels(
    s: Stack, company: uuid.UUID, token: str, n: int, wave: int, script: str
) -> tuple[list[float], list[float]]:
    headers = {"Authorization": f"Bearer {token}"}
    client_ms: list[float] = []
    db_ms: list[float] = []
    with (
        httpx.Client(base_url=s.ingress_url, timeout=10) as http,
        psycopg.connect(s.settings.admin_database_url, autocommit=True) as admin,
    ):
        while len(client_ms) < n:
            ids = []
            for _ in range(min(wave, n - len(client_ms))):
                resp = http.post(
                    f"/v1/companies/{company}/quests",
                    json={"goal": f"[script:{script}] think"},
                    headers=headers,
                )
                ids.append(resp.json()["quest_id"])
            _wait(admin, ids, "status = 'running' AND step_claimed > steps_done")
            time.sleep(0.3)  # each is now inside its Claude call
            started: dict[str, float] = {}
            done: dict[str, float] = {}
            # Watched from the first cancel on, so a quest's clock stops when it is cancelled,
            # not when the wave's last cancel request has been sent.
            watcher = threading.Thread(target=_watch, args=(s, ids, done))
            watcher.start()
            for qid in ids:
                started[qid] = time.perf_counter()
                resp = http.post(
                    f"/v1/companies/{company}/quests/{qid}/cancel",
                    json={"reason": "bench"},
                    headers=headers,
                )
                if resp.status_code != 202:
                    raise SystemExit(f"cancel answered {resp.status_code}: {resp.text}")
            watcher.join()
            client_ms.extend(1000 * (done[q] - started[q]) for q in ids)
            rows = admin.execute(
                "SELECT extract(epoch FROM finished_at - cancel_requested_at) * 1000 FROM quests WHERE id = ANY(%s)",
                (ids,),
            ).fetchall()
            db_ms.extend(float(r[0]) for r in rows)
    return client_ms, db_ms


def _watch(s: Stack, ids: list[str], done: dict[str, float]) -> None:
    with psycopg.connect(s.settings.admin_database_url, autocommit=True) as admin:
        done.update(_wait(admin, ids, "status = 'cancelled'"))


def _wait(
    admin: psycopg.Connection[tuple[object, ...]],
    ids: list[str],
    condition: str,
) -> dict[str, float]:
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while len(seen) < len(ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"quests not {condition} after 60 s")
        rows = admin.execute(
            f"SELECT id::text FROM quests WHERE id = ANY(%s) AND {condition}", (ids,)
        ).fetchall()
        now = time.perf_counter()
        for (qid,) in rows:
            seen.setdefault(qid, now)
        time.sleep(0.002)
    return seen


def hold_load(s: Stack, company: uuid.UUID, token: str, count: int) -> None:
    """``count`` quests whose Claude call holds its first byte 30 s, all in their call."""
    headers = {"Authorization": f"Bearer {token}"}

    async def submit() -> list[str]:
        gate = asyncio.Semaphore(32)
        async with httpx.AsyncClient(base_url=s.ingress_url, timeout=30) as http:

            async def one() -> str:
                async with gate:
                    resp = await http.post(
                        f"/v1/companies/{company}/quests",
                        json={"goal": "[script:slow_start] the load"},
                        headers=headers,
                    )
                    return str(resp.json()["quest_id"])

            return await asyncio.gather(*(one() for _ in range(count)))

    ids = asyncio.run(submit())
    with psycopg.connect(s.settings.admin_database_url, autocommit=True) as admin:
        _wait(admin, ids, "status = 'running' AND step_claimed > steps_done")


def loaded(args: argparse.Namespace) -> None:
    with stack() as s:
        s.start_claude()
        s.start_workers(1)
        s.start_ingress()
        company, token = s.company()
        for script, case in (
            ("slow_start", "before its first response byte"),
            ("slow", "mid-stream"),
        ):
            hold_load(s, company, token, args.load)
            client_ms, db_ms = cancels(s, company, token, args.cancels // 2, args.wave, script)
            print(
                f"cancel with {args.load + args.wave} steps in flight in one process, its Claude "
                f"call {case} (ms): {summary(client_ms)}  (target p99 <= 250)"
            )
            print(f"  as Postgres recorded them (ms): {summary(db_ms)}")


def event_latency(s: Stack, company: uuid.UUID, token: str, quests: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    lat: list[float] = []
    lock = threading.Lock()

    def follow(http: httpx.Client, qid: str) -> None:
        with http.stream(
            "GET", f"/v1/companies/{company}/quests/{qid}/events", headers=headers, timeout=60
        ) as resp:
            for line in resp.iter_lines():
                if line.startswith("id: "):
                    now_ms = time.time() * 1000
                    with lock:
                        lat.append(now_ms - int(line[4:].split("-")[0]))

    with httpx.Client(base_url=s.ingress_url, timeout=10) as http:
        for _ in range(quests):
            qid = http.post(
                f"/v1/companies/{company}/quests",
                json={"goal": "[script:notes] remember it"},
                headers=headers,
            ).json()["quest_id"]
            watcher = threading.Thread(target=follow, args=(http, qid))
            watcher.start()  # the SSE client connects while the quest is starting
            watcher.join(60)
            time.sleep(0.2)
    return lat


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cancels", type=int, default=120)
    ap.add_argument("--wave", type=int, default=12, help="quests blocked and cancelled at once")
    ap.add_argument("--quests", type=int, default=40, help="quests followed over SSE")
    ap.add_argument("--load", type=int, default=988, help="other steps in flight, under load")
    args = ap.parse_args()
    with stack() as s:
        company, token = setup(s)
        for script, case in (
            ("slow_start", "before its first response byte"),
            ("slow", "mid-stream"),
        ):
            client_ms, db_ms = cancels(s, company, token, args.cancels, args.wave, script)
            print(
                f"cancel of a quest whose Claude call is {case}, request -> cancelled in "
                f"Postgres (ms): {summary(client_ms)}  (target p99 <= 250)"
            )
            print(
                "  the same cancels as Postgres recorded them, requested -> finished (ms): "
                f"{summary(db_ms)}"
            )
        lat = event_latency(s, company, token, args.quests)
        print(f"live event, XADD -> SSE client (ms): {summary(lat)}  (target p99 <= 100)")
    loaded(args)


if __name__ == "__main__":
    main()
