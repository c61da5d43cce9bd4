"""`joinedup link`: which records are the same person, in one extract or between two, and
the master person index over several sources."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.compute as pc
import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from joinedup import __version__
from joinedup.cli.main import DEFAULT_SPARK_MASTER, SparkMasterOption, console
from joinedup.cli.results import write_result
from joinedup.errors import ConfigurationError, InputError
from joinedup.linkage import (
    DEFAULT_SEED,
    DEFAULT_THRESHOLD,
    Extract,
    LinkageSettings,
    dedupe,
    link_pair,
    read_extract,
)
from joinedup.linkage.mpi import (
    DEFAULT_REVIEW_THRESHOLD,
    RECORDS_SCHEMA,
    MasterPersonIndex,
    RecordKey,
    build_index,
)
from joinedup.linkage.mpi_files import (
    PERSON_INDEX,
    check_output,
    read_decisions,
    read_previous,
    write_index,
)
from joinedup.linkage.run import Progress as Report
from joinedup.linkage.run import link_sources
from joinedup.records import PersonIndexStore
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


_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _sources(files: list[Path], named: list[str]) -> list[tuple[str, Path]]:
    """Each source's name and file: a file's stem, or NAME=FILE; names must differ."""
    sources = [(path.stem, path) for path in files]
    for text in named:
        name, sep, file = text.partition("=")
        if not sep or not file:
            raise ConfigurationError(f"--source {text}: give NAME=FILE")
        sources.append((name, Path(file)))
    if not sources:
        raise ConfigurationError("give at least one source extract (SOURCE.csv or --source)")
    seen: dict[str, Path] = {}
    for name, path in sources:
        if not _SOURCE_NAME.fullmatch(name):
            raise ConfigurationError(
                f"source name {name!r} ({path}): use letters, digits, '_', '-' and '.'; "
                "name it with --source NAME=FILE"
            )
        if name in seen:
            raise ConfigurationError(
                f"source {name} given twice ({seen[name]} and {path}): name one with "
                "--source NAME=FILE"
            )
        seen[name] = path
    return sources


@app.command("index")
def index_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder to write the index to.")
    ] = None,
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="SOURCE.csv...",
            help="One extract per source system; the source is named by the file's stem.",
        ),
    ] = None,
    named: Annotated[
        list[str] | None,
        typer.Option(
            "--source", metavar="NAME=FILE", help="A source named other than by its file."
        ),
    ] = None,
    previous: Annotated[
        Path | None,
        typer.Option(
            "--previous",
            metavar="DIR",
            help="The last index (a folder this command wrote): its person_ids and decisions "
            "carry over. May be the output folder.",
        ),
    ] = None,
    decisions: Annotated[
        Path | None,
        typer.Option(
            "--decisions",
            metavar="FILE",
            help="Reviewers' decisions (CSV: left_source, left_record_id, right_source, "
            "right_record_id, decision accept/reject, decided_by, decided_at, reason).",
        ),
    ] = None,
    records: Annotated[
        str | None,
        typer.Option(
            "--records",
            metavar="URL|PATH",
            help="The records store (a SQLite file or a postgresql:// URL) to keep the index "
            "in: its index is the previous one, and reviewers' decisions made in the "
            "dashboard are applied.",
        ),
    ] = None,
    review_threshold: Annotated[
        float,
        typer.Option(
            "--review-threshold",
            help="Match probability from which an unlinked pair goes to the review queue.",
        ),
    ] = DEFAULT_REVIEW_THRESHOLD,
    compare: CompareOption = None,
    threshold: ThresholdOption = DEFAULT_THRESHOLD,
    seed: SeedOption = DEFAULT_SEED,
    engine: EngineOption = "duckdb",
    spark_master: SparkMasterOption = DEFAULT_SPARK_MASTER,
) -> None:
    """Build the master person index of several sources: one person_id per person.

    Writes to the folder person_index.csv (source, record_id, person_id, linked_by,
    match_weight, needs_review), links.csv (each link with its evidence), review_queue.csv
    (pairs for a person to decide), person_id_history.csv (ids minted, merged, split off,
    retired), decisions.csv (every decision so far) and run.json. With --previous, person_ids
    carry over: a cluster that is unchanged or gains records keeps its id. With --records the
    index is kept in the records store (all of it or none, in one transaction): the index
    there is the previous one, and the decisions reviewers made in the dashboard are applied;
    -o may then be left out. The output names identifiable records: keep it where the
    extracts are kept.
    """
    if engine not in ENGINE_KINDS:
        raise ConfigurationError(f"--engine {engine}: choose from {', '.join(ENGINE_KINDS)}")
    settings = _settings(threshold, seed)
    if not 0 < review_threshold <= settings.threshold:
        raise ConfigurationError(
            f"--review-threshold {review_threshold}: give a probability above 0 and no more "
            f"than the link threshold ({settings.threshold})"
        )
    sources = _sources(files or [], named or [])
    if output is None and records is None:
        raise ConfigurationError("give -o DIR, --records URL|PATH, or both: where to write")
    if output is not None:
        check_output(output)
    with contextlib.ExitStack() as stack:
        store = None if records is None else stack.enter_context(PersonIndexStore(records))
        # Everything that can be refused is read before the linkage starts.
        stored = None if store is None else store.read_previous()
        earlier = stored
        if earlier is not None and previous is not None:
            raise ConfigurationError(
                f"--previous {previous}: the records store holds an index already and it is "
                "the previous one; leave out --previous"
            )
        if (
            earlier is None
            and previous is None
            and output is not None
            and (output / PERSON_INDEX).is_file()
        ):
            raise ConfigurationError(
                f"{output} holds an index: give --previous {output} to keep its person_ids, "
                "or write to a new folder"
            )
        if previous is not None:
            earlier = read_previous(previous)
        new_decisions = [] if decisions is None else read_decisions(decisions)
        names = tuple(compare or ())
        extracts: list[tuple[str, Extract]] = [(n, read_extract(p, names)) for n, p in sources]
        with (
            open_empty_engine(engine, spark_master=spark_master) as eng,
            _progress("Indexing") as step,
        ):
            pairs = link_sources(eng, extracts, settings, review_threshold, progress=step)
            step("building the index")
            run_at = datetime.now(UTC)
            records_table = pa.concat_tables(
                [
                    pa.table(
                        [pa.array([n] * len(e), pa.string()), e.records.column("record_id")],
                        schema=RECORDS_SCHEMA,
                    )
                    for n, e in extracts
                ]
            )
            index = build_index(
                eng,
                records_table,
                pairs,
                threshold=settings.threshold,
                review_threshold=review_threshold,
                previous=earlier,
                decisions=new_decisions,
                run_at=run_at,
            )
            step("writing")
            run: dict[str, Any] = {
                "run_at": run_at.isoformat(),
                "sources": {name: str(path) for name, path in sources},
                "compare": list(names),
                "threshold": settings.threshold,
                "review_threshold": review_threshold,
                "seed": settings.seed,
                "engine": engine,
                "previous": None if previous is None else str(previous),
                "decisions": None if decisions is None else str(decisions),
                "records": None if store is None else store.location,
                "joinedup_version": __version__,
            }
            if store is not None:
                store.write_index(eng, index, stored, run, _queued_identities(index, extracts))
            if output is not None:
                write_index(index, output, run)
    n = index.summary
    written = [] if output is None else [str(output)]
    if store is not None:
        written.append(f"the records store {store.location}")
    carried = (
        ""
        if earlier is None
        else f"{n.ids_kept:,} person_ids kept, {n.ids_merged:,} merged, "
        f"{n.ids_split:,} split off, {n.ids_retired:,} retired; "
    )
    console.print(
        f"{n.records:,} records from {len(sources)} sources are {n.people:,} people; "
        f"{carried}{n.ids_created:,} new person_ids; {n.review:,} pairs to review"
        + (f" ({n.conflicts:,} rejected pairs still joined)" if n.conflicts else "")
        + f"; {n.decisions_applied:,} decisions applied (threshold {settings.threshold}, "
        f"review threshold {review_threshold}, seed {settings.seed}, {engine}); "
        f"wrote {escape(', '.join(written))}."
    )


def _queued_identities(
    index: MasterPersonIndex, extracts: list[tuple[str, Extract]]
) -> dict[RecordKey, dict[str, object]]:
    """The identity fields of each record in the review queue (for reviewers to compare in
    the dashboard; no other record's are kept in the store)."""
    wanted: dict[str, set[str]] = {}
    for item in index.review.to_pylist():
        for side in ("left", "right"):
            wanted.setdefault(item[f"{side}_source"], set()).add(item[f"{side}_record_id"])
    found: dict[RecordKey, dict[str, object]] = {}
    for name, extract in extracts:
        if name not in wanted:
            continue
        table = extract.records
        rows = table.filter(pc.is_in(table.column("record_id"), pa.array(sorted(wanted[name]))))
        for row in rows.select(["record_id", *extract.identity_columns]).to_pylist():
            found[(name, row.pop("record_id"))] = row
    return found
