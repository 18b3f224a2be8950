"""Every command DEPLOY.md's runbooks name exists: each `system2 …` command and each of its
options, each `deploy/…` script (executable, fronting a `system2 ops …` command that exists).
Commands that talk to Fly.io, Supabase or Docker must say so (`# needs Fly.io` …); the
`system2` commands they run inside a machine are checked all the same."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from system2 import cli

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_MD = ROOT / "DEPLOY.md"
MARKERS = {"fly": "# needs Fly.io", "docker": "# needs Docker"}
NEEDS = re.compile(r"#\s*needs (Fly\.io|Supabase|Docker)\s*$")
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


@dataclass(frozen=True)
class Line:
    number: int
    text: str

    @property
    def words(self) -> list[str]:
        words = shlex.split(NEEDS.sub("", self.text).strip())
        while words and ASSIGNMENT.match(words[0]):
            words.pop(0)
        return words


def command_lines() -> list[Line]:
    """The lines of DEPLOY.md's sh code blocks (continuations joined)."""
    out: list[Line] = []
    in_block = False
    pending, start = "", 0
    for n, raw in enumerate(DEPLOY_MD.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            in_block = stripped == "```sh" if not in_block else False
            continue
        if not in_block or not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = n
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        out.append(Line(start, pending + stripped))
        pending = ""
    return out


LINES = command_lines()


def system2_commands() -> list[tuple[Line, list[str]]]:
    found = []
    for line in LINES:
        words = line.words
        if words and words[0] == "system2":
            found.append((line, words[1:]))
        # `fly ssh console … -C "system2 …"`: the command inside must exist too.
        if "-C" in words and words[0] == "fly":
            inner = shlex.split(words[words.index("-C") + 1])
            if inner[0] == "system2":
                found.append((line, inner[1:]))
    return found


def resolve(args: list[str]) -> tuple[Any, list[str], list[str]]:
    """The (click) command ``system2 args…`` names, its path, and the remaining words."""
    command: Any = typer.main.get_command(cli.app)
    path: list[str] = []
    rest = list(args)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        assert sub is not None, f"system2 {' '.join([*path, rest[0]])}: no such command"
        command, path = sub, [*path, rest.pop(0)]
    assert not hasattr(command, "commands"), f"system2 {' '.join(path)} needs a subcommand"
    return command, path, rest


def test_deploy_md_has_the_promised_runbooks() -> None:
    text = DEPLOY_MD.read_text()
    for title in (
        "## Runbook: deploy rollback",
        "## Runbook: database restore",
        "## Runbook: OAuth-token rotation",
        "## Runbook: integration-provider outage",
        "## Production settings",
        "## Scaling",
        "docs/observability.md",
        "appendonly",
        "appendfsync",
        "noeviction",
        "BYPASSRLS",
    ):
        assert title in text, title
    assert len(system2_commands()) >= 25


@pytest.mark.parametrize(
    ("line", "args"),
    system2_commands(),
    ids=[f"L{line.number}:{' '.join(args[:3])}" for line, args in system2_commands()],
)
def test_each_system2_command_and_option_exists(line: Line, args: list[str]) -> None:
    command, path, rest = resolve(args)
    known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    passes_through = bool(command.context_settings.get("ignore_unknown_options"))
    for word in rest:
        if word.startswith("-") and not passes_through:
            name = word.split("=", 1)[0]
            assert name in known, f"DEPLOY.md:{line.number}: system2 {' '.join(path)} has no {name}"
    result = CliRunner().invoke(cli.app, [*path, "--help"])
    assert result.exit_code == 0, result.output


def test_each_deploy_script_exists_and_fronts_a_real_command() -> None:
    scripts = {
        line.words[0] for line in LINES if line.words and line.words[0].startswith("deploy/")
    }
    assert {"deploy/backup", "deploy/restore-test", "deploy/restore", "deploy/smoke"} <= scripts
    for script in sorted(scripts):
        path = ROOT / script
        assert path.is_file() and os.access(path, os.X_OK), f"{script} is missing or not executable"
        if path.suffix == ".py":
            continue
        text = path.read_text()
        (target,) = re.findall(r'^exec "\$bin" (.+?) "\$@"$', text, re.MULTILINE)
        resolve(target.split())  # the system2 command it runs exists


def test_deploy_script_options_in_the_runbooks_exist() -> None:
    for line in LINES:
        words = line.words
        if not words or not words[0].startswith("deploy/") or words[0].endswith(".py"):
            continue
        text = (ROOT / words[0]).read_text()
        (target,) = re.findall(r'^exec "\$bin" (.+?) "\$@"$', text, re.MULTILINE)
        command, _, _ = resolve(target.split())
        known = {o for p in command.params for o in p.opts}
        for word in words[1:]:
            if word.startswith("-"):
                assert word in known, f"DEPLOY.md:{line.number}: {words[0]} has no {word}"


def test_commands_that_need_a_service_say_so() -> None:
    for line in LINES:
        words = line.words
        if not words:
            continue
        marker = MARKERS.get(words[0])
        if marker:
            assert line.text.rstrip().endswith(marker), (
                f"DEPLOY.md:{line.number}: `{words[0]} …` must end with '{marker}'"
            )
        elif NEEDS.search(line.text) and words[0] in ("system2",):
            pytest.fail(f"DEPLOY.md:{line.number}: a system2 command needs no external service")


def test_the_python_helper_it_names_runs() -> None:
    lock_lines = [line for line in LINES if "deploy/lock.py" in line.text]
    assert lock_lines, "DEPLOY.md should say how to regenerate the lock"
    assert (ROOT / "deploy" / "lock.py").is_file()
