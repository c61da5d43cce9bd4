"""`joinedup indicators`: the indicator definitions, their published values, and the
comparison with England from a file of your own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from sqlglot import exp

from joinedup.cli.main import DEFAULT_WAREHOUSE, WarehouseOption, console
from joinedup.errors import ConfigurationError
from joinedup.indicators import TABLE, load_england, shipped_definitions, with_comparisons
from joinedup.indicators.query import read_values
from joinedup.warehouse import open_engine
from joinedup.warehouse.registry import conform

app = typer.Typer(
    help="Indicators: definitions, values by area and period, and England comparisons.",
    no_args_is_help=True,
)


@app.command("list")
def list_indicators() -> None:
    """Every indicator: id, title, unit, method, interval and polarity (docs/indicators.md)."""
    table = Table(show_edge=False)
    for column in ("id", "title", "unit", "method", "CI", "polarity"):
        table.add_column(column)
    for i in shipped_definitions():
        table.add_row(i.id, escape(i.title), i.unit, i.method, i.ci_method, i.polarity)
    console.print(table)


@app.command("show")
def show(
    indicator_id: Annotated[str, typer.Argument(help="Indicator id (see `indicators list`).")],
    level: Annotated[
        str, typer.Option("--level", help="system, place, pcn or practice.")
    ] = "place",
    period: Annotated[
        str, typer.Option("--period", help="latest, all, or a period or its end date.")
    ] = "latest",
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
) -> None:
    """One indicator's published values with 95% CIs and comparisons, as stored by `phm run`."""
    definition = shipped_definitions().get(indicator_id)
    with open_engine("duckdb", warehouse=warehouse) as engine:
        periods, rows = read_values(engine, indicator_id, level=level, period=period)
    table = Table(title=f"{definition.title} ({definition.unit})", show_edge=False)
    for column in ("period", "area", "numerator", "denominator", "value", "95% CI", "England",
                   "vs England", "vs parent", "trend"):  # fmt: skip
        table.add_column(column)
    for r in rows:
        shown = "*" if r["value_suppressed"] else ("" if r["value"] is None else f"{r['value']}")
        ci = "" if r["lower"] is None else f"{r['lower']} to {r['upper']}"
        table.add_row(
            r["period"].split("/")[-1],
            escape(r["area_name"]),
            "*" if r["numerator_count"] is None else f"{r['numerator_count']:,}",
            "*" if r["denominator_count"] is None else f"{r['denominator_count']:,}",
            shown,
            ci,
            "" if r["england_value"] is None else f"{r['england_value']} ({r['england_period']})",
            r["england_comparison"] or "",
            r["parent_comparison"] or "",
            r["trend"] or "",
        )
    console.print(table)
    if not periods:
        console.print("No values stored for this indicator.")


@app.command("compare")
def compare_with_england(
    england: Annotated[
        Path,
        typer.Argument(help="CSV: indicator_id, period, value, lower, upper, source."),
    ],
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
) -> None:
    """Compare the stored values with England's values from your own file (replacing the
    shipped comparators); a malformed file is refused naming the row and column."""
    values = load_england(england)
    with open_engine("duckdb", warehouse=warehouse, read_only=False) as engine:
        if TABLE not in engine.table_names():
            raise ConfigurationError(f"the warehouse has no {TABLE}: run `joinedup phm run`")
        stored = engine.execute(exp.select("*").from_(exp.to_table(TABLE)))
        compared = conform(TABLE, with_comparisons(stored, shipped_definitions(), values))
        engine.load(TABLE, compared)
    known = {v.indicator_id for v in values}
    console.print(
        f"Compared {compared.num_rows:,} values with England from {escape(str(england))} "
        f"({len(known)} indicator(s)); indicators not in the file now have no England value."
    )
