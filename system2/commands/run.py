"""Running the system: migrate, the ingress, workers, the stand-ins, the demo."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Annotated, NoReturn

import typer

from system2.cli_support import say, settings


def migrate() -> None:
    """Apply the SQL migrations as the owner; create the database, the app's role and the
    engineers' (S2_OPERATOR_DATABASE_URL) if allowed."""
    from store.migrate import migrate as run

    s = settings()
    # Deployed, the engineers' role is made only where it is named: the default is a laptop's.
    named = "operator_database_url" in s.model_fields_set or not s.deployed()
    report = run(
        s.admin_database_url,
        s.database_url,
        operator_url=s.operator_database_url if named else None,
    )
    for note in report.notes:
        say(note)
    say(f"applied: {', '.join(report.applied) or 'nothing'}; schema version {report.current}")


def ingress(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
    metrics_dir_owned: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Serve the HTTP ingress."""
    import uvicorn

    from runtime import logs

    s = settings()
    logs.configure(s)
    if workers > 1 and not s.prometheus_multiproc_dir:
        _exec_with_shared_metrics(host, port, workers)
    try:
        uvicorn.run(
            "ingress.app:from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            access_log=False,
        )
    finally:
        if metrics_dir_owned and s.prometheus_multiproc_dir:
            shutil.rmtree(s.prometheus_multiproc_dir, ignore_errors=True)


def _exec_with_shared_metrics(host: str, port: int, workers: int) -> NoReturn:
    """N processes behind one port sum their metrics from files (``ingress.http_metrics``), in
    a directory each must have in its environment before it imports prometheus-client. This
    process does not change its own environment: it becomes ``system2 ingress`` again with
    the directory in the new one's, so its PID and its signals (uvicorn's supervisor: TERM,
    INT, HUP, TTIN, TTOU) stay the same; the new process removes the directory at exit."""
    shared = tempfile.mkdtemp(prefix="s2-ingress-metrics-")
    argv = [sys.executable, "-c", "from system2.cli import main; main()", "ingress"]
    argv += ["--host", host, "--port", str(port), "--workers", str(workers)]
    argv += ["--metrics-dir-owned"]
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": shared}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(sys.executable, argv, env)  # noqa: S606 - replaces this process, argv is ours


def worker(
    ctx: typer.Context,
    processes: Annotated[int, typer.Option(help="worker processes")] = 2,
    in_flight: Annotated[
        int | None,
        typer.Option(help="quest steps each process runs at once (S2_WORKER_IN_FLIGHT)"),
    ] = None,
    queues: Annotated[
        list[str] | None,
        typer.Option(help="queues to consume (default: all): --queues quests control ..."),
    ] = None,
) -> None:
    """Run worker processes: each runs up to --in-flight quest steps at once on one event loop."""
    s = settings()
    extra = list(ctx.args)  # `--queues quests control`: the words after the first queue
    if any(word.startswith("-") for word in extra) or (extra and not queues):
        raise typer.BadParameter(f"unexpected {' '.join(extra)}")
    argv = [sys.executable, "-m", "workers.fleet", "--processes", str(processes)]
    if queues:
        argv += ["--queues", *queues, *extra]
    env = dict(os.environ)
    if in_flight is not None:
        if in_flight < 1:
            raise typer.BadParameter("must be at least 1", param_hint="--in-flight")
        env["S2_WORKER_IN_FLIGHT"] = str(in_flight)
    if s.log_format == "auto" and not s.deployed() and sys.stderr.isatty():
        env["S2_LOG_FORMAT"] = "console"  # the worker processes log through a pipe, not a TTY
    sys.stdout.flush()
    os.execvpe(sys.executable, argv, env)  # noqa: S606 - replaces this process, argv is ours


def offline_claude(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8765,
) -> None:
    """Serve the stand-in Messages API (scripted replies) on loopback."""
    from standins.offline_claude import serve

    serve(host, port)


def demo_provider(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8790,
    access_ttl: Annotated[float, typer.Option(help="seconds an access token lives")] = 60.0,
) -> None:
    """Serve the demo integration provider (OAuth 2 + a task API) on loopback."""
    from standins.demo_provider import serve

    demo = settings().integration("demo")
    serve(
        host,
        port,
        client_id=demo.client_id,
        client_secret=demo.client_secret.get_secret_value(),
        access_ttl_s=access_ttl,
    )


def demo(
    signing_keys: Annotated[
        bool,
        typer.Option(
            "--signing-keys",
            help="sign sessions ES256 with a key made for the demo, its JWKS served to the "
            "ingress (as a Supabase project on signing keys); the default is HS256 with "
            "S2_JWT_SECRET, unless the settings turn HS256 off",
        ),
    ] = False,
) -> None:
    """Run the whole job end to end on this machine's Redis and Postgres, printing it live."""
    from system2.demo import run

    run(settings(), signing_keys=signing_keys)


def openapi(
    check: Annotated[
        str | None, typer.Option(help="compare with this checked-in file instead of printing")
    ] = None,
) -> None:
    """Print the ingress's OpenAPI document (as checked in at docs/openapi.json)."""
    from pathlib import Path

    from ingress import contract
    from ingress.app import build
    from system2.errors import System2Error

    text = contract.dumps(build(settings()).openapi())
    if check is None:
        sys.stdout.write(text)
        return
    if Path(check).read_text() != text:
        raise System2Error(f"{check} differs from the served contract: run `make openapi`")
    say(f"{check} is the served contract")
