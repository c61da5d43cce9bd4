"""From a store Patient to the other Patients of the same person in the master person index
(issue 17), by the rule `ingest fhir --person-index` uses: a Patient is the index's record
(`source`, `record_id`) when one of its identifiers has the source's system and the record id
as value (`systems` maps a source to the system of its local ids; a source without one is
compared as named, with identifier systems, and with the Patient's `meta.source`, its id then
being the record id).

`linked_patients` (for `$everything`) is computed by a join at read time: every step is an
indexed point query (the Patient's identifiers are in its body; the index's records by primary
key and by person_id; Patients by the token index on identifier), so the lookup is always as
current as both the index and the Patients (docs/linkage.md gives its cost). What withholds
by the person's objections reads the person each Patient is from rows kept beside the index
instead (`person_link_people`, below), written in the same transaction as each Patient write
and each index run.

Only certain links are followed: the index's person_ids are made of links at or above the
link threshold, NHS-number links and reviewers' accepts; a record awaiting review
(`needs_review`) is neither followed from nor to; and a Patient the index places in two
people (its identifiers name records of different person_ids) is followed nowhere, as a false
link would show one person's record as another's.

`same_person` is the same rule as one SQL statement (a select of Patient ids), and
`same_person_kept` the same answer from the kept rows, for what must be decided inside a query
or in one round trip: an objection to sharing follows the person into every read and search
(store.withholding), not only when `$everything` follows the index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    BindParameter,
    Column,
    ColumnElement,
    CompoundSelect,
    Connection,
    Index,
    Select,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from joinedup.records.store.tables import metadata, resources, search_tokens
from joinedup.records.store.written import inlined

#: The system a Patient's `meta.source` is compared as (ingest's rule: `meta.source`, else fhir).
DEFAULT_SOURCE = "fhir"


@dataclass(frozen=True)
class LinkedPatient:
    """Another Patient of the same person: its id and how the index linked its record
    (`linked_by`: `nhs_number`, `splink` or `accepted`; its `match_weight`)."""

    patient_id: str
    linked_by: str | None
    match_weight: float | None


def patient_keys(patient: Mapping[str, Any]) -> set[tuple[str, str]]:
    """A Patient's keys as the index knows records: (system, value) of each identifier, and
    (its meta.source, else `fhir`; its id)."""
    keys: set[tuple[str, str]] = set()
    for identifier in patient.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") and identifier.get("value"):
            keys.add((str(identifier["system"]), str(identifier["value"])))
    meta = patient.get("meta") if isinstance(patient.get("meta"), dict) else {}
    if patient.get("id"):
        keys.add((str((meta or {}).get("source") or DEFAULT_SOURCE), str(patient["id"])))
    return keys


def linked_patients(
    conn: Connection, patient: Mapping[str, Any], systems: Mapping[str, str]
) -> list[LinkedPatient]:
    """The other live Patients of `patient`'s person, by id; empty when the index does not
    hold it, holds it awaiting review, or holds it in two people."""
    from joinedup.records.store.person_index import mpi_person_index  # noqa: PLC0415 - cycle

    index = mpi_person_index.c
    person = _person_of(conn, patient, systems)
    if person is None:
        return []
    records = conn.execute(
        select(index.source, index.record_id, index.linked_by, index.match_weight)
        .where(index.person_id == person, index.needs_review == false())
        .order_by(index.source, index.record_id)
    ).all()
    found: dict[str, LinkedPatient] = {}
    for record in records:
        system = systems.get(record.source, record.source)
        for patient_id in _patients_of(conn, system, record.record_id):
            if patient_id != patient.get("id") and patient_id not in found:
                found[patient_id] = LinkedPatient(patient_id, record.linked_by, record.match_weight)
    # A Patient reached from this person whose own keys place it in another person too is
    # not followed (the same rule as for the asked Patient).
    return [p for p in found.values() if _person_of_id(conn, p.patient_id, systems) == person]


def _person_of(
    conn: Connection, patient: Mapping[str, Any], systems: Mapping[str, str]
) -> str | None:
    """The person_id of the index's records `patient` is; None when it is none, more than
    one person's, or awaiting review."""
    from joinedup.records.store.person_index import mpi_person_index  # noqa: PLC0415 - cycle

    index = mpi_person_index.c
    sources_of: dict[str, list[str]] = {}
    for source, system in systems.items():
        sources_of.setdefault(system, []).append(source)
    candidates = sorted(
        (source, value)
        for system, value in patient_keys(patient)
        for source in [*sources_of.get(system, []), *([system] if system not in systems else [])]
    )
    if not candidates:
        return None
    by_source: dict[str, list[str]] = {}
    for source, value in candidates:
        by_source.setdefault(source, []).append(value)
    # One (source = s AND record_id IN ...) a source, so both databases use the primary key
    # (SQLite scans the table for a row-value IN).
    rows = conn.execute(
        select(index.person_id, index.needs_review).where(
            or_(*(and_(index.source == s, index.record_id.in_(v)) for s, v in by_source.items()))
        )
    ).all()
    people = {r.person_id for r in rows}
    if len(people) != 1 or any(r.needs_review for r in rows):
        return None
    return str(people.pop())


