"""Errors a person can act on.

Every error joinedup raises for bad input or configuration derives from `JoinedupError`;
the CLI prints its message and exits non-zero without a traceback.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError


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


def describe_validation_error(
    err: ValidationError, name: Callable[[tuple[int | str, ...]], str] | None = None
) -> str:
    """A validation failure as `field.path: reason` parts (the first ten), for InputError;
    `name` gives the field's name as its user knows it (an option, a variable) instead."""
    parts = []
    for e in err.errors()[:10]:
        if name is not None and e["loc"]:
            loc = name(e["loc"])
        else:
            loc = ".".join(str(x) for x in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = err.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
