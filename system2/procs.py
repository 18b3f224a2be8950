"""Starting and stopping the processes the demo, the tests and the benchmarks run.

Every process is started in its own process group and stopped by PID: SIGTERM, a grace
period, then SIGKILL for the whole group, so nothing outlives the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else dict(os.environ)
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> Proc:
        out: IO[bytes] | int = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = out = self.log_path.open("ab")
        self.popen = subprocess.Popen(  # noqa: S603 - argv built by us
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, wait, then SIGKILL it. Returns the exit code."""
        if self.popen is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # stragglers of the group
        if self._log is not None:
            self._log.close()
        return self.popen.returncode

    def output(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")


def wait_http(url: str, *, timeout: float = 20.0, proc: Proc | None = None) -> None:
    """Wait until ``url`` answers (any status below 500)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.output()[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s ({last})")


def wait_workers(
    redis_url: str, count: int, *, timeout: float = 30.0, proc: Proc | None = None
) -> None:
    """Wait until ``count`` worker processes report that they are consuming: of ``proc``'s
    group when it is given (a killed process's beacon lingers a few seconds), else any."""
    import redis

    from system2.ops.health import children_of
    from workers.beacon import live_workers

    def ours(pids: set[int]) -> set[int]:
        found, todo = set(pids), list(pids)
        while todo:
            for child in children_of(todo.pop()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return found

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc is not None and not proc.alive():
                raise RuntimeError(f"{proc.name} exited early:\n{proc.output()[-3000:]}")
            beacons = live_workers(client)
            if proc is not None:
                group = ours({proc.pid})
                beacons = [b for b in beacons if b.get("pid") in group]
            if len(beacons) >= count:
                return
            time.sleep(0.1)
    finally:
        client.close()
    raise TimeoutError(f"{count} worker processes did not come up within {timeout:.0f}s")
