"""Registers every subcommand group on the root app."""

from __future__ import annotations

from joinedup.cli import footprint as _footprint
from joinedup.cli.main import app as main_app

main_app.add_typer(_footprint.app, name="footprint")
