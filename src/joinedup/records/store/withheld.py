"""Whose record an objection to sharing withholds, kept as rows (`tables.withheld_patients`)
beside the records, so that a search keeps them back by one indexed anti-join whose cost does
not grow with the number of objections in the store (issue 16; store.withholding reads them).

The rows are a function of two things kept elsewhere: each Patient's active objections with
their recording organisations (the Consents' index rows, `records.consent`), and, under each
identifier systems mapping kept, the person each Patient is (`person_links.person_link_people`).
They are written again, in the same transaction, whenever either changes: a Consent written or
deleted that was or is an objection (`consents_written`), a Patient whose person changed
(`held_again`, from person_links' upkeep of Patient writes and index runs), every Patient's
person kept again (`rebuild`), a mapping kept for the first time, and a store made before the
table (`build_missing`, when it is opened).

On PostgreSQL every writer of these rows holds an exclusive advisory lock until it commits,
taken after the shared lock of the people's writers (the order person_links' writers take
theirs, so no two wait on each other) and before it reads what it writes from: whichever of
two writers commits second sees what the first committed (READ COMMITTED), so no change to a
Patient's person can pass a change to an objection unseen. A transaction that writes a
Consent or a Patient takes both locks before it writes anything (`take_turns`), so that no
transaction holds a resource's row while it waits for them: one that did could wait on one
holding them and waiting for that row, a deadlock PostgreSQL ends by cancelling one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, insert, literal, select, union
from sqlalchemy import String as SqlString

from joinedup.records.consent import OBJECTION
from joinedup.records.store import person_links
from joinedup.records.store.tables import (
    search_references,
    search_tokens,
    withheld_built,
    withheld_patients,
)
from joinedup.records.store.withholding import objection_rows

#: The key of the rows of each Patient's own objections (the person index not followed).
OWN = ""
#: The organisation of the row every (Patient, objecting Patient) pair has.
OBJECTS = ""
#: The advisory lock (PostgreSQL) the writers of the rows hold until they commit.
_HELD_LOCK = 0x7769746868656C64
#: Where a connection notes which of the two locks its transaction holds: (the transaction,
#: _PEOPLE or _ROWS), noted against the transaction as `conn.info` outlives it (kept with the
#: pooled connection), and a note left there would skip the locks in the next transaction.
_HOLDING = "records_withheld_locked"
#: The people's lock shared; it and the rows' lock.
_PEOPLE, _ROWS = 1, 2
_CHUNK = 500


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for at in range(0, len(ids), _CHUNK):
        yield ids[at : at + _CHUNK]


def _held(conn: Connection) -> int:
    """Which of the locks `conn`'s transaction holds (0, _PEOPLE or _ROWS)."""
    transaction = conn.get_transaction()
    noted = conn.info.get(_HOLDING)
    if transaction is None or noted is None or noted[0] is not transaction:
        return 0
    return int(noted[1])


def hold_people(conn: Connection) -> None:
    """Hold the people's lock shared until the transaction ends (PostgreSQL): a writer of
    Patients, which keeps their people (person_links.keep_people)."""
    if conn.dialect.name != "postgresql" or _held(conn) >= _PEOPLE:
        return
    conn.execute(select(func.pg_advisory_xact_lock_shared(person_links.PEOPLE_LOCK)))
    conn.info[_HOLDING] = (conn.get_transaction(), _PEOPLE)


def _lock(conn: Connection) -> None:
    """Hold the rows' lock until the transaction ends (PostgreSQL), after the people's."""
    if conn.dialect.name != "postgresql" or _held(conn) >= _ROWS:
        return
    hold_people(conn)
    conn.execute(select(func.pg_advisory_xact_lock(_HELD_LOCK)))
    conn.info[_HOLDING] = (conn.get_transaction(), _ROWS)


