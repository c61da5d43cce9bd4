"""`joinedup ingest fhir` and `joinedup export fhir`: FHIR R4 in and out of the warehouse."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from joinedup.cli.main import (
    DEFAULT_SPARK_MASTER,
    DEFAULT_WAREHOUSE,
    EngineOption,
    SparkMasterOption,
    WarehouseOption,
    console,
    err_console,
    progress_count,
)
from joinedup.cli.synth import resolve_footprint
from joinedup.cli.web import TerminalAudit
from joinedup.errors import ConfigurationError
from joinedup.fhir.export import RESOURCE_TYPES, export_fhir
from joinedup.fhir.ingest import LoadReport, ingest_fhir
from joinedup.linkage.mpi_files import read_previous
from joinedup.records import PersonIndexStore, RecordStore
from joinedup.records.bulk import export as export_records
from joinedup.records.bulk import load as load_records
from joinedup.records.bulk import loaded_counts
from joinedup.synth.shapes import shapes_for
from joinedup.warehouse import BuildInfo, build_warehouse, open_engine
from joinedup.warehouse.lake import Lake, is_lake
from joinedup.warehouse.scratch import scratch_folder

ingest_app = typer.Typer(help="Load records into the warehouse.", no_args_is_help=True)
export_app = typer.Typer(help="Write the warehouse out in standard formats.", no_args_is_help=True)


def _new_warehouse(
    path: Path, footprint: Path | None, reference_dir: Path | None, icb: str | None
) -> None:
    """An empty warehouse for a footprint: its places, practices and LSOAs, no people yet."""
    fp, reference = resolve_footprint(footprint, reference_dir, icb)
    shapes = shapes_for(fp, reference.areas if reference else None)
    areas = pa.table(
        {
            "lsoa_code": [str(c) for s in shapes.values() for c in s.areas.lsoa_codes],
            "place_code": [code for code, s in shapes.items() for _ in s.areas.lsoa_codes],
            "imd_decile": pa.array(
                [int(d) for s in shapes.values() for d in s.areas.imd_deciles], pa.int16()
            ),
        }
    )
    today = dt.datetime.now(dt.UTC).date()
    info = BuildInfo(
        source="fhir", people=0, footprint=fp.system.name, history_start=today, history_end=today
    )
    with scratch_folder(path.parent, "fhir-empty") as parts:
        build_warehouse(path, parts_dir=parts, footprint=fp, info=info, areas=areas)


@ingest_app.command("fhir")
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH...",
            help="NDJSON (plain or .gz), Bundle, resource or FHIR XML files, or folders.",
        ),
    ],
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Also write the load's data-quality report as JSON."),
    ] = None,
    footprint: Annotated[
        Path | None,
        typer.Option(
            "--footprint", "-f", help="For a new warehouse: footprint file (default: built-in)."
        ),
    ] = None,
    reference_dir: Annotated[
        Path | None,
        typer.Option("--reference-dir", help="For a new warehouse: reference files, with --icb."),
    ] = None,
    icb: Annotated[
        str | None, typer.Option("--icb", help="For a new warehouse: real ICB code.")
    ] = None,
    memory_limit: Annotated[
        str,
        typer.Option("--memory-limit", help="Memory DuckDB may use; beyond it, it spills to disk."),
    ] = "2GB",
    engine: EngineOption = "duckdb",
    spark_master: SparkMasterOption = DEFAULT_SPARK_MASTER,
    person_index: Annotated[
        str | None,
        typer.Option(
            "--person-index",
            metavar="DIR|PATH|URL",
            help="A master person index: a folder `joinedup link index -o` wrote, or the "
            "records store (SQLite path or postgresql:// URL) `link index --records` wrote to. "
            "Patients it holds (an identifier's system and value, or meta.source and id, as "
            "its source and record_id) are one person per person_id.",
        ),
    ] = None,
    index_source: Annotated[
        list[str] | None,
        typer.Option(
            "--index-source",
            metavar="NAME=SYSTEM",
            help="The FHIR identifier system of the local ids of the index's source NAME "
            "(repeatable), e.g. acute=https://trust.example.org/pas-number.",
        ),
    ] = None,
    records: Annotated[
        str | None,
        typer.Option(
            "--records",
            metavar="PATH|URL",
            help="Through the shared care record: load the files into this records store (a "
            "SQLite file or a postgresql:// URL) first, then build the warehouse from every "
            "resource the store holds.",
        ),
    ] = None,
) -> None:
    """Load FHIR R4 records into the warehouse, all or nothing, and report on their quality.

    Every resource is kept in the raw store (fhir_resource, by type, id and version) and
    flattened by the shipped SQL-on-FHIR views into the canonical tables, which are rebuilt
    from everything stored so far. Records that cannot be read, or fail a check (unknown
    resourceType, missing id, impossible date, NHS number failing Modulus 11), go to
    fhir_quarantine with file, line and reason; the rest load. Running the same load again
    changes nothing. A warehouse that does not exist yet is created for the footprint. On a
    lake warehouse either engine loads (--engine spark needs a lake).

    With --person-index, Patients the master person index holds are placed by their
    person_id, so one person's Patients from several organisations are one person even when
    an NHS number is missing or mistyped; the rest are matched by NHS number as without it.
    The report and the build record say how many Patients the index placed.

    With --records, the files go into the shared care record's store first (as `joinedup
    records load` puts them: each resource at its own id, a new version only where its
    content changed; one the store refuses is reported with file, line and element, and
    skipped), and the warehouse is then loaded from the store's current resources, written
    out as `joinedup records export` writes them: sources, records, views, warehouse.
    """
    index = None if person_index is None else _read_person_index(person_index)
    systems = _index_systems(index_source or [])
    if systems and index is None:
        raise ConfigurationError("--index-source needs --person-index")
    if not warehouse.exists() or (is_lake(warehouse) and not Lake(warehouse).exists()):
        console.print(f"Creating warehouse {escape(str(warehouse))} for the footprint.")
        warehouse.parent.mkdir(parents=True, exist_ok=True)
        _new_warehouse(warehouse, footprint, reference_dir, icb)
    with (  # the warehouse is opened (its lock taken) before anything goes into the store
        open_engine(
            engine,
            warehouse=warehouse,
            read_only=False,
            memory_limit=memory_limit,
            spark_master=spark_master,
        ) as eng,
        _sources(paths, records, warehouse) as sources,
        progress_count("resources read") as progress,
    ):
        task = progress.add_task("reading", total=None)
        result = ingest_fhir(
            eng,
            sources,
            staging_dir=warehouse.parent,
            on_stage=lambda s: progress.update(task, description=s),
            on_record=lambda n: progress.advance(task, n),
            person_index=index,
            index_systems=systems,
        )
    _print_report(result)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
        console.print(f"Wrote the quality report to {escape(str(report))}.")


@contextmanager
def _sources(paths: list[Path], records: str | None, warehouse: Path) -> Iterator[list[Path]]:
    """The files the warehouse is loaded from: `paths`, or with `records` the store's current
    resources once `paths` are loaded into it, written to a scratch folder beside
    `warehouse` for the load (both audited, as `records load` and `records export` are)."""
    if records is None:
        yield paths
        return
    scratch = warehouse.parent
    with (
        TerminalAudit(warehouse) as audit,
        RecordStore(records) as store,
        scratch_folder(scratch, "records-out") as folder,
    ):
        out = folder / "store"
        target = store.dialect
        with progress_count() as progress:
            task = progress.add_task(f"loading into the records store ({target})")
            advance = audit.counted(lambda n: progress.advance(task, n))
            with audit.stopping("bulk-load", target, "read (ingest fhir)"):
                loaded = load_records(
                    store,
                    paths,
                    on_progress=advance,
                    on_invalid=lambda m: err_console.print(
                        f"[yellow]skipped:[/] {escape(m)}", soft_wrap=True
                    ),
                )
            audit.write("bulk-load", target, f"ingest fhir: {loaded_counts(loaded)}")
            progress.update(task, description="writing out the store's resources", completed=0)
            with audit.stopping("bulk-export", target, "resources (ingest fhir)"):
                written = export_records(store, out, on_progress=advance)
            exported = f"ingest fhir: {sum(written.values())} resources (every type)"
            audit.write("bulk-export", target, exported)
        console.print(
            f"Records store ({store.dialect}): {loaded.read:,} resources read, "
            f"{loaded.created:,} created, {loaded.updated:,} updated, {loaded.unchanged:,} "
            f"unchanged, {len(loaded.invalid):,} skipped as invalid; loading the warehouse "
            f"from its {sum(written.values()):,} current resources.",
            soft_wrap=True,
        )
        yield [out]


def _index_systems(given: list[str]) -> dict[str, str]:
    """NAME=SYSTEM pairs, each name once."""
    systems: dict[str, str] = {}
    for text in given:
        name, sep, system = text.partition("=")
        if not sep or not name or not system:
            raise ConfigurationError(f"--index-source {text}: give NAME=SYSTEM")
        if name in systems:
            raise ConfigurationError(f"--index-source: source {name} given twice")
        systems[name] = system
    return systems


def _read_person_index(target: str) -> pa.Table:
    """The index's (source, record_id, person_id) from a `link index` folder or a records
    store; anything else is refused in one line naming it."""
    path = Path(target)
    if "://" not in target and path.is_dir():
        people = read_previous(path).people
    elif "://" in target or path.is_file():
        with PersonIndexStore(target) as store:
            previous = store.read_previous()
            where = store.location
        if previous is None:
            raise ConfigurationError(f"--person-index: {where} holds no person index")
        people = previous.people
    else:
        raise ConfigurationError(f"--person-index: {target} is no folder or file")
    return people.select(["source", "record_id", "person_id"])


def _print_report(result: LoadReport) -> None:
    table = Table(title=f"Load {result.load_id}", show_edge=False)
    for column in ("resource type", "in", "stored", "unchanged", "quarantined"):
        table.add_column(column, justify="left" if column == "resource type" else "right")
    for kind in sorted(result.resources_in):
        table.add_row(
            kind,
            f"{result.resources_in[kind]:,}",
            f"{result.stored.get(kind, 0):,}",
            f"{result.unchanged.get(kind, 0):,}",
            f"{result.quarantined.get(kind, 0):,}",
        )
    console.print(table)
    out = Table(title="Rows out", show_edge=False)
    out.add_column("table")
    out.add_column("rows", justify="right")
    for name, n in result.rows_out.items():
        out.add_row(name, f"{n:,}")
    console.print(out)
    if result.quality:
        quality = Table(title="Data quality", show_edge=False)
        for column in ("section", "item", "detail", "count"):
            quality.add_column(column, justify="right" if column == "count" else "left")
        for section, item, detail, n in result.quality[:40]:
            quality.add_row(section, escape(item), escape(detail), f"{n:,}")
        console.print(quality)
        if len(result.quality) > 40:
            console.print(f"... {len(result.quality) - 40} more lines (see --report).")
    if result.person_index_records is not None:
        console.print(
            f"Person index: {result.person_index_records:,} records; "
            f"{result.patients_indexed:,} Patients placed by their person_id."
        )
    total = sum(result.resources_in.values())
    console.print(
        f"{total:,} resources from {result.files:,} files in {result.seconds:.1f} s: "
        f"{sum(result.stored.values()):,} stored, {sum(result.unchanged.values()):,} "
        f"unchanged, {sum(result.quarantined.values()):,} quarantined."
    )


@export_app.command("fhir")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the NDJSON files.")],
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type", "-t", help=f"Only these resource types ({', '.join(RESOURCE_TYPES)})."
        ),
    ] = None,
    gzip_files: Annotated[bool, typer.Option("--gzip", help="Write .ndjson.gz files.")] = False,
) -> None:
    """Write the warehouse's population as UK Core-shaped FHIR R4 bulk NDJSON.

    One file per resource type, as a FHIR Bulk Data export: Patient (NHS number, ethnic
    category, LSOA, GP), Consent (national data opt-outs), EpisodeOfCare (GP registrations,
    social care packages), Encounter, Condition, MedicationRequest, Observation, ServiceRequest
    (RTT referrals) and Organization. `joinedup ingest fhir` reads them back into the same
    canonical tables.
    """
    began = time.perf_counter()
    with (
        open_engine("duckdb", warehouse=warehouse) as engine,
        Progress(
            SpinnerColumn(),
            TextColumn("writing {task.description}"),
            TextColumn("{task.completed:,} resources"),
            console=console,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("", total=None)

        def batch(kind: str, n: int) -> None:
            progress.update(task, description=kind, advance=n)

        counts = export_fhir(
            engine, out, types=tuple(types or RESOURCE_TYPES), gzip_files=gzip_files, on_batch=batch
        )
    table = Table(show_edge=False)
    table.add_column("resource type")
    table.add_column("resources", justify="right")
    for kind, n in counts.items():
        table.add_row(kind, f"{n:,}")
    console.print(table)
    console.print(
        f"Wrote {sum(counts.values()):,} resources to {escape(str(out))} in "
        f"{time.perf_counter() - began:.1f} s."
    )
