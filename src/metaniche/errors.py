"""Exceptions that carry a user-facing message.

Every error a user can cause is raised as a :class:`MetanicheError` whose message is one
sentence naming the file, the column or row, and the fix. The CLI catches these in one place
and prints the message without a traceback.
"""

from __future__ import annotations

__all__ = ["ConfigError", "InputError", "MetanicheError"]


class MetanicheError(Exception):
    """Base class of every user-facing error; ``str(err)`` is the message to print."""

    exit_code: int = 2


class InputError(MetanicheError):
    """A cell table, clinical table or annotation cannot be used as given."""


class ConfigError(MetanicheError):
    """The TOML configuration is malformed or holds an unknown key or bad value."""