def take_turns(conn: Connection, kinds: Iterable[str]) -> None:
    """Before a transaction that writes resources of `kinds` writes anything (PostgreSQL):
    take the locks its writes of Consents and Patients may want, so it never waits for them
    while holding a resource's row. A Consent may be or have been an objection: both locks.
    A Patient may move between people: the people's lock shared, and the rows' lock too when
    a mapping's people are kept (none can start being kept while the people's lock is held:
    person_links.start_keeping takes it exclusively). Other types: nothing."""
    if conn.dialect.name != "postgresql":
        return
    wanted = set(kinds)
    if "Consent" in wanted:
        _lock(conn)
    elif "Patient" in wanted:
        hold_people(conn)
        if _held(conn) < _ROWS and person_links.kept_mappings(conn):
            _lock(conn)


def objecting_patients(conn: Connection, consent_ids: Iterable[str]) -> set[str]:
    """The Patients that the Consents `consent_ids`, as indexed now in `conn`'s
    transaction, are active objections to sharing of."""
    ids = sorted(set(consent_ids))
    tokens, refs = search_tokens.c, search_references.c
    found: set[str] = set()
    for chunk in _chunks(ids):
        objections = select(tokens.resource_id).where(
            tokens.resource_type == "Consent",
            tokens.parameter == OBJECTION,
            tokens.resource_id.in_(chunk),
        )
        found.update(
            str(p)
            for p in conn.execute(
                select(refs.target_id).where(
                    refs.resource_type == "Consent",
                    refs.parameter == "patient",
                    refs.target_type == "Patient",
                    refs.resource_id.in_(objections),
                )
            ).scalars()
        )
    return found


def consents_written(conn: Connection, patient_ids: Iterable[str]) -> None:
    """Objections of `patient_ids` were written, withdrawn or deleted in `conn`'s
    transaction (their Consents' index rows are as they now stand): write again the rows of
    every Patient they withhold, under every key."""
    held_again(conn, (), own=patient_ids)


def held_again(conn: Connection, patient_ids: Iterable[str], *, own: Iterable[str] = ()) -> None:
    """Write again the rows that `patient_ids` (whose person changed in `conn`'s transaction)
    and `own` (whose objections changed in it) take part in: under every mapping kept, those
    of each of either, of the Patients whose rows name one of them as objecting (the people
    they were in), and of the Patients of the people they are in now; under the key of
    Patients' own objections, those of `own`. One pass for both, as the rows a Patient is
    written are what the store holds when they are written."""
    objected = sorted(set(own))
    ids = sorted(set(patient_ids) | set(objected))
    if not ids:
        return
    _lock(conn)
    keys = [key for key, _ in person_links.kept_mappings(conn)]
    for key in [OWN, *keys] if objected else keys:
        asked = objected if key == OWN else ids
        affected = set(asked) | _naming(conn, key, asked)
        if key != OWN:
            affected |= {same for _, same in _pairs(conn, key, asked)}
        _write(conn, key, sorted(affected))


def _naming(conn: Connection, key: str, ids: Sequence[str]) -> set[str]:
    """The Patients whose rows under `key` name one of `ids` as objecting."""
    held = withheld_patients.c
    found: set[str] = set()
    for chunk in _chunks(ids):
        found.update(
            str(p)
            for p in conn.execute(
                select(held.patient_id).where(held.systems_key == key, held.objecting_id.in_(chunk))
            ).scalars()
        )
    return found


def _pairs(conn: Connection, key: str, ids: Sequence[str]) -> set[tuple[str, str]]:
    """(P, Q) for each of `ids` P and each Patient Q of the same person under `key`."""
    people = person_links.person_link_people
    asked, same = people.alias("asked"), people.alias("same")
    found: set[tuple[str, str]] = set()
    for chunk in _chunks(ids):
        rows = conn.execute(
            select(asked.c.patient_id, same.c.patient_id)
            .select_from(
                asked.join(
                    same,
                    (same.c.systems_key == asked.c.systems_key)
                    & (same.c.person_id == asked.c.person_id),
                )
            )
            .where(asked.c.systems_key == key, asked.c.patient_id.in_(chunk))
        )
        found.update((str(p), str(q)) for p, q in rows)
    return found


