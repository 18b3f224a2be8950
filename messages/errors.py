"""Errors of the wire contract."""


class MessagesError(Exception):
    """Base of every error raised by ``messages``."""


class BadMessage(MessagesError):
    """A message that can never be processed as sent: dead-letter it with this reason."""


class PublishFailed(MessagesError):
    """The broker did not take the message; nothing was enqueued."""
