"""A company's webhook endpoints and their deliveries (what the admins' routes do)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from system2.cli_support import app_db, company_tx, emit, say, settings
from system2.errors import System2Error

if TYPE_CHECKING:
    from store import TenantTx

app = typer.Typer(help="A company's webhook endpoints and deliveries.", no_args_is_help=True)
Company = Annotated[UUID, typer.Option(help="company id")]


@app.command("add")
def webhook_add(
    company: Company,
    url: str,
    event: Annotated[
        list[str],
        typer.Option(
            help="an event type (repeat): quest.succeeded, quest.failed, quest.cancelled, "
            "quest.halted, guard.tier_changed, integration.needs_reconnect"
        ),
    ],
    description: Annotated[str | None, typer.Option(help="what the endpoint is for")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="print the endpoint with its secret as JSON")
    ] = False,
) -> None:
    """Register an endpoint: prints its id (stdout) and its signing secret, shown this once
    (stderr; with --json both, on stdout)."""
    import redis

    from ingress.webhooks import WebhookCreated, WebhookSpec, register
    from runtime.wiring import build_vault

    s = settings()
    spec = WebhookSpec.model_validate(
        {"url": url, "event_types": event, "description": description}
    )
    vault = build_vault(s, redis.Redis.from_url(s.redis_url, socket_timeout=5))

    async def add() -> WebhookCreated:
        async with app_db(s) as db, company_tx(db, company) as tx:
            created = await register(
                tx, vault, spec, created_by="operator:cli", deployed=s.deployed()
            )
            await _audit(tx, "webhook.created", created.id, {"event_types": created.event_types})
            return created

    created = asyncio.run(add())
    if json_out:
        emit(created.model_dump(mode="json"))
        return
    emit(created.id)
    say(f"signing secret (shown once): {created.secret}")


@app.command("list")
def webhook_list(company: Company) -> None:
    """The company's endpoints (never their secrets), as JSON."""
    from ingress.webhooks import view
    from store import webhooks as webhooks_store
    from store.webhooks import Endpoint

    s = settings()

    async def listed() -> list[Endpoint]:
        async with app_db(s) as db, company_tx(db, company) as tx:
            return await webhooks_store.endpoints(tx)

    emit([view(e).model_dump(mode="json") for e in asyncio.run(listed())])


@app.command("remove")
def webhook_remove(company: Company, endpoint: UUID) -> None:
    """Remove an endpoint and its deliveries: nothing more is sent to it."""
    from store import webhooks as webhooks_store

    s = settings()

    async def remove() -> bool:
        async with app_db(s) as db, company_tx(db, company) as tx:
            if not await webhooks_store.remove_endpoint(tx, endpoint):
                return False
            await _audit(tx, "webhook.removed", endpoint, {})
            return True

    if not asyncio.run(remove()):
        raise System2Error(f"no webhook endpoint {endpoint} in company {company}")
    say(f"webhook endpoint {endpoint} removed")


@app.command("deliveries")
def webhook_deliveries(
    company: Company,
    endpoint: UUID,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="the next_cursor of the previous page")] = None,
) -> None:
    """The endpoint's deliveries, newest first, with their attempts and outcomes (JSON; not
    the events' data, which may quote the company's content)."""
    from ingress.webhooks import cursor_of, delivery_view
    from store import webhooks as webhooks_store
    from store.webhooks import Delivery

    if cursor is not None and not cursor.isdigit():
        raise System2Error("--cursor must be a next_cursor this command printed")
    s = settings()

    async def page() -> list[Delivery] | None:
        async with app_db(s) as db, company_tx(db, company) as tx:
            if await webhooks_store.endpoint(tx, endpoint) is None:
                return None
            return await webhooks_store.deliveries(
                tx, endpoint, before=int(cursor) if cursor else None, limit=limit
            )

    found = asyncio.run(page())
    if found is None:
        raise System2Error(f"no webhook endpoint {endpoint} in company {company}")
    # Without the event's data: it may quote the company's content (an audit row's
    # rationale), which engineers read only under a support grant; admins see it in the API.
    items = [delivery_view(d).model_dump(mode="json", exclude={"data"}) for d in found]
    emit({"items": items, "next_cursor": cursor_of(found, limit)})


async def _audit(tx: TenantTx, action: str, endpoint_id: UUID, data: dict[str, Any]) -> None:
    from store import activity as activity_store
    from store.activity import NewActivity

    row = NewActivity(
        idempotency_key=f"{action}:{uuid.uuid4()}",
        occurred_at=datetime.now(UTC),
        actor_type="operator",
        actor_id="cli",
        action=action,
        target=f"webhook:{endpoint_id}",
        rationale=None,
        originating_message_id=None,
        quest_id=None,
        payload=data,
    )
    await activity_store.append(tx, [row])
