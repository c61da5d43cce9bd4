"""`joinedup score`: score an analyst's own extract of (person, code) rows.

`score charlson` is the Charlson Comorbidity Index from ICD-10; `score cms` is the Cambridge
Multimorbidity Score from SNOMED CT and ICD-10 codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.markup import escape

from joinedup.cli.main import console
from joinedup.cli.results import write_result
from joinedup.errors import InputError
from joinedup.population import WEIGHTINGS, score_table
from joinedup.population.cms import CODE_DEFINED, cms_scores
from joinedup.population.codelists import load_codelists
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


@app.command()
def cms(
    input_csv: Annotated[
        Path,
        typer.Argument(metavar="INPUT.csv", help="One row per (person, SNOMED CT or ICD-10 code)."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write scores (.csv or .parquet).")
    ],
    id_col: Annotated[str, typer.Option("--id-col", help="Column naming the person.")] = "id",
    code_col: Annotated[str, typer.Option("--code-col", help="Column of codes.")] = "code",
    codelist_dir: Annotated[
        Path | None,
        typer.Option("--codelist-dir", help="Your own phm_conditions.csv (default: shipped)."),
    ] = None,
) -> None:
    """Cambridge Multimorbidity Score per person (Payne et al., CMAJ 2020).

    SNOMED CT codes match exactly; ICD-10 codes by prefix (dots, spaces and case ignored).
    Writes a 0/1 column per condition, ltc_count, cms_general and cms_mortality. A code
    extract has no dates or prescriptions, so each condition counts when any of its codes is
    present, and constipation and painful condition (defined by repeat prescriptions) are
    always 0: `joinedup phm run` applies the full rules to the warehouse.

    Per person and keyed by your ids: for your own extract, not for publication.
    """
    if output.suffix not in (".csv", ".parquet"):
        raise InputError(str(output), "write scores to a .csv or .parquet file")
    data = read_codes(input_csv, id_col, code_col, None)
    codes = load_codelists(codelist_dir)
    with open_engine("duckdb") as engine:
        engine.load_session("cms_input", data)
        scores = engine.execute(cms_scores("cms_input", codes))
    scores = scores.rename_columns([id_col, *scores.column_names[1:]])
    write_result(scores, output)
    console.print(
        f"Scored {scores.num_rows:,} people from {data.num_rows:,} rows "
        f"({len(CODE_DEFINED)} code-defined conditions); wrote {escape(str(output))}."
    )
