"""`joinedup warehouse`, `joinedup summary` and `joinedup demo`: look inside the warehouse,
run analytics on DuckDB or Spark, and see the system at a glance."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from joinedup.cli.main import (
    DEFAULT_SPARK_MASTER,
    DEFAULT_WAREHOUSE,
    EngineOption,
    MemoryLimitOption,
    SparkMasterOption,
    WarehouseOption,
    console,
)
from joinedup.cli.records import DEMO_RECORDS_PEOPLE, load_demo_records
from joinedup.cli.results import show, write_result
from joinedup.cli.synth import build
from joinedup.disclosure import DisclosurePolicy, describe, format_count
from joinedup.errors import ConfigurationError, InputError
from joinedup.fhir.tables import render_fhir_markdown
from joinedup.finance.tables import render_finance_markdown
from joinedup.footprint import default_footprint
from joinedup.population.tables import render_phm_markdown
from joinedup.synth import condition_codelist
from joinedup.warehouse import (
    ALL_TABLES,
    ENGINE_KINDS,
    Engine,
    analytics,
    copy_warehouse,
    export_parquet,
    open_engine,
    render_markdown,
)
from joinedup.warehouse.report import (
    SystemReport,
    default_parameters,
    period_of,
    run_all,
    system_report,
)

app = typer.Typer(
    help="The warehouse: its tables, provenance, analytics and Parquet export.",
    no_args_is_help=True,
)

ParquetOption = Annotated[
    Path | None,
    typer.Option(
        "--parquet",
        help="Read canonical tables from a folder of <table>.parquet files instead of the "
        "warehouse (read only).",
    ),
]


def open_for(
    engine: str,
    warehouse: Path,
    spark_master: str,
    parquet: Path | None,
    memory_limit: str | None = None,
) -> Engine:
    if engine not in ENGINE_KINDS:
        raise ConfigurationError(
            f"unknown engine {engine!r}; choose from {', '.join(ENGINE_KINDS)}"
        )
    if parquet is not None:
        return open_engine(engine, spark_master=spark_master, parquet_dir=parquet)
    return open_engine(
        engine, warehouse=warehouse, spark_master=spark_master, memory_limit=memory_limit
    )


@app.command()
def info(warehouse: WarehouseOption = DEFAULT_WAREHOUSE) -> None:
    """Tables with row counts, and how the warehouse was built."""
    with open_engine("duckdb", warehouse=warehouse) as engine:
        period = period_of(engine)
        table = Table(title=f"{escape(str(warehouse))}", show_edge=False)
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name in engine.table_names():
            table.add_row(name, f"{engine.count(name):,}")
        console.print(table)
    console.print(
        f"Built {period.built_at} by joinedup {period.version} from {period.source} "
        f"(footprint {escape(period.footprint)}, seed {period.seed}); history "
        f"{period.start:%d %b %Y} to {period.end:%d %b %Y}."
    )


@app.command()
def schema(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the reference page.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the page here.")
    ] = None,
) -> None:
    """The canonical tables (the contract every module reads and writes) and the tables
    population health writes."""
    page = data_model_page()
    if output is not None:
        output.write_text(page, encoding="utf-8")
        console.print(f"Wrote {escape(str(output))}")
    elif markdown:
        console.print(page, markup=False, highlight=False)
    else:
        for t in ALL_TABLES:
            console.print(f"[bold]{t.name}[/]: {', '.join(t.column_names)}")


@app.command("copy")
def copy(
    source: Annotated[Path, typer.Argument(help="A .duckdb file or a lake folder.")],
    target: Annotated[Path, typer.Argument(help="A lake folder or a .duckdb file.")],
) -> None:
    """Copy every current table from a DuckDB file to a lake (a folder of Parquet tables with
    a manifest, which Spark, Databricks or DuckDB read), or from a lake to a DuckDB file. The
    target is replaced whole and at once."""
    with console.status("Copying") as status:
        counts = copy_warehouse(
            source, target, on_table=lambda name: status.update(f"Copying {name}")
        )
    console.print(
        f"Copied {len(counts)} tables ({sum(counts.values()):,} rows) from "
        f"{escape(str(source))} to {escape(str(target))}."
    )


@app.command("export-parquet")
def export(
    out: Annotated[Path, typer.Option("--out", help="Folder to write <table>.parquet files to.")],
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
) -> None:
    """Write every canonical table as Parquet (what the Spark engine reads)."""
    with console.status("Exporting"):
        paths = export_parquet(warehouse, out)
    console.print(f"Wrote {len(paths)} tables to {escape(str(out))}")


def _parse_params(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError("--param", f"{item!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
        if isinstance(out[key], list):
            out[key] = tuple(out[key])
    return out


def _coerce_dates(params: dict[str, Any]) -> dict[str, Any]:
    fixed = {}
    for key, value in params.items():
        if key.endswith("date") and isinstance(value, str):
            try:
                fixed[key] = dt.date.fromisoformat(value)
            except ValueError as err:
                raise InputError(f"--param {key}", f"{value!r} is not a date (YYYY-MM-DD)") from err
        else:
            fixed[key] = value
    return fixed


def data_model_page() -> str:
    """docs/data-model.md: the canonical tables, the population health outputs, the FHIR
    ingest tables, then the finance tables."""
    return (
        render_markdown().rstrip("\n")
        + "\n\n"
        + render_phm_markdown().rstrip("\n")
        + "\n\n"
        + render_fhir_markdown().rstrip("\n")
        + "\n\n"
        + render_finance_markdown()
    )


@app.command("run")
def run_analytic(
    name: Annotated[str, typer.Argument(help="Analytic name (see `warehouse analytics`).")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE (dates as YYYY-MM-DD).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help=".csv or .parquet")] = None,
    engine: EngineOption = "duckdb",
    spark_master: SparkMasterOption = DEFAULT_SPARK_MASTER,
    memory_limit: MemoryLimitOption = None,
    parquet: ParquetOption = None,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
) -> None:
    """Run one canonical analytic on DuckDB or Spark; the result passes disclosure control.

    Parameters default to the warehouse's history (its last day, its last year). Spark
    reads a lake warehouse (or --parquet)."""
    began = time.perf_counter()
    with open_for(engine, warehouse, spark_master, parquet, memory_limit) as eng:
        params = default_parameters(name, period_of(eng))
        params.update(_coerce_dates(_parse_params(param or [])))
        if params.get("codelist") == "summary_codelist":
            eng.load_session("summary_codelist", condition_codelist())
        result = analytics.publish(analytics.run(eng, name, **params))
    seconds = time.perf_counter() - began
    if output is not None:
        write_result(result, output)
        console.print(f"Wrote {result.num_rows:,} rows to {escape(str(output))}")
    else:
        show(result, f"{name} on {engine}")
    console.print(f"{describe(DisclosurePolicy())}; {seconds:.2f} s on {engine}.")


@app.command("analytics")
def list_analytics() -> None:
    """The canonical analytics every engine runs."""
    table = Table(show_edge=False)
    table.add_column("name")
    table.add_column("what it returns")
    for a in analytics.ANALYTICS.values():
        table.add_row(a.name, a.description)
    console.print(table)


def print_report(report: SystemReport) -> None:
    """The system summary: people per place, conditions, activity, deaths, waiting list."""
    policy = report.policy
    p = report.period
    console.rule(f"[bold]{escape(p.footprint)}[/]")
    console.print(
        f"History {p.start:%d %b %Y} to {p.end:%d %b %Y} ({p.source}, seed {p.seed}). "
        f"People alive on {p.end:%d %b %Y}: {format_count(report.totals['people'], policy)}; "
        f"deaths in the last year: {format_count(report.totals['deaths_last_year'], policy)}."
    )
    places = Table(title="People per place", show_edge=False)
    for col in (
        "place",
        "people",
        "aged 65+",
        "deaths (last year)",
        "emergency admissions per 1,000",
        "opted out",
    ):
        places.add_column(col, justify="left" if col == "place" else "right")
    for r in report.places.to_pylist():
        places.add_row(
            escape(r["place_name"]),
            format_count(r["people"], policy),
            format_count(r["aged_65_plus"], policy),
            format_count(r["deaths_last_year"], policy),
            "*"
            if r["emergency_admissions_per_1000"] is None
            else f"{r['emergency_admissions_per_1000']:.1f}",
            "*" if r["opted_out_share"] is None else f"{100 * r['opted_out_share']:.1f}%",
        )
    console.print(places)
    if report.conditions.num_rows:
        conditions = Table(title="Recorded long-term conditions", show_edge=False)
        for col in ("condition", "people", "prevalence"):
            conditions.add_column(col, justify="left" if col == "condition" else "right")
        rows = sorted(report.conditions.to_pylist(), key=lambda r: -(r["prevalence"] or 0))
        for r in rows:
            prevalence = "*" if r["prevalence"] is None else f"{100 * r['prevalence']:.2f}%"
            conditions.add_row(
                r["condition"].replace("_", " "), format_count(r["people"], policy), prevalence
            )
        console.print(conditions)
    activity = Table(
        title=f"Activity {p.last_year_start:%d %b %Y} to {p.end:%d %b %Y}", show_edge=False
    )
    for col in ("activity", "events", "cost (£)", "bed days"):
        activity.add_column(col, justify="left" if col == "activity" else "right")
    for r in report.activity.to_pylist():
        cost = "*" if r["cost_gbp"] is None else f"{r['cost_gbp']:,.0f}"
        activity.add_row(
            r["activity_type"].replace("_", " "),
            format_count(r["events"], policy),
            cost,
            format_count(r["bed_days"], policy),
        )
    console.print(activity)
    waits = ", ".join(
        f"{r['weeks_band']} weeks: {format_count(r['pathways'], policy)}"
        for r in report.waiting.to_pylist()
    )
    console.print(f"Waiting list (open RTT pathways): {waits}.")
    console.print(
        f"[dim]Disclosure control: {describe(policy)}; people with a national data "
        "opt-out are left out of every figure but the opt-out share.[/]"
    )


def summary(warehouse: WarehouseOption = DEFAULT_WAREHOUSE) -> None:
    """A short summary of the system: people per place, conditions, activity, deaths."""
    with open_engine("duckdb", warehouse=warehouse) as engine:
        print_report(system_report(engine, condition_codelist()))


def demo(
    people: Annotated[
        int, typer.Option("--people", "-n", help="People in the demo ICS.")
    ] = 1_200_000,
    seed: Annotated[int, typer.Option("--seed", "-s")] = 42,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    outputs: Annotated[Path, typer.Option("--outputs", help="Where analytic results go.")] = Path(
        "data/outputs"
    ),
    workers: Annotated[int, typer.Option("--workers")] = 2,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the dashboard at the end.")
    ] = False,
    host: Annotated[str, typer.Option("--host", help="Dashboard address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Dashboard port.")] = 8000,
    records_people: Annotated[
        int,
        typer.Option(
            "--records-people",
            help="Load the FHIR records of this many people into the shared care record's "
            "store: people registered at the demo clinicians' two PCNs, half from each (loading "
            "runs at about 1,000 resources/s, some 40 a person, so the default takes about a "
            "minute on 2 cores and the whole population would take half a day); 0 loads none.",
        ),
    ] = DEMO_RECORDS_PEOPLE,
    records: Annotated[
        Path | None,
        typer.Option(
            "--records",
            help="The SQLite records store the demo loads and serves (default records.sqlite "
            "beside --warehouse); not loaded again when it holds the same build's records.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Build the demo ICS, run every analytic on DuckDB, print a summary of the system, then
    run population health management and the single pot (need, allocation, guarantees,
    budgets, payments, the control total, what-if), write both reports, load the FHIR records
    of --records-people people into the shared care record's store, create a demo user per
    role (and the demo citizens, two of those people) and, with --serve, serve the dashboard
    with the FHIR API at /fhir/R4 and the joined-up record at /records over that store."""
    from joinedup.cli import finance, phm, web  # noqa: PLC0415 - all import this module

    build(
        default_footprint(),
        None,
        people=people,
        seed=seed,
        warehouse=warehouse,
        parquet=None,
        workers=workers,
        years=3,
    )
    with open_engine("duckdb", warehouse=warehouse) as engine:
        with console.status("Running every analytic"):
            runs = run_all(engine, condition_codelist(), outputs)
        table = Table(title="Analytics (DuckDB)", show_edge=False)
        for col in ("analytic", "rows", "seconds", "written to"):
            table.add_column(col, justify="right" if col in ("rows", "seconds") else "left")
        for r in runs:
            table.add_row(r.name, f"{r.rows:,}", f"{r.seconds:.2f}", escape(str(r.path or "")))
        console.print(table)
        print_report(system_report(engine, condition_codelist()))
    phm.run(warehouse=warehouse, config=None, codelist_dir=None)
    phm.report(output=outputs / "phm-report.html", place=None, warehouse=warehouse)
    finance.run_command(warehouse=warehouse, config=None, reference_dir=None, ledger=None)
    finance.report_command(output=outputs / "finance-report.html", warehouse=warehouse)
    console.print(
        f"Warehouse: {escape(str(warehouse))} (query it with DuckDB, or `joinedup warehouse run`)."
    )
    store = None
    if records_people > 0:
        store = str(records or warehouse.parent / "records.sqlite")
        load_demo_records(warehouse, Path(store), records_people)
    web.print_users(web.add_demo_users(warehouse, store), demo=True)
    if serve:
        web.serve(
            warehouse=warehouse, host=host, port=port, settings_file=None, boundaries=None,
            records=store,
        )  # fmt: skip
