"""The master person index in the records store (issue 17): the tables beside the resources'
(the same MetaData, so one database holds both), written whole in one transaction and read
back as the previous index of the next `joinedup link index` run.

| table | one row per |
|---|---|
| mpi_person_index | source record: its person_id, how it was linked, its match weight |
| mpi_links | link the index rests on, with its evidence |
| mpi_review_queue | pair for a person to decide |
| mpi_review_records | record in the review queue: the identity fields a reviewer compares |
| mpi_person_id_history | person_id minted or retired, over every run |
| mpi_decisions | reviewer's decision, over every run (append-only; the latest is in force) |
| mpi_runs | run: when, its settings and counts (JSON) |

A run writes only what changed since the run before (the difference is found in the engine
that built the index, `joinedup.linkage.mpi.index_changes`): rows of the index, links, queue
and queued records deleted or inserted, history events appended, and the decisions it
brought, all in one transaction. Decisions are only ever added, so one a reviewer saves
while a run is under way is kept and applied by the next run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from joinedup.errors import ConfigurationError, InputError
from joinedup.linkage.mpi import (
    ENTRIES_SCHEMA,
    HISTORY_SCHEMA,
    LINKS_SCHEMA,
    REVIEW_SCHEMA,
    Decision,
    IndexChanges,
    MasterPersonIndex,
    PreviousIndex,
    RecordKey,
    ReviewItem,
    TableChange,
    index_changes,
)
from joinedup.records.errors import RecordsError
from joinedup.records.store import _SCHEMA_LOCK, _serialise_sqlite, database_url, person_links
from joinedup.records.store.tables import UtcDateTime, metadata
from joinedup.warehouse import Engine

__all__ = ["REVIEW_FIELDS", "PersonIndexStore", "ReviewPair", "ReviewRecord"]

#: The identity fields kept for each record in the review queue, and shown to a reviewer.
REVIEW_FIELDS = ("given_name", "family_name", "birth_date", "sex", "postcode", "nhs_number")

_SOURCE = 64
_RECORD_ID = 128


def _pair_columns() -> list[Column[Any]]:
    return [
        Column("left_source", String(_SOURCE), nullable=False),
        Column("left_record_id", String(_RECORD_ID), nullable=False),
        Column("right_source", String(_SOURCE), nullable=False),
        Column("right_record_id", String(_RECORD_ID), nullable=False),
    ]


mpi_person_index = Table(
    "mpi_person_index",
    metadata,
    Column("source", String(_SOURCE), primary_key=True),
    Column("record_id", String(_RECORD_ID), primary_key=True),
    Column("person_id", String(16), nullable=False),
    Column("linked_by", String(16), nullable=True),
    Column("match_weight", Float, nullable=True),
    Column("needs_review", Boolean, nullable=False),
    Index("ix_mpi_person_index_person", "person_id"),
)

mpi_links = Table(
    "mpi_links",
    metadata,
    *_pair_columns(),
    Column("person_id", String(16), nullable=False),
    Column("matched_by", String(16), nullable=False),
    Column("match_probability", Float, nullable=True),
    Column("match_weight", Float, nullable=True),
    Column("evidence", Text, nullable=False),
    Index("ix_mpi_links_person", "person_id"),
    # A run deletes the links that changed by their two records.
    Index("ix_mpi_links_pair", "left_source", "left_record_id", "right_source", "right_record_id"),
)

mpi_review_queue = Table(
    "mpi_review_queue",
    metadata,
    Column("position", Integer, primary_key=True, autoincrement=False),
    *_pair_columns(),
    Column("match_probability", Float, nullable=True),
    Column("match_weight", Float, nullable=True),
    Column("queued_for", String(64), nullable=False),
    Column("evidence", Text, nullable=False),
    Column("left_person_id", String(16), nullable=False),
    Column("right_person_id", String(16), nullable=False),
)

mpi_review_records = Table(
    "mpi_review_records",
    metadata,
    Column("source", String(_SOURCE), primary_key=True),
    Column("record_id", String(_RECORD_ID), primary_key=True),
    *(Column(name, String(256), nullable=True) for name in REVIEW_FIELDS),
)

mpi_person_id_history = Table(
    "mpi_person_id_history",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("person_id", String(16), nullable=False),
    Column("event", String(16), nullable=False),
    Column("related_person_id", String(16), nullable=True),
    Column("record_count", Integer, nullable=False),
    Column("run_at", UtcDateTime, nullable=False),
)

mpi_decisions = Table(
    "mpi_decisions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    *_pair_columns(),
    Column("decision", String(8), nullable=False),
    Column("decided_by", String(200), nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
)

mpi_runs = Table(
    "mpi_runs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("run_at", UtcDateTime, nullable=False),
    Column("record", Text, nullable=False),
)

#: The PostgreSQL advisory lock a writer of the index holds, so two runs (or a run and a
#: reviewer) never interleave ("mpi" in ASCII).
_INDEX_LOCK = 0x6D7069

#: The queued records' identity fields, as the store keeps them.
REVIEW_RECORDS_SCHEMA = pa.schema(
    [("source", pa.string()), ("record_id", pa.string()),
     *((name, pa.string()) for name in REVIEW_FIELDS)]
)  # fmt: skip


@dataclass(frozen=True)
class ReviewRecord:
    """One side of a pair in the review queue, with its identity fields (identifiable)."""

    source: str
    record_id: str
    person_id: str
    fields: Mapping[str, str | None]


@dataclass(frozen=True)
class ReviewPair:
    """A pair waiting for a decision: the queue's row, and both records side by side."""

    item: ReviewItem
    left: ReviewRecord
    right: ReviewRecord


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    return text or None


