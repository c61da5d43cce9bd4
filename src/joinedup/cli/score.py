"""`joinedup score`: score an analyst's own extract of (person, code) rows.

`score charlson` is the Charlson Comorbidity Index; other scores (the Cambridge Multimorbidity
Score) join it here as commands of the same shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.markup import escape

from joinedup.cli.main import console
from joinedup.cli.warehouse import write_result
from joinedup.errors import InputError
from joinedup.population import WEIGHTINGS, score_table
from joinedup.reference.areas import read_csv_columns, read_header
from joinedup.warehouse import open_engine

DEFAULT_AGE_COLUMN = "age"

app = typer.Typer(
    help="Score people from a CSV of their codes (per-person results for your own extract).",
    no_args_is_help=True,
)


def read_codes(path: Path, id_col: str, code_col: str, age_col: str | None) -> pa.Table:
    """The (person_id, code[, age]) rows of `path`, or an InputError naming the file and why."""
    columns: dict[str, Any] = {id_col: pa.string(), code_col: pa.string()}
    if age_col is not None:
        columns[age_col] = pa.float64()
    data = read_csv_columns(path, columns)
    if data.num_rows == 0:
        raise InputError(str(path), "no rows: expected one row per (person, code)")
    names = {id_col: "person_id", code_col: "code", **({age_col: "age"} if age_col else {})}
    return data.select(list(names)).rename_columns(list(names.values()))


@app.command()
def charlson(
    input_csv: Annotated[
        Path, typer.Argument(metavar="INPUT.csv", help="One row per (person, ICD-10 code).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write scores (.csv or .parquet).")
    ],
    id_col: Annotated[str, typer.Option("--id-col", help="Column naming the person.")] = "id",
    code_col: Annotated[str, typer.Option("--code-col", help="Column of ICD-10 codes.")] = "code",
    age_col: Annotated[
        str | None,
        typer.Option(
            "--age-col",
            help="Column of age in years, for the age-adjusted score [default: age, if present].",
        ),
    ] = None,
    weighting: Annotated[
        str,
        typer.Option(
            "--weighting", help="quan (Quan 2011 weights) or charlson (Charlson 1987 weights)."
        ),
    ] = "quan",
) -> None:
    """Charlson Comorbidity Index per person from ICD-10 codes (Quan 2005 coding).

    Codes may have dots, spaces or lower case. Writes one row per person, keyed by the
    --id-col column (ids kept as text, in text order): a 0/1 column per
    condition, charlson_score and charlson_age_adjusted (empty without an age column). People
    whose codes match no condition score 0.

    The output is per person and keyed by your ids: it is for your own extract, not for
    publication, so no disclosure control is applied. Publish aggregates only after
    suppressing small numbers.
    """
    if weighting not in WEIGHTINGS:
        raise InputError("--weighting", f"{weighting!r}: choose from {', '.join(WEIGHTINGS)}")
    if output.suffix not in (".csv", ".parquet"):
        raise InputError(str(output), "write scores to a .csv or .parquet file")
    if age_col is None and DEFAULT_AGE_COLUMN in read_header(input_csv):
        age_col = DEFAULT_AGE_COLUMN
    data = read_codes(input_csv, id_col, code_col, age_col)
    with open_engine("duckdb") as engine:
        scores = score_table(engine, data, age=age_col is not None, weighting=weighting)
    scores = scores.rename_columns([id_col, *scores.column_names[1:]])
    write_result(scores, output)
    console.print(
        f"Scored {scores.num_rows:,} people from {data.num_rows:,} rows ({weighting} weights); "
        f"wrote {escape(str(output))}."
    )
