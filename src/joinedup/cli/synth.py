"""`joinedup synth`: build a synthetic ICS population into the warehouse, and check calibration."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from joinedup.cli.main import (
    DEFAULT_SPARK_MASTER,
    DEFAULT_WAREHOUSE,
    EngineOption,
    SparkMasterOption,
    WarehouseOption,
    console,
    progress_bar,
)
from joinedup.errors import ConfigurationError
from joinedup.footprint import Footprint, default_footprint, footprint_from_reference
from joinedup.reference import load_place_areas, load_place_ethnicity, load_practices_from_dir
from joinedup.reports.charts import calibration_chart
from joinedup.synth import calibration
from joinedup.synth.extracts import ExtractSettings, write_extracts
from joinedup.synth.run import (
    DEFAULT_START,
    DEFAULT_YEARS,
    ReferenceShapes,
    SynthResult,
    synthesise,
)
from joinedup.warehouse import open_engine
from joinedup.warehouse.locks import holding

app = typer.Typer(
    help="Synthetic ICS populations calibrated to England, for demos and tests.",
    invoke_without_command=True,
)


def _workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def resolve_footprint(
    footprint: Path | None, reference_dir: Path | None, icb: str | None
) -> tuple[Footprint, ReferenceShapes | None]:
    """The footprint to generate for, and real small-area shapes when built from reference."""
    if footprint is not None and (reference_dir is not None or icb is not None):
        raise ConfigurationError("give either --footprint or --reference-dir with --icb, not both")
    if footprint is not None:
        return Footprint.load(footprint), None
    if icb is not None and reference_dir is None:
        raise ConfigurationError("--icb needs --reference-dir (the folder of reference files)")
    if reference_dir is None:
        return default_footprint(), None
    if icb is None:
        raise ConfigurationError("--reference-dir needs --icb CODE (see `footprint list-icbs`)")
    fp = footprint_from_reference(load_practices_from_dir(reference_dir), icb)
    places = {p.code: p.name for p in fp.places}
    shapes = ReferenceShapes(
        areas=load_place_areas(reference_dir, places),
        ethnicity=load_place_ethnicity(reference_dir, places),
    )
    return fp, shapes


def build(
    fp: Footprint,
    shapes: ReferenceShapes | None,
    *,
    people: int,
    seed: int,
    warehouse: Path,
    parquet: Path | None,
    workers: int,
    years: int,
    engine: str = "duckdb",
    spark_master: str = DEFAULT_SPARK_MASTER,
) -> SynthResult:
    """Run a synthetic build with a progress bar and print what was written."""
    # Refused before anything is printed when another process has the warehouse open.
    with holding(warehouse):
        console.print(
            f"Generating [bold]{people:,}[/] people for [bold]{escape(fp.system.name)}[/] "
            f"({len(fp.places)} places, {len(fp.practices)} practices), seed {seed}, "
            f"{years} years from {DEFAULT_START:%d %b %Y}"
        )
        with progress_bar() as bar:
            task = bar.add_task("people", total=people)
            result = synthesise(
                fp,
                people=people,
                seed=seed,
                warehouse=warehouse,
                parquet_dir=parquet,
                workers=workers,
                years=years,
                reference=shapes,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                on_stage=lambda stage: bar.update(task, description=stage),
                engine=engine,
                spark_master=spark_master,
            )
    table = Table(title=f"Warehouse {escape(str(warehouse))}", show_edge=False)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in result.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    rate = people / result.seconds if result.seconds else 0.0
    console.print(f"Built in {result.seconds:.1f} s ({rate:,.0f} people/s).")
    for path in result.parquet:
        console.print(f"Parquet: {escape(str(path))}")
    return result


@app.callback()
def synth(
    ctx: typer.Context,
    people: Annotated[
        int, typer.Option("--people", "-n", help="Registered people at the start.")
    ] = 100_000,
    seed: Annotated[
        int, typer.Option("--seed", "-s", help="Random seed: same seed, same data.")
    ] = 42,
    footprint: Annotated[
        Path | None,
        typer.Option("--footprint", "-f", help="Footprint file (default: built-in ICS)."),
    ] = None,
    reference_dir: Annotated[
        Path | None,
        typer.Option(
            "--reference-dir",
            help="Folder of public reference files; with --icb, shape the population on them.",
        ),
    ] = None,
    icb: Annotated[
        str | None, typer.Option("--icb", help="Real ICB code, with --reference-dir.")
    ] = None,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    parquet: Annotated[
        Path | None, typer.Option("--parquet", help="Also write every table as Parquet here.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes.")] = _workers(),
    years: Annotated[int, typer.Option("--years", help="Years of history.")] = DEFAULT_YEARS,
    engine: EngineOption = "duckdb",
    spark_master: SparkMasterOption = DEFAULT_SPARK_MASTER,
) -> None:
    """Generate a synthetic population with its history into the warehouse (a .duckdb file,
    or a lake folder, which either engine writes).

    With --reference-dir and --icb the population takes the real ICB's practices, its places'
    small areas (LSOA ages and deprivation) and their ethnic mix from the reference files.
    """
    if ctx.invoked_subcommand is not None:
        return
    fp, shapes = resolve_footprint(footprint, reference_dir, icb)
    build(
        fp,
        shapes,
        people=people,
        seed=seed,
        warehouse=warehouse,
        parquet=parquet,
        workers=workers,
        years=years,
        engine=engine,
        spark_master=spark_master,
    )


@app.command("calibrate")
def calibrate(
    people: Annotated[int, typer.Option("--people", "-n")] = 200_000,
    seed: Annotated[int, typer.Option("--seed", "-s")] = 42,
    write_doc: Annotated[
        Path | None,
        typer.Option("--write-doc", help="Replace the calibration table in this Markdown file."),
    ] = None,
    chart: Annotated[
        Path | None,
        typer.Option("--chart", help="Draw the comparison (pyramid, admissions, prevalence) here."),
    ] = None,
) -> None:
    """Generate an England-shaped population and compare it with published targets."""
    with console.status("Generating and measuring an England-shaped population"):
        checks = calibration.calibrate(people, seed, Path(tempfile.gettempdir()))
    table = Table(show_edge=False)
    for column in ("group", "measure", "target", "synthetic", "±", "ok"):
        table.add_column(
            column, justify="right" if column in ("target", "synthetic", "±") else "left"
        )
    for c in checks:
        table.add_row(
            c.group,
            c.measure,
            f"{c.target:.2f}",
            f"{c.observed:.2f}",
            f"{c.tolerance:.2f}",
            "[green]yes[/]" if c.ok else "[red]no[/]",
        )
    console.print(table)
    passed = sum(c.ok for c in checks)
    console.print(f"{passed} of {len(checks)} figures within tolerance.")
    if write_doc is not None:
        calibration.write_doc(write_doc, calibration.render_table(checks, people, seed))
        console.print(f"Wrote the calibration table to {escape(str(write_doc))}")
    if chart is not None:
        calibration_chart(checks, chart)
        console.print(f"Drew the comparison in {escape(str(chart))}")
    if passed < len(checks):
        raise typer.Exit(1)


@app.command("extracts")
def extracts(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for the extracts (created if need be).")
    ],
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    seed: Annotated[
        int, typer.Option("--seed", "-s", help="Random seed: same seed, same extracts.")
    ] = 42,
    error_scale: Annotated[
        float,
        typer.Option("--error-scale", help="Multiplier on every error rate (2 doubles them)."),
    ] = 1.0,
    every_system: Annotated[
        bool,
        typer.Option(
            "--every-system",
            help="Put every person in all five systems, not only those their activity sends "
            "there (a fixed shape for benchmarks).",
        ),
    ] = False,
    engine: EngineOption = "duckdb",
    spark_master: SparkMasterOption = DEFAULT_SPARK_MASTER,
) -> None:
    """Write per-organisation person extracts (gp, acute, community, mental_health,
    social_care .csv, the columns `joinedup link` reads) of the warehouse's people, with
    identity errors at documented rates, and the truth apart in truth/truth.csv.

    The extracts are identifiable (names, dates of birth, postcodes, NHS numbers): keep them
    where identifiable data may be kept."""
    if error_scale < 0:
        raise ConfigurationError(f"--error-scale {error_scale}: give a multiplier of 0 or more")
    settings = ExtractSettings(seed=seed, error_scale=error_scale, every_system=every_system)
    with (
        open_engine(engine, warehouse=warehouse, spark_master=spark_master) as opened,
        console.status("Writing extracts") as status,
    ):
        written = write_extracts(
            opened,
            output,
            settings,
            progress=lambda done: status.update(f"Writing extracts: {done:,} people"),
        )
    table = Table(title=f"Extracts in {escape(str(output))}", show_edge=False)
    table.add_column("system")
    table.add_column("records", justify="right")
    for system, count in written.records.items():
        table.add_row(system, f"{count:,}")
    console.print(table)
    console.print(
        f"{written.people:,} people, seed {seed}, error scale {error_scale:g}; the truth is in "
        f"{escape(str(written.truth))} (keep it apart from the extracts)."
    )
