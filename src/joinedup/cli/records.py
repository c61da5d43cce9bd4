"""`joinedup records serve`: the FHIR R4 API over the records store on its own, signed in with
the dashboard's users and audited in its audit log; `joinedup records load` and `export`: bulk
NDJSON and Bundles in, NDJSON out in the layout `joinedup ingest fhir` reads."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from sqlglot import exp

from joinedup.cli.main import (
    DEFAULT_WAREHOUSE,
    WarehouseOption,
    console,
    err_console,
    progress_bar,
    progress_count,
)
from joinedup.cli.web import (
    HostOption,
    PortOption,
    SettingsOption,
    TerminalAudit,
    pcns_for_demo,
)
from joinedup.errors import InputError
from joinedup.fhir.export import export_fhir
from joinedup.fhir.sqltree import ordered, row_number
from joinedup.records import CodeSystems, RecordsSettings, RecordStore, read_code_systems
from joinedup.records.bulk import CHUNK_SIZE, LoadResult, export, load, loaded_counts
from joinedup.warehouse import open_engine
from joinedup.warehouse.scratch import scratch_folder
from joinedup.web.heap import settle_heap
from joinedup.web.listening import REUSE_PORT, bind_plain, shared_port, url_address
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


CodeSystemsOption = Annotated[
    Path | None,
    typer.Option(
        "--code-systems",
        help="A folder of CodeSystem resources (XML or JSON; e.g. the UK Core package's) that "
        "$validate checks codings against (env JOINEDUP_RECORDS_CODE_SYSTEMS).",
        show_default=False,
    ),
]


def open_records(target: str | None) -> RecordStore:
    """The records store at `target`, else where JOINEDUP_RECORDS says."""
    return RecordStore(target or RecordsSettings().records)


def open_code_systems(folder: Path | None) -> CodeSystems | None:
    """The code systems in `folder`, else in JOINEDUP_RECORDS_CODE_SYSTEMS, else none."""
    chosen = folder or RecordsSettings().records_code_systems
    return None if chosen is None else read_code_systems(chosen)


#: How `records serve --workers N` hands its options to each worker process (JSON).
WORKER_OPTIONS = "JOINEDUP_RECORDS_SERVE_WORKER"


def _records_app(options: dict[str, Any], *, close_store: bool = False) -> tuple[Any, Any]:
    """The records API app for `options` (as `serve` takes them) and the settings it serves
    with; the app closes its store when it stops if `close_store`."""
    from joinedup.web.records_api import (  # noqa: PLC0415 - loads FastAPI
        create_records_app,
        open_exports,
    )

    settings = load_settings(
        None if options["settings_file"] is None else Path(options["settings_file"]),
        warehouse=options["warehouse"], host=options["host"], port=options["port"],
        secret_key=options.get("secret_key"),
    )  # fmt: skip
    codes = open_code_systems(
        None if options["code_systems"] is None else Path(options["code_systems"])
    )
    store = open_records(options["records"])
    try:
        exports = open_exports(store, options["records"])
        app = create_records_app(settings, store, codes, exports, close_store=close_store)
    except BaseException:
        store.close()
        raise
    return app, (settings, store, codes)


#: How long a worker may take to answer the supervisor's health check before it is taken for
#: hung and replaced. Uvicorn's 5 s is shorter than a worker's start on a busy 2-core machine
#: (importing the package alone took 7.5 s at load average 12, 7 December 2026), where every
#: worker was then killed and restarted before it could answer, and the server never served.
WORKER_START_S = 30


def worker_app() -> Any:
    """One worker process of `records serve --workers N` (Uvicorn imports and calls this):
    the app for the options its parent put in WORKER_OPTIONS."""
    options = json.loads(os.environ[WORKER_OPTIONS])
    app, _ = _records_app(options, close_store=True)
    settle_heap()
    return app


@app.command("serve")
def serve(
    records: RecordsOption = None,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    host: HostOption = None,
    port: PortOption = None,
    settings_file: SettingsOption = None,
    code_systems: CodeSystemsOption = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Server processes answering on the one port. Each is a Python interpreter of "
            "its own, so more than one uses more cores under many concurrent clients; users, "
            "sessions, the audit log and export jobs are shared through the stores. Not with "
            "an in-memory SQLite store.",
        ),
    ] = 1,
) -> None:
    """Serve the FHIR R4 API at /fhir/R4 over the records store.

    Sign in with POST /api/v1/token as a user of the dashboard (the access store beside
    --warehouse); the admin and system roles may use the whole API, clinicians the records of
    patients they have a legitimate relationship with (a PCN's clinicians the registered
    patients of its practices, read from the practice table of --warehouse when it exists;
    care workers through their organisation only, and only the types care needs; less a
    record whose objection to sharing another organisation recorded, and resources in
    sensitive categories recorded elsewhere, but by break-glass;
    JOINEDUP_RECORDS_SENSITIVE_CODES names a CSV of sensitive codes to use instead of the
    shipped list), and every request is written to the audit log. With
    --code-systems, $validate also checks codings against those code systems. Bulk Data
    $export (system and admin roles) writes its files under JOINEDUP_RECORDS_EXPORTS (default
    records-exports beside a SQLite store) and keeps them JOINEDUP_RECORDS_EXPORT_HOURS
    (default 24). With --workers N, N processes share the port (see docs/records.md).
    """
    import uvicorn  # noqa: PLC0415 - only the server needs it
    from uvicorn.supervisors import Multiprocess  # noqa: PLC0415

    given = (
        warehouse if warehouse != DEFAULT_WAREHOUSE or "JOINEDUP_WAREHOUSE" in os.environ else None
    )
    options: dict[str, Any] = {
        "records": records,
        "warehouse": None if given is None else str(given),
        "host": host,
        "port": port,
        "settings_file": None if settings_file is None else str(settings_file),
        "code_systems": None if code_systems is None else str(code_systems),
    }
    # Opened here whatever the workers: a bad store, setting or code system fails now, once.
    app_, (settings, store, codes) = _records_app(options)
    try:
        if workers > 1 and store.in_memory:
            raise typer.BadParameter(
                "an in-memory SQLite store cannot be shared: give a file or a postgresql:// URL",
                param_hint="--workers",
            )
        address = f"http://{url_address(settings.host, settings.port)}/fhir/R4"
        processes = f", {workers} processes" if workers > 1 else ""
        console.print(
            f"[bold]joinedup records[/] ({store.dialect}{processes}) at "
            f"[bold cyan]{escape(address)}[/]"
        )
        if codes is not None:
            console.print(f"$validate checks codings against {len(codes)} code systems")
        console.print("Press Ctrl+C to stop.")
        if workers == 1:
            settle_heap()
            uvicorn.run(
                app_, host=settings.host, port=settings.port, access_log=False,
                log_level="warning", proxy_headers=False,
            )  # fmt: skip
            return
    finally:
        store.close()
    # Workers: each builds its own app and store from these options. Form tokens must check
    # in every worker, so they share one secret (the configured one, else one made now).
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    options["secret_key"] = secret or secrets.token_hex(32)
    os.environ[WORKER_OPTIONS] = json.dumps(options)
    # Uvicorn's supervisor, with a socket of each worker's own on the port rather than one
    # they all accept from (web/listening.py: connections then split evenly between them).
    config = uvicorn.Config(
        f"{__name__}:worker_app", factory=True, workers=workers, host=settings.host,
        port=settings.port, access_log=False, log_level="warning", proxy_headers=False,
        timeout_worker_healthcheck=WORKER_START_S,
    )  # fmt: skip
    try:
        # Without SO_REUSEPORT (not Linux or a BSD): Uvicorn's one socket for all workers.
        sock = (
            shared_port(settings.host, settings.port)
            if REUSE_PORT
            else bind_plain(settings.host, settings.port)
        )
    except OSError as err:
        raise InputError(
            f"--host/--port {url_address(settings.host, settings.port)}",
            f"cannot listen there ({err.strerror or err})",
        ) from None
    with sock, suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[sock]).run()


@app.command("load")
def load_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH...",
            help="NDJSON (plain or .gz), Bundle, resource or FHIR XML files, or folders.",
        ),
    ],
    records: RecordsOption = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Resources per transaction (each all or nothing).")
    ] = CHUNK_SIZE,
    validation_workers: Annotated[
        int,
        typer.Option(
            "--validation-workers",
            help="Processes validating the next chunk while one is written (0: validate in "
            "this one). Faster only with idle cores: on a busy machine it is slower.",
        ),
    ] = 0,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    settings_file: SettingsOption = None,
) -> None:
    """Load FHIR resources into the records store, each at its own id.

    Chunks of --chunk-size resources are written one transaction each. A resource already
    stored with the same content is left as it is, so running the same load again makes no
    new versions. Resources that cannot be read, have no id or fail validation are reported
    with file, line and element and skipped; the rest load. Exit code 1 when any was skipped.
    The load is audited (who ran it, the counts) in the audit log `records serve` keeps with the
    same --warehouse and --settings (the access database beside the warehouse, made there if
    there is none: data/ by default), where the privacy officer reads it.
    """
    with TerminalAudit(warehouse, settings_file) as audit:  # one that cannot be opened stops it
        store = open_records(records)
        started = time.monotonic()
        try:  # what was committed before a stop stays in the store
            with progress_count() as progress, audit.stopping("bulk-load", store.dialect, "read"):
                task = progress.add_task(f"loading into {store.dialect}", total=None)
                result = load(
                    store,
                    paths,
                    chunk_size=chunk_size,
                    validation_workers=validation_workers,
                    on_progress=audit.counted(lambda n: progress.advance(task, n)),
                    on_invalid=lambda m: err_console.print(
                        f"[yellow]skipped:[/] {escape(m)}", soft_wrap=True
                    ),
                )
        finally:
            store.close()
        audit.write("bulk-load", store.dialect, loaded_counts(result))
    seconds = time.monotonic() - started
    rate = result.read / seconds if seconds > 0 else 0.0
    console.print(
        f"Read {result.read:,} resources in {seconds:.1f} s ({rate:,.0f}/s): "
        f"{result.created:,} created, {result.updated:,} updated, "
        f"{result.unchanged:,} unchanged, {len(result.invalid):,} skipped as invalid.",
        soft_wrap=True,
    )
    if result.invalid:
        raise typer.Exit(1)


def _instant(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            "--since", f"{value!r} is not an instant such as 2026-01-31T09:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("export")
def export_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder to write (must not exist, or be empty): <Type>.ndjson files.",
        ),
    ],
    records: RecordsOption = None,
    resource_types: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only this resource type (repeat for more)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only resources last updated at or after this instant (UTC if no offset).",
        ),
    ] = None,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    settings_file: SettingsOption = None,
) -> None:
    """Write the store's current resources (not deleted ones) as NDJSON, one file a type.

    The folder is written whole or not at all (in a temporary folder, then renamed), in the
    layout `joinedup ingest fhir` and `joinedup views run` read: records export then ingest
    fhir builds the warehouse from the store. The export is audited (who ran it, which
    types, how many resources) in the audit log `records serve` keeps with the same
    --warehouse and --settings (made beside the warehouse if there is none).
    """
    moment = _instant(since) if since is not None else None
    chosen = ", ".join(resource_types or ["every type"]) + (f" since {since}" if since else "")
    with TerminalAudit(warehouse, settings_file) as audit:
        store = open_records(records)
        try:  # nothing is written on a stop: the folder is renamed into place last
            what = f"resources ({chosen})"
            with progress_count() as progress, audit.stopping("bulk-export", store.dialect, what):
                task = progress.add_task(f"exporting from {store.dialect}", total=None)
                counts = export(
                    store,
                    out,
                    resource_types=resource_types or (),
                    since=moment,
                    on_progress=audit.counted(lambda n: progress.advance(task, n)),
                )
        finally:
            store.close()
        total = sum(counts.values())
        audit.write("bulk-export", store.dialect, f"{total} resources ({chosen})")
    console.print(f"Wrote {total:,} resources in {len(counts)} files to {escape(str(out))}.")


#: People whose records `joinedup demo` loads by default: about a minute's load on two cores
#: (57,748 resources in 53 s on the 1.2 M demo, 6 December 2026; docs/records.md).
DEMO_RECORDS_PEOPLE = 1_500


def demo_people(pcns: list[str], limit: int) -> exp.Select:
    """The person_ids of up to `limit` people registered at the practices of PCNs `pcns`,
    taken from each PCN in turn (lowest person_id first), so each PCN's clinicians have
    patients."""
    ranked = (
        exp.select(
            exp.column("person_id"),
            exp.column("pcn_code"),
            row_number([exp.column("pcn_code")], [ordered(exp.column("person_id"))]).as_("n"),
        )
        .from_("person")
        .join("practice", using=["practice_code"])
        .where(exp.column("pcn_code").isin(*(exp.convert(p) for p in pcns)))
    )
    return (
        exp.select("person_id")
        .from_(ranked.subquery("r"))
        .order_by(ordered(exp.column("n")), ordered(exp.column("pcn_code")))
        .limit(limit)
    )


def _demo_build(warehouse: Path, people: int) -> str:
    """What the demo's records are made from: the build's seed, size, footprint, history and
    parameters (not its id or time: the same command builds the same population again) and
    how many people were asked for."""
    query = exp.select("*").from_("build").order_by(exp.column("built_at").desc()).limit(1)
    with open_engine("duckdb", warehouse=warehouse, read_only=True) as engine:
        rows = engine.execute(query).to_pylist()
    row = {k: v for k, v in (rows[0] if rows else {}).items() if k not in ("build_id", "built_at")}
    text = json.dumps({"build": row, "records_people": people}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _stamp(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".demo-build")


def load_demo_records(warehouse: Path, store_path: Path, people: int) -> LoadResult | None:
    """Load the FHIR records of up to `people` people of the demo warehouse into the SQLite
    records store at `store_path` (those registered at the demo clinicians' PCNs' practices,
    with every organisation), through the warehouse's FHIR export and the bulk load, with a
    progress bar. None when `people` is 0 or the store was already loaded from the same build
    (a stamp file beside the store says which); a store the demo loaded from another build is
    replaced."""
    if people <= 0:
        return None
    build = _demo_build(warehouse, people)
    stamp = _stamp(store_path)
    if stamp.is_file() and store_path.is_file():
        if stamp.read_text(encoding="utf-8").strip() == build:
            console.print(
                f"Records store {escape(str(store_path))} already holds this build's records."
            )
            return None
        for old in (
            store_path,
            *(store_path.with_name(store_path.name + s) for s in ("-wal", "-shm")),
        ):
            old.unlink(missing_ok=True)
    stamp.unlink(missing_ok=True)
    store_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    chosen = demo_people(pcns_for_demo(warehouse), people)
    with scratch_folder(store_path.parent, "demo-records") as folder:
        with (
            open_engine("duckdb", warehouse=warehouse, read_only=True) as engine,
            console.status("Writing the demo people's FHIR records"),
        ):
            counts = export_fhir(engine, folder, people=chosen)
        with TerminalAudit(warehouse) as audit, RecordStore(store_path) as store:
            with progress_bar() as bar, audit.stopping("bulk-load", "sqlite", "read (demo)"):
                task = bar.add_task("records", total=sum(counts.values()))
                result = load(
                    store,
                    [folder],
                    on_progress=audit.counted(lambda n: bar.advance(task, n)),
                    on_invalid=lambda m: err_console.print(
                        f"[yellow]skipped:[/] {escape(m)}", soft_wrap=True
                    ),
                )
            audit.write("bulk-load", "sqlite", f"demo: {loaded_counts(result)}")
    stamp.write_text(build + "\n", encoding="utf-8")
    seconds = time.monotonic() - started
    console.print(
        f"Loaded the FHIR records of {counts.get('Patient', 0):,} people ({result.read:,} "
        f"resources) into {escape(str(store_path))} in {seconds:.1f} s.",
        soft_wrap=True,
    )
    return result


__all__ = [
    "DEMO_RECORDS_PEOPLE",
    "CodeSystemsOption",
    "RecordsOption",
    "app",
    "demo_people",
    "export_command",
    "load_command",
    "load_demo_records",
    "open_code_systems",
    "open_records",
    "serve",
]
