"""``system2``: the one command an operator or ops person runs.

A command that creates something prints its id alone on stdout; everything else a person
reads goes to stderr. An error is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import logging
import sys

import psycopg
import redis
import typer
from pydantic import ValidationError

from guard.errors import GuardError
from ingress.errors import IngressError
from integrations import IntegrationError
from messages import MessagesError
from runtime import logs
from runtime.errors import ConfigurationError
from store import StoreError
from system2.cli_support import say
from system2.commands import (
    audit,
    companies,
    dlq,
    guard,
    incident,
    integrations,
    ops,
    privacy,
    quests,
    run,
    support,
    tokens,
    vault,
    webhooks,
)
from system2.errors import System2Error
from vault import VaultError
from workers.errors import WorkerError

app = typer.Typer(
    name="system2",
    help="System2 workers: run, operate and inspect Ted's quests.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(run.migrate)
app.command()(run.ingress)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(run.worker)
app.command("offline-claude")(run.offline_claude)
app.command("demo-provider")(run.demo_provider)
app.command()(run.demo)
app.command()(run.openapi)
for name, group in (
    ("company", companies.app),
    ("quest", quests.app),
    ("audit", audit.app),
    ("guard", guard.app),
    ("integration", integrations.app),
    ("vault", vault.app),
    ("token", tokens.app),
    ("dlq", dlq.app),
    ("webhook", webhooks.app),
    ("privacy", privacy.app),
    ("support", support.app),
    ("incident", incident.app),
    ("ops", ops.app),
):
    app.add_typer(group, name=name)


def main() -> None:
    logs.configure(level="WARNING")  # the commands that serve or run reconfigure at INFO
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    try:
        app()
    except ValidationError as exc:  # before ValueError, which it is: one line, no input values
        say(f"error: {invalid(exc)}")
        sys.exit(1)
    except (
        System2Error,
        ConfigurationError,
        IntegrationError,
        IngressError,
        WorkerError,
        StoreError,
        MessagesError,
        GuardError,
        VaultError,
        ValueError,
    ) as exc:
        say(f"error: {exc}")
        sys.exit(1)
    except psycopg.OperationalError as exc:
        say(f"error: cannot reach Postgres: {first_line(exc)}")
        sys.exit(1)
    except psycopg.Error as exc:
        say(f"error: Postgres refused: {first_line(exc)}")
        sys.exit(1)
    except redis.RedisError as exc:
        say(f"error: cannot reach Redis: {type(exc).__name__}")
        sys.exit(1)
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def invalid(exc: ValidationError) -> str:
    """``S2_MAX_STEPS: Input should be a valid integer`` for a bad setting; the field's path
    for anything else. Never the input value, which may be a secret."""
    settings = exc.title == "Settings"
    problems = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in err["loc"])
        problems.append(f"{f'S2_{where.upper()}' if settings else where}: {err['msg']}")
    return ("invalid settings: " if settings else "invalid input: ") + "; ".join(problems)
