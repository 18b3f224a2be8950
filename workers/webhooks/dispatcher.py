"""Sending a company's webhook deliveries: claimed from Postgres, signed, posted, recorded.

``dispatch`` runs for one company when nudged (a ``DispatchWebhooks`` message: the audit
actor sends one after writing an event, and a failed attempt sends a delayed one for its
retry). The nudge only says "look": the deliveries are rows, claimed with a lease, so a lost
nudge is made up by the sweep (every ``S2_WEBHOOK_SWEEP_S``, one worker nudges each company
with deliveries due), a repeated one sends nothing twice, and a worker that dies mid-send
leaves its delivery to be claimed again when the lease ends: at least once, with the same
``webhook-id``.

Retries follow ``S2_WEBHOOK_RETRY_SCHEDULE_S``; after the last, the delivery is given up and
the quest's next delivery to that endpoint may go (``store.webhooks.due``). An endpoint whose
last ``S2_WEBHOOK_DISABLE_AFTER`` deliveries were each given up, none delivered between, is
disabled, with an audit row: each was tried for most of a day, so the endpoint has failed at
least that long on several events; counting whole given-up deliveries (not attempts) means a
bad hour, or one event it chokes on, never does it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from uuid import UUID

import httpx
import structlog
from redis.asyncio import Redis

from messages import Actor, ActorType, DispatchWebhooks, Envelope, PublishFailed
from messages.redis_keys import WEBHOOK_SWEEP_LOCK
from runtime.settings import Settings
from runtime.webhook_urls import EndpointRefused
from store import Database, TenantTx
from store import companies as companies_store
from store import webhooks as webhooks_store
from store.activity import NewActivity
from store.activity import append as append_activity
from store.webhooks import Delivery
from vault import Vault, VaultError
from vault.webhook_secrets import key_bytes, unseal
from workers import worker_metrics
from workers.elected import every_interval
from workers.errors import TryLater
from workers.publisher import QueuePublisher
from workers.webhooks import signing
from workers.webhooks.sender import post_pinned

log = structlog.get_logger(__name__)
WEBHOOKS_ACTOR = Actor(type=ActorType.system, id="webhooks")
BATCH = 20  # deliveries sent at once by one message
BATCHES = 10  # then the rest goes to a new message: well within the actor's time limit


class WebhookDispatcher:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        publisher: QueuePublisher,
        client: Redis,
        vault: Vault | None,
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self.db = db
        self.publisher = publisher
        self.redis = client
        self.vault = vault
        self.http = http
        self.schedule = settings.webhook_retry_schedule_s
        self.lease_s = settings.webhook_timeout_s + 30.0

    async def dispatch(self, company_id: UUID) -> int:
        """Send every delivery of the company that is due, in order per quest and endpoint;
        returns how many attempts were made."""
        if self.vault is None:
            raise TryLater("this worker has no vault keys (S2_VAULT_KEYS)", retry_after_ms=60_000)
        made = 0
        for _ in range(BATCHES):
            claimed = await self.db.in_tenant(
                company_id,
                lambda tx: webhooks_store.due(tx, limit=BATCH, lease_s=self.lease_s),
            )
            if not claimed:
                return made
            await asyncio.gather(*(self._attempt(company_id, d) for d in claimed))
            made += len(claimed)
        await self.nudge(company_id)  # a backlog: the rest in a message of its own
        return made

    async def nudge(self, company_id: UUID, *, delay_s: float | None = None) -> None:
        env = Envelope[DispatchWebhooks](
            company_id=company_id,
            actor=WEBHOOKS_ACTOR,
            correlation_id=uuid.uuid4(),
            payload=DispatchWebhooks(),
        )
        delay_ms = int(delay_s * 1000) + 100 if delay_s is not None else None
        await self.publisher.publish(env, delay_ms=delay_ms)

    async def run_sweeps(self) -> None:
        """Every ``S2_WEBHOOK_SWEEP_S``, while this process holds the lock, nudge each
        company that has a delivery due (one of the worker process's supervised tasks)."""
        await every_interval(
            self.redis,
            WEBHOOK_SWEEP_LOCK,
            self.settings.webhook_sweep_s,
            self.sweep,
            skipped=(PublishFailed,),
        )

    async def sweep(self) -> int:
        async with self.db.connection() as conn:
            companies = await companies_store.all_ids(conn)
        nudged = 0
        for company_id in companies:
            if await self.db.in_tenant(company_id, webhooks_store.has_due):
                await self.nudge(company_id)
                nudged += 1
        return nudged

    async def _attempt(self, company_id: UUID, delivery: Delivery) -> None:
        status, error = await self._send(company_id, delivery)
        bound = log.bind(
            delivery_id=str(delivery.id),
            endpoint_id=str(delivery.endpoint_id),
            event_type=delivery.event_type,
            attempt=delivery.attempts + 1,
        )
        if error is None:
            assert status is not None
            await self.db.in_tenant(
                company_id, lambda tx: webhooks_store.delivered(tx, delivery, status)
            )
            worker_metrics.WEBHOOK_ATTEMPTS.labels("delivered").inc()
            bound.info("webhook delivered", status=status)
            return
        retry_in = (
            self.schedule[delivery.attempts] if delivery.attempts < len(self.schedule) else None
        )

        async def failed(tx: TenantTx) -> None:
            streak = await webhooks_store.attempt_failed(
                tx, delivery, status=status, error=error, retry_in_s=retry_in
            )
            if streak is not None and streak >= self.settings.webhook_disable_after:
                await self._disable(tx, delivery, streak)

        await self.db.in_tenant(company_id, failed)
        worker_metrics.WEBHOOK_ATTEMPTS.labels(
            "retry" if retry_in is not None else "given_up"
        ).inc()
        bound.warning("webhook attempt failed", status=status, error=error, retry_in_s=retry_in)
        if retry_in is not None:
            await self.nudge(company_id, delay_s=retry_in)
        else:  # given up: the quest's next delivery to the endpoint may go now
            await self.nudge(company_id)

    async def _disable(self, tx: TenantTx, delivery: Delivery, streak: int) -> None:
        reason = f"its last {streak} deliveries failed after every retry"
        endpoint = await webhooks_store.disable(tx, delivery.endpoint_id, reason)
        if endpoint is None:
            return
        await append_activity(
            tx,
            [
                NewActivity(
                    idempotency_key=f"webhook.disabled:{endpoint.id}:{endpoint.disabled_at}",
                    occurred_at=datetime.now(UTC),
                    actor_type=WEBHOOKS_ACTOR.type.value,
                    actor_id=WEBHOOKS_ACTOR.id,
                    action="webhook.disabled",
                    target=f"webhook:{endpoint.id}",
                    rationale=reason,
                    originating_message_id=None,
                    quest_id=None,
                    payload={"failed_deliveries": streak, "last_delivery_id": str(delivery.id)},
                )
            ],
        )
        worker_metrics.WEBHOOK_ENDPOINTS_DISABLED.inc()
        log.warning("webhook endpoint disabled", endpoint_id=str(endpoint.id), reason=reason)

    async def _send(self, company_id: UUID, delivery: Delivery) -> tuple[int | None, str | None]:
        """One attempt: the answer's status, and None or what went wrong (our words: never
        the URL, which may hold a token, nor the answer's body)."""
        endpoint = await self.db.in_tenant(
            company_id, lambda tx: webhooks_store.endpoint(tx, delivery.endpoint_id)
        )
        if endpoint is None or not endpoint.enabled:
            return None, "the endpoint was removed or disabled"
        assert self.vault is not None
        try:
            secret = unseal(
                self.vault, endpoint.secret, company_id=company_id, endpoint_id=endpoint.id
            )
        except VaultError as exc:
            return None, f"the signing secret cannot be opened: {type(exc).__name__}"
        msg_id = str(delivery.id)
        payload = signing.body(delivery.event_type, delivery.occurred_at, delivery.data)
        headers = signing.headers(key_bytes(secret), msg_id, int(time.time()), payload)
        return await self._post_bounded(endpoint.url, payload, headers)

    async def _post_bounded(
        self, url: str, payload: bytes, headers: dict[str, str]
    ) -> tuple[int | None, str | None]:
        error: str | None
        status: int | None = None
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                status = await post_pinned(
                    self.http, url, payload, headers, deployed=self.settings.deployed()
                )
            error = None if 200 <= status < 300 else f"answered HTTP {status}"
        except EndpointRefused as exc:
            error = f"refused: {exc}"
        except (TimeoutError, httpx.TimeoutException):
            error = "timed out"
        except httpx.HTTPError as exc:
            error = f"could not connect: {type(exc).__name__}"
        return status, error
