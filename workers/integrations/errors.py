"""What a provider's answer means for the quest that made the call, beyond a tool's error."""

from __future__ import annotations

from workers.errors import NotConnected, TryLater


class ProviderRateLimited(TryLater):
    """The provider refused a call with 429: the call was not performed. Only the step that
    made it waits (``retry_after_ms``: what the provider said, if it did); the provider's
    circuit breaker, shared by every company, is not touched. ``limited`` names what the
    provider is limiting: this company's API calls (its token or installation), or, at the
    token endpoint, our client app's token requests."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_ms: int | None = None,
        limited: str = "this company's calls",
    ) -> None:
        super().__init__(message, retry_after_ms=retry_after_ms)
        self.limited = limited


class NeedsReconnect(NotConnected):
    """The provider refuses the company's credential even after the one refresh (or refused
    the refresh itself): the credential is marked as needing reconnection and the quest fails
    with this reason until a company admin connects the integration again."""

    def __init__(self, integration: str, why: str) -> None:
        super().__init__(f"the {integration} integration needs reconnecting: {why}")
        self.integration = integration
        self.why = why
