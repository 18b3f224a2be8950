"""``system2 worker``: a group of worker processes (``python -m workers.app``) on one machine.

The parent holds no queue work: it starts ``processes`` children, each told its index
(``S2_WORKER_INDEX``), restarts a child that dies while the group runs (``kill -9``, out of
memory: its messages come back to the queue after the heartbeat timeout), and on SIGTERM or
SIGINT passes the signal on and waits for every child to hand back its work. A child that
fails within ``STARTUP_S`` of its start (settings refused, say) stops the group with its exit
code: restarting it would only fail again.

With ``S2_METRICS_PORT`` set, the parent also serves the group's one metrics endpoint
(``workers.metrics_endpoint.GroupEndpoint``): the children write their metrics to files in a
directory the parent makes and gives each of them as ``PROMETHEUS_MULTIPROC_DIR``; a dead
child's gauges are dropped before another takes its place; the directory goes when the
group stops. With metrics off, no child is given a directory (not even one the parent was).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from messages import QUEUES
from runtime import logs
from runtime.settings import Settings

if TYPE_CHECKING:
    from workers.metrics_endpoint import GroupEndpoint

log = structlog.get_logger(__name__)
STARTUP_S = 5.0
RESTART_DELAY_S = 1.0
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client at its first import


@dataclass
class Child:
    index: int
    proc: subprocess.Popen[bytes]
    started: float


class Fleet:
    def __init__(
        self, processes: int, child_args: list[str], settings: Settings | None = None
    ) -> None:
        self.processes = processes
        self.child_args = child_args
        self.settings = settings
        self.metrics: GroupEndpoint | None = None
        self.children: list[Child] = []
        self.stopping = False
        self.signum: int = signal.SIGTERM
        self.signalled: set[int] = set()  # each child is passed the stop signal once

    def start(self, index: int) -> Child:
        env = {**os.environ, "S2_WORKER_INDEX": str(index)}
        env.pop(MULTIPROC_DIR, None)
        if self.metrics is not None and self.metrics.directory is not None:
            env[MULTIPROC_DIR] = self.metrics.directory
        argv = [sys.executable, "-m", "workers.app", *self.child_args]
        proc = subprocess.Popen(argv, env=env)  # noqa: S603 - our own module, our own args
        log.info("worker process started", index=index, pid=proc.pid)
        return Child(index, proc, time.monotonic())

    def stop(self, signum: int, _frame: Any = None) -> None:
        self.stopping = True
        self.signum = signum
        for child in self.children:
            self._pass_on(child)

    def _pass_on(self, child: Child) -> None:
        if child.proc.poll() is None and child.proc.pid not in self.signalled:
            child.proc.send_signal(self.signum)
            self.signalled.add(child.proc.pid)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.stop)
        self.metrics = self._serve_metrics()
        try:
            return self._supervise()
        finally:
            if self.metrics is not None:
                self.metrics.close()

    def _serve_metrics(self) -> GroupEndpoint | None:
        if self.settings is None or not self.settings.metrics_port:
            return None
        from workers.metrics_endpoint import GroupEndpoint

        endpoint = GroupEndpoint(self.settings)
        return endpoint if endpoint.open() is not None else None

    def _supervise(self) -> int:
        self.children = [self.start(i) for i in range(self.processes)]
        code = 0
        while self.children:
            time.sleep(0.2)
            if self.stopping:  # children started while the stop signal came in get it too
                for child in self.children:
                    self._pass_on(child)
            for child in list(self.children):
                status = child.proc.poll()
                if status is None:
                    continue
                self.children.remove(child)
                if self.metrics is not None:  # before a new child can be given its pid
                    self.metrics.process_died(child.proc.pid)
                if self.stopping:
                    code = code or _exit_code(status)
                    continue
                if status != 0 and time.monotonic() - child.started < STARTUP_S:
                    log.error("worker process failed at start", index=child.index, code=status)
                    self.stop(signal.SIGTERM)
                    code = _exit_code(status)
                    continue
                log.error("worker process died; starting another", index=child.index, code=status)
                time.sleep(RESTART_DELAY_S)
                if not self.stopping:
                    self.children.append(self.start(child.index))
        return code


def _exit_code(status: int) -> int:
    return 128 - status if status < 0 else status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="system2 worker")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--queues", nargs="*")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.queues or []) - set(QUEUES))
    if unknown:
        print(
            f"error: no such queue: {', '.join(unknown)} (queues: {', '.join(QUEUES)})",
            file=sys.stderr,
        )
        return 2
    settings = Settings()
    logs.configure(settings)
    child_args = ["--queues", *args.queues] if args.queues else []
    return Fleet(max(1, args.processes), child_args, settings).run()


if __name__ == "__main__":
    sys.exit(main())
