"""Where a webhook may be sent: the URL rules (at registration and again at delivery) and
the address rules (at delivery, on every address the name resolves to).

In staging and production an endpoint is ``https`` and every address it resolves to is
global: no private, loopback, link-local, shared, reserved or multicast address, so a
company cannot make our workers call our own network. The delivery connects to an address
it checked (``resolve``), never resolving the name again: a name that answers a public
address to the check and a private one to the connection (DNS rebinding) gains nothing. In
dev and test, ``http`` and loopback are allowed (the tests' receiver is on loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from runtime.errors import ConfigurationError

URL_MAX = 2048


class EndpointRefused(ConfigurationError):
    """The endpoint may not be called: ``reason`` is the machine-readable word, the message
    says why in words (never with the URL's query, which may hold a token)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written (a name, or an address without brackets)
    port: int


def check_url(url: str, *, deployed: bool) -> Target:
    """The URL's scheme, host and port if it may be an endpoint; else ``EndpointRefused``."""
    if len(url) > URL_MAX:
        raise EndpointRefused("url_too_long", f"the URL is longer than {URL_MAX} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise EndpointRefused("url_invalid", "the URL holds whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise EndpointRefused("url_invalid", "the URL cannot be read") from None
    schemes = ("https",) if deployed else ("https", "http")
    if parts.scheme not in schemes:
        raise EndpointRefused("url_scheme", f"the URL must be {' or '.join(schemes)}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise EndpointRefused("url_credentials", "the URL must not carry a user or password")
    if not parts.hostname:
        raise EndpointRefused("url_invalid", "the URL names no host")
    if parts.fragment:
        raise EndpointRefused("url_invalid", "the URL must not have a fragment")
    host = parts.hostname
    if deployed:
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise EndpointRefused("address_not_global", "the URL names a local host")
        with contextlib.suppress(ValueError):  # a name: its addresses are checked at delivery
            check_address(ipaddress.ip_address(host), deployed=True)
    return Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80))


def check_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, deployed: bool
) -> None:
    """``EndpointRefused`` for an address a deployed worker must not call."""
    if not deployed:
        return
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_global or address.is_multicast:
        raise EndpointRefused(
            "address_not_global", "the endpoint resolves to an address that is not public"
        )


async def resolve(target: Target, *, deployed: bool) -> list[str]:
    """The addresses of the target's host, every one checked; the caller connects to one of
    them (and no other). ``EndpointRefused`` when one is refused or none is found."""
    try:
        literal = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(literal, deployed=deployed)
        return [str(literal)]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError):
        raise EndpointRefused("dns_failed", "the endpoint's host name does not resolve") from None
    addresses = list(
        dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
    )
    if not addresses:
        raise EndpointRefused("dns_failed", "the endpoint's host name does not resolve")
    for address in addresses:  # every one: a mix of public and private is refused
        check_address(address, deployed=deployed)
    return [str(a) for a in addresses]
