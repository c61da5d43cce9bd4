"""The `joinedup` command line: the only place (with web/api) that knows about terminals.
Each subcommand's module is imported when it runs (`main.SUBCOMMANDS`)."""

from joinedup.cli.main import app, main

__all__ = ["app", "main"]
