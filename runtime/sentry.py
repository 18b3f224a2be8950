"""Error reports to Sentry, redacted before they leave the process.

``init`` starts sentry-sdk when ``SENTRY_DSN`` is set (the ingress calls it from ``build``,
each worker process from ``workers.app.main``; the worker's consumer reports a message's
unforeseen failure itself, in the message's own scope). The SDK's own scrubber is not enough (see FIELD-NOTES): it
matches keys exactly, and never looks at exception messages, tags, contexts or breadcrumb
messages. So:

- ``send_default_pii=False``, ``include_local_variables=False`` (frame locals are never
  sent), ``max_request_body_size="never"`` (no request bodies);
- the SDK's ``EventScrubber`` stays on, recursive, with our key list added; the newer
  ``data_collection`` option is *not* used — passing it switches the scrubber off;
- ``before_send`` and ``before_breadcrumb`` pass the whole event or breadcrumb (exception
  values, log messages and their parameters, request headers, cookies and query string,
  extra, contexts, tags, breadcrumbs, frames) through ``runtime.redact.redact``, the same
  function the log chain uses;
- only the integrations chosen here run (``auto_enabling_integrations=False``): the
  Anthropic one would report every API error of a call as an unhandled exception, including
  the overloads and cancels the workers handle and retry; the Redis one would add a
  breadcrumb per Redis command and push the log lines out of the event's 100 breadcrumbs.

What a developer needs stays: exception type and stack (functions, files, lines), the
release (``S2_RELEASE``, the deployed commit, else ``system2-workers@<version>``), the
environment, and as tags the ids ``runtime.logs.bind`` put on the log context — company,
quest, message, correlation and request ids.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import sentry_sdk
import structlog
from sentry_sdk._types import AnnotatedValue
from sentry_sdk.integrations import Integration
from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

from runtime.redact import redact, redact_object
from runtime.settings import Settings

Component = Literal["ingress", "worker"]

# Ids bound to the log context that become tags when the code that raised did not set them.
TAG_KEYS = (
    "company_id",
    "quest_id",
    "message_id",
    "correlation_id",
    "request_id",
    "dramatiq_message_id",
    "step",
    "actor",
)
# The SDK's scrubber also looks for these (it matches keys exactly, lower-cased).
EXTRA_DENYLIST = [
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "x-api-key",
    "api-key",
    "anthropic_api_key",
    "jwt_secret",
    "s2_jwt_secret",
    "vault_keys",
    "s2_vault_keys",
    "dsn",
    "sentry_dsn",
    "ciphertext",
    "set-cookie",
]
# Loggers whose errors another integration already reports, with more context.
DUPLICATE_LOGGERS = ("uvicorn.error",)


def init(settings: Settings, *, component: Component) -> bool:
    """Start reporting errors if a DSN is configured; True if it did."""
    if settings.sentry_dsn is None or not settings.sentry_dsn.get_secret_value().strip():
        return False
    integrations: list[Integration] = [
        LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)
    ]
    integrations += _worker_integrations() if component == "worker" else _ingress_integrations()
    with warnings.catch_warnings():
        # 2.x deprecates send_default_pii for data_collection, which turns the scrubber off.
        warnings.filterwarnings("ignore", "The send_default_pii option is deprecated")
        _start(settings, integrations)
    for name in DUPLICATE_LOGGERS:
        ignore_logger(name)
    sentry_sdk.get_global_scope().set_tag("component", component)
    return True


def report(logger: Any, event: str, *, group: Sequence[str], **fields: Any) -> None:
    """An error line that is also one Sentry event (through the logging integration, when
    Sentry is on), grouped by ``group`` rather than by message and stack: e.g. every quest
    failed by the same kind of Claude error in one issue, not one issue per quest."""
    with sentry_sdk.new_scope() as scope:
        scope.fingerprint = list(group)
        logger.error(event, **fields)


def _start(settings: Settings, integrations: list[Integration]) -> None:
    assert settings.sentry_dsn is not None
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment or settings.env,
        release=settings.sentry_release,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        event_scrubber=EventScrubber(denylist=[*DEFAULT_DENYLIST, *EXTRA_DENYLIST], recursive=True),
        before_send=before_send,
        before_send_transaction=before_send,
        before_breadcrumb=before_breadcrumb,
        integrations=integrations,
        auto_enabling_integrations=False,  # only the integrations chosen here
    )


def _ingress_integrations() -> list[Integration]:
    from sentry_sdk.integrations.fastapi import FastApiIntegration
    from sentry_sdk.integrations.starlette import StarletteIntegration

    return [StarletteIntegration(), FastApiIntegration()]


def _worker_integrations() -> list[Integration]:
    """Breadcrumbs of HTTP calls: httpx (providers), httpx2 (the anthropic SDK)."""
    from sentry_sdk.integrations.httpx import HttpxIntegration
    from sentry_sdk.integrations.httpx2 import Httpx2Integration

    return [HttpxIntegration(), Httpx2Integration()]


def _opaque(value: object) -> object:
    """Objects the SDK put in the event itself keep their type, their content redacted."""
    if isinstance(value, AnnotatedValue):
        return AnnotatedValue(redact(value.value, opaque=_opaque), value.metadata)
    return redact_object(value)


def _structlog_fields(hint: dict[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    """A structlog line's event and fields (its stdlib record carries them as a dict)."""
    record = (hint or {}).get("log_record")
    if record is None or not isinstance(record.msg, dict):
        return None
    fields = {k: v for k, v in record.msg.items() if not k.startswith("_")}
    return str(fields.pop("event", "")), fields


def before_send(event: Any, hint: dict[str, Any]) -> Any:
    structured = _structlog_fields(hint)
    if structured is not None:
        message, fields = structured
        event["logentry"] = {"message": message, "params": []}
        event["extra"] = {
            **fields,
            **{k: v for k, v in event.get("extra", {}).items() if not k.startswith("_")},
        }
    tags = event.setdefault("tags", {})
    bound = structlog.contextvars.get_contextvars()
    for key in TAG_KEYS:
        if key not in tags and bound.get(key) is not None:
            tags[key] = str(bound[key])
    return redact(event, opaque=_opaque)


def before_breadcrumb(crumb: Any, hint: dict[str, Any] | None) -> Any:
    structured = _structlog_fields(hint)
    if structured is not None:
        crumb["message"], crumb["data"] = structured
    return redact(crumb, opaque=_opaque)
