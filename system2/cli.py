"""``system2``: the one command an operator or ops person runs.

A command that creates something prints its id alone on stdout; everything else a person
reads goes to stderr. An error is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import psycopg
import redis
import typer

from guard.errors import GuardError
from messages import Actor, ActorType, MessagesError
from store import Database, StoreError
from store import companies as companies_store
from system2.errors import System2Error
from system2.settings import Settings
from vault import VaultError

app = typer.Typer(
    name="system2",
    help="System2 workers: run, operate and inspect Ted's quests.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
company_app = typer.Typer(help="Companies (tenants) and their members.", no_args_is_help=True)
quest_app = typer.Typer(help="Quests: submit, show.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail (activity_log).", no_args_is_help=True)
token_app = typer.Typer(help="Access tokens for local work and smoke tests.", no_args_is_help=True)
guard_app = typer.Typer(help="The guard: spend, caps, budgets and limits.", no_args_is_help=True)
vault_app = typer.Typer(help="Encryption keys of integration credentials.", no_args_is_help=True)
integration_app = typer.Typer(help="Integrations a company has connected.", no_args_is_help=True)
app.add_typer(company_app, name="company")
app.add_typer(quest_app, name="quest")
app.add_typer(audit_app, name="audit")
app.add_typer(token_app, name="token")
app.add_typer(guard_app, name="guard")
app.add_typer(vault_app, name="vault")
app.add_typer(integration_app, name="integration")


def settings() -> Settings:
    return Settings()


@contextmanager
def app_db(s: Settings) -> Iterator[Database]:
    # Fail fast with the driver's own reason: a pool would retry quietly for its timeout.
    psycopg.connect(s.database_url, connect_timeout=5).close()
    db = Database(s.database_url, min_size=1, max_size=2, name="cli").open(timeout=10)
    try:
        yield db
    finally:
        db.close()


def emit(value: Any) -> None:
    """Print a result on stdout: ids bare, everything else as JSON."""
    if isinstance(value, str | UUID):
        typer.echo(str(value))
    else:
        typer.echo(json.dumps(value, indent=2, default=str))


def say(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
def migrate() -> None:
    """Apply the SQL migrations as the owner; create the database and the app role if allowed."""
    from store.migrate import migrate as run

    s = settings()
    report = run(s.admin_database_url, s.database_url)
    for note in report.notes:
        say(note)
    say(f"applied: {', '.join(report.applied) or 'nothing'}; schema version {report.current}")


@app.command()
def ingress(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the HTTP ingress."""
    import uvicorn

    from system2 import logs

    logs.configure()
    uvicorn.run(
        "ingress.app:from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
    )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    processes: Annotated[int, typer.Option(help="worker processes")] = 2,
    threads: Annotated[int, typer.Option(help="threads per process")] = 8,
    queues: Annotated[
        list[str] | None, typer.Option(help="queues to consume (default: all)")
    ] = None,
) -> None:
    """Run Dramatiq workers (extra options pass through to dramatiq)."""
    s = settings()
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "workers.app:bootstrap",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
    ]
    if queues:
        argv += ["--queues", *queues]
    argv += list(ctx.args)
    env = dict(os.environ)
    env["dramatiq_worker_timeout"] = str(s.worker_poll_ms)
    env["S2_WORKER_THREADS"] = str(threads)
    sys.stdout.flush()
    os.execvpe(sys.executable, argv, env)  # noqa: S606 - replaces this process, argv is ours


@app.command("offline-claude")
def offline_claude(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8765,
) -> None:
    """Serve the stand-in Messages API (scripted replies) on loopback."""
    from system2.offline_claude import serve

    serve(host, port)


@app.command("demo-provider")
def demo_provider(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8790,
    access_ttl: Annotated[float, typer.Option(help="seconds an access token lives")] = 60.0,
) -> None:
    """Serve the demo integration provider (OAuth 2 + a task API) on loopback."""
    from system2.demo_provider import serve

    s = settings()
    serve(
        host,
        port,
        client_id=s.demo_client_id,
        client_secret=s.demo_client_secret.get_secret_value(),
        access_ttl_s=access_ttl,
    )


@company_app.command("create")
def company_create(name: str) -> None:
    """Create a company; prints its id."""
    from uuid import uuid4

    cid = uuid4()
    with app_db(settings()) as db, db.tenant(cid) as tx:
        companies_store.create(tx, name)
    emit(cid)


