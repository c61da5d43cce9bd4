"""`joinedup link`: which records are the same person, in one extract or between two."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from joinedup.cli.main import DEFAULT_SPARK_MASTER, SparkMasterOption, console
from joinedup.cli.warehouse import write_result
from joinedup.errors import ConfigurationError, InputError
from joinedup.linkage import (
    DEFAULT_SEED,
    DEFAULT_THRESHOLD,
    LinkageSettings,
    dedupe,
    link_pair,
    read_extract,
)
from joinedup.linkage.run import Progress as Report
from joinedup.warehouse import ENGINE_KINDS, open_empty_engine

app = typer.Typer(
    help="Link person records: an exact NHS number stage, then probabilistic linkage (Splink) "
    "on names, birth date, sex and postcode. Columns: record_id, given_name, family_name, "
    "birth_date (YYYY-MM-DD), sex, postcode, nhs_number; missing ones are skipped.",
    no_args_is_help=True,
)

CompareOption = Annotated[
    list[str] | None,
    typer.Option(
        "--compare",
        metavar="COL",
        help="Another column to compare as a string (exact, Jaro-Winkler); repeatable.",
    ),
]
ThresholdOption = Annotated[
    float,
    typer.Option(
        "--threshold",
        help="Match probability at or above which two records are linked (0 to 1, exclusive).",
    ),
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        "-e",
        envvar="JOINEDUP_ENGINE",
        help="Engine that runs the linkage: duckdb (embedded) or spark (a local or remote "
        "session; for very large extracts).",
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed for the random pairs behind u.")]
OutputOption = Annotated[Path, typer.Option("--output", "-o", help="Where to write (.csv).")]


def _settings(threshold: float, seed: int) -> LinkageSettings:
    if not 0 < threshold < 1:
        raise ConfigurationError(f"--threshold {threshold}: give a probability between 0 and 1")
    return LinkageSettings(threshold=threshold, seed=seed)


def _check(output: Path, engine: str) -> None:
    if output.suffix != ".csv":
        raise InputError(str(output), "write links to a .csv file")
    if engine not in ENGINE_KINDS:
        raise ConfigurationError(f"--engine {engine}: choose from {', '.join(ENGINE_KINDS)}")


@contextmanager
def _progress(title: str) -> Iterator[Report]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(title)

        def report(step: str) -> None:
            progress.update(task, description=f"{title}: {step}")

        yield report


@app.command("dedupe")
def dedupe_command(
    input_csv: Annotated[Path, typer.Argument(metavar="FILE.csv", help="The extract to dedupe.")],
    output: OutputOption,
    compare: CompareOption = None,
    threshold: ThresholdOption = DEFAULT_THRESHOLD,
    seed: SeedOption = DEFAULT_SEED,
    engine: EngineOption = "duckdb",
    spark_master: SparkMasterOption = DEFAULT_SPARK_MASTER,
) -> None:
    """Find the records of one extract that are the same person.

    Writes record_id, cluster_id: records sharing a cluster_id are one person (a cluster is
    named by its smallest record_id). The output names identifiable records: keep it where
    the extract is kept.
    """
    _check(output, engine)
    settings = _settings(threshold, seed)
    extract = read_extract(input_csv, tuple(compare or ()))
    with open_empty_engine(engine, spark_master=spark_master) as eng, _progress("Linking") as step:
        clusters = dedupe(eng, extract, settings, progress=step)
    write_result(clusters, output)
    people = len(set(clusters.column("cluster_id").to_pylist()))
    console.print(
        f"{len(extract):,} records are {people:,} people (threshold {settings.threshold}, "
        f"seed {settings.seed}, {engine}); wrote {escape(str(output))}."
    )


@app.command("pair")
def pair_command(
    left_csv: Annotated[Path, typer.Argument(metavar="LEFT.csv", help="The first extract.")],
    right_csv: Annotated[Path, typer.Argument(metavar="RIGHT.csv", help="The second extract.")],
    output: OutputOption,
    compare: CompareOption = None,
    threshold: ThresholdOption = DEFAULT_THRESHOLD,
    seed: SeedOption = DEFAULT_SEED,
    engine: EngineOption = "duckdb",
    spark_master: SparkMasterOption = DEFAULT_SPARK_MASTER,
) -> None:
    """Find the records of two extracts that are the same person.

    Writes left_record_id, right_record_id, match_probability, match_weight and matched_by
    (nhs_number: same valid NHS number and agreeing demographics, probability 1; splink: the
    probabilistic model). Both files need the same columns.
    """
    _check(output, engine)
    settings = _settings(threshold, seed)
    names = tuple(compare or ())
    left, right = read_extract(left_csv, names), read_extract(right_csv, names)
    with open_empty_engine(engine, spark_master=spark_master) as eng, _progress("Linking") as step:
        links = link_pair(eng, left, right, settings, progress=step)
    write_result(links, output)
    console.print(
        f"{links.num_rows:,} links between {len(left):,} and {len(right):,} records "
        f"(threshold {settings.threshold}, seed {settings.seed}, {engine}); "
        f"wrote {escape(str(output))}."
    )
