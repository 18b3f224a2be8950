"""The operator console: a static page the ingress serves at ``/console``.

It holds no data and needs no token to load (it is not under ``/v1``, so ``BearerAuth`` never
sees it): the page signs in in the browser with the user's Supabase token and calls the
``/v1`` API of this same origin with it, which checks the token and the membership as it does
for every caller. Its files are package data (``ingress/console/``) and built by no tool.

Served under a strict Content-Security-Policy: scripts, styles and fetches from this origin
only, no inline script or style, no plugin, no frame, no form posts, no base URL — so even a
value the page rendered carelessly could not run. The page builds its DOM from text alone.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import Response

router = APIRouter(tags=["console"], include_in_schema=False)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page's URL may hold a token in its fragment
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cache-Control": "no-cache",  # revalidated, so a deploy's new console is seen at once
}
PAGE = "index.html"
JS = "text/javascript; charset=utf-8"
ASSETS = {  # every file the page loads, and its type; nothing else is served
    "console.js": JS,  # the page (an ES module), which imports:
    "api.js": JS,  # the API and its live streams, this origin only, with the token
    "dom.js": JS,  # building the page from text
    "timeline.js": JS,  # a quest's events as lines of text
    "panels.js": JS,  # the guard, the integrations and the audit trail of a company
    "console.css": "text/css; charset=utf-8",
}


def console_file(name: str) -> bytes:
    """A file of the console as the installed package holds it."""
    return resources.files("ingress").joinpath("console", name).read_bytes()


@router.get("/console", operation_id="show_console")
@router.get("/console/", operation_id="show_console_slash")
def console_page() -> Response:
    return Response(
        console_file(PAGE), media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS
    )


@router.get("/console/{name}", operation_id="get_console_asset")
def console_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file of the console")
    return Response(console_file(name), media_type=media_type, headers=SECURITY_HEADERS)
