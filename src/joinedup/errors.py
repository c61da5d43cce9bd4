"""Errors a person can act on.

Every error joinedup raises for bad input or configuration derives from `JoinedupError`;
the CLI prints its message and exits non-zero without a traceback.
"""

from __future__ import annotations


class JoinedupError(Exception):
    """Base for errors caused by input, configuration or environment, not by a bug."""


class InputError(JoinedupError):
    """A file, row or field supplied by the user is wrong; the message says where and why."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


class ConfigurationError(JoinedupError):
    """A setting or option is missing or inconsistent."""
