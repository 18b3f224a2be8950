"""Operations: worker health, queue depth, provider pauses, smoke tests, deploy and promote,
backups and restore tests, the migration check. DEPLOY.md's runbooks use these."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import redis
import typer

from runtime.settings import SmokeSettings
from system2.cli_support import emit, say, settings
from system2.errors import System2Error

app = typer.Typer(
    help="Operations: health, queues, smoke, deploy, promote, backups, migration check.",
    no_args_is_help=True,
)
provider_app = typer.Typer(help="Pause and resume an integration provider.", no_args_is_help=True)
app.add_typer(provider_app, name="provider")

Queues = Annotated[
    list[str] | None, typer.Option("--queues", "-q", help="queues the group must consume")
]
MaxIdle = Annotated[
    float,
    typer.Option(help="with messages waiting, the longest time without finishing one (s)"),
]


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings().redis_url, socket_timeout=5, socket_connect_timeout=3)


# --- health and queues -----------------------------------------------------------------


@app.command("worker-health")
def worker_health(
    queues: Queues = None,
    max_idle_s: MaxIdle = 300.0,
    host: Annotated[str | None, typer.Option(help="host to check (default: this one)")] = None,
    any_host: Annotated[bool, typer.Option(help="accept worker processes on any host")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the details as JSON")] = False,
) -> None:
    """Exit 0 if worker processes on this host consume the queues — and, when messages wait,
    finished one within --max-idle-s; else exit 1 with the reason."""
    from system2.ops.health import check

    result = check(
        _redis(),
        queues=queues or (),
        host=None if any_host else (host or socket.gethostname()),
        max_idle_s=max_idle_s,
    )
    if as_json:
        emit(result.as_dict())
    say(("ok: " if result.ok else "unhealthy: ") + result.reason)
    raise typer.Exit(0 if result.ok else 1)


@app.command("queues")
def queues_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Depth of each queue: waiting, in flight, delayed, dead-lettered, oldest waiting age;
    and for a fair queue (quests) the companies with the most steps waiting, with how long
    each one's oldest has waited."""
    from runtime.queue_metrics import read_stats
    from system2.ops.health import queue_row

    stats = read_stats(_redis())
    rows = [
        {
            **queue_row(s),
            "companies_waiting": s.companies_waiting,
            "companies": [
                {
                    "company_id": c.company_id,
                    "waiting": c.waiting,
                    "oldest_age_s": _seconds(c.oldest_age_s),
                }
                for c in s.companies
            ],
        }
        for s in stats
    ]
    if as_json:
        emit(rows)
        return

    def age(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds:.0f}s"

    typer.echo(f"{'queue':<12} {'waiting':>8} {'in-flight':>9} {'delayed':>8} {'dead':>6}  oldest")
    for r in rows:
        typer.echo(
            f"{r['queue']:<12} {r['waiting']:>8} {r['in_flight']:>9} {r['delayed']:>8} "
            f"{r['dead']:>6}  {age(r['oldest_age_s'])}"
        )
    for r in rows:
        if not r["companies"]:
            continue
        typer.echo("")
        n, shown = r["companies_waiting"], len(r["companies"])
        typer.echo(
            f"{r['queue']}: {n} {'company has' if n == 1 else 'companies have'} steps waiting "
            f"their turn" + (f"; the {shown} with the most:" if shown < n else ":")
        )
        typer.echo(f"{'company':<36} {'waiting':>8}  oldest")
        for c in r["companies"]:
            typer.echo(f"{c['company_id']:<36} {c['waiting']:>8}  {age(c['oldest_age_s'])}")


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@app.command(
    "run-worker",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run_worker(
    ctx: typer.Context,
    health_port: Annotated[int, typer.Option(help="port of GET /health (0: none)")] = 8081,
    health_host: Annotated[str, typer.Option(help="interface of the health endpoint")] = "0.0.0.0",  # noqa: S104 - Fly's checks come from outside the VM
    max_idle_s: MaxIdle = 300.0,
) -> None:
    """`system2 worker …` under a small supervisor for platforms whose health checks are HTTP
    (Fly.io): GET /health answers 200 when `worker-health` would pass for this group's
    processes, 503 otherwise. SIGTERM/SIGINT go to the worker's main process only; exits
    with the worker's exit code. Other options pass through to `system2 worker`."""
    from system2.ops.health import check, children_of

    args = list(ctx.args)
    wanted = _queues_in(args)
    binary = Path(sys.executable).parent / "system2"
    client = _redis()  # first: settings refused here are refused once, before any child
    child = subprocess.Popen([str(binary), "worker", *args])  # noqa: S603 - our own command

    def health() -> tuple[int, dict[str, Any]]:
        try:
            result = check(
                client, queues=wanted, pids=children_of(child.pid), max_idle_s=max_idle_s
            )
        except redis.RedisError as exc:
            return 503, {"ok": False, "reason": f"cannot reach Redis: {type(exc).__name__}"}
        return (200 if result.ok else 503), result.as_dict()

    server = _health_server(health_host, health_port, health) if health_port else None

    def forward(signum: int, _frame: Any) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    code = child.wait()
    if server is not None:
        server.shutdown()
    raise typer.Exit(128 - code if code < 0 else code)


def _queues_in(args: list[str]) -> list[str]:
    found: list[str] = []
    taking = False
    for a in args:
        if a in ("--queues", "-Q"):
            taking = True
        elif a.startswith("-"):
            taking = False
        elif taking:
            found.append(a)
    return found


def _health_server(host: str, port: int, health: Any) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in ("/health", "/healthz"):
                self.send_error(404)
                return
            status, body = health()
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="s2-health", daemon=True).start()
    return server


