"""The providers Ted works in (GitHub, Slack, the demo task list), as data and a little code.

Under the workers (which run the tools) and the ingress (which runs the OAuth connect flow),
over the vault: a provider's declaration, the one place that turns a tool's input into a
request (``routes``, ``schema``), its OAuth client and its rate-limit headers. Nothing here
holds a company's data or a connection.
"""

from integrations.config import ProviderSettings
from integrations.errors import (
    IntegrationError,
    OAuthError,
    RouteError,
    SchemaError,
    TokenEndpointTrouble,
    UnknownIntegration,
    UnsafePath,
)
from integrations.oauth import OAuthClient, TokenSet, authorize_url, pkce_pair, whoami
from integrations.registry import PROVIDERS, provider
from integrations.routes import ProviderBase, ProviderRequest, RequestBuilder, Route
from integrations.spec import (
    Answer,
    Effect,
    Lookup,
    OAuthSpec,
    Provider,
    ToolOutcome,
    ToolSpec,
    Verdict,
)

__all__ = [
    "PROVIDERS",
    "Answer",
    "Effect",
    "IntegrationError",
    "Lookup",
    "OAuthClient",
    "OAuthError",
    "OAuthSpec",
    "Provider",
    "ProviderBase",
    "ProviderRequest",
    "ProviderSettings",
    "RequestBuilder",
    "Route",
    "RouteError",
    "SchemaError",
    "TokenEndpointTrouble",
    "TokenSet",
    "ToolOutcome",
    "ToolSpec",
    "UnknownIntegration",
    "UnsafePath",
    "Verdict",
    "authorize_url",
    "pkce_pair",
    "provider",
    "whoami",
]
