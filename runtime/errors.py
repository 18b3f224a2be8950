"""Errors of the runtime layer: the process was configured with something it cannot use."""


class ConfigurationError(Exception):
    """Base of every error raised by ``runtime``: a setting or a name the deployment gave
    that cannot be used. The message names what is wrong, never a secret's value."""