@app.command("probe")
def probe(
    url: str,
    timeout: Annotated[float, typer.Option(help="seconds")] = 5.0,
) -> None:
    """Exit 0 if URL answers 200 (a container health check: `system2 ops probe
    http://127.0.0.1:8080/readyz`), else 1 with what it answered."""
    import httpx

    try:
        resp = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        say(f"unhealthy: cannot reach {url}: {type(exc).__name__}")
        raise typer.Exit(1) from None
    if resp.status_code != 200:
        say(f"unhealthy: {url} answered {resp.status_code} {' '.join(resp.text.split())[:200]}")
        raise typer.Exit(1)
    say(f"ok: {url} answered 200")


# --- integration providers -------------------------------------------------------------


def _provider(name: str) -> str:
    from integrations import provider

    return provider(name).name


@provider_app.command("status")
def provider_status(name: str) -> None:
    """The provider's circuit breaker: closed, open (and for how long) or probing."""
    from workers.integrations.breaker import Breaker

    breaker = Breaker(_redis())
    p = _provider(name)
    emit(
        {
            "provider": p,
            "state": breaker.state(p),
            "open_for_s": round(breaker.open_for_ms(p) / 1000, 1),
            "recent_failures": breaker.failure_count(p),
        }
    )


@provider_app.command("pause")
def provider_pause(
    name: str,
    minutes: Annotated[float, typer.Option(help="how long to hold its calls")] = 10.0,
) -> None:
    """Hold every call to the provider by opening its circuit breaker: steps that need it wait
    and retry when it closes (quests waiting longer than S2_PROVIDER_OUTAGE_MAX_S fail with
    the reason). The first call afterwards is a probe."""
    from workers.integrations.breaker import Breaker

    p = _provider(name)
    if not 0 < minutes <= 24 * 60:
        raise System2Error("--minutes must be between 0 and 1440")
    Breaker(_redis()).pause(p, int(minutes * 60_000))
    say(
        f"{p} paused for {minutes:g} min: its breaker is open; resume with `system2 ops provider resume {p}`"
    )


@provider_app.command("resume")
def provider_resume(name: str) -> None:
    """Close the provider's breaker and forget its failures: calls go through again."""
    from workers.integrations.breaker import Breaker

    p = _provider(name)
    Breaker(_redis()).reset(p)
    say(f"{p} resumed: its breaker is closed")


# --- smoke, deploy, promote ------------------------------------------------------------

SmokeTimeout = Annotated[float, typer.Option(help="seconds the quest may take")]


