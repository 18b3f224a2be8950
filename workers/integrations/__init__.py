"""Integrations: credentials, providers over HTTP, and the tools Ted calls through them."""
