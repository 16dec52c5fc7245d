"""Exceptions that carry a user-facing message.

Every error a user can cause is raised as a :class:`MetanicheError` whose message is one
sentence naming the file, the column or row, and the fix (a :class:`ConfigError` may list
several such sentences, one per line). The CLI catches these in one place and prints the
message without a traceback.

Exit codes of the command line: 0 all ok; 1 a sample or a run-level step failed (or
``validate`` found an error in the inputs); 2 a usage or configuration error
(:attr:`MetanicheError.exit_code`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ConfigError", "InputError", "MetanicheError"]


class MetanicheError(Exception):
    """Base class of every user-facing error; ``str(err)`` is the message to print."""

    exit_code: int = 2


class InputError(MetanicheError):
    """A cell table, clinical table or annotation cannot be used as given."""


class ConfigError(MetanicheError, ValueError):
    """The configuration is malformed or holds an unknown key or bad value.

    Also a :class:`ValueError`, so that a notebook building a Params object with a bad value
    (``CompartmentParams(border_um=-5)``) gets the exception it expects. ``problems`` holds
    the individual problems when several were collected (one per line of the message).
    """

    def __init__(self, message: str, problems: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)
