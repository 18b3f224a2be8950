"""Webhooks: signed deliveries of a company's events to the endpoints its admins registered
(``store.webhooks`` holds them; ``dispatcher`` sends them)."""
