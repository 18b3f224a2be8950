"""Email over SMTP: the notices an incident sends its affected admins (``system2 incident``).

The server is one URL, ``S2_SMTP_URL``: ``smtp://host[:25]`` (plain, dev and test only),
``smtp+starttls://user:pass@host[:587]`` or ``smtps://host[:465]`` (TLS from the first byte);
``?cafile=/path/ca.pem`` trusts a private CA besides the system's. The password lives in a
``SecretStr`` and no error here names the URL.

A send either ends accepted, or not sent (the server said no, or we never reached the DATA
phase), or uncertain (the connection broke while the message was being handed over): only
"not sent" may be tried again without risking a second email.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
from pydantic import SecretStr

from runtime.errors import ConfigurationError

Security = Literal["plain", "starttls", "tls"]
SCHEMES: dict[str, tuple[Security, int]] = {
    "smtp": ("plain", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
# ASCII addresses only (no SMTPUTF8): a dot-atom local part and a domain of DNS labels.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")


class BadMailSetting(ConfigurationError):
    """``S2_SMTP_URL`` or ``S2_MAIL_FROM`` cannot be used; the message never holds the value.
    Not a ``ValueError``, so that pydantic lets it through as it is, without the input."""


def address(text: str) -> str:
    """``text`` if it is an email address we can send to; ValueError saying why not."""
    if len(text) > 254 or not _ADDRESS.fullmatch(text):
        raise ValueError(f"{text[:80]!r} is not an email address (name@example.com)")
    return text


@dataclass(frozen=True)
class MailServer:
    host: str
    port: int
    security: Security
    username: str | None = None
    password: SecretStr | None = None
    cafile: str | None = None

    def tls_context(self) -> ssl.SSLContext | None:
        if self.security == "plain":
            return None
        context = ssl.create_default_context()
        if self.cafile:
            context.load_verify_locations(cafile=self.cafile)
        return context


def mail_server(url: str, name: str = "S2_SMTP_URL") -> MailServer:
    """The server ``url`` names; ``BadMailSetting`` naming what is wrong, never the URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise BadMailSetting(f"{name} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BadMailSetting(f"{name} must be an smtp://, smtp+starttls:// or smtps:// URL")
    if not parts.hostname or parts.path not in ("", "/") or parts.fragment:
        raise BadMailSetting(f"{name} must be scheme://[user:password@]host[:port]")
    query = parse_qs(parts.query, keep_blank_values=True)
    if set(query) - {"cafile"} or len(query.get("cafile", [])) > 1:
        raise BadMailSetting(f"{name} takes one parameter only: cafile")
    security, default_port = SCHEMES[scheme]
    password = unquote(parts.password) if parts.password is not None else None
    return MailServer(
        host=parts.hostname,
        port=port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=SecretStr(password) if password is not None else None,
        cafile=query["cafile"][0] if "cafile" in query else None,
    )


class MailError(ConfigurationError):  # under runtime's root, as every error of the layer
    """A message that did not go out. ``uncertain``: the server may have taken it (never
    send it again unasked); otherwise it was not sent, and ``transient`` says whether trying
    again may help. The reason is the server's reply or the error's class and first line."""

    def __init__(
        self, reason: str, *, transient: bool, uncertain: bool = False, attempts: int = 1
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.uncertain = uncertain
        self.attempts = attempts


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"[:300]
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _code(exc: BaseException) -> int | None:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return exc.recipients[0].code
    return exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else None


def _not_sent(exc: BaseException) -> MailError:
    code = _code(exc)
    return MailError(_reason(exc), transient=code is None or 400 <= code < 500)


async def send(
    server: MailServer, message: EmailMessage, recipient: str, *, timeout: float = 30
) -> None:
    """Hand ``message`` to the server for ``recipient`` alone (whatever its headers name);
    ``MailError`` when it is not accepted."""
    smtp = aiosmtplib.SMTP(
        hostname=server.host,
        port=server.port,
        use_tls=server.security == "tls",
        start_tls=server.security == "starttls",
        tls_context=server.tls_context(),
        username=server.username,
        password=server.password.get_secret_value() if server.password else None,
        timeout=timeout,
    )
    try:
        await smtp.connect()
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise _not_sent(exc) from None
    try:
        await smtp.send_message(message, recipients=[recipient])
    except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as exc:
        raise _not_sent(exc) from None  # the server answered: it did not take the message
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise MailError(_reason(exc), transient=False, uncertain=True) from None
    finally:
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()


async def send_retrying(
    server: MailServer,
    message: EmailMessage,
    recipient: str,
    *,
    attempts: int = 3,
    backoff_s: float = 1.0,
    timeout: float = 30,
) -> int:
    """``send``, tried again after a transient refusal (waiting ``backoff_s``, doubling);
    returns the attempts it took. The last ``MailError`` carries the attempts made."""
    for attempt in range(1, attempts + 1):
        try:
            await send(server, message, recipient, timeout=timeout)
        except MailError as exc:
            exc.attempts = attempt
            if not exc.transient or attempt == attempts:
                raise
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
        else:
            return attempt
    raise AssertionError("unreachable")  # pragma: no cover