def _smoke_token(env_name: str, token: str | None) -> str:
    smoke = SmokeSettings()
    token = token or (smoke.token.get_secret_value() if smoke.token else None)
    if token:
        return token
    user = smoke.user
    if not user:
        raise System2Error(
            "no smoke token: set S2_SMOKE_TOKEN (or S2_SMOKE_USER outside production)"
        )
    if env_name == "production":
        raise System2Error(
            "production smoke tests need S2_SMOKE_TOKEN, a Supabase session of the smoke user"
        )
    from system2.dev_tokens import mint

    s = settings()
    secret = s.jwt_hs256_secret()
    if secret is None:
        raise System2Error(
            "no smoke token: HS256 is off (S2_JWT_SECRET is not set), so set S2_SMOKE_TOKEN, "
            "a Supabase session of the smoke user"
        )
    return mint(secret, user, ttl_s=900, audience=s.jwt_audience, issuer=s.jwt_issuer)


def _smoke_company(company: UUID | None) -> UUID:
    if company is not None:
        return company
    raw = SmokeSettings().company
    if not raw:
        raise System2Error("no smoke company: pass --company or set S2_SMOKE_COMPANY")
    try:
        return UUID(raw)
    except ValueError:
        raise System2Error(f"S2_SMOKE_COMPANY is not a UUID: {raw!r}") from None


@app.command("smoke")
def smoke(
    url: Annotated[str, typer.Option(help="the environment's ingress, e.g. https://…fly.dev")],
    company: Annotated[UUID | None, typer.Option(help="smoke company (S2_SMOKE_COMPANY)")] = None,
    token: Annotated[str | None, typer.Option(help="smoke user's token (S2_SMOKE_TOKEN)")] = None,
    timeout: SmokeTimeout = 120.0,
) -> None:
    """Run one real quest through the ingress at URL and wait for it to succeed; exit 1 with
    one line on any failure."""
    from system2.ops.smoke import run_smoke

    result = run_smoke(
        url, _smoke_token(settings().env, token), _smoke_company(company), timeout_s=timeout
    )
    say(f"smoke ok: quest {result.quest_id} succeeded via {result.url} in {result.seconds:.1f}s")


def _smoke_runner(env_name: str, company: UUID | None, timeout: float) -> Any:
    """The smoke test of a deploy; its company and token are checked before anything ships."""
    from system2.ops.release import Environment
    from system2.ops.smoke import SmokeResult, run_smoke

    cid = _smoke_company(company)
    _smoke_token(env_name, None)  # refuse now rather than after the image shipped

    def run(env: Environment) -> SmokeResult:
        # A fresh token each time: a deploy and its rollback may outlast a token minted up front.
        return run_smoke(env.url, _smoke_token(env_name, None), cid, timeout_s=timeout)

    return run


@app.command("deploy")
def deploy_command(
    env: Annotated[str, typer.Argument(help="dev, staging or production")],
    image: Annotated[str, typer.Option(help="image to deploy, pinned by digest (…@sha256:…)")],
    commit: Annotated[str | None, typer.Option(help="its git commit (default: HEAD)")] = None,
    url: Annotated[
        str | None, typer.Option(help="ingress URL (default https://<app>.fly.dev)")
    ] = None,
    previous: Annotated[
        str | None, typer.Option(help="image to roll back to (default: the running one)")
    ] = None,
    company: Annotated[UUID | None, typer.Option(help="smoke company (S2_SMOKE_COMPANY)")] = None,
    smoke_timeout: SmokeTimeout = 180.0,
) -> None:
    """Deploy IMAGE to ENV with Fly (blue-green), smoke test it, and roll back to the previous
    image if the smoke test fails. Needs Fly.io (the `fly` CLI, or FLY=...)."""
    from system2.ops.release import deploy, environment, git_head

    if env == "production":
        raise System2Error("production takes only `system2 ops promote --commit SHA`")
    target = environment(env, url=url)
    deploy(
        target,
        image,
        commit or git_head(),
        _smoke_runner(env, company, smoke_timeout),
        previous=previous,
        say=say,
    )


@app.command("promote")
def promote_command(
    commit: Annotated[str, typer.Option(help="the commit whose staging smoke test passed")],
    image: Annotated[
        str | None, typer.Option(help="must equal the image that passed staging")
    ] = None,
    url: Annotated[str | None, typer.Option(help="production ingress URL")] = None,
    company: Annotated[UUID | None, typer.Option(help="smoke company (S2_SMOKE_COMPANY)")] = None,
    smoke_timeout: SmokeTimeout = 180.0,
) -> None:
    """Deploy to production the image that passed staging for COMMIT (from the release ledger),
    smoke it, roll back on failure; refuse anything else. Needs Fly.io."""
    from system2.ops.release import promote

    smoke = _smoke_runner("production", company, smoke_timeout)
    promote(commit, smoke, image=image, url=url, say=say)


