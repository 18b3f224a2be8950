"""Sending one webhook request: to a checked address of the endpoint's host, never to
whatever the name resolves to when the connection is made (``runtime.webhook_urls``)."""

from __future__ import annotations

from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from runtime.settings import Settings
from runtime.webhook_urls import check_url, resolve

USER_AGENT = "System2-Webhooks/1"


def webhook_http(settings: Settings) -> httpx.AsyncClient:
    """The process's client for webhook endpoints: as the providers' one, it keeps no cookie
    and follows no redirect (a 3xx is a failed attempt), with bounded timeouts."""
    timeout = settings.webhook_timeout_s
    return httpx.AsyncClient(
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment: we connect to the checked address
    )


async def post_pinned(
    http: httpx.AsyncClient, url: str, payload: bytes, headers: dict[str, str], *, deployed: bool
) -> int:
    """POST ``payload`` and return the answer's status. The name is resolved once, here,
    every address it gave is checked (``EndpointRefused`` if one may not be called), and
    only those are connected to (DNS rebinding); TLS still verifies the certificate against
    the name, and ``Host`` is the URL's."""
    target = check_url(url, deployed=deployed)
    addresses = await resolve(target, deployed=deployed)
    original = httpx.URL(url)
    extensions: dict[str, Any] = {}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host
    fixed = {**headers, "host": original.netloc.decode("ascii"), "user-agent": USER_AGENT}
    for i, address in enumerate(addresses):
        request = http.build_request(
            "POST",
            original.copy_with(host=address),
            content=payload,
            headers=fixed,
            extensions=extensions,
        )
        try:
            response = await http.send(request, stream=True)
        except httpx.ConnectError:
            if i == len(addresses) - 1:
                raise
            continue  # the name's next address
        await response.aclose()  # the answer's body is not read: its status is enough
        return response.status_code
    raise AssertionError("resolve returns at least one address")
