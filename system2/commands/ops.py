"""Operations: worker health, queue depth, provider pauses, smoke tests, deploy and promote,
backups and restore tests, the migration check. DEPLOY.md's runbooks use these."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from system2.cli_support import say
from system2.errors import System2Error

app = typer.Typer(
    help="Operations: health, queues, smoke, deploy, promote, backups, migration check.",
    no_args_is_help=True,
)


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
