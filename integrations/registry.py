"""Every provider Ted can work in. Adding one is a module in ``integrations.providers`` and a
line here; nothing else names a provider."""

from __future__ import annotations

from integrations.errors import UnknownIntegration
from integrations.providers import demo, github, slack
from integrations.spec import Provider

PROVIDERS: dict[str, Provider] = {
    p.name: p for p in (demo.PROVIDER, github.PROVIDER, slack.PROVIDER)
}


def provider(name: str) -> Provider:
    """The provider called ``name``, or ``UnknownIntegration`` naming those there are."""
    found = PROVIDERS.get(name)
    if found is None:
        raise UnknownIntegration(f"no integration named {name!r}; known: {', '.join(PROVIDERS)}")
    return found