class PersonIndexStore:
    """The master person index in the records store at `target` (a SQLite path or a
    database URL); its tables are created when missing."""

    def __init__(self, target: str | Path) -> None:
        url = database_url(target)
        self.location = make_url(url).render_as_string(hide_password=True)
        """Where the store is, without its password."""
        if url.startswith("sqlite"):
            database = make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._engine = create_engine(url)
            _serialise_sqlite(self._engine)
        else:
            self._engine = create_engine(
                url, connect_args={"options": "-c timezone=UTC"}, pool_pre_ping=True
            )
        try:
            with self._engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
                metadata.create_all(conn)
        except OperationalError as err:
            self._engine.dispose()
            where = make_url(url).render_as_string(hide_password=True)
            reason = (str(err.orig).splitlines() or ["no reason given"])[0]
            raise ConfigurationError(f"records: cannot open {where} ({reason})") from None

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> PersonIndexStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """One write transaction, holding the index's lock (SQLite: BEGIN IMMEDIATE)."""
        with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_INDEX_LOCK)))
            yield conn

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(records_read=True)
            yield conn

    # --- the index, whole ----------------------------------------------------------------

    def has_index(self) -> bool:
        """Whether a run has written an index here."""
        with self._reading() as conn:
            return conn.execute(select(func.count()).select_from(mpi_runs)).scalar_one() > 0

    def read_previous(self) -> PreviousIndex | None:
        """The index the last run wrote (None when there is none): its tables whole, as the
        previous index of the next run and what that run's changes are found against, with
        the id history, every decision so far (reviewers' ones from the dashboard included)
        and the run it was (`run_seq`)."""
        with self._reading() as conn:
            run_seq = conn.execute(select(func.max(mpi_runs.c.seq))).scalar_one()
            if run_seq is None:
                return None
            h, q = mpi_person_id_history.c, mpi_review_queue.c
            return PreviousIndex(
                people=_arrow(conn, select(mpi_person_index), ENTRIES_SCHEMA),
                history=_arrow(conn, select(mpi_person_id_history).order_by(h.seq), HISTORY_SCHEMA),
                decisions=self._decisions(conn),
                links=_arrow(conn, select(mpi_links), LINKS_SCHEMA),
                review=_arrow(conn, select(mpi_review_queue).order_by(q.position), REVIEW_SCHEMA),
                review_records=_arrow(conn, select(mpi_review_records), REVIEW_RECORDS_SCHEMA),
                run_seq=run_seq,
            )

    def _decisions(self, conn: Connection) -> list[Decision]:
        d = mpi_decisions.c
        rows = conn.execute(
            select(
                d.left_source, d.left_record_id, d.right_source, d.right_record_id,
                d.decision, d.decided_by, d.decided_at, d.reason,
            ).order_by(d.seq)
        )  # fmt: skip
        return [
            Decision(
                (r.left_source, r.left_record_id), (r.right_source, r.right_record_id),
                r.decision, r.decided_by, r.decided_at, r.reason,
            )
            for r in rows
        ]  # fmt: skip

    def decisions(self) -> list[Decision]:
        """Every decision so far, oldest first."""
        with self._reading() as conn:
            return self._decisions(conn)

    def write_index(
        self,
        engine: Engine,
        index: MasterPersonIndex,
        previous: PreviousIndex | None,
        run: Mapping[str, Any],
        identities: Mapping[RecordKey, Mapping[str, object]] | None = None,
    ) -> IndexChanges:
        """Make the store hold `index`, built in `engine` from `previous` (what
        `read_previous` gave, or None for an empty store), writing only what changed, in one
        transaction (a failure anywhere, or a kill, leaves the old index); add the decisions
        of its log not stored yet, and record the run `run` with the index's counts and the
        rows written. `identities` gives the identity fields of records (only those of
        records in the review queue are kept, for reviewers to compare). Refused when
        another run has written the index since `previous` was read."""
        queued = _queued_records(index.review, identities or {})
        changes = index_changes(engine, index, previous, queued)
        record = json.dumps(
            {**run, "counts": asdict(index.summary), "rows_written": changes.rows()}, default=str
        )
        try:
            self._write(changes, index.decisions, run, record)
        except SQLAlchemyError as err:
            reason = (str(getattr(err, "orig", None) or err).splitlines() or ["no reason"])[0]
            raise RecordsError(
                f"records: the person index was not written, the old one stands ({reason})"
            ) from None
        return changes

    def _write(
        self,
        changes: IndexChanges,
        decisions: Sequence[Decision],
        run: Mapping[str, Any],
        record: str,
    ) -> None:
        with self._writing() as conn:
            latest = conn.execute(select(func.max(mpi_runs.c.seq))).scalar_one()
            if latest != changes.run_seq:
                raise RecordsError(
                    "records: the person index was not written, the old one stands (another "
                    "run wrote it after this one read it; run again)"
                )
            for table, change in (
                (mpi_person_index, changes.entries),
                (mpi_links, changes.links),
                (mpi_review_queue, changes.review),
                (mpi_review_records, changes.review_records),
            ):
                _apply(conn, table, change)
            _insert(conn, mpi_person_id_history, changes.history.to_pylist())
            stored = set(self._decisions(conn))
            _insert(conn, mpi_decisions, [_decision_row(d) for d in decisions
                                          if d not in stored])  # fmt: skip
            conn.execute(insert(mpi_runs), {"run_at": _run_at(run), "record": record})
            # The person each records Patient is, kept for withholding by the person's
            # objections, follows the index in the same transaction: that of the Patients
            # naming a record whose row changed.
            person_links.rebuild_people(conn, _record_ids(changes.entries))

    # --- the review queue ----------------------------------------------------------------

    def review_pairs(self, *, limit: int = 50, offset: int = 0) -> tuple[int, list[ReviewPair]]:
        """How many pairs wait for a decision, and one page of them with both records (the
        queue's order: rejected pairs still joined first, then the likeliest)."""
        q = mpi_review_queue.c
        with self._reading() as conn:
            total = conn.execute(select(func.count()).select_from(mpi_review_queue)).scalar_one()
            rows = conn.execute(
                select(mpi_review_queue).order_by(q.position).limit(limit).offset(offset)
            ).all()
            keys = {k for r in rows for k in ((r.left_source, r.left_record_id),
                                               (r.right_source, r.right_record_id))}  # fmt: skip
            people = self._records(conn, keys)
        pairs = []
        for r in rows:
            item = ReviewItem(
                (r.left_source, r.left_record_id), (r.right_source, r.right_record_id),
                r.match_probability, r.match_weight, r.evidence, r.queued_for,
                r.left_person_id, r.right_person_id,
            )  # fmt: skip
            pairs.append(
                ReviewPair(
                    item,
                    ReviewRecord(*item.left, item.left_person_id, people.get(item.left, {})),
                    ReviewRecord(*item.right, item.right_person_id, people.get(item.right, {})),
                )
            )
        return total, pairs

    def _records(
        self, conn: Connection, keys: set[RecordKey]
    ) -> dict[RecordKey, dict[str, str | None]]:
        if not keys:
            return {}
        r = mpi_review_records.c
        sources = sorted({k[0] for k in keys})
        found = {}
        for row in conn.execute(select(mpi_review_records).where(r.source.in_(sources))):
            key = (row.source, row.record_id)
            if key in keys:
                found[key] = {f: getattr(row, f) for f in REVIEW_FIELDS}
        return found

    def queued(self, left: RecordKey, right: RecordKey) -> ReviewItem | None:
        """The queue's row for the pair of `left` and `right` (either way round), if queued."""
        q = mpi_review_queue.c
        with self._reading() as conn:
            for a, b in ((left, right), (right, left)):
                r = conn.execute(
                    select(mpi_review_queue).where(
                        q.left_source == a[0], q.left_record_id == a[1],
                        q.right_source == b[0], q.right_record_id == b[1],
                    )
                ).first()  # fmt: skip
                if r is not None:
                    return ReviewItem(
                        (r.left_source, r.left_record_id), (r.right_source, r.right_record_id),
                        r.match_probability, r.match_weight, r.evidence, r.queued_for,
                        r.left_person_id, r.right_person_id,
                    )  # fmt: skip
        return None

    def decide(self, decision: Decision) -> int:
        """Add a reviewer's decision to the log (applied by the next `link index` run);
        returns its number in the log, the store's own id for it."""
        if decision.left == decision.right:
            raise InputError("decision", "a record paired with itself")
        if decision.decision not in ("accept", "reject"):
            raise InputError("decision", "decision is not accept or reject")
        with self._writing() as conn:
            written = conn.execute(insert(mpi_decisions).values(**_decision_row(decision)))
            number: int = written.inserted_primary_key[0]  # type: ignore[index]
            return number


