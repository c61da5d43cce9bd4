"""`joinedup views`: run SQL-on-FHIR v2 ViewDefinitions over FHIR files, and run test suites
in the official format."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from joinedup.cli.main import console
from joinedup.cli.results import show, write_result
from joinedup.errors import InputError
from joinedup.fhir.testsuite import execute_view, load_files, report, run_suite
from joinedup.fhir.views import compile_view
from joinedup.warehouse import open_empty_engine

app = typer.Typer(
    help="SQL-on-FHIR v2 views: flatten FHIR resources into tables.", no_args_is_help=True
)


def _load_view(path: Path) -> dict[str, object]:
    if not path.is_file():
        raise InputError(str(path), "no such ViewDefinition file")
    try:
        view = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}, line {err.lineno}", f"not JSON ({err.msg})") from None
    if not isinstance(view, dict):
        raise InputError(str(path), "a ViewDefinition must be a JSON object")
    return view


@app.command("run")
def run(
    view_file: Annotated[Path, typer.Argument(metavar="VIEW.json", help="A ViewDefinition.")],
    input_paths: Annotated[
        list[Path],
        typer.Option(
            "--input", "-i", help="NDJSON (plain or .gz), Bundle or resource files, or folders."
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write rows to .csv or .parquet.")
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="duckdb (embedded) or spark (local session).")
    ] = "duckdb",
    spark_master: Annotated[
        str, typer.Option("--spark-master", help="Spark master URL for --engine spark.")
    ] = "local[2]",
) -> None:
    """Run one ViewDefinition over FHIR files and print or write its rows.

    The view is compiled to one SQL query (FHIRPath included) that the engine runs over the
    raw resources; invalid views fail with the element and the reason before any input is
    read. Collections and untyped columns are written as JSON text.
    """
    view = _load_view(view_file)
    began = time.perf_counter()
    with open_empty_engine(engine, spark_master=spark_master) as eng:
        compiled = compile_view(view, dialect=eng.dialect)  # a bad view fails before reading
        loaded = load_files(eng, input_paths)
        table = execute_view(compiled, None, eng, plain_strings=True)
    seconds = time.perf_counter() - began
    if output is not None:
        write_result(table, output)
        console.print(
            f"{table.num_rows:,} rows from {loaded:,} resources in {seconds:.2f} s; "
            f"wrote {escape(str(output))}."
        )
    else:
        show(table, f"{view.get('name') or view_file.stem} ({compiled.resource})", missing="")
        console.print(f"{table.num_rows:,} rows from {loaded:,} resources in {seconds:.2f} s.")


@app.command("test-suite")
def test_suite(
    directory: Annotated[Path, typer.Argument(help="Folder of test files (tests.schema.json).")],
    report_path: Annotated[
        Path, typer.Option("--report", help="Where to write test_report.json.")
    ] = Path("test_report.json"),
    engine: Annotated[
        str, typer.Option("--engine", help="duckdb (embedded) or spark (local session).")
    ] = "duckdb",
    spark_master: Annotated[
        str, typer.Option("--spark-master", help="Spark master URL for --engine spark.")
    ] = "local[2]",
) -> None:
    """Run every test file in a folder and write the official test_report.json.

    Each view is compiled to one SQL query for the chosen engine. Prints a pass count per
    file, and shareable and experimental totals."""
    with open_empty_engine(engine, spark_master=spark_master) as eng:
        outcomes = run_suite(directory, eng)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report(outcomes), indent=2) + "\n", encoding="utf-8")
    table = Table(show_edge=False)
    for col in ("file", "passed", "tests"):
        table.add_column(col, justify="left" if col == "file" else "right")
    for name in dict.fromkeys(o.file for o in outcomes):
        mine = [o for o in outcomes if o.file == name]
        table.add_row(name, str(sum(o.passed for o in mine)), str(len(mine)))
    console.print(table)
    for tag in ("shareable", "experimental"):
        tagged = [o for o in outcomes if tag in o.tags]
        if tagged:
            console.print(f"{tag}: {sum(o.passed for o in tagged)}/{len(tagged)} passed")
    for o in outcomes:
        if not o.passed:
            console.print(f"[red]failed[/] {escape(o.file)}: {escape(o.name)}: {escape(o.reason)}")
    console.print(
        f"{sum(o.passed for o in outcomes)}/{len(outcomes)} passed on {engine}; "
        f"wrote {escape(str(report_path))}."
    )
