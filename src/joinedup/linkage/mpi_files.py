"""The master person index as a folder of CSV files, and the reviewers' decisions file.

`read_previous` and `write_index` give and take the Arrow tables of `joinedup.linkage.mpi`
(the records store, `joinedup.records.store.person_index`, is the other home of an index).
A folder is written whole or not at all: into a temporary folder beside it, then renamed.

| file | one row per |
|---|---|
| person_index.csv | source record: its person_id, how it was linked, its match weight |
| links.csv | link the index rests on, with its evidence |
| review_queue.csv | pair for a person to decide (with empty decision columns to fill in) |
| person_id_history.csv | person_id minted or retired, over every run |
| decisions.csv | reviewer's decision, over every run (the log; the latest per pair is in force) |
| run.json | the run: when, sources, thresholds, seed, engine, version, counts |
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from joinedup.errors import InputError
from joinedup.linkage.mpi import (
    HISTORY_SCHEMA,
    Decision,
    MasterPersonIndex,
    PreviousIndex,
    RecordKey,
    is_person_id,
    people_table,
)

PERSON_INDEX = "person_index.csv"
LINKS = "links.csv"
REVIEW_QUEUE = "review_queue.csv"
HISTORY = "person_id_history.csv"
DECISIONS = "decisions.csv"
RUN_RECORD = "run.json"

DECISION_COLUMNS = (
    "left_source",
    "left_record_id",
    "right_source",
    "right_record_id",
    "decision",
    "decided_by",
    "decided_at",
    "reason",
)
_EVENTS = ("created", "split_from", "merged_into", "retired")


def _rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Each row of the CSV at `path` as (row number, 1 = the first after the header; values
    stripped), after checking the header has the `required` columns."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError(str(path), "no such file") from None
    except IsADirectoryError:
        raise InputError(str(path), "is a folder, not a CSV file") from None
    except UnicodeDecodeError as err:
        raise InputError(str(path), "not UTF-8 text (save the file as UTF-8)") from err
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(f"{path} header", f"no column {', '.join(missing)}")
        for number, row in enumerate(reader, start=1):
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(
                    f"{path} row {number}", f"{len(row)} fields where the header has {len(header)}"
                )
            yield number, {name: value.strip() for name, value in zip(header, row, strict=True)}
    except csv.Error as err:
        raise InputError(f"{path} row {reader.line_num - 1}", f"not valid CSV ({err})") from None


def _instant(text: str, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(where, "not a date and time (e.g. 2026-12-05T18:00:00Z)") from None
    if value.tzinfo is None:
        raise InputError(where, "give the time zone (e.g. 2026-12-05T18:00:00Z for UTC)")
    return value.astimezone(UTC)


def _required(row: dict[str, str], column: str, where: str) -> str:
    if not row[column]:
        raise InputError(f"{where}, column {column}", f"{column} is empty")
    return row[column]


def read_decisions(path: Path) -> list[Decision]:
    """Reviewers' decisions from the CSV at `path` (columns `DECISION_COLUMNS`; `reason` may
    be empty). A row with no decision, decided_by, decided_at or reason is not decided yet and
    is skipped, so a review queue with some rows filled in can be given as it is. Raises
    `InputError` naming the row and column."""
    decisions = []
    for number, row in _rows(path, DECISION_COLUMNS[:-1]):
        where = f"{path} row {number}"
        row.setdefault("reason", "")
        if not any(row[c] for c in DECISION_COLUMNS[4:]):
            continue
        left: RecordKey = (
            _required(row, "left_source", where),
            _required(row, "left_record_id", where),
        )
        right: RecordKey = (
            _required(row, "right_source", where),
            _required(row, "right_record_id", where),
        )
        if left == right:
            raise InputError(f"{where}, column right_record_id", "a record paired with itself")
        decision = row["decision"].lower()
        if decision not in ("accept", "reject"):
            raise InputError(f"{where}, column decision", "decision is not accept or reject")
        decided_by = _required(row, "decided_by", where)
        decided_at = _instant(_required(row, "decided_at", where), f"{where}, column decided_at")
        decisions.append(
            Decision(left, right, decision, decided_by, decided_at, row["reason"])  # type: ignore[arg-type]
        )
    return decisions


def read_previous(folder: Path) -> PreviousIndex:
    """The index a previous run wrote to `folder` (its person_index.csv, and the history and
    decisions beside it). Raises `InputError` naming the file, row and column."""
    if not (folder / PERSON_INDEX).is_file():
        raise InputError(str(folder), f"no {PERSON_INDEX}: not a folder `link index` wrote")
    people: dict[RecordKey, str] = {}
    path = folder / PERSON_INDEX
    for number, row in _rows(path, ("source", "record_id", "person_id")):
        where = f"{path} row {number}"
        key = (_required(row, "source", where), _required(row, "record_id", where))
        person_id = row["person_id"]
        if not is_person_id(person_id):
            raise InputError(f"{where}, column person_id", "not a person_id (P and nine digits)")
        if key in people:
            raise InputError(f"{where}, column record_id", "the same source record twice")
        people[key] = person_id
    history: list[dict[str, Any]] = []
    path = folder / HISTORY
    if path.exists():
        columns = ("person_id", "event", "related_person_id", "record_count", "run_at")
        for number, row in _rows(path, columns):
            where = f"{path} row {number}"
            if not is_person_id(row["person_id"]):
                raise InputError(f"{where}, column person_id", "not a person_id")
            if row["event"] not in _EVENTS:
                raise InputError(f"{where}, column event", f"not one of {', '.join(_EVENTS)}")
            if row["related_person_id"] and not is_person_id(row["related_person_id"]):
                raise InputError(f"{where}, column related_person_id", "not a person_id")
            if not row["record_count"].isdigit():
                raise InputError(f"{where}, column record_count", "not a whole number")
            history.append(
                {
                    "seq": len(history),
                    "person_id": row["person_id"],
                    "event": row["event"],
                    "related_person_id": row["related_person_id"] or None,
                    "record_count": int(row["record_count"]),
                    "run_at": _instant(row["run_at"], f"{where}, column run_at"),
                }
            )
    decisions = read_decisions(folder / DECISIONS) if (folder / DECISIONS).exists() else []
    return PreviousIndex(
        people_table(people), pa.Table.from_pylist(history, schema=HISTORY_SCHEMA), decisions
    )


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _text(value: Any) -> Any:
    """A cell as `link index` has always written it: floats as Python gives them, booleans
    as true/false, instants in UTC, nothing as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def _rows_of(table: pa.Table, columns: Sequence[str], blank: int = 0) -> Iterator[list[Any]]:
    """The rows of `columns` of `table`, a batch at a time, with `blank` empty cells after."""
    for batch in table.select(list(columns)).to_batches(max_chunksize=50_000):
        for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
            yield [*(_text(v) for v in row), *([""] * blank)]


