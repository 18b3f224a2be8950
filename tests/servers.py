"""Private Redis and Postgres servers a fault test can stop and start (loopback, by PID)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis

from system2.procs import Proc, free_port


class PrivateRedis:
    """A redis-server with AOF, as production runs it."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
        ]
        self.proc = Proc("private-redis", argv, log_path=self.dir / "redis.log").start()
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start: {self.proc.output()[-2000:]}")

    def stop(self) -> None:
        """SHUTDOWN (the AOF is flushed), then wait for the process to go."""
        if self.proc is None:
            return
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(self.url).shutdown()
        self.proc.stop(timeout=10)
        self.proc = None


class PrivatePostgres:
    """A PostgreSQL cluster of the system's binaries in a scratch directory."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise FileNotFoundError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = Path(found[-1]).parent
        # Not under pytest's tmp_path: pytest resets its root to 0700 whenever a session
        # starts, and the server runs as another user.
        self.root = Path(tempfile.mkdtemp(prefix="s2-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def app_url(self, database: str) -> str:
        return f"postgresql://s2_app@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {(done.stdout + done.stderr).strip()[-1000:]}")

    def init(self) -> None:
        if self.user:
            shutil.chown(self.root, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                psycopg.connect(self.admin_url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError("the private postgres did not start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
