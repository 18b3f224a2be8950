"""Errors of the runtime layer: something the process was configured or asked for that it
does not have."""


class ConfigurationError(Exception):
    """Base of every error raised by ``runtime``: a setting that cannot be used. The message
    names what is wrong, never a secret's value."""