def _person_of_id(conn: Connection, patient_id: str, systems: Mapping[str, str]) -> str | None:
    body = conn.execute(
        select(resources.c.body).where(
            resources.c.resource_type == "Patient", resources.c.resource_id == patient_id
        )
    ).scalar()
    return None if body is None else _person_of(conn, json.loads(body), systems)


def _patients_of(conn: Connection, system: str, record_id: str) -> list[str]:
    """Live Patients with identifier `system|record_id`, and the Patient `record_id` when its
    meta.source (else `fhir`) is `system`."""
    tokens = search_tokens.c
    by_identifier = select(tokens.resource_id).where(
        tokens.resource_type == "Patient",
        tokens.parameter == "identifier",
        tokens.code == record_id,
        tokens.system == system,
    )
    found = set(
        conn.execute(
            select(resources.c.resource_id).where(
                resources.c.resource_type == "Patient",
                resources.c.deleted == false(),
                resources.c.resource_id.in_(by_identifier),
            )
        ).scalars()
    )
    body = conn.execute(
        select(resources.c.body).where(
            and_(
                resources.c.resource_type == "Patient",
                resources.c.resource_id == record_id,
                resources.c.deleted == false(),
            )
        )
    ).scalar()
    if body is not None and (system, record_id) in patient_keys(json.loads(body)):
        found.add(record_id)
    return sorted(str(p) for p in found)


# --- the same rule as one statement ---------------------------------------------------------


class _MetaSource(FunctionElement[str]):
    """A stored body's `meta.source` (NULL when it has none), read by the database."""

    type = String()
    inherit_cache = True
    name = "meta_source"


@compiles(_MetaSource)
def _meta_source(element: _MetaSource, compiler: SQLCompiler, **kw: Any) -> str:
    (body,) = element.clauses
    return compiler.process(func.json_extract(body, "$.meta.source"), **kw)


@compiles(_MetaSource, "postgresql")
def _meta_source_postgresql(element: _MetaSource, compiler: SQLCompiler, **kw: Any) -> str:
    (body,) = element.clauses
    return compiler.process(func.json_extract_path_text(cast(body, JSON), "meta", "source"), **kw)


Patients = Select[Any] | Sequence[str] | BindParameter[Any]


def _index() -> Any:
    from joinedup.records.store.person_index import mpi_person_index  # noqa: PLC0415 - cycle

    return mpi_person_index


def _source_of(body: Any) -> ColumnElement[str]:
    """The system a Patient's id is compared as: its `meta.source`, else `fhir`."""
    return func.coalesce(_MetaSource(body), DEFAULT_SOURCE)


def _records_of(systems: Mapping[str, str], patients: Patients) -> CompoundSelect[Any]:
    """(patient_id, person_id, needs_review) of each index record one of `patients` (ids or
    a select of them) is, by `patient_keys`' rule: one arm a way a Patient names a record,
    each starting from the Patients (their identifier tokens, their rows) and reaching the
    index by its primary key. The token's parameter is compared as an expression so that
    SQLite, which keeps no statistics here, starts from the Patient ids rather than from
    every Patient identifier."""
    mpi = _index()
    index, tokens, live = mpi.c, search_tokens.c, resources.c
    named = sorted(systems)
    source_of = _source_of(live.body)
    identifier = (
        tokens.resource_type == "Patient",
        (tokens.parameter + "") == "identifier",
        tokens.resource_id.in_(patients),
    )
    arms: list[Select[Any]] = []
    for source, system in [
        *((index.source == s, tokens.system == v) for s, v in sorted(systems.items())),
        (index.source == tokens.system, tokens.system.not_in(named) if named else true()),
    ]:
        arms.append(
            select(tokens.resource_id.label("patient_id"), index.person_id, index.needs_review)
            .select_from(search_tokens.join(mpi, and_(source, index.record_id == tokens.code)))
            .where(*identifier, system)
        )
    for source, system in [
        *((index.source == s, source_of == v) for s, v in sorted(systems.items())),
        (index.source == source_of, source_of.not_in(named) if named else true()),
    ]:
        arms.append(
            select(live.resource_id.label("patient_id"), index.person_id, index.needs_review)
            .select_from(resources.join(mpi, and_(source, index.record_id == live.resource_id)))
            .where(
                live.resource_type == "Patient",
                live.deleted == false(),
                live.resource_id.in_(patients),
                system,
            )
        )
    return union_all(*arms)


