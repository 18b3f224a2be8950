"""Each provider's settings in one deployment: where its API and OAuth endpoints are, our
app's client id and secret there, and whether it is offered at all.

Read from ``S2_<NAME>_PROVIDER_URL``, ``S2_<NAME>_OAUTH_URL``, ``S2_<NAME>_CLIENT_ID``,
``S2_<NAME>_CLIENT_SECRET`` and ``S2_<NAME>_ENABLED`` (``runtime.settings`` hands this module
the environment), so a new provider needs no new setting of its own. In dev and test every
provider is offered, at its defaults (the provider's own URLs — the demo's is its
stand-in's — and the public dev client; tests and the demo point the URLs at stand-ins); in
staging and production only a provider whose client id is set, never a ``dev_only`` one.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr

from integrations.spec import Provider

FIELDS = ("PROVIDER_URL", "OAUTH_URL", "CLIENT_ID", "CLIENT_SECRET", "ENABLED")
MIN_CLIENT_SECRET_BYTES = 20
_FALSE = frozenset({"0", "false", "no", "off"})


class ProviderSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    api_url: str
    oauth_url: str
    client_id: str
    client_secret: SecretStr
    enabled: bool
    configured: frozenset[str] = frozenset()  # which of the variables were set


def prefix(provider: Provider) -> str:
    return f"S2_{provider.name.upper()}_"


def read(provider: Provider, environ: Mapping[str, str], *, deployed: bool) -> ProviderSettings:
    """``provider``'s settings from ``environ``."""
    head = prefix(provider)
    given = {name: environ[head + name] for name in FIELDS if environ.get(head + name)}
    enabled_text = given.get("ENABLED")
    if enabled_text is not None:
        enabled = enabled_text.strip().lower() not in _FALSE
    else:
        enabled = not deployed or ("CLIENT_ID" in given and not provider.dev_only)
    return ProviderSettings(
        api_url=given.get("PROVIDER_URL", provider.api_url),
        oauth_url=given.get("OAUTH_URL") or _same_server(provider, given) or provider.oauth_url,
        client_id=given.get("CLIENT_ID", provider.client_id),
        client_secret=SecretStr(given.get("CLIENT_SECRET", provider.client_secret)),
        enabled=enabled,
        configured=frozenset(given),
    )


def _same_server(provider: Provider, given: Mapping[str, str]) -> str | None:
    """A provider whose API and OAuth endpoints share a server moves both with its URL."""
    return given.get("PROVIDER_URL") if provider.api_url == provider.oauth_url else None


def deployed_problems(provider: Provider, s: ProviderSettings) -> list[str]:
    """What staging and production refuse in ``provider``'s settings (names, never values)."""
    head = prefix(provider)
    if provider.dev_only:
        if s.enabled or s.configured:
            return [f"{head}* is set: the {provider.name} integration is for dev and test only"]
        return []
    if not s.enabled:
        return []
    problems = [_url_problem(head + "PROVIDER_URL", s.api_url)]
    problems.append(_url_problem(head + "OAUTH_URL", s.oauth_url))
    secret = s.client_secret.get_secret_value()
    if "CLIENT_ID" not in s.configured:
        problems.append(f"{head}CLIENT_ID is not set")
    if secret == provider.client_secret:
        problems.append(f"{head}CLIENT_SECRET is the public dev default")
    elif len(secret.encode()) < MIN_CLIENT_SECRET_BYTES:
        problems.append(f"{head}CLIENT_SECRET is shorter than {MIN_CLIENT_SECRET_BYTES} bytes")
    return [p for p in problems if p]


def _url_problem(name: str, url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return f"{name} is not a valid URL"
    if parts.scheme.lower() != "https":
        return f"{name} must be an https:// URL (TLS)"
    if parts.username or parts.password:  # httpx would send them instead of the company's token
        return f"{name} must not carry a user or password"
    return None
