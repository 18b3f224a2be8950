"""Is a worker process group consuming — not just alive?

Each worker process writes an expiring beacon ``s2:workers:<host>:<pid>:<rand>`` (see
``workers.beacon.Beacon``, and ``messages.redis_keys`` for the name) with its queues,
the messages it processed and when it last finished one. A group is healthy when, for every
queue it should consume, a live process on this host consumes it, and — when that queue has
messages waiting — one of them finished a message within ``max_idle_s`` (a process that
never finished one counts from its start).

Queue figures are ``runtime.queue_metrics.read_stats``'s, the same that ``/metrics`` exports.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from messages.redis_keys import WORKER_BEACON_PREFIX
from runtime.queue_metrics import QueueStats, read_stats


@dataclass(frozen=True)
class WorkerBeacon:
    key: str
    host: str
    pid: int
    queues: tuple[str, ...]
    processed: int
    last_message_at: float  # 0: none finished yet
    at: float

    def last_activity(self) -> float | None:
        """When it last finished a message, or when the process started; None if unknown."""
        if self.last_message_at:
            return self.last_message_at
        if self.host == socket.gethostname():
            return process_started_at(self.pid)
        return None


def queue_row(stats: QueueStats) -> dict[str, Any]:
    """One queue's figures as `ops queues --json` and the health answers show them."""
    return {
        "queue": stats.queue,
        "waiting": stats.ready,
        "in_flight": stats.in_progress,
        "delayed": stats.delayed,
        "dead": stats.dead,
        "oldest_age_s": round(stats.oldest_age_s, 1) if stats.ready else None,
    }


@dataclass(frozen=True)
class Health:
    ok: bool
    reason: str
    workers: list[WorkerBeacon]
    queues: list[QueueStats]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "workers": [
                {
                    "host": b.host,
                    "pid": b.pid,
                    "queues": list(b.queues),
                    "processed": b.processed,
                    "last_message_at": b.last_message_at or None,
                }
                for b in self.workers
            ],
            "queues": [queue_row(q) for q in self.queues],
        }


def beacons(client: redis.Redis) -> list[WorkerBeacon]:
    """Every live worker process's beacon."""
    keys = sorted(client.scan_iter(match=f"{WORKER_BEACON_PREFIX}*", count=500))
    values = client.mget(keys) if keys else []
    found = []
    for raw_key, value in zip(keys, values, strict=True):
        if not value:
            continue  # expired between SCAN and MGET
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        host = key.removeprefix(WORKER_BEACON_PREFIX).rsplit(":", 2)[0]
        state = json.loads(value)
        found.append(
            WorkerBeacon(
                key=key,
                host=host,
                pid=int(state.get("pid", 0)),
                queues=tuple(state.get("queues", ())),
                processed=int(state.get("processed", 0)),
                last_message_at=float(state.get("last_message_at") or 0.0),
                at=float(state.get("at") or 0.0),
            )
        )
    return found


def check(
    client: redis.Redis,
    *,
    queues: Sequence[str] = (),
    host: str | None = None,
    pids: Iterable[int] | None = None,
    max_idle_s: float = 300.0,
    now: float | None = None,
) -> Health:
    """The health of the worker processes on ``host`` (None: any host), or of exactly the
    processes ``pids``, for ``queues`` (empty: whatever those processes consume)."""
    now = now or time.time()
    live = beacons(client)
    if pids is not None:
        wanted = set(pids)
        live = [b for b in live if b.pid in wanted]
        where = "among this group's processes"
    elif host is not None:
        live = [b for b in live if b.host == host]
        where = f"on host {host}"
    else:
        where = "on any host"
    expected = list(queues) or sorted({q for b in live for q in b.queues})
    stats = read_stats(client, expected)
    if not live:
        return Health(False, f"no live worker process {where}", live, stats)
    for q in stats:
        consumers = [b for b in live if q.queue in b.queues]
        if not consumers:
            return Health(False, f"no worker process {where} consumes queue {q.queue}", live, stats)
        if q.ready == 0:
            continue
        known = [t for b in consumers if (t := b.last_activity()) is not None]
        if not known:
            continue  # processes elsewhere that never finished a message: cannot judge
        idle = now - max(known)
        if idle > max_idle_s:
            return Health(
                False,
                f"queue {q.queue} has {q.ready} waiting messages but no worker process {where} "
                f"finished one in {idle:.0f}s (limit {max_idle_s:.0f}s): stuck",
                live,
                stats,
            )
    n = len(live)
    names = ", ".join(sorted(expected))
    return Health(
        True, f"{n} worker process{'es' if n != 1 else ''} consuming {names}", live, stats
    )


def process_started_at(pid: int) -> float | None:
    """Wall-clock start time of a local process (Linux /proc), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """Direct children of a local process (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out