def _patients_named(systems: Mapping[str, str], persons: Select[Any]) -> CompoundSelect[Any]:
    """The live Patients that name a record of `persons` (a select of person_ids) not
    awaiting review: each arm starts from the index's records of those people (by
    person_id) and reaches the Patients through the token index on identifier (system and
    value) or by id."""
    mpi = _index()
    index, tokens, live = mpi.c, search_tokens.c, resources.c
    named = sorted(systems)

    def records(*where: ColumnElement[bool], column: Any = index.record_id) -> Select[Any]:
        return select(column).where(
            index.person_id.in_(persons), index.needs_review == false(), *where
        )

    # (The source as an expression: SQLite, without statistics, would otherwise read every
    # record of the source by the primary key rather than the few of these people.)
    by_source = index.source + ""

    def exact(source: ColumnElement[str], record_id: ColumnElement[str]) -> ColumnElement[bool]:
        """The unnamed sources' pairing of source and record id, checked row by row."""
        return (
            select(index.record_id)
            .where(index.source == source, index.record_id == record_id)
            .where(index.person_id.in_(persons), index.needs_review == false())
            .exists()
        )

    identifier = (tokens.resource_type == "Patient", tokens.parameter == "identifier")
    arms: list[Select[Any]] = [
        select(tokens.resource_id).where(
            *identifier, tokens.system == system, tokens.code.in_(records(by_source == source))
        )
        for source, system in sorted(systems.items())
    ]
    unnamed = index.source.not_in(named) if named else true()
    arms.append(
        select(tokens.resource_id).where(
            *identifier,
            tokens.code.in_(records(unnamed)),
            tokens.system.in_(records(unnamed, column=index.source)),
            exact(tokens.system, tokens.code),
        )
    )
    patient = (live.resource_type == "Patient", live.deleted == false())
    source_of = _source_of(live.body)
    arms += [
        select(live.resource_id).where(
            *patient, live.resource_id.in_(records(by_source == source)), source_of == system
        )
        for source, system in sorted(systems.items())
    ]
    arms.append(
        select(live.resource_id).where(
            *patient, live.resource_id.in_(records(unnamed)), exact(source_of, live.resource_id)
        )
    )
    return union_all(*arms)


def _one_person(rows: Select[Any]) -> Select[Any]:
    """(patient_id, person_id) of the Patients among `rows` that are one person's records
    and none awaiting review (`_person_of`'s rule)."""
    found = rows.subquery()
    return (
        select(found.c.patient_id, func.min(found.c.person_id).label("person_id"))
        .group_by(found.c.patient_id)
        .having(
            func.count(found.c.person_id.distinct()) == 1,
            func.max(case((found.c.needs_review, 1), else_=0)) == 0,
        )
    )


def same_person(patients: Patients, systems: Mapping[str, str]) -> Select[Any]:
    """The live Patients of the same person as any of `patients` (ids, or a select of
    them) in the master person index, those among `patients` too: `linked_patients`' rule as
    one statement (records awaiting review followed neither from nor to; a Patient the index
    places in two people followed nowhere). Every step finds its rows by an index: the
    Patients' identifiers, the index by primary key then by person_id, Patients by the
    token index on identifier. Each step is a common table expression, so none is repeated."""
    asked = _records_of(systems, patients).cte()
    people = _one_person(select(asked)).cte()
    candidates = _patients_named(systems, select(people.c.person_id)).cte()
    rows = _records_of(systems, select(candidates.c[0])).cte()
    return select(_one_person(select(rows)).subquery().c.patient_id)


# --- the person of each Patient, kept -------------------------------------------------------
#
# `same_person` as a join at read time costs every read and search that withholds by the
# person's objections the whole rule (four steps, a dozen arms), and a search the rule over
# every objecting Patient in the store. So the person each Patient is (`_one_person` of its
# own records: one person's, none awaiting review) is kept as a row, for each identifier
# systems mapping a reader has asked with, and written in the same transaction as whatever
# changes it: a Patient written or deleted (`keep_people`: its keys are its identifiers, id
# and meta.source, and nothing else decides its person) and the index written
# (`rebuild_people`: every Patient again). `same_person_kept` is then one indexed join.
# Readers and writers of these rows on PostgreSQL take an advisory lock: shared by the
# writers of Patients, exclusive for a rebuild or a new mapping, so that whichever commits
# second sees what the first wrote (READ COMMITTED) and the rows can never be stale.

