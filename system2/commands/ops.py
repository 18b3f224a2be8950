"""Operations: worker health, queue depth, provider pauses, smoke tests, deploy and promote,
backups and restore tests, the migration check. DEPLOY.md's runbooks use these."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from system2.cli_support import emit, say
from system2.errors import System2Error

app = typer.Typer(
    help="Operations: health, queues, smoke, deploy, promote, backups, migration check.",
    no_args_is_help=True,
)


# --- backups ---------------------------------------------------------------------------


@app.command("backup")
def backup_command() -> None:
    """pg_dump (custom format) of S2_BACKUP_DATABASE_URL into S2_BACKUP_DIR, with a manifest
    from the same snapshot; deletes dumps older than S2_BACKUP_KEEP_DAYS (30). Prints the
    dump's path."""
    from system2.ops.backup import BackupConfig, backup

    result = backup(BackupConfig.from_env())
    for path in result.deleted:
        say(f"deleted {path.name} (older than the retention window)")
    tables = result.stats["tables"]
    say(
        f"backed up schema {result.stats['schema_version']}, {len(tables)} tables, "
        f"{sum(tables.values())} rows"
    )
    emit(str(result.dump))


@app.command("restore-test")
def restore_test_command(
    dump: Annotated[Path | None, typer.Option(help="a dump (default: the newest)")] = None,
) -> None:
    """Restore the newest dump into a scratch database, verify it against its manifest and
    this code, write a dated report to S2_BACKUP_DIR/reports/, drop the scratch database.
    Exits 1 naming the first failed check. Prints the report's path."""
    from system2.ops.backup import BackupConfig, restore_test

    report, path = restore_test(BackupConfig.from_env(), dump=dump)
    say(f"restore test passed: {report.dump.name if report.dump else ''} in {report.seconds:.1f}s")
    emit(str(path))


@app.command("restore")
def restore_command(
    dump: Annotated[Path, typer.Option(help="the dump to restore")],
    into: Annotated[str, typer.Option(help="a NEW database to create and restore into")],
) -> None:
    """Restore a dump into a new database on the server of S2_BACKUP_DATABASE_URL (owners and
    grants included) and verify it against its manifest. Never touches an existing database."""
    from system2.ops.backup import BackupConfig, restore

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