@app.command("releases")
def releases(
    limit: Annotated[int, typer.Option(help="most recent N")] = 20,
) -> None:
    """The release ledger: each deploy's environment, outcome, commit and image."""
    from system2.ops.release import describe, entries

    for line in describe(entries()[-limit:]):
        typer.echo(line)


# --- backups ---------------------------------------------------------------------------


@app.command("backup")
def backup_command() -> None:
    """pg_dump (custom format) of S2_BACKUP_DATABASE_URL into S2_BACKUP_DIR (the backup
    user's own, 0700; files 0600), with a manifest from the same snapshot; encrypted with age to
    S2_BACKUP_AGE_RECIPIENTS when set; deletes dumps older than S2_BACKUP_KEEP_DAYS (30).
    Prints the dump's path."""
    from system2.ops.backup import BackupConfig, backup

    result = backup(BackupConfig.from_env())
    for note in result.notes:
        say(note)
    for path in result.deleted:
        say(f"deleted {path.name} (older than the retention window)")
    tables = result.stats["tables"]
    encryption = result.stats.get("encryption")
    say(
        f"backed up schema {result.stats['schema_version']}, {len(tables)} tables, "
        f"{sum(tables.values())} rows"
        + (
            f", encrypted with age to {len(encryption['recipients'])} recipient(s)"
            if encryption
            else ", NOT encrypted (set S2_BACKUP_AGE_RECIPIENTS)"
        )
    )
    emit(str(result.dump))


@app.command("restore-test")
def restore_test_command(
    dump: Annotated[Path | None, typer.Option(help="a dump (default: the newest)")] = None,
) -> None:
    """Restore the newest dump into a scratch database, verify it against its manifest and
    this code, write a dated report to S2_BACKUP_DIR/reports/, drop the scratch database.
    An age-encrypted dump is decrypted with the private key file S2_BACKUP_AGE_IDENTITY.
    Exits 1 naming the first failed check. Prints the report's path."""
    from system2.ops.backup import BackupConfig
    from system2.ops.restore import restore_test

    report, path = restore_test(BackupConfig.from_env(), dump=dump)
    say(f"restore test passed: {report.dump.name if report.dump else ''} in {report.seconds:.1f}s")
    emit(str(path))


@app.command("restore")
def restore_command(
    dump: Annotated[Path, typer.Option(help="the dump to restore")],
    into: Annotated[str, typer.Option(help="a NEW database to create and restore into")],
) -> None:
    """Restore a dump into a new database on the server of S2_BACKUP_DATABASE_URL (owners and
    grants included) and verify it against its manifest. Never touches an existing database.
    An age-encrypted dump is decrypted with the private key file S2_BACKUP_AGE_IDENTITY."""
    from system2.ops.backup import BackupConfig
    from system2.ops.restore import restore

    report = restore(BackupConfig.from_env(), dump, into)
    for check in report.checks:
        say(f"{check.name}: {check.detail}")
    say(f"restored into {into}: point S2_DATABASE_URL and S2_ADMIN_DATABASE_URL at it")


# --- migrations ------------------------------------------------------------------------


@app.command("check-migrations")
def check_migrations(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="migrations directory (default: the project's)")
    ] = None,
) -> None:
    """Refuse migrations that the previous release's code would not survive during a
    blue-green deploy, unless they are the contract step of a named earlier expand."""
    from store.migration_check import check_directory, project_migrations_dir

    where = directory or project_migrations_dir()
    if not where.is_dir():
        raise System2Error(f"{where} is not a directory")
    report = check_directory(where)
    if not report.checked and not report.problems:
        raise System2Error(f"no migrations in {where}")
    for problem in report.problems:
        say(str(problem))
    if not report.ok:
        say(f"refused: {len(report.problems)} problem(s) in {len(report.checked)} migrations")
        raise typer.Exit(1)
    say(f"ok: {len(report.checked)} migrations are safe for a blue-green deploy")
