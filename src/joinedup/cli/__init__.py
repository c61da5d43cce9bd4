"""The `joinedup` command line: the only place (with web/api) that knows about terminals."""

from joinedup.cli import commands as _commands  # noqa: F401 - registers every subcommand
from joinedup.cli.main import app, main

__all__ = ["app", "main"]