def _pair(left: RecordKey, right: RecordKey) -> dict[str, str]:
    return {"left_source": left[0], "left_record_id": left[1],
            "right_source": right[0], "right_record_id": right[1]}  # fmt: skip


def _decision_row(d: Decision) -> dict[str, Any]:
    return {**_pair(d.left, d.right), "decision": d.decision, "decided_by": d.decided_by,
            "decided_at": d.decided_at, "reason": d.reason}  # fmt: skip


def _arrow(conn: Connection, query: Any, schema: pa.Schema) -> pa.Table:
    """The rows of `query` as an Arrow table of `schema` (its columns by name)."""
    result = conn.execute(query)
    names = list(result.keys())
    columns = list(zip(*result.all(), strict=True)) or [() for _ in names]
    found = dict(zip(names, columns, strict=True))
    return pa.table({f.name: pa.array(found[f.name], f.type) for f in schema}, schema=schema)


def _queued_records(
    review: pa.Table, identities: Mapping[RecordKey, Mapping[str, object]]
) -> pa.Table:
    """The identity fields of each record in the review queue, in record order."""
    keys = sorted(
        {(r[f"{side}_source"], r[f"{side}_record_id"]) for r in review.to_pylist()
         for side in ("left", "right")}
    )  # fmt: skip
    rows = [
        {"source": key[0], "record_id": key[1],
         **{f: _text(identities.get(key, {}).get(f)) for f in REVIEW_FIELDS}}
        for key in keys
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=REVIEW_RECORDS_SCHEMA)


def _apply(conn: Connection, table: Table, change: TableChange) -> None:
    """Delete the rows of `change.deleted` (by key) and insert `change.inserted`."""
    # One statement a key, sent as one batch: each finds its row by the table's key index
    # (a row-value IN list makes SQLite scan the table).
    statement = delete(table).where(*(table.c[k] == bindparam(f"key_{k}") for k in change.keys))
    keys = [{f"key_{k}": v for k, v in row.items()} for row in change.deleted.to_pylist()]
    for start in range(0, len(keys), 10_000):
        conn.execute(statement, keys[start : start + 10_000])
    _insert(conn, table, change.inserted.to_pylist())


def _record_ids(change: TableChange) -> list[str]:
    """The record ids of the index rows `change` deletes or inserts."""
    return [
        str(row["record_id"])
        for rows in (change.deleted, change.inserted)
        for row in rows.select(["record_id"]).to_pylist()
    ]


def _insert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    # In batches, so a million-record index is not one statement of a million parameter sets
    # held at once by the driver.
    for start in range(0, len(rows), 10_000):
        conn.execute(insert(table), list(rows[start : start + 10_000]))


def _run_at(run: Mapping[str, Any]) -> datetime:
    value = run.get("run_at")
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return datetime.now(UTC)