@company_app.command("add-member")
def company_add_member(
    company_id: UUID,
    user_id: str,
    role: Annotated[str, typer.Option(help="admin or member")] = "member",
) -> None:
    """Add a user to a company (or change their role)."""
    if role not in companies_store.ROLES:
        raise System2Error(f"role must be one of {', '.join(companies_store.ROLES)}")
    with app_db(settings()) as db, db.tenant(company_id) as tx:
        if companies_store.get(tx) is None:
            raise System2Error(f"no company {company_id}")
        companies_store.add_member(tx, user_id, role)
    say(f"{user_id} is now {role} of {company_id}")


@quest_app.command("submit")
def quest_submit(
    company: Annotated[UUID, typer.Option(help="company id")],
    goal: Annotated[str, typer.Option(help="what Ted should do")],
    model: Annotated[str | None, typer.Option()] = None,
    max_usd: Annotated[str | None, typer.Option(help="cap in USD, e.g. 2.50")] = None,
    operator: Annotated[str, typer.Option(help="who submits, for the audit trail")] = "cli",
    idempotency_key: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Submit a quest as an operator; prints the quest id."""
    from guard import Admissions
    from ingress.guard_view import company_limits
    from ingress.schemas import usd_to_micros
    from ingress.submit import (
        Gate,
        QuestSpec,
        SubmissionRefused,
        Throttled,
        create_quest,
        enqueue_first_step,
    )
    from messages.transport import Publisher, build_broker

    s = settings()
    try:
        cap = usd_to_micros(max_usd) if max_usd else None
    except ValueError as exc:
        raise System2Error(f"--max-usd {exc}") from None
    spec = QuestSpec(goal, model or s.default_model, cap, idempotency_key)
    actor = Actor(type=ActorType.operator, id=operator)
    with app_db(s) as db:
        with db.tenant(company) as tx:
            if companies_store.get(tx) is None:
                raise System2Error(f"no company {company}")
            gate = Gate(Admissions(redis.Redis.from_url(s.redis_url)), company_limits(tx, s))
            try:
                quest, publish = create_quest(tx, actor, spec, gate=gate)
            except (Throttled, SubmissionRefused) as exc:
                raise System2Error(str(exc)) from None
        if publish:
            enqueue_first_step(db, Publisher(build_broker(s.redis_url)), quest, actor)
    emit(quest.id)


def quest_company(db: Database, quest_id: UUID, company: UUID | None) -> UUID:
    """The quest's company: as given, or looked up (operators often have only the quest id)."""
    from store import quests as quests_store

    if company is not None:
        return company
    with db.pool.connection() as conn:
        found = quests_store.company_of(conn, quest_id)
    if found is None:
        raise System2Error(f"no quest {quest_id}")
    return found


CompanyOption = Annotated[UUID | None, typer.Option(help="company id (looked up if left out)")]


@quest_app.command("show")
def quest_show(quest_id: UUID, company: CompanyOption = None) -> None:
    """Show a quest's state, steps, cost and result as JSON."""
    from ingress.routes_quests import quest_view
    from store import quests as quests_store

    with app_db(settings()) as db, db.tenant(quest_company(db, quest_id, company)) as tx:
        quest = quests_store.get(tx, quest_id)
        if quest is None:
            raise System2Error(f"no quest {quest_id} in company {company}")
        emit(quest_view(tx, quest).model_dump(mode="json"))


@quest_app.command("cancel")
def quest_cancel(
    quest_id: UUID,
    reason: Annotated[str, typer.Option(help="why, for the audit trail")] = "",
    operator: Annotated[str, typer.Option(help="who cancels, for the audit trail")] = "cli",
    company: CompanyOption = None,
) -> None:
    """Cancel a quest, even mid-call; its final state is printed when it had already ended."""
    from ingress.cancel import request_cancel, send_cancel
    from messages.transport import Publisher, build_broker
    from store import quests as quests_store

    s = settings()
    by = Actor(type=ActorType.operator, id=operator)
    with app_db(s) as db:
        with db.tenant(quest_company(db, quest_id, company)) as tx:
            quest = quests_store.get(tx, quest_id, for_update=True)
            if quest is None:
                raise System2Error(f"no quest {quest_id}")
            if not quest.finished:
                quest = request_cancel(tx, quest, by=by, reason=reason)
        if quest.finished:
            say(f"quest {quest_id} had already ended: {quest.status}")
            return
        broker = build_broker(s.redis_url)
        send_cancel(
            redis.Redis.from_url(s.redis_url), Publisher(broker), quest, by=by, reason=reason
        )
        broker.close()
    say(f"cancelling quest {quest_id}")


@quest_app.command("watch")
def quest_watch(quest_id: UUID, company: CompanyOption = None) -> None:
    """Follow a quest live: each step, action, the cost so far, the guard's tier and the state;
    returns when the quest ends."""
    from system2.watch import watch

    s = settings()
    with app_db(s) as db:
        company_id = quest_company(db, quest_id, company)
        code = watch(s, db, company_id, quest_id)
    raise typer.Exit(code)


@audit_app.command("list")
def audit_list(
    company: Annotated[UUID, typer.Option(help="company id")],
    quest: Annotated[UUID | None, typer.Option(help="only this quest")] = None,
    actor: Annotated[str | None, typer.Option(help="only this actor id (e.g. ted, alice)")] = None,
    action: Annotated[str | None, typer.Option(help="only this action (e.g. task.created)")] = None,
    since: Annotated[datetime | None, typer.Option(help="from this time (ISO 8601)")] = None,
    until: Annotated[datetime | None, typer.Option(help="before this time (ISO 8601)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="the next_cursor of the previous page")] = None,
) -> None:
    """The company's audit trail, newest first, as JSON (filter, then page with --cursor)."""
    from store import activity as activity_store
    from store.activity import ActivityFilter

    filters = ActivityFilter(
        quest_id=quest, actor_id=actor, action=action, since=since, until=until
    )
    with app_db(settings()) as db, db.tenant(company) as tx:
        rows, next_cursor = activity_store.page(tx, filters, cursor=cursor, limit=limit)
    emit({"items": [r.__dict__ for r in rows], "next_cursor": next_cursor})


@guard_app.command("status")
def guard_status(company: Annotated[UUID, typer.Option(help="company id")]) -> None:
    """Spend, caps and tier per running quest and per budget window (JSON)."""
    from guard import Admissions, Guard
    from ingress.guard_view import guard_view

    s = settings()
    client = redis.Redis.from_url(s.redis_url)
    with app_db(s) as db, db.tenant(company) as tx:
        if companies_store.get(tx) is None:
            raise System2Error(f"no company {company}")
        view = guard_view(tx, s, Guard(client), Admissions(client))
    emit(view.model_dump(mode="json"))


@guard_app.command("set")
def guard_set(
    company: Annotated[UUID, typer.Option(help="company id")],
    quest_cap_usd: Annotated[str | None, typer.Option(help="a quest's default cap")] = None,
    quest_ceiling_usd: Annotated[str | None, typer.Option(help="the most a quest may ask")] = None,
    daily_usd: Annotated[str | None, typer.Option(help="the daily budget")] = None,
    monthly_usd: Annotated[str | None, typer.Option(help="the monthly budget")] = None,
    warn_pct: Annotated[int | None, typer.Option(min=1, max=100)] = None,
    slow_pct: Annotated[int | None, typer.Option(min=1, max=100)] = None,
    halt_pct: Annotated[int | None, typer.Option(min=1, max=100)] = None,
    per_minute: Annotated[int | None, typer.Option(min=1, help="quest starts a minute")] = None,
    running: Annotated[int | None, typer.Option(min=1, help="quests running at once")] = None,
) -> None:
    """Set a company's own limits (the others keep the defaults)."""
    from dataclasses import replace

    from ingress.guard_view import company_limits
    from ingress.schemas import usd_to_micros
    from store import limits as limits_store

    def money(flag: str, value: str | None) -> int | None:
        try:
            return usd_to_micros(value) if value is not None else None
        except ValueError as exc:
            raise System2Error(f"--{flag} {exc}") from None

    overrides = limits_store.LimitOverrides(
        quest_cap_micros=money("quest-cap-usd", quest_cap_usd),
        quest_ceiling_micros=money("quest-ceiling-usd", quest_ceiling_usd),
        daily_budget_micros=money("daily-usd", daily_usd),
        monthly_budget_micros=money("monthly-usd", monthly_usd),
        warn_pct=warn_pct,
        slow_pct=slow_pct,
        halt_pct=halt_pct,
        quests_per_minute=per_minute,
        max_running_quests=running,
    )
    s = settings()
    with app_db(s) as db, db.tenant(company) as tx:
        if companies_store.get(tx) is None:
            raise System2Error(f"no company {company}")
        try:
            replace(company_limits(tx, s), **overrides.changes())  # validates the result
        except ValueError as exc:
            raise System2Error(str(exc)) from None
        limits_store.put(tx, overrides)
        emit(company_limits(tx, s).__dict__)


@integration_app.command("connect")
def integration_connect(company_id: UUID, integration: str) -> None:
    """Run the provider's OAuth code flow for the company and store the tokens; prints the
    credential id. (For the demo provider, which approves at once.)"""
    import secrets as pysecrets

    import httpx

    from ingress.integrations import IntegrationTokens, connect
    from system2.catalog import INTEGRATIONS
    from system2.wiring import build_vault
    from workers.integrations.registry import oauth_client

    s = settings()
    spec = INTEGRATIONS.get(integration)
    if spec is None:
        raise System2Error(
            f"no integration named {integration!r}; known: {', '.join(sorted(INTEGRATIONS))}"
        )
    vault = build_vault(s, redis.Redis.from_url(s.redis_url))
    redirect = "http://127.0.0.1/oauth/callback"
    with httpx.Client(timeout=10) as http:
        oauth = oauth_client(s, spec, http)
        try:
            tokens = oauth.exchange_code(
                oauth.authorize(str(company_id), redirect, pysecrets.token_urlsafe(16)), redirect
            )
        except httpx.HTTPError as exc:
            raise System2Error(
                f"cannot reach {spec.title} at {s.demo_provider_url}: {type(exc).__name__}"
            ) from None
    body = IntegrationTokens(
        access_token=tokens.access.reveal(),
        refresh_token=tokens.refresh.reveal() if tokens.refresh else None,
        expires_at=tokens.expires_at,
        scopes=tokens.scopes,
        account=str(company_id),
    )
    with app_db(s) as db, db.tenant(company_id) as tx:
        if companies_store.get(tx) is None:
            raise System2Error(f"no company {company_id}")
        cred = connect(tx, vault, integration, body, connected_by="operator:cli")
    emit(cred.id)


@integration_app.command("list")
def integration_list(company: Annotated[UUID, typer.Option(help="company id")]) -> None:
    """The company's connected integrations (never their tokens), as JSON."""
    from ingress.integrations import view
    from store import credentials as credentials_store

    with app_db(settings()) as db, db.tenant(company) as tx:
        emit([view(c).model_dump(mode="json") for c in credentials_store.all_for_company(tx)])


@vault_app.command("new-key")
def vault_new_key() -> None:
    """Print one fresh KID=BASE64KEY entry for the secrets store (put it first to make it
    the primary, then run `system2 vault rewrap`)."""
    from datetime import UTC, datetime

    from vault import new_key_entry

    emit(new_key_entry(datetime.now(UTC)))


@vault_app.command("status")
def vault_status() -> None:
    """Per key id: how many ciphertexts use it and how many encryptions it made; the
    primary's age against S2_VAULT_ROTATE_DAYS."""
    from system2.vault_admin import key_usage

    s = settings()
    with app_db(s) as db:
        emit(key_usage(s, db, redis.Redis.from_url(s.redis_url)))


@vault_app.command("rewrap")
def vault_rewrap(
    wait: Annotated[bool, typer.Option(help="wait until no credential uses another key")] = False,
    timeout: Annotated[int, typer.Option(help="seconds to wait")] = 600,
) -> None:
    """Re-encrypt every credential under the primary key (a Dramatiq actor, per company,
    in batches; resumable and safe to run twice, beside live workers)."""
    from system2.vault_admin import queue_rewrap, wait_rewrapped

    s = settings()
    with app_db(s) as db:
        queued, primary = queue_rewrap(s, db)
        say(f"rewrap under {primary} queued for {queued} companies")
        if wait:
            wait_rewrapped(s, db, primary, timeout)
            say(f"every credential is under {primary}")


@vault_app.command("retire")
def vault_retire(kid: str) -> None:
    """Check that a key may leave the secrets store: refused while any credential uses it."""
    from system2.vault_admin import check_retire

    s = settings()
    with app_db(s) as db:
        check_retire(s, db, kid)
    say(f"{kid} protects no credential: remove it from S2_VAULT_KEYS, then restart the processes")


@token_app.command("mint")
def token_mint(
    user: Annotated[str, typer.Option(help="the user id (sub)")],
    ttl: Annotated[int, typer.Option(help="seconds until it expires")] = 900,
) -> None:
    """Mint an access token signed with S2_JWT_SECRET (not in production)."""
    from system2.tokens import mint

    s = settings()
    if s.production():
        raise System2Error("refusing to mint tokens in production; use Supabase Auth")
    emit(mint(s.jwt_secret.get_secret_value(), user, ttl_s=ttl, audience=s.jwt_audience))


@app.command()
def demo(
    quests_per_company: Annotated[int, typer.Option(help="quests each company submits")] = 3,
) -> None:
    """Run the whole job end to end on this machine's Redis and Postgres, printing it live."""
    from system2.demo import run

    run(settings(), quests_per_company=quests_per_company)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    try:
        app()
    except (System2Error, StoreError, MessagesError, GuardError, VaultError, ValueError) as exc:
        say(f"error: {exc}")
        sys.exit(1)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        say(f"error: cannot reach Postgres: {first}")
        sys.exit(1)
    except redis.RedisError as exc:
        say(f"error: cannot reach Redis: {type(exc).__name__}")
        sys.exit(1)
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)
