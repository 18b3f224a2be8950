"""Where a provider sends an admin's browser back after the consent page: the end of the
OAuth connect flow (``ingress.oauth_flow``). No bearer token here: the signed, single-use
state is the credential. Its answers are short HTML pages for a person, with a machine-
readable ``data-reason`` and nothing from the provider echoed."""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from ingress import oauth_flow
from ingress.deps import Deps, IngressDeps, oauth_states
from ingress.oauth_flow import ConnectRefused
from ingress.problems import documented
from integrations import UnknownIntegration, provider

router = APIRouter(tags=["integrations"])

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><main data-reason="{reason}"><h1>{title}</h1><p>{text}</p></main></body></html>
"""
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'",
    "Referrer-Policy": "no-referrer",  # the code and state stay out of any onward request
}


def _page(status: int, reason: str, title: str, text: str) -> HTMLResponse:
    body = _PAGE.format(reason=reason, title=html.escape(title), text=html.escape(text))
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


@router.get(oauth_flow.CALLBACK_PATH, response_class=HTMLResponse, responses=documented(422))
async def oauth_callback(
    integration: Annotated[str, Path(max_length=41, pattern=r"^[a-z][a-z0-9_]{0,40}$")],
    deps: Deps,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """The provider's redirect: ``code`` and ``state``, or ``error`` (the admin declined)."""
    try:
        title = await _connect(deps, integration, code, state, declined=bool(error))
    except ConnectRefused as exc:
        status = {"unknown_integration": 404, "connect_failed": 503}.get(exc.reason, 400)
        return _page(status, exc.reason, "Not connected", str(exc))
    return _page(200, "connected", f"{title} is connected", "You can close this window.")


async def _connect(
    deps: IngressDeps, integration: str, code: str | None, state: str | None, *, declined: bool
) -> str:
    """The integration's title once connected; ``ConnectRefused`` says why not."""
    try:
        oauth_flow.offered(deps.settings, integration)
    except UnknownIntegration:
        raise ConnectRefused("unknown_integration", "No such integration here.") from None
    title = provider(integration).title
    if not state:
        raise ConnectRefused("state_missing", "The link has no state.")
    if deps.vault is None:
        raise ConnectRefused("vault_unavailable", "Connections cannot be stored now.")
    states = oauth_states(deps)
    if declined or not code:
        grant, _ = await run_in_threadpool(states.redeem, integration, state)
        await run_in_threadpool(states.report, grant.nonce, "declined")
        raise ConnectRefused("declined", f"{title} was not connected.")
    await oauth_flow.complete(
        deps.settings, states, deps.db, deps.vault, deps.publisher, integration, code, state
    )
    return title
