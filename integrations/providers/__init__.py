"""One module per provider, each declaring its ``PROVIDER`` (see ``integrations.spec``)."""