def _objections(conn: Connection, patient_ids: Sequence[str]) -> dict[str, set[str]]:
    """The recording organisations of the active objections of each of `patient_ids` that
    has one (with OBJECTS, and without the None of an objection naming none)."""
    found: dict[str, set[str]] = {}
    for chunk in _chunks(patient_ids):
        for _, organisation, patient in conn.execute(
            objection_rows(search_references.c.target_id.in_(chunk))
        ):
            held = found.setdefault(str(patient), {OBJECTS})
            if organisation is not None:
                held.add(str(organisation))
    return found


def _write(conn: Connection, key: str, patient_ids: Sequence[str]) -> None:
    """Replace the rows of `patient_ids` under `key` by what they are now."""
    pairs = {(p, p) for p in patient_ids}
    if key != OWN:
        pairs |= _pairs(conn, key, patient_ids)
    objections = _objections(conn, sorted({q for _, q in pairs}))
    held = withheld_patients.c
    for chunk in _chunks(patient_ids):
        conn.execute(
            delete(withheld_patients).where(held.systems_key == key, held.patient_id.in_(chunk))
        )
    rows = [
        {"systems_key": key, "patient_id": p, "objecting_id": q, "organisation": o}
        for p, q in sorted(pairs)
        for o in sorted(objections.get(q, ()))
    ]
    for at in range(0, len(rows), _CHUNK):
        conn.execute(insert(withheld_patients), rows[at : at + _CHUNK])


def rebuild(conn: Connection, key: str) -> None:
    """Write every row under `key` again, from every active objection in the store, in one
    statement (a new mapping, every Patient's person kept again, a store made before the
    table); the key is then built."""
    _lock(conn)
    conn.execute(delete(withheld_patients).where(withheld_patients.c.systems_key == key))
    found = objection_rows(None).subquery()
    objecting = union(
        select(found.c.target_id.label("q"), literal(OBJECTS, SqlString()).label("o")),
        select(found.c.target_id, found.c.organisation).where(found.c.organisation.is_not(None)),
    ).subquery()
    k = literal(key, SqlString())
    rows: Any = select(k, objecting.c.q, objecting.c.q, objecting.c.o)
    if key != OWN:
        people = person_links.person_link_people
        asked, same = people.alias("asked"), people.alias("same")
        mates = select(k, asked.c.patient_id, objecting.c.q, objecting.c.o).select_from(
            objecting.join(
                same, (same.c.systems_key == key) & (same.c.patient_id == objecting.c.q)
            ).join(
                asked,
                (asked.c.systems_key == key) & (asked.c.person_id == same.c.person_id),
            )
        )
        rows = union(rows, mates)
    held = withheld_patients.c
    conn.execute(
        insert(withheld_patients).from_select(
            [held.systems_key, held.patient_id, held.objecting_id, held.organisation], rows
        )
    )
    built = withheld_built.c
    if conn.execute(select(built.systems_key).where(built.systems_key == key)).first() is None:
        conn.execute(insert(withheld_built), {"systems_key": key})


def build_missing(conn: Connection) -> None:
    """Build the rows of every key not built yet: that of the Patients' own objections and
    each mapping kept (a store made before the table, when it is opened)."""
    wanted = {OWN, *(key for key, _ in person_links.kept_mappings(conn))}
    built = set(conn.execute(select(withheld_built.c.systems_key)).scalars())
    for key in sorted(wanted - built):
        rebuild(conn, key)


__all__ = [
    "build_missing",
    "consents_written",
    "held_again",
    "hold_people",
    "objecting_patients",
    "rebuild",
    "take_turns",
]
