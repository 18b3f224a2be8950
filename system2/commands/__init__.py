"""The ``system2`` command's groups, one module each."""
