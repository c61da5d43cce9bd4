"""`joinedup finance`: the single pot. Today: need indices from NHS England's weighted
populations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer
from rich.markup import escape
from rich.table import Table

from joinedup.cli.main import console
from joinedup.cli.warehouse import write_result
from joinedup.errors import ConfigurationError
from joinedup.finance.need import COMPONENTS, NeedIndex, icb_need, place_need
from joinedup.reference.practices import load_practices_from_dir

app = typer.Typer(help="The single pot: need, allocation and money.", no_args_is_help=True)


def _table(rows: list[NeedIndex]) -> pa.Table:
    columns: dict[str, list[object]] = {
        "level": [r.level for r in rows],
        "code": [r.code for r in rows],
        "name": [r.name for r in rows],
        "parent_code": [r.parent_code for r in rows],
        "population": [r.population for r in rows],
    }
    for name in COMPONENTS:
        columns[f"{name}_wp"] = [r.weighted[name] for r in rows]
    for name in COMPONENTS:
        columns[f"{name}_index"] = [r.index[name] for r in rows]
    return pa.table(columns)


@app.command("need-index")
def need_index(
    reference_dir: Annotated[
        Path,
        typer.Option(
            "--reference-dir",
            help="Folder holding NHS England's gp_practice_weighted_populations_2025_26.csv.",
        ),
    ],
    icb: Annotated[
        str | None,
        typer.Option("--icb", help="ICB code: its places' indices against the ICB."),
    ] = None,
    england: Annotated[
        bool, typer.Option("--england", help="Every ICB's indices against England instead.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write every column to .csv or .parquet.")
    ] = None,
) -> None:
    """Need indices per allocation component and overall, from published weighted populations.

    index = (weighted population / population) of the area / the same of its parent: places
    (local authority districts) within an ICB with --icb, or ICBs within England with
    --england. 1.10 means 10% more need per head than the parent's average.
    """
    if (icb is None) == (not england):
        raise ConfigurationError("give --icb CODE (places within an ICB) or --england (ICBs)")
    practices = load_practices_from_dir(reference_dir)
    rows = icb_need(practices) if england else place_need(practices, icb or "")
    if output is not None:
        write_result(_table(rows), output)
        console.print(f"Wrote {len(rows)} need indices to {escape(str(output))}.")
        return
    table = Table(
        title="Need index against " + ("England" if england else f"{rows[0].parent_code}"),
        show_edge=False,
    )
    table.add_column("code")
    table.add_column("name")
    table.add_column("population", justify="right")
    shown = ("general_and_acute", "community_services", "mental_health", "maternity",
             "prescribing", "health_inequalities", "final")  # fmt: skip
    for name in shown:
        table.add_column(name.replace("_", " "), justify="right")
    for r in rows:
        table.add_row(
            r.code, escape(r.name), f"{r.population:,.0f}",
            *(f"{r.index[n]:.3f}" for n in shown),
        )  # fmt: skip
    console.print(table)