_PAIR_COLUMNS = ("left_source", "left_record_id", "right_source", "right_record_id")


def _files(index: MasterPersonIndex) -> list[tuple[str, Sequence[str], Iterable[Sequence[Any]]]]:
    entries = ("source", "record_id", "person_id", "linked_by", "match_weight", "needs_review")
    links = (*_PAIR_COLUMNS, "person_id", "matched_by", "match_probability", "match_weight",
             "evidence")  # fmt: skip
    review = (*_PAIR_COLUMNS, "match_probability", "match_weight", "queued_for", "evidence",
              "left_person_id", "right_person_id")  # fmt: skip
    history = ("person_id", "event", "related_person_id", "record_count", "run_at")
    decisions = (
        [*d.left, *d.right, d.decision, d.decided_by, d.decided_at.astimezone(UTC).isoformat(),
         d.reason]
        for d in index.decisions
    )  # fmt: skip
    return [
        (PERSON_INDEX, entries, _rows_of(index.entries, entries)),
        (LINKS, links, _rows_of(index.links, links)),
        (REVIEW_QUEUE, (*review, *DECISION_COLUMNS[4:]), _rows_of(index.review, review, 4)),
        (HISTORY, history, _rows_of(index.history, history)),
        (DECISIONS, DECISION_COLUMNS, decisions),
    ]


def check_output(folder: Path) -> None:
    """Refuse to write over a folder that holds something other than an index."""
    if folder.exists() and (
        not folder.is_dir() or (any(folder.iterdir()) and not (folder / PERSON_INDEX).is_file())
    ):
        raise InputError(
            str(folder), "exists and is not an index folder; give a new or empty folder"
        )


def write_index(index: MasterPersonIndex, folder: Path, run: dict[str, Any]) -> None:
    """Write `index` and the run record `run` (plus the index's counts) to `folder`, whole or
    not at all: the files go to a temporary folder beside it, which then replaces it."""
    check_output(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        for name, header, rows in _files(index):
            _write_csv(partial / name, header, rows)
        record = {**run, "counts": asdict(index.summary)}
        (partial / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            folder.rename(old / folder.name)
            try:
                partial.rename(folder)
            except BaseException:
                (old / folder.name).rename(folder)
                raise
            shutil.rmtree(old)
        else:
            partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