person_link_systems = Table(
    "person_link_systems",
    metadata,
    Column("systems_key", String(64), primary_key=True),
    Column("systems", Text, nullable=False),  # JSON: {source: identifier system}
)

person_link_people = Table(
    "person_link_people",
    metadata,
    Column("systems_key", String(64), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
    Column("person_id", String(16), nullable=False),
    Index("ix_person_link_people_person", "systems_key", "person_id"),
)

#: The advisory lock (PostgreSQL) that orders writes of the kept people (and, taken shared
#: before its own, of the rows store.withheld keeps from them).
PEOPLE_LOCK = 0x7065726F6E73


def systems_key(systems: Mapping[str, str]) -> str:
    """The key the people kept for `systems` are stored under."""
    given = json.dumps(sorted(systems.items()), separators=(",", ":"))
    return hashlib.sha256(given.encode()).hexdigest()[:32]


def _live_patients() -> Select[Any]:
    live = resources.c
    return select(live.resource_id).where(live.resource_type == "Patient", live.deleted == false())


def _fill(
    conn: Connection, key: str, systems: Mapping[str, str], patient_ids: Sequence[str] | None
) -> None:
    """Insert the kept person of each of `patient_ids` (None: every live Patient) that is one
    person's (none awaiting review), under `key`."""
    statement = _filling(key, tuple(sorted(systems.items())), patient_ids is None)
    conn.execute(statement, {} if patient_ids is None else {"patient_ids": list(patient_ids)})


# Built once for each mapping (building one costs more than running it for a Patient), with
# the mapping's values written into the SQL text so PostgreSQL plans it once (store.written).
@lru_cache(maxsize=64)
def _filling(key: str, systems: tuple[tuple[str, str], ...], every: bool) -> Any:
    asked: BindParameter[Any] = bindparam("patient_ids", expanding=True)
    records = _records_of(dict(systems), _live_patients() if every else asked).subquery()
    found = _one_person(select(records)).subquery()
    rows = inlined(
        select(literal(key, String()), found.c.patient_id, found.c.person_id),
        keep=frozenset({"patient_ids"}),
    )
    people = person_link_people.c
    return insert(person_link_people).from_select(
        [people.systems_key, people.patient_id, people.person_id], rows
    )


def kept_mappings(conn: Connection) -> list[tuple[str, dict[str, str]]]:
    """(key, systems) of each identifier systems mapping whose people are kept."""
    return _kept(conn)


def _kept(conn: Connection) -> list[tuple[str, dict[str, str]]]:
    rows = conn.execute(
        select(person_link_systems.c.systems_key, person_link_systems.c.systems).order_by(
            person_link_systems.c.systems_key
        )
    ).all()
    return [(str(k), dict(json.loads(v))) for k, v in rows]


def keep_people(conn: Connection, patient_ids: Iterable[str]) -> None:
    """The Patients `patient_ids` were written or deleted in `conn`'s transaction: keep
    their person again under every systems mapping kept (and what objections withhold
    follows those that moved between people)."""
    _held_again(conn, people_moved(conn, patient_ids))


def people_moved(conn: Connection, patient_ids: Iterable[str]) -> set[str]:
    """`keep_people` but for what objections withhold, left to the caller (store.withheld's
    `held_again`, with the Patients the moved ones are): those of `patient_ids` whose person
    changed."""
    from joinedup.records.store import withheld  # noqa: PLC0415 - cycle

    ids = sorted(set(patient_ids))
    if not ids:
        return set()
    withheld.hold_people(conn)  # held since the transaction began, when it wrote Patients
    return _keep_again(conn, ids)


def _held_again(conn: Connection, changed: set[str]) -> None:
    """The Patients `changed` moved between people: what objections withhold follows."""
    from joinedup.records.store import withheld  # noqa: PLC0415 - cycle

    if changed:
        withheld.held_again(conn, changed)


def _keep_again(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Keep the person of `ids` again under every mapping; those whose person changed."""
    people = person_link_people.c
    changed: set[str] = set()
    for key, systems in _kept(conn):
        for at in range(0, len(ids), 500):
            chunk = ids[at : at + 500]
            kept = select(people.patient_id, people.person_id).where(
                people.systems_key == key, people.patient_id.in_(chunk)
            )
            before = {str(p): str(q) for p, q in conn.execute(kept)}
            conn.execute(
                delete(person_link_people).where(
                    people.systems_key == key, people.patient_id.in_(chunk)
                )
            )
            _fill(conn, key, systems, chunk)
            after = {str(p): str(q) for p, q in conn.execute(kept)}
            changed.update(p for p in chunk if before.get(p) != after.get(p))
    return changed


#: A run that changed at most this many index records keeps again the person of the
#: Patients naming them; one that changed more does so only when they are fewer than one in
#: CHUNKED_COST of the store's Patients, else keeps every Patient's person again in one
#: statement: 500 Patients a statement cost about 66 microseconds a record on PostgreSQL,
#: one statement over every Patient about 13 a Patient (10,000 Patients, 7 December 2026).
KEEP_NAMED_UP_TO = 1_000
CHUNKED_COST = 5


def rebuild_people(conn: Connection, record_ids: Iterable[str] | None = None) -> None:
    """The index was written in `conn`'s transaction: keep the person again, under every
    systems mapping kept, of every Patient that may name one of the records `record_ids`
    changed (any Patient with an identifier of that value, or with that id: a Patient's
    person depends on its own records' rows alone), or of every Patient (None, or when
    that is cheaper: KEEP_NAMED_UP_TO)."""
    if conn.dialect.name == "postgresql":
        # Exclusive: a Patient written meanwhile is either seen committed by the statements
        # below or keeps its person after this commits, from the index as written here.
        conn.execute(select(func.pg_advisory_xact_lock(PEOPLE_LOCK)))
    changed = None if record_ids is None else sorted(set(record_ids))
    if changed is not None and (
        len(changed) <= KEEP_NAMED_UP_TO or len(changed) * CHUNKED_COST < _patients(conn)
    ):
        _held_again(conn, _keep_again(conn, _patients_naming(conn, changed)))
        return
    from joinedup.records.store import withheld  # noqa: PLC0415 - cycle

    for key, systems in _kept(conn):
        conn.execute(delete(person_link_people).where(person_link_people.c.systems_key == key))
        _fill(conn, key, systems, None)
        withheld.rebuild(conn, key)


def _patients(conn: Connection) -> int:
    stored = resources.c
    counted = select(func.count()).where(stored.resource_type == "Patient")
    return int(conn.execute(counted.select_from(resources)).scalar_one())


def _patients_naming(conn: Connection, record_ids: Sequence[str]) -> list[str]:
    """The Patients (live or not) with an identifier whose value is one of `record_ids`, or
    whose id is: every Patient that may name one of those records, under any mapping."""
    tokens, stored = search_tokens.c, resources.c
    found: set[str] = set()
    for at in range(0, len(record_ids), 500):
        chunk = record_ids[at : at + 500]
        by_identifier = select(tokens.resource_id).where(
            tokens.resource_type == "Patient",
            tokens.parameter == "identifier",
            tokens.code.in_(chunk),
        )
        by_id = select(stored.resource_id).where(
            stored.resource_type == "Patient", stored.resource_id.in_(chunk)
        )
        found.update(str(p) for p in conn.execute(by_identifier).scalars())
        found.update(str(p) for p in conn.execute(by_id).scalars())
    return sorted(found)


def start_keeping(conn: Connection, systems: Mapping[str, str]) -> str:
    """Keep the people of `systems` from now on (every Patient's, written now, when they
    were not kept yet, in `conn`'s transaction); their key."""
    key = systems_key(systems)
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(PEOPLE_LOCK)))
    known = person_link_systems.c
    if conn.execute(select(known.systems_key).where(known.systems_key == key)).first() is None:
        given = json.dumps(dict(sorted(systems.items())))
        conn.execute(insert(person_link_systems), {"systems_key": key, "systems": given})
        _fill(conn, key, systems, None)
        from joinedup.records.store import withheld  # noqa: PLC0415 - cycle

        withheld.rebuild(conn, key)
    return key


def same_person_kept(patients: Patients, systems: Mapping[str, str]) -> Select[Any]:
    """`same_person` from the people kept for `systems` (`start_keeping` first): one join by
    index."""
    key = systems_key(systems)
    asked, same = person_link_people.alias("asked"), person_link_people.alias("same")
    return (
        select(same.c.patient_id)
        .select_from(
            asked.join(
                same,
                and_(same.c.systems_key == asked.c.systems_key,
                     same.c.person_id == asked.c.person_id),
            )
        )
        .where(asked.c.systems_key == key, asked.c.patient_id.in_(patients))
    )  # fmt: skip
