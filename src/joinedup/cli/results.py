"""Printing and writing a command's result table, shared by the commands that give one (kept
apart from any one command's module, so that a command imports only what it runs)."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rich.table import Table

from joinedup.cli.main import console
from joinedup.disclosure import SUPPRESSED_SUFFIX
from joinedup.errors import InputError


def write_result(result: pa.Table, output: Path) -> None:
    """Write a result as CSV or Parquet by the file's extension, atomically."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    if output.suffix == ".parquet":
        pq.write_table(result, tmp)
    elif output.suffix == ".csv":
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(result.column_names)
            for row in result.to_pylist():
                writer.writerow(["" if v is None else v for v in row.values()])
    else:
        raise InputError(str(output), "write results to a .csv or .parquet file")
    tmp.replace(output)


def show(result: pa.Table, title: str = "", missing: str = "*") -> None:
    """Print up to 200 rows; `missing` stands in for empty cells ("*": suppressed)."""
    table = Table(title=title or None, show_edge=False)
    visible = [c for c in result.column_names if not c.endswith(SUPPRESSED_SUFFIX)]
    for name in visible:
        table.add_column(name)
    for row in result.slice(0, 200).to_pylist():
        table.add_row(*(missing if v is None else str(v) for v in (row[c] for c in visible)))
    console.print(table)
    if result.num_rows > 200:
        console.print(f"... {result.num_rows - 200:,} more rows (use -o to write them all)")
