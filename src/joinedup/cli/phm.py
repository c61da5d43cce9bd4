"""`joinedup phm`: population health management on the warehouse.

`phm run` computes conditions, multimorbidity, segments, the emergency admission risk model,
inequalities and case-finding worklists into warehouse tables; `phm report` writes the HTML
report; `phm worklist` exports a PCN's worklists as CSV for direct care.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer
from rich.markup import escape
from rich.table import Table
from sqlglot import exp

from joinedup.cli.main import (
    DEFAULT_SPARK_MASTER,
    DEFAULT_WAREHOUSE,
    EngineOption,
    MemoryLimitOption,
    SparkMasterOption,
    WarehouseOption,
    console,
)
from joinedup.cli.results import write_result
from joinedup.errors import ConfigurationError, InputError
from joinedup.population.codelists import load_codelists
from joinedup.population.config import WORKLIST_FIELDS, default_config_text, load_config
from joinedup.population.pipeline import PHM_TABLES, run_phm
from joinedup.warehouse import open_engine

app = typer.Typer(
    help="Population health: conditions, segments, risk, inequalities and worklists.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Settings YAML (default: the shipped phm.yaml)."),
]
CodelistOption = Annotated[
    Path | None,
    typer.Option(
        "--codelist-dir",
        help="Folder with your own phm_conditions.csv and phm_medicines.csv "
        "(default: the shipped, versioned lists).",
    ),
]


@app.command("run")
def run(
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    config: ConfigOption = None,
    codelist_dir: CodelistOption = None,
    engine: EngineOption = "duckdb",
    spark_master: SparkMasterOption = DEFAULT_SPARK_MASTER,
    memory_limit: MemoryLimitOption = None,
) -> None:
    """Compute every population health output into warehouse tables (phm_*), on DuckDB or
    Spark (--engine spark needs a lake warehouse; both write the same rows).

    Index date: the day after the warehouse's last day. The emergency admission model trains
    on the population two years before it and is validated on the population a year before
    it; its model card is stored in phm_run. Published tables pass disclosure control and
    leave out people with a national data opt-out; phm_worklist is identifiable, for direct
    care, and includes them.
    """
    settings = load_config(config)
    codes = load_codelists(codelist_dir)
    began = time.perf_counter()
    with (
        open_engine(
            engine,
            warehouse=warehouse,
            read_only=False,
            spark_master=spark_master,
            memory_limit=memory_limit,
        ) as eng,
        console.status("Population health run") as status,
    ):

        def stage(text: str) -> None:
            console.print(f"[dim]{time.perf_counter() - began:6.1f} s[/]  {escape(text)}")
            status.update(text)

        result = run_phm(eng, config=settings, codes=codes, on_stage=stage)
    card = result.card
    table = Table(title="Tables written", show_edge=False)
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("holds")
    for name, rows in result.rows.items():
        table.add_row(name, f"{rows:,}", PHM_TABLES.get(name, ""))
    console.print(table)
    verdict = "[green]passes[/]" if card.passes_acceptance else "[red]fails[/]"
    console.print(
        f"Risk model (validated on {card.validation_index_date}): AUROC "
        f"{card.validation.auroc:.3f} vs age-sex {card.baseline_validation.auroc:.3f}; "
        f"Brier {card.validation.brier:.4f} vs {card.baseline_validation.brier:.4f}; "
        f"calibration {card.calibration_summary}; "
        f"acceptance {verdict}."
    )
    console.print(
        f"Run {result.run_id} for index date {result.index_date} in "
        f"{time.perf_counter() - began:.1f} s. Next: `joinedup phm report -o report.html`."
    )


@app.command("report")
def report(
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path(
        "data/outputs/phm-report.html"
    ),
    place: Annotated[
        str | None, typer.Option("--place", help="Place code (e.g. a GSS code) to focus on.")
    ] = None,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
) -> None:
    """Write the population health report (HTML, charts and the model card) from the last
    `phm run`: pyramid, segment mix, risk tiers, inequality gaps and Core20PLUS5."""
    from joinedup.reports.phm import write_report  # noqa: PLC0415 - matplotlib is slow to load

    if output.suffix.lower() not in (".html", ".htm"):
        raise InputError(str(output), "write the report to an .html file")
    with open_engine("duckdb", warehouse=warehouse) as engine:
        written = write_report(engine, output, place=place)
    console.print(f"Wrote {escape(str(written))}.")


@app.command("worklist")
def worklist(
    pcn: Annotated[str, typer.Option("--pcn", help="PCN code whose worklists to export.")],
    output: Annotated[Path, typer.Option("--output", "-o", help=".csv or .parquet file.")],
    worklist_id: Annotated[
        str | None, typer.Option("--worklist", help="Only this worklist id (default: all).")
    ] = None,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
) -> None:
    """Export one PCN's case-finding worklists: identifiable (NHS number), for the PCN's own
    direct care only. Each person carries the reasons they qualified."""
    with open_engine("duckdb", warehouse=warehouse) as engine:
        if "phm_worklist" not in engine.table_names():
            raise ConfigurationError("no worklists yet: run `joinedup phm run` first")
        query = (
            exp.select("*")
            .from_("phm_worklist")
            .where(exp.EQ(this=exp.column("pcn_code"), expression=exp.convert(pcn)))
        )
        if worklist_id is not None:
            query = query.where(
                exp.EQ(this=exp.column("worklist_id"), expression=exp.convert(worklist_id))
            )
        rows: pa.Table = engine.execute(
            query.order_by("worklist_id", exp.column("risk_score").desc(), "person_id")
        )
        if rows.num_rows == 0:
            known = engine.execute(exp.select("pcn_code").from_("pcn").order_by("pcn_code"))
            codes = known.column("pcn_code").to_pylist()
            if pcn not in codes:
                raise InputError("--pcn", f"no PCN {pcn!r}; choose from {', '.join(codes[:12])}…")
    write_result(rows, output)
    console.print(
        f"Wrote {rows.num_rows:,} worklist rows for {escape(pcn)} to {escape(str(output))}. "
        "[bold]Identifiable[/]: for this PCN's direct care only."
    )


@app.command("fields")
def fields() -> None:
    """The person-level fields worklist criteria can test."""
    table = Table(show_edge=False)
    table.add_column("field")
    table.add_column("meaning")
    for name, meaning in WORKLIST_FIELDS.items():
        table.add_row(name, meaning)
    console.print(table)


@app.command("config")
def config(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the defaults here to edit.")
    ] = None,
) -> None:
    """Show (or write out) the default settings: risk tiers, Core20PLUS groups, worklists."""
    text = default_config_text()
    if output is None:
        console.print(text, markup=False, highlight=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    console.print(f"Wrote {escape(str(output))}; check it with `joinedup phm run --config`.")
