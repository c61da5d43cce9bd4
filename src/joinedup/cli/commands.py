"""Registers every subcommand group on the root app."""

from __future__ import annotations

from joinedup.cli import fhir as _fhir
from joinedup.cli import finance as _finance
from joinedup.cli import footprint as _footprint
from joinedup.cli import indicators as _indicators
from joinedup.cli import link as _link
from joinedup.cli import phm as _phm
from joinedup.cli import records as _records
from joinedup.cli import score as _score
from joinedup.cli import synth as _synth
from joinedup.cli import views as _views
from joinedup.cli import warehouse as _warehouse
from joinedup.cli import web as _web
from joinedup.cli.main import app as main_app

main_app.add_typer(_footprint.app, name="footprint")
main_app.add_typer(_synth.app, name="synth")
main_app.add_typer(_warehouse.app, name="warehouse")
main_app.add_typer(_score.app, name="score")
main_app.add_typer(_phm.app, name="phm")
main_app.add_typer(_indicators.app, name="indicators")
main_app.add_typer(_views.app, name="views")
main_app.add_typer(_fhir.ingest_app, name="ingest")
main_app.add_typer(_fhir.export_app, name="export")
main_app.add_typer(_finance.app, name="finance")
main_app.add_typer(_link.app, name="link")
main_app.command("summary")(_warehouse.summary)
main_app.command("demo")(_warehouse.demo)
main_app.command("serve")(_web.serve)
main_app.add_typer(_web.users_app, name="users")
main_app.add_typer(_records.app, name="records")
