"""The records store: FHIR resources, every version of each, and their search index, in SQLite
(a file, the embedded default) or PostgreSQL (a URL), through SQLAlchemy.

Every write is one database transaction that replaces the current version, appends to the
history and rewrites the resource's index rows; a transaction of many writes is one database
transaction too, so a failure anywhere in it leaves nothing written. The only module that
imports SQLAlchemy or a database driver (an import-linter contract keeps it so).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    true,
)
from sqlalchemy import update as sql_update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, IntegrityError, OperationalError

from joinedup.errors import ConfigurationError
from joinedup.records import consent
from joinedup.records.errors import (
    InvalidResourceError,
    InvalidSearchError,
    PreconditionFailedError,
    RecordsError,
    ResourceDeletedError,
    ResourceNotFoundError,
    TransactionFailedError,
    VersionConflictError,
)
from joinedup.records.operations import (
    ConditionalUpdate,
    Create,
    Delete,
    Operation,
    Outcome,
    Update,
)
from joinedup.records.parameters import Link, entries
from joinedup.records.store import person_links, withheld, withholding
from joinedup.records.store import search as searching
from joinedup.records.store.person_links import LinkedPatient
from joinedup.records.store.rows import insert_rows
from joinedup.records.store.tables import (
    INDEX_TABLES,
    access_grants,
    metadata,
    resource_versions,
    resources,
    search_dates,
    search_references,
    search_strings,
    search_tokens,
)
from joinedup.records.validation import validate_resource

__all__ = [
    "Grant",
    "HistoryEntry",
    "LinkedPatient",
    "RecordStore",
    "SearchPage",
    "database_url",
]


def database_url(target: str | Path) -> str:
    """The SQLAlchemy URL of a records location: a `postgresql://` URL (psycopg 3 is used), a
    `sqlite:///` URL, or a file path for SQLite."""
    text = str(target)
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    try:
        url = make_url(text)
    except ArgumentError:
        raise ConfigurationError("records: not a database URL") from None
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if url.drivername == "sqlite":
        return text
    raise ConfigurationError(
        f"records: {url.drivername} is not a supported database (a SQLite file path, "
        "sqlite:///PATH or postgresql://...)"
    )


@dataclass(frozen=True)
class HistoryEntry:
    """One version of a resource: None for `resource` when the version is a deletion."""

    version_id: int
    last_updated: datetime
    deleted: bool
    resource: dict[str, Any] | None


@dataclass(frozen=True)
class SearchPage:
    """One page of a search: how many match in all, where the page starts, and its
    resources."""

    total: int
    offset: int
    count: int
    resources: list[dict[str, Any]]


@dataclass(frozen=True)
class Grant:
    """A break-glass grant: `username` may read patient `patient_id`'s record from
    `granted_at` until `expires_at`, for the `reason` they gave."""

    grant_id: str
    username: str
    patient_id: str
    reason: str
    granted_at: datetime
    expires_at: datetime


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _body(resource: dict[str, Any]) -> str:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"))


class RecordStore:
    """A records store at `target` (a SQLite path or a database URL); its tables are created
    when missing. `clock` gives the instant each write is stamped with (UTC)."""

    def __init__(self, target: str | Path, *, clock: Callable[[], datetime] | None = None) -> None:
        url = database_url(target)
        self._clock = clock or (lambda: datetime.now(UTC))
        # The identifier systems mappings whose people this store knows are kept
        # (store.person_links.start_keeping): kept once, kept for good.
        self._people_kept: set[tuple[tuple[str, str], ...]] = set()
        if url.startswith("sqlite"):
            database = make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._engine = create_engine(url)
            _serialise_sqlite(self._engine)
        else:
            self._engine = _postgresql_engine(url)
        # PostgreSQL: reads in autocommit, one round trip a statement, with no BEGIN before
        # them nor ROLLBACK after (each statement sees what was committed when it began, as
        # in the READ COMMITTED transactions they ran in before); writes stay transactions.
        # Reads keep every connection they open (as many as writes may have open at once):
        # the API reads on up to 40 threads at once, and a connection closed when handed back
        # costs PostgreSQL a new backend process at the next burst.
        self._reader = (
            _postgresql_engine(
                url, isolation_level="AUTOCOMMIT", kept=POOL_CONNECTIONS + POOL_OVERFLOW, more=0
            )
            if self._engine.dialect.name == "postgresql"
            else self._engine
        )
        try:
            self._create_tables()
        except OperationalError as err:
            self._engine.dispose()
            where = make_url(url).render_as_string(hide_password=True)
            reason = (str(err.orig).splitlines() or ["no reason given"])[0]
            raise ConfigurationError(f"records: cannot open {where} ({reason})") from None

    def _create_tables(self) -> None:
        """Create the tables that are missing, one opener at a time: two stores opening a new
        database together would otherwise both try to create them (PostgreSQL: an advisory
        lock for the transaction; SQLite: BEGIN IMMEDIATE)."""
        with self._begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            metadata.create_all(conn)
            withheld.build_missing(conn)  # a store made before withheld_patients

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._engine.dialect.name

    @property
    def in_memory(self) -> bool:
        """Whether the store is an in-memory SQLite database (this process's alone)."""
        database = self._engine.url.database
        return self.dialect == "sqlite" and database in (None, "", ":memory:")

    def close(self) -> None:
        self._reader.dispose()
        self._engine.dispose()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            conn.info[_LOCKED] = set()
            try:
                yield conn
            finally:
                conn.info.pop(_LOCKED, None)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for reads: SQLite in a deferred transaction (a snapshot that blocks
        no writer), PostgreSQL in autocommit (see __init__)."""
        with self._reader.connect() as conn:
            conn.execution_options(records_read=True)
            yield conn

    @contextmanager
    def _streaming(self) -> Iterator[Connection]:
        """A connection in a transaction for a read streamed through a server-side cursor,
        which PostgreSQL keeps only inside one."""
        with self._engine.connect() as conn:
            conn.execution_options(records_read=True)
            yield conn

    # --- writes ---------------------------------------------------------------------------

    def create(self, resource: dict[str, Any], *, if_none_exist: str | None = None) -> Outcome:
        """Create `resource` with a new id (any id it carries is ignored). With
        `if_none_exist`, a search: when one resource matches it is returned instead, created
        False; more than one is PreconditionFailedError."""
        with self._begin() as conn:
            self._take_turns(conn, [_kind_of(resource)])
            return self._create(conn, Create(resource, if_none_exist))

    def update(self, resource: dict[str, Any], *, if_match: int | None = None) -> Outcome:
        """Write a new version of `resource` at its id (creating it if absent or deleted).
        With `if_match`, only if the current version is that number, else VersionConflictError."""
        with self._begin() as conn:
            self._take_turns(conn, [_kind_of(resource)])
            return self._update(conn, resource, if_match)

    def conditional_update(self, resource: dict[str, Any], criteria: str) -> Outcome:
        """Update the one resource matching `criteria` (a search, such as an identifier),
        create it when none does; PreconditionFailedError when several do."""
        with self._begin() as conn:
            self._take_turns(conn, [_kind_of(resource)])
            return self._conditional_update(conn, ConditionalUpdate(resource, criteria))

    def delete(self, resource_type: str, resource_id: str) -> Outcome | None:
        """Delete a resource as a new version flagged deleted; None when there was nothing
        to delete (absent, or deleted already)."""
        with self._begin() as conn:
            self._take_turns(conn, [resource_type])
            return self._delete(conn, resource_type, resource_id)

    def transaction(
        self,
        operations: Iterable[Operation],
        *,
        on_outcome: Callable[[int, Outcome | None], None] | None = None,
        criteria: Iterable[tuple[str, str]] = (),
        kinds: Iterable[str] | None = None,
    ) -> list[Outcome | None]:
        """Apply every operation, in order, in one database transaction: all are written or,
        when one fails (TransactionFailedError names it), none is. `on_outcome` hears each
        outcome as it happens, before the next operation is taken from `operations` (so a
        generator can build later operations from earlier ids, as a FHIR transaction's
        `urn:uuid` references need). The locks the writes want are taken before anything is
        written, all in one order, so that two transactions never wait on each other: a
        generator, which cannot be read ahead, names its conditional writes' criteria in
        `criteria` as (resource type, criteria) pairs, and the resource types it writes in
        `kinds` (ValueError when it writes another; none named: taken as writing Consents
        and Patients, whose writes want the withheld rows' lock); a list of operations
        needs neither."""
        named: set[str | None] | None = None if kinds is None else set(kinds)
        if isinstance(operations, Sequence):
            criteria = [*criteria, *_conditions(operations)]
            named = {*(named or ()), *(_kind_of(o) for o in operations)}
        outcomes: list[Outcome | None] = []
        with self._begin() as conn:
            self._take_turns(conn, ["Consent", "Patient"] if named is None else named)
            self._lock_criteria(conn, criteria)
            for index, operation in enumerate(operations):
                kind = _kind_of(operation)
                if named is not None and kind is not None and kind not in named:
                    raise ValueError(
                        f"transaction: operation {index} writes a {kind}, not one of the "
                        f"kinds named ({', '.join(sorted(k for k in named if k))})"
                    )
                try:
                    outcome = self._apply(conn, operation)
                except RecordsError as err:
                    raise TransactionFailedError(index, err) from err
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(index, outcome)
        return outcomes

    def load_chunk(
        self,
        given: Sequence[dict[str, Any]],
        *,
        checked: Sequence[InvalidResourceError | bool] | None = None,
    ) -> list[Outcome | InvalidResourceError]:
        """Write each of `given` at its own id as `Update(resource, if_changed=True)` in
        `transaction` would, in order and in one database transaction, but with the database
        work done a table at a time (one query for the current versions, then one multi-row
        statement a table) rather than a resource at a time: the bulk load's path. The
        versions, index rows and outcomes are those `transaction` gives. A resource that fails
        validation is not written: its place in the answer holds the InvalidResourceError
        `transaction` would have failed with, and the others are written. Any other failure
        writes nothing: VersionConflictError when another writer wrote one of them meanwhile
        (without naming which; `transaction` does).

        `checked`, one a resource, is what validation found in it already, stamped as it would
        be (the bulk load's worker processes, `records.bulk`): True valid, the
        InvalidResourceError it fails with, or False when not checked (validated here)."""
        prepared: list[dict[str, Any] | InvalidResourceError] = []
        for item in given:
            try:
                copied = _resource_of(item)
                kind, rid = copied["resourceType"], copied.get("id")
                if not isinstance(rid, str) or not rid:
                    raise InvalidResourceError(
                        kind, [f"{kind}.id: an update needs the resource's id"]
                    )
            except InvalidResourceError as err:
                prepared.append(err)
                continue
            prepared.append(copied)
        outcomes: list[Outcome | InvalidResourceError] = []
        with self._begin() as conn:
            keys = {(r["resourceType"], r["id"]) for r in prepared if isinstance(r, dict)}
            self._take_turns(conn, {kind for kind, _ in keys})
            stored = self._current_many(conn, keys)
            # Each resource's (version, deleted, body) as the chunk so far leaves it, so a
            # resource given twice in one chunk is compared with, and versioned after, itself.
            state = dict(stored)
            written: dict[tuple[str, str], dict[str, Any]] = {}  # the last version of each
            versions: list[dict[str, Any]] = []
            for index, resource in enumerate(prepared):
                if isinstance(resource, InvalidResourceError):
                    outcomes.append(resource)
                    continue
                key = kind, rid = resource["resourceType"], resource["id"]
                current = state.get(key)
                if current is not None and not current[1]:
                    held = _loads(current[2])
                    if _content(held) == _content(resource):
                        outcomes.append(Outcome(kind, rid, current[0], False, held, changed=False))
                        continue
                version = 1 if current is None else current[0] + 1
                now = self._clock()
                _stamp(resource, version, now)
                verdict = False if checked is None else checked[index]
                if isinstance(verdict, InvalidResourceError):
                    outcomes.append(verdict)
                    continue
                if verdict is False:
                    try:
                        validate_resource(resource)
                    except InvalidResourceError as err:
                        outcomes.append(err)
                        continue
                body = _body(resource)
                state[key] = (version, False, body)
                row = {
                    "resource_type": kind, "resource_id": rid, "version_id": version,
                    "last_updated": now, "deleted": False, "body": body,
                }  # fmt: skip
                versions.append(row)
                written[key] = {**row, "resource": resource}
                outcomes.append(
                    Outcome(kind, rid, version, current is None or current[1], resource)
                )
            self._write_many(conn, stored, written, versions)
        return outcomes

    def _current_many(
        self, conn: Connection, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[int, bool, str | None]]:
        """The current (version, deleted, body) of each of `keys` that is stored: one query a
        type and 500 ids."""
        by_kind: dict[str, list[str]] = {}
        for kind, rid in keys:
            by_kind.setdefault(kind, []).append(rid)
        c = resources.c
        found: dict[tuple[str, str], tuple[int, bool, str | None]] = {}
        for kind, ids in sorted(by_kind.items()):
            for chunk in _chunks(sorted(ids)):
                rows = conn.execute(
                    select(c.resource_id, c.version_id, c.deleted, c.body).where(
                        c.resource_type == kind, c.resource_id.in_(chunk)
                    )
                )
                found.update(((kind, r[0]), (r[1], r[2], r[3])) for r in rows)
        return found

    def _write_many(
        self,
        conn: Connection,
        stored: Mapping[tuple[str, str], tuple[int, bool, str | None]],
        written: Mapping[tuple[str, str], dict[str, Any]],
        versions: list[dict[str, Any]],
    ) -> None:
        """`load_chunk`'s writes, one multi-row statement a table: the current rows (inserted
        when new to the store, else moved on from the version read, as `_guarded_update`),
        every version, and the index rows of each resource's last version (those of a resource
        already stored removed first). New rows go in with `rows.insert_rows` (COPY on
        PostgreSQL)."""
        if not versions:
            return
        columns = ("resource_type", "resource_id", "version_id", "last_updated", "deleted", "body")
        new = [{c: row[c] for c in columns} for k, row in written.items() if k not in stored]
        moved = [k for k in written if k in stored]
        if new:
            try:
                insert_rows(conn, resources, new)
            except IntegrityError:  # the whole transaction is rolled back after this
                raise VersionConflictError(
                    f"one of {len(new)} resources new to the store was written by someone else "
                    "meanwhile"
                ) from None
        if moved:
            done = conn.execute(
                _MOVE_CURRENT,
                [
                    {
                        "kind": kind, "rid": rid, "expected": stored[(kind, rid)][0],
                        "version_id": written[(kind, rid)]["version_id"],
                        "last_updated": written[(kind, rid)]["last_updated"], "deleted": False,
                        "body": written[(kind, rid)]["body"],
                    }
                    for kind, rid in moved
                ],
            )  # fmt: skip
            if done.rowcount != len(moved):
                raise VersionConflictError(
                    f"one of {len(moved)} stored resources was written by someone else meanwhile"
                )
        insert_rows(conn, resource_versions, versions)
        consents = [rid for kind, rid in written if kind == "Consent"]
        objecting = withheld.objecting_patients(conn, consents)  # as they were
        if moved:
            gone = [{"kind": kind, "rid": rid} for kind, rid in moved]
            for statement in _UNINDEX:
                conn.execute(statement, gone)
        rows: dict[Any, list[dict[str, Any]]] = {table: [] for table in INDEX_TABLES}
        for row in written.values():
            for table, values in _index_rows(row["resource"]):
                rows[table].extend(values)
        for table, values in rows.items():
            insert_rows(conn, table, values)
        # What objections withhold, in one pass for the chunk: the rows of its Patients that
        # moved between people and of the Patients its Consents object (or objected) for.
        patients = [rid for kind, rid in written if kind == "Patient"]
        objecting |= withheld.objecting_patients(conn, consents)
        withheld.held_again(conn, person_links.people_moved(conn, patients), own=objecting)

    def _apply(self, conn: Connection, operation: Operation) -> Outcome | None:
        if isinstance(operation, Create):
            return self._create(conn, operation)
        if isinstance(operation, Update):
            return self._update(conn, operation.resource, operation.if_match, operation.if_changed)
        if isinstance(operation, ConditionalUpdate):
            return self._conditional_update(conn, operation)
        return self._delete(conn, operation.resource_type, operation.resource_id)

    def _create(self, conn: Connection, operation: Create) -> Outcome:
        resource = _resource_of(operation.resource)
        kind = resource["resourceType"]
        if operation.if_none_exist is not None:
            self._lock_criteria(conn, [(kind, operation.if_none_exist)])
            matched = self._matching(conn, kind, operation.if_none_exist)
            if len(matched) > 1:
                raise PreconditionFailedError(
                    f"{kind}?{operation.if_none_exist}: matches {len(matched)} resources"
                )
            if matched:
                current = self._current(conn, kind, matched[0])
                assert current is not None  # matched by a search over live resources
                return Outcome(kind, matched[0], current[0], False, _loads(current[3]))
        resource["id"] = str(uuid.uuid4())
        return self._write(conn, resource, version_id=1, created=True, existing=False)

    def _update(
        self, conn: Connection, given: dict[str, Any], if_match: int | None,
        if_changed: bool = False,
    ) -> Outcome:  # fmt: skip
        resource = _resource_of(given)
        kind, rid = resource["resourceType"], resource.get("id")
        if not isinstance(rid, str) or not rid:
            raise InvalidResourceError(kind, [f"{kind}.id: an update needs the resource's id"])
        current = self._current(conn, kind, rid)
        if if_match is not None and (current is None or current[0] != if_match):
            found = "does not exist" if current is None else f"is at version {current[0]}"
            raise VersionConflictError(f"{kind}/{rid}: If-Match version {if_match}, but it {found}")
        if if_changed and current is not None and not current[2]:
            stored = _loads(current[3])
            if _content(stored) == _content(resource):
                return Outcome(kind, rid, current[0], False, stored, changed=False)
        version = 1 if current is None else current[0] + 1
        created = current is None or current[2]
        return self._write(
            conn,
            resource,
            version_id=version,
            created=created,
            existing=current is not None,
            expected=None if current is None else current[0],
        )

    def _conditional_update(self, conn: Connection, operation: ConditionalUpdate) -> Outcome:
        resource = _resource_of(operation.resource)
        kind = resource["resourceType"]
        self._lock_criteria(conn, [(kind, operation.criteria)])
        matched = self._matching(conn, kind, operation.criteria)
        if len(matched) > 1:
            raise PreconditionFailedError(f"{kind}?{operation.criteria}: matches {len(matched)}")
        if not matched:
            return self._create(conn, Create(resource))
        if resource.get("id") not in (None, matched[0]):
            raise InvalidResourceError(
                f"{kind}/{matched[0]}", [f"{kind}.id: differs from the resource the search found"]
            )
        resource["id"] = matched[0]
        return self._update(conn, resource, None)

    def _delete(self, conn: Connection, kind: str, rid: str) -> Outcome | None:
        current = self._current(conn, kind, rid)
        if current is None or current[2]:
            return None
        version, now = current[0] + 1, self._clock()
        self._guarded_update(conn, kind, rid, current[0], version, now, True, None)
        self._append(conn, kind, rid, version, now, True, None)
        objecting = withheld.objecting_patients(conn, [rid]) if kind == "Consent" else set()
        self._unindex(conn, kind, rid)
        if kind == "Patient":
            person_links.keep_people(conn, [rid])
        withheld.consents_written(conn, objecting)
        return Outcome(kind, rid, version, False, None)

    def _write(
        self,
        conn: Connection,
        resource: dict[str, Any],
        *,
        version_id: int,
        created: bool,
        existing: bool,
        expected: int | None = None,
    ) -> Outcome:
        kind, rid = resource["resourceType"], resource["id"]
        now = self._clock()
        _stamp(resource, version_id, now)
        validate_resource(resource)
        body = _body(resource)
        if existing:
            assert expected is not None
            self._guarded_update(conn, kind, rid, expected, version_id, now, False, body)
        else:
            try:
                conn.execute(
                    insert(resources),
                    {
                        "resource_type": kind, "resource_id": rid, "version_id": version_id,
                        "last_updated": now, "deleted": False, "body": body,
                    },
                )  # fmt: skip
            except IntegrityError:  # the whole transaction is rolled back after this
                raise VersionConflictError(
                    f"{kind}/{rid}: written by someone else meanwhile"
                ) from None
        self._append(conn, kind, rid, version_id, now, False, body)
        consent = kind == "Consent"
        # The Patients this Consent objects for, before and after: what objections withhold
        # (store.withheld) is written again for them in this transaction.
        objecting = withheld.objecting_patients(conn, [rid]) if consent and existing else set()
        if existing:  # a resource new to the store has no index rows to remove
            self._unindex(conn, kind, rid)
        self._index(conn, resource)
        if kind == "Patient":
            person_links.keep_people(conn, [rid])
        if consent:
            withheld.consents_written(conn, objecting | withheld.objecting_patients(conn, [rid]))
        return Outcome(kind, rid, version_id, created, resource)

    def _guarded_update(
        self, conn: Connection, kind: str, rid: str, expected: int, version: int,
        now: datetime, deleted: bool, body: str | None,
    ) -> None:  # fmt: skip
        """Move the current row from version `expected` to `version`; a writer that got there
        first makes this a VersionConflictError rather than a lost update."""
        done = conn.execute(
            _MOVE_CURRENT,
            {
                "kind": kind, "rid": rid, "expected": expected, "version_id": version,
                "last_updated": now, "deleted": deleted, "body": body,
            },
        )  # fmt: skip
        if done.rowcount != 1:
            raise VersionConflictError(f"{kind}/{rid}: written by someone else meanwhile")

    def _append(
        self, conn: Connection, kind: str, rid: str, version: int, now: datetime,
        deleted: bool, body: str | None,
    ) -> None:  # fmt: skip
        conn.execute(
            insert(resource_versions),
            {
                "resource_type": kind, "resource_id": rid, "version_id": version,
                "last_updated": now, "deleted": deleted, "body": body,
            },
        )  # fmt: skip

    def _unindex(self, conn: Connection, kind: str, rid: str) -> None:
        for statement in _UNINDEX:
            conn.execute(statement, {"kind": kind, "rid": rid})

    def _index(self, conn: Connection, resource: dict[str, Any]) -> None:
        for table, values in _index_rows(resource):
            if values:
                conn.execute(insert(table), values)

    # --- reads ----------------------------------------------------------------------------

    def _current(self, conn: Connection, kind: str, rid: str) -> tuple[Any, ...] | None:
        row = conn.execute(
            select(
                resources.c.version_id,
                resources.c.last_updated,
                resources.c.deleted,
                resources.c.body,
            ).where(resources.c.resource_type == kind, resources.c.resource_id == rid)
        ).first()
        return None if row is None else tuple(row)

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """The current version; ResourceNotFoundError if never written, ResourceDeletedError if its
        current version is a deletion."""
        with self._reading() as conn:
            current = self._current(conn, resource_type, resource_id)
        if current is None:
            raise ResourceNotFoundError(f"{resource_type}/{resource_id}: no such resource")
        if current[2]:
            raise ResourceDeletedError(f"{resource_type}/{resource_id}: deleted")
        return _loads(current[3])

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> dict[str, Any]:
        """One version; ResourceNotFoundError if there is no such version,
        ResourceDeletedError if that version is a deletion."""
        with self._reading() as conn:
            row = conn.execute(
                select(resource_versions.c.deleted, resource_versions.c.body).where(
                    resource_versions.c.resource_type == resource_type,
                    resource_versions.c.resource_id == resource_id,
                    resource_versions.c.version_id == version_id,
                )
            ).first()
        where = f"{resource_type}/{resource_id}/_history/{version_id}"
        if row is None:
            raise ResourceNotFoundError(f"{where}: no such version")
        if row.deleted:
            raise ResourceDeletedError(f"{where}: this version is a deletion")
        return _loads(row.body)

    def history(self, resource_type: str, resource_id: str) -> list[HistoryEntry]:
        """Every version of a resource, newest first; ResourceNotFoundError if none."""
        with self._reading() as conn:
            rows = conn.execute(
                select(
                    resource_versions.c.version_id,
                    resource_versions.c.last_updated,
                    resource_versions.c.deleted,
                    resource_versions.c.body,
                )
                .where(
                    resource_versions.c.resource_type == resource_type,
                    resource_versions.c.resource_id == resource_id,
                )
                .order_by(resource_versions.c.version_id.desc())
            ).all()
        if not rows:
            raise ResourceNotFoundError(f"{resource_type}/{resource_id}: no such resource")
        return [
            HistoryEntry(
                r.version_id, r.last_updated, r.deleted, None if r.deleted else _loads(r.body)
            )
            for r in rows
        ]

    def type_history(
        self, resource_type: str, *, count: int = searching.DEFAULT_COUNT, offset: int = 0
    ) -> tuple[int, list[tuple[str, HistoryEntry]]]:
        """Every version of every resource of `resource_type`, newest first (ties by id and
        version), as (resource id, version) pairs: how many there are in all, and one page
        of `count` from `offset`."""
        if not 0 <= count <= searching.MAX_COUNT:
            raise InvalidSearchError(f"_count: not a whole number from 0 to {searching.MAX_COUNT}")
        versions = resource_versions.c
        with self._reading() as conn:
            total = conn.execute(
                select(func.count())
                .select_from(resource_versions)
                .where(versions.resource_type == resource_type)
            ).scalar_one()
            rows = conn.execute(
                select(
                    versions.resource_id, versions.version_id, versions.last_updated,
                    versions.deleted, versions.body,
                )
                .where(versions.resource_type == resource_type)
                .order_by(
                    versions.last_updated.desc(), versions.resource_id, versions.version_id.desc()
                )
                .limit(count)
                .offset(offset)
            ).all()  # fmt: skip
        return total, [
            (
                r.resource_id,
                HistoryEntry(
                    r.version_id, r.last_updated, r.deleted,
                    None if r.deleted else _loads(r.body),
                ),
            )
            for r in rows
        ]  # fmt: skip

    def search(
        self,
        resource_type: str,
        query: searching.Query = (),
        *,
        patients_of: Sequence[tuple[str, searching.Query]] | None = None,
    ) -> SearchPage:
        """Live resources of `resource_type` matching `query` (see `store.search`), one page
        of `_count` (default 50) from `_offset`, in `_sort` order (by id when none). With
        `patients_of`, searches (type, query), only resources of the patients those find
        count at all, in the total as in the page: how a search is kept to the records a user
        may see, inside the database's query (an empty list: nothing)."""
        self._keep_people_of(patients_of)
        if patients_of is None:  # statements built once for every search of this shape
            ready = searching.prepared(resource_type, query)
            page, every, values = ready.page, ready.total, ready.values
            count, offset = ready.count, ready.offset
        else:
            parsed = searching.parse(resource_type, query)
            where = and_(parsed.where, searching.of_patients(resource_type, patients_of))
            page = (
                searching.ordered(select(resources.c.body).where(where), resource_type, parsed.sort)
                .limit(parsed.count)
                .offset(parsed.offset)
            )
            every = select(func.count()).select_from(resources).where(where)
            values, count, offset = {}, parsed.count, parsed.offset
        with self._reading() as conn:
            found = [_loads(b) for b in conn.execute(page, values).scalars()]
            if count > 0 and len(found) < count and (found or not offset):
                # A page short of `_count` is the last: the total is where it ends, and the
                # count (a second statement, as costly as the page) is not needed.
                total = offset + len(found)
            else:
                total = conn.execute(every, values).scalar_one()
        return SearchPage(total, offset, count, found)

    def link_targets(self, link: Link, source_ids: Sequence[str]) -> list[tuple[str, str]]:
        """What resources `source_ids` of `link.source` point to through the link's
        parameters, as (type, id) pairs, each once (an `_include`; the targets may not exist)."""
        found: dict[tuple[str, str], None] = {}
        with self._reading() as conn:
            for chunk in _chunks(source_ids):
                rows = conn.execute(searching.linked_targets(link, chunk)).all()
                found.update(((str(t), str(i)), None) for t, i in rows)
        return list(found)

    def resources_by_id(
        self,
        resource_type: str,
        resource_ids: Sequence[str],
        *,
        patients_of: Sequence[tuple[str, searching.Query]] | None = None,
    ) -> list[dict[str, Any]]:
        """The live resources of `resource_type` among `resource_ids`, by id; with
        `patients_of`, only those of the patients those searches find (as `search`)."""
        self._keep_people_of(patients_of)
        found: list[dict[str, Any]] = []
        with self._reading() as conn:
            for chunk in _chunks(sorted(set(resource_ids))):
                where = and_(
                    resources.c.resource_type == resource_type,
                    resources.c.deleted.is_(False),
                    resources.c.resource_id.in_(chunk),
                )
                if patients_of is not None:
                    where = and_(where, searching.of_patients(resource_type, patients_of))
                query = select(resources.c.body).where(where).order_by(resources.c.resource_id)
                found.extend(_loads(b) for b in conn.execute(query).scalars())
        return found

    def linking_to(
        self,
        link: Link,
        target_ids: Sequence[str],
        *,
        patients_of: Sequence[tuple[str, searching.Query]] | None = None,
        limit: int = searching.MAX_COUNT,
    ) -> list[dict[str, Any]]:
        """The live resources of `link.source` that point to `target_ids` (of `link.target`)
        through the link's parameters (a `_revinclude`), by id, at most `limit`; with
        `patients_of`, only those of the patients those searches find."""
        self._keep_people_of(patients_of)
        found: list[dict[str, Any]] = []
        with self._reading() as conn:
            for chunk in _chunks(sorted(set(target_ids))):
                where = searching.linking_to(link, chunk)
                if patients_of is not None:
                    where = and_(where, searching.of_patients(link.source, patients_of))
                query = select(resources.c.body).where(where).order_by(resources.c.resource_id)
                rows = conn.execute(query.limit(limit - len(found))).scalars()
                found.extend(_loads(b) for b in rows)
                if len(found) >= limit:
                    break
        return found

    def everything(
        self,
        patient_id: str,
        types: Mapping[str, Sequence[tuple[str, searching.Query]] | None],
        *,
        since: datetime | None = None,
        count: int = searching.DEFAULT_COUNT,
        offset: int = 0,
        also: Sequence[str] = (),
    ) -> SearchPage:
        """`Patient/$everything`: the live Patient `patient_id` and every live resource of
        `types` that points to them (found through the reference index), updated at or after
        `since`, one page of `count` from `offset`, the Patient first then by type and id.
        Each type's value is the searches whose patients its resources are kept to (as
        `search`'s `patients_of`; None: not kept to anyone). `also` adds other Patients and
        their resources alike (the same person's, through the person index), their Patients
        after the first."""
        if not 0 <= count <= searching.MAX_COUNT:
            raise InvalidSearchError(f"_count: not a whole number from 0 to {searching.MAX_COUNT}")
        moment = None if since is None else since.astimezone(UTC)
        # One short indexed query a type (a single query ORing them all makes PostgreSQL scan
        # every resource); a person's keys, not their bodies, are sorted here for the page.
        for scope in types.values():
            self._keep_people_of(scope)
        keys: list[tuple[int, str, str]] = []
        found: list[dict[str, Any]] = []
        with self._reading() as conn:
            wanted_patients = [patient_id, *(p for p in also if p != patient_id)]
            for kind, scope in types.items():
                where = searching.everything(kind, wanted_patients, scope, moment)
                if where is not None:
                    ids = conn.execute(select(resources.c.resource_id).where(where)).scalars()
                    keys.extend((_everything_rank(kind, str(i), patient_id), kind, str(i))
                                for i in ids)  # fmt: skip
            keys.sort()
            page = keys[offset : offset + count]
            bodies: dict[tuple[str, str], dict[str, Any]] = {}
            for kind in sorted({k for _, k, _ in page}):
                wanted = [i for _, k, i in page if k == kind]
                query = select(resources.c.resource_id, resources.c.body).where(
                    resources.c.resource_type == kind,
                    resources.c.deleted.is_(False),
                    resources.c.resource_id.in_(wanted),
                )
                bodies.update(((kind, str(i)), _loads(b)) for i, b in conn.execute(query))
            found = [bodies[(k, i)] for _, k, i in page if (k, i) in bodies]
        total = len(keys)
        return SearchPage(total, offset, count, found)

    def linked_patients(self, patient_id: str, systems: Mapping[str, str]) -> list[LinkedPatient]:
        """The other live Patients of Patient `patient_id`'s person in the master person index
        (store.person_links: by identifier system and value, `systems` giving each index
        source's system), each with how it was linked; empty when the index holds none."""
        with self._reading() as conn:
            current = self._current(conn, "Patient", patient_id)
            if current is None or current[2]:
                return []
            return person_links.linked_patients(conn, _loads(current[3]), systems)

    def current_resources(
        self, resource_type: str | None = None, *, since: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every current, not deleted resource (of `resource_type`; last updated at or after
        `since`), by type then id, streamed in batches rather than read into memory whole."""
        query = (
            select(resources.c.body)
            .where(resources.c.deleted.is_(False))
            .order_by(resources.c.resource_type, resources.c.resource_id)
        )
        if resource_type is not None:
            query = query.where(resources.c.resource_type == resource_type)
        if since is not None:
            query = query.where(resources.c.last_updated >= since.astimezone(UTC))
        with self._streaming() as conn:
            for partition in conn.execution_options(yield_per=1000).execute(query).partitions():
                for (body,) in partition:
                    yield _loads(body)

    def patient_ids(self, resource_type: str, query: searching.Query) -> set[str]:
        """The ids of the patients whose live resources of `resource_type` match `query`
        (paging ignored): the Patients' own ids, or the targets of the type's `patient`
        parameter."""
        found = searching.patients_found(resource_type, query)
        with self._reading() as conn:
            return set(conn.execute(found).scalars())

    # --- consent ----------------------------------------------------------------------------

    def objections(self, patient_id: str) -> list[frozenset[str]]:
        """The recording organisations of each active objection to sharing `patient_id` has
        (records.consent.is_objection); an empty set for one that names no organisation."""
        found: dict[str, set[str]] = {}
        with self._reading() as conn:
            for consent_id, organisation, _ in conn.execute(
                withholding.objection_organisations(patient_id)
            ):
                found.setdefault(consent_id, set())
                if organisation is not None:
                    found[consent_id].add(organisation)
        return [frozenset(found[k]) for k in sorted(found)]

    def person_objections(
        self, patient_id: str, systems: Mapping[str, str]
    ) -> dict[str, list[frozenset[str]]]:
        """`objections` of `patient_id` and of each Patient the master person index links to
        it by confirmed links (store.person_links; `systems` each index source's identifier
        system), by Patient id (only those with an objection): one statement."""
        self.keep_people(systems)
        found: dict[str, dict[str, set[str]]] = {}
        with self._reading() as conn:
            for consent_id, organisation, patient in conn.execute(
                withholding.person_objection_organisations(systems), {"patient_id": patient_id}
            ):
                held = found.setdefault(str(patient), {}).setdefault(str(consent_id), set())
                if organisation is not None:
                    held.add(str(organisation))
        return {p: [frozenset(c[k]) for k in sorted(c)] for p, c in sorted(found.items())}

    def objected_patients(
        self, organisations: frozenset[str], systems: Mapping[str, str] | None = None
    ) -> set[str]:
        """The Patient ids whose active objection to sharing withholds their record from
        users of `organisations` (none of their objections was recorded by one of them); with
        `systems`, and those the master person index links to them."""
        if systems is not None:
            self.keep_people(systems)
        sources = None if systems is None else tuple(sorted(systems.items()))
        query = withholding.withheld_from(organisations, sources)
        with self._reading() as conn:
            return set(conn.execute(query).scalars())

    def keep_people(self, systems: Mapping[str, str]) -> None:
        """Make sure the person of each Patient is kept for `systems` (store.person_links),
        as what is withheld by the person's objections is read from those rows: the first
        time a mapping is asked for, every Patient's person is written, in a transaction."""
        mapping = tuple(sorted(systems.items()))
        if mapping in self._people_kept:
            return
        with self._begin() as conn:
            person_links.start_keeping(conn, dict(mapping))
        self._people_kept.add(mapping)

    def _keep_people_of(self, patients_of: object) -> None:
        """`keep_people` for the systems a search's withholding follows the index by."""
        if isinstance(patients_of, withholding.Permitted):
            sources = patients_of.withholding.person_sources
            if sources is not None:
                self.keep_people(dict(sources))

    def refresh_person_links(self) -> None:
        """Keep every Patient's person again from the master person index as it is now, as
        `PersonIndexStore.write_index` does in its own transaction: for an index written into
        the store's tables by other means."""
        with self._begin() as conn:
            person_links.rebuild_people(conn)

    def opted_out_patients(self) -> set[str]:
        """The Patient ids with an active national data opt-out (records.consent.is_opt_out):
        for secondary use (warehouse outputs) to leave out, never for direct care."""
        with self._reading() as conn:
            return set(conn.execute(withholding.opted_out()).scalars())

    # --- break-glass grants ------------------------------------------------------------------

    def now(self) -> datetime:
        """The store's clock (UTC): what writes are stamped with and grants expire by."""
        return self._clock()

    def grant(self, username: str, patient_id: str, reason: str, hours: float) -> Grant:
        """Record a break-glass grant to `username` for `patient_id`, from now for `hours`."""
        at = self._clock()
        found = Grant(
            uuid.uuid4().hex, username, patient_id, reason, at, at + timedelta(hours=hours)
        )
        with self._begin() as conn:
            conn.execute(
                insert(access_grants).values(
                    grant_id=found.grant_id, username=username, patient_id=patient_id,
                    reason=reason, granted_at=found.granted_at, expires_at=found.expires_at,
                )
            )  # fmt: skip
        return found

    def active_grants(self, username: str, at: datetime) -> list[Grant]:
        """The grants `username` holds at instant `at` (granted by then, not yet expired)."""
        c = access_grants.c
        return self._grants(and_(c.username == username, c.granted_at <= at, c.expires_at > at))

    def grants(self, since: datetime | None = None) -> list[Grant]:
        """Every grant made since `since` (all when None), newest first."""
        c = access_grants.c
        return self._grants(true() if since is None else c.granted_at >= since)

    def _grants(self, where: Any) -> list[Grant]:
        c = access_grants.c
        query = select(
            c.grant_id, c.username, c.patient_id, c.reason, c.granted_at, c.expires_at
        ).where(where)
        with self._reading() as conn:
            rows = conn.execute(query.order_by(c.granted_at.desc(), c.grant_id)).all()
        return [Grant(*row) for row in rows]

    def _take_turns(self, conn: Connection, kinds: Iterable[str | None]) -> None:
        """Before a transaction writing resources of `kinds` writes anything, take the locks
        its Consent and Patient writes may want (store.withheld.take_turns; PostgreSQL), and
        only then those of its conditional writes' criteria: every transaction takes them
        in that order, and before any resource's row."""
        withheld.take_turns(conn, (k for k in kinds if k is not None))

    def _lock_criteria(self, conn: Connection, criteria: Iterable[tuple[str, str]]) -> None:
        """Hold, until the transaction ends, the lock of each (resource type, criteria) of a
        conditional write not held yet, in the order of their keys: a writer that finds no
        match and creates one has committed before any other writer with the same criteria
        searches, so that one finds it. PostgreSQL: a transaction-scoped advisory lock for
        each of the criteria's keys (_criteria_keys). SQLite: nothing to do, as every write
        transaction holds the database's one write lock from its BEGIN IMMEDIATE, and its
        search sees every commit before it."""
        if conn.dialect.name != "postgresql":
            return
        held: set[int] = conn.info.setdefault(_LOCKED, set())
        wanted = {key for kind, c in criteria for key in _criteria_keys(kind, c)}
        for key in sorted(wanted - held):
            conn.execute(_LOCK_CRITERIA, {"key": key})
            held.add(key)

    def _matching(self, conn: Connection, kind: str, criteria: str) -> list[str]:
        """The ids of live resources matching a conditional write's criteria (two at most:
        enough to tell none, one and several apart)."""
        if not searching.pairs(criteria):
            raise PreconditionFailedError(f"{kind}: a conditional write needs search criteria")
        parsed = searching.parse(kind, criteria)
        return list(
            conn.execute(
                select(resources.c.resource_id)
                .where(parsed.where)
                .order_by(resources.c.resource_id)
                .limit(2)
            ).scalars()
        )


#: The PostgreSQL advisory lock key held while the tables are created ("records" in ASCII).
_SCHEMA_LOCK = 0x7265636F726473
#: Where a write connection keeps the keys of the criteria locks its transaction holds.
_LOCKED = "records_criteria_locked"
#: Taking one criteria lock (PostgreSQL), built once. A statement of its own, before the
#: search: a READ COMMITTED statement sees what was committed when it began, so a search
#: that took the lock itself would not see what the lock's last holder committed.
_LOCK_CRITERIA = select(func.pg_advisory_xact_lock(bindparam("key", type_=BigInteger)))


def _criteria_keys(kind: str, criteria: str) -> set[int]:
    """The advisory lock keys of a conditional write's criteria. When the criteria name
    identifiers (`identifier=SYSTEM|VALUE`, or the value alone; several joined by commas), one
    key for each identifier value of the type, whatever the system and the other parameters:
    feeds writing the same NHS number as `identifier=S|V`, `identifier=V` or `identifier=S|V&
    birthdate=...` find the same record and so must take turns. Otherwise one key for the
    type and the criteria's (name, value) pairs, decoded and sorted, so the same search
    written in another order or encoding (`%7C` for `|`) takes the same lock. Keys are 64-bit
    hashes: two criteria sharing one only wait for each other."""
    pairs = searching.pairs(criteria)
    identifiers = {
        alternative.rpartition("|")[2].strip().lower()
        for name, value in pairs
        if name == "identifier"
        for alternative in searching.or_values(value)
    }
    named: list[Any] = (
        [[kind, "identifier", value] for value in identifiers]
        if identifiers and "" not in identifiers
        else [[kind, sorted(pairs)]]
    )
    return {_key(json.dumps(n, ensure_ascii=False)) for n in named}


def _key(canonical: str) -> int:
    digest = hashlib.blake2b(canonical.encode(), digest_size=8, person=b"joinedup-records")
    return int.from_bytes(digest.digest(), "big", signed=True)


def _kind_of(given: Operation | Any) -> str | None:
    """The resource type an operation (or a resource given to write) writes, when it names
    one (one that does not fails when written, naming why)."""
    if isinstance(given, Delete):
        return given.resource_type
    if isinstance(given, Create | Update | ConditionalUpdate):
        given = given.resource
    kind = given.get("resourceType") if isinstance(given, dict) else None
    return kind if isinstance(kind, str) and kind else None


def _conditions(operations: Sequence[Operation]) -> list[tuple[str, str]]:
    """The (resource type, criteria) of the conditional writes among `operations`."""
    found = []
    for operation in operations:
        if isinstance(operation, Create) and operation.if_none_exist is not None:
            criteria = operation.if_none_exist
        elif isinstance(operation, ConditionalUpdate):
            criteria = operation.criteria
        else:
            continue
        given = operation.resource
        kind = given.get("resourceType") if isinstance(given, dict) else None
        if isinstance(kind, str) and kind:
            found.append((kind, criteria))
    return found


#: Moving the current row on from the version a write read (none moves if another writer
#: got there first).
_MOVE_CURRENT = sql_update(resources).where(
    resources.c.resource_type == bindparam("kind"),
    resources.c.resource_id == bindparam("rid"),
    resources.c.version_id == bindparam("expected"),
)
#: Removing a resource's index rows, one statement a table, built once.
_UNINDEX = tuple(
    delete(table).where(
        table.c.resource_type == bindparam("kind"), table.c.resource_id == bindparam("rid")
    )
    for table in INDEX_TABLES
)


#: How many ids one IN list of a query holds (below every database's limit on parameters).
_CHUNK = 500


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _stamp(resource: dict[str, Any], version_id: int, now: datetime) -> None:
    """Set the `meta.versionId` and `meta.lastUpdated` of the version being written."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = _instant(now)
    resource["meta"] = meta


def _index_rows(resource: dict[str, Any]) -> list[tuple[Any, list[dict[str, Any]]]]:
    """The rows of each index table for `resource`: its search parameters' values
    (`parameters.entries`) and the internal ones consent withholding searches by."""
    kind, rid = resource["resourceType"], resource["id"]
    rows = entries(resource)
    internal_tokens, internal_references = consent.index_entries(resource)
    rows.tokens.extend(internal_tokens)
    rows.references.extend(internal_references)
    keys = {"resource_type": kind, "resource_id": rid}
    return [
        (search_tokens, [{**keys, "parameter": p, "system": s, "code": c}
                         for p, s, c in rows.tokens]),
        (search_strings, [{**keys, "parameter": p, "value": v} for p, v in rows.strings]),
        (search_dates, [{**keys, "parameter": p, "low": lo, "high": hi}
                        for p, lo, hi in rows.dates]),
        (search_references, [{**keys, "parameter": p, "target_type": t, "target_id": i}
                             for p, t, i in rows.references]),
    ]  # fmt: skip


def _resource_of(given: Any) -> dict[str, Any]:
    """A copy of `given` to write (the caller's dict is left as it was), with its type
    checked first so every later message can name it."""
    if not isinstance(given, dict):
        raise InvalidResourceError("resource", ["not a JSON object"])
    kind = given.get("resourceType")
    if not isinstance(kind, str) or not kind:
        raise InvalidResourceError("resource", ["resourceType is missing"])
    copied: dict[str, Any] = json.loads(json.dumps(given))
    return copied


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    """`resource` without what the server stamps on each version (meta.versionId and
    meta.lastUpdated), for telling whether an update would change anything."""
    meta = {
        k: v
        for k, v in (resource.get("meta") or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    rest = {k: v for k, v in resource.items() if k != "meta"}
    return {**rest, "meta": meta} if meta else rest


def _everything_rank(kind: str, resource_id: str, first: str) -> int:
    """Where a resource sorts in `$everything`: the asked Patient, other Patients, the rest."""
    if kind != "Patient":
        return 2
    return 0 if resource_id == first else 1


def _loads(body: str | None) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(body) if body else {}
    return found


#: PostgreSQL connections each engine (reads, writes) keeps open, and how many more it opens
#: while that many are busy. Each kept connection is reused; one opened beyond them is closed
#: when handed back, and opening one costs PostgreSQL a new backend process, so the kept
#: ones cover the API's concurrent requests (with SQLAlchemy's default, 5 and 10 more,
#: PostgreSQL spent 1.9 ms of CPU an API request under 50 clients; with these, 0.17 ms).
POOL_CONNECTIONS = 20
POOL_OVERFLOW = 10
#: A pooled PostgreSQL connection idle for longer than this is checked with a round trip
#: (`SELECT 1`) before it is used again, and replaced if the server has gone; one in steady
#: use is not checked. (SQLAlchemy's pool_pre_ping checks at every checkout: a round trip
#: more for every request.) A connection that breaks within this time fails the one request
#: that finds it broken, and SQLAlchemy then replaces every connection of the pool.
IDLE_CHECK_S = 10.0


def _postgresql_engine(
    url: str,
    isolation_level: str | None = None,
    *,
    kept: int = POOL_CONNECTIONS,
    more: int = POOL_OVERFLOW,
) -> Engine:
    """An engine for PostgreSQL (UTC sessions) keeping `kept` connections (and opening `more`
    while they are busy), whose pool checks connections left idle for more than IDLE_CHECK_S
    before handing them out."""
    options = {} if isolation_level is None else {"isolation_level": isolation_level}
    engine = create_engine(
        url,
        connect_args={"options": "-c timezone=UTC"},
        pool_size=kept,
        max_overflow=more,
        **options,
    )

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since <= IDLE_CHECK_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as err:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("an idle connection to PostgreSQL was closed") from err

    return engine


def _serialise_sqlite(engine: Engine) -> None:
    """SQLite: write-ahead logging, a wait for the lock rather than an error, and BEGIN
    IMMEDIATE, so a write transaction holds the lock from its first read (the read of the
    version it replaces) to its commit; reads take a snapshot and block no one."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own BEGIN off: ours below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        reading = conn.get_execution_options().get("records_read")
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")
