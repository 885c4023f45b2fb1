"""The errors a user can fix: every entry point reports them as one ``error: ...`` line and exit code 2.

Anything else that escapes is a bug and keeps its traceback.  This module imports nothing heavy, so a command
whose arguments are wrong fails in well under a second, before MindSpore is loaded.
"""

from __future__ import annotations

import sys
from typing import Callable

__all__ = ["UserError", "ConfigError", "DataError", "CheckpointError", "ExportError", "run_command"]


class UserError(ValueError):
    """Bad input: a value, file or folder the user gave; the message says which and what to do."""


class ConfigError(UserError):
    """A bad key, value or file in the configuration; the message says which and where from."""


class DataError(UserError):
    """A data set that is missing, empty, unreadable or inconsistent with the configuration."""


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or does not fit the model or the run."""


class ExportError(UserError):
    """An export that cannot be done (format not available here, output exists, verification failed)."""


def run_command(body: Callable[[], object]) -> int:
    """Run an entry point's ``body``; a :class:`UserError` becomes one line on stderr and exit code 2.

    Args:
        body: the command's work.
    """
    try:
        body()
    except UserError as exc:
        message = " ".join(str(exc).split())  # one line, however the message was built
        sys.stderr.write(f"error: {message}\n")
        return 2
    return 0
