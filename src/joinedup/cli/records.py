"""`joinedup records serve`: the FHIR R4 API over the records store on its own, signed in with
the dashboard's users and audited in its audit log."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.markup import escape

from joinedup.cli.main import DEFAULT_WAREHOUSE, WarehouseOption, console
from joinedup.cli.web import HostOption, PortOption, SettingsOption
from joinedup.records import RecordsSettings, RecordStore
from joinedup.web.settings import load_settings

app = typer.Typer(help="The shared care record's store (FHIR R4).", no_args_is_help=True)

RecordsOption = Annotated[
    str | None,
    typer.Option(
        "--records",
        help="The records store: a SQLite file path or a postgresql:// URL (env "
        "JOINEDUP_RECORDS; default data/records.sqlite).",
        show_default=False,
    ),
]


def open_records(target: str | None) -> RecordStore:
    """The records store at `target`, else where JOINEDUP_RECORDS says."""
    return RecordStore(target or RecordsSettings().records)


@app.command("serve")
def serve(
    records: RecordsOption = None,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    host: HostOption = None,
    port: PortOption = None,
    settings_file: SettingsOption = None,
) -> None:
    """Serve the FHIR R4 API at /fhir/R4 over the records store.

    Sign in with POST /api/v1/token as a user of the dashboard (the access store beside
    --warehouse); only the admin and system roles may use the API for now, and every request
    is written to the audit log.
    """
    import uvicorn  # noqa: PLC0415 - only the server needs it

    from joinedup.web.records_api import create_records_app  # noqa: PLC0415 - loads FastAPI

    given = (
        warehouse if warehouse != DEFAULT_WAREHOUSE or "JOINEDUP_WAREHOUSE" in os.environ else None
    )
    settings = load_settings(settings_file, warehouse=given, host=host, port=port)
    store = open_records(records)
    try:
        app = create_records_app(settings, store)
        address = f"http://{settings.host}:{settings.port}/fhir/R4"
        console.print(
            f"[bold]joinedup records[/] ({store.dialect}) at [bold cyan]{escape(address)}[/]"
        )
        console.print("Press Ctrl+C to stop.")
        uvicorn.run(
            app, host=settings.host, port=settings.port, access_log=False, log_level="warning",
            proxy_headers=False,
        )  # fmt: skip
    finally:
        store.close()


__all__ = ["RecordsOption", "app", "open_records", "serve"]
