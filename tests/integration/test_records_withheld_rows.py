"""What objections to sharing withhold is kept as rows (store.withheld: `withheld_patients`,
written in the same transaction as each Consent write, Patient write and person index run),
and a search keeps back what those rows say. Through the real writers, on SQLite and
PostgreSQL: after every step the rows are exactly what building them afresh from the Consents
and the people gives, and what users of the recording organisation and of another find (by
search and by the read's own check, which reads the Consents, not the rows) agrees, with and
without break-glass."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from consent_builders import objection
from joinedup.linkage.mpi import Decision, Link, build_index, link_table, record_table
from joinedup.records import PersonIndexStore, RecordStore
from joinedup.records.operations import Operation, Update
from joinedup.records.policy import OBJECTION, PERSON_OBJECTION, Policy, Requester
from joinedup.records.store import database_url, person_links, withheld, withholding
from joinedup.records.store.tables import withheld_patients
from joinedup.warehouse import Engine
from joinedup.warehouse.engines import DuckDBEngine
from joinedup.web.records_api.interactions import transaction

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
GP_IDS = "https://gp.example.org/patient-id"
PAS_IDS = "https://trust.example.org/pas-number"
SYSTEMS = {"gp": GP_IDS, "acute": PAS_IDS}
RECORDS = [("gp", "G-1"), ("acute", "A-1")]
#: A user of the practice (A11111), where gp1 is registered, and one of the trust (RXX),
#: which has gp1 in an encounter under way: both have a relationship with gp1.
PRACTICE = Requester("gp", frozenset({"A11111"}), frozenset({"A11111"}))
TRUST = Requester("nurse", frozenset({"RXX"}), frozenset())
#: A user of both (a PCN hub nurse seconded to the trust, say): sees what either recorded.
BOTH = Requester("hub", frozenset({"A11111", "RXX"}), frozenset({"A11111"}))
KEY = person_links.systems_key(SYSTEMS)


def _patient(pid: str, system: str, value: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": system, "value": value}],
        "generalPractitioner": [{"reference": "Organization/A11111"}],
    }


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with DuckDBEngine() as duck:
        yield duck


@pytest.fixture
def store(records_url: str) -> Iterator[RecordStore]:
    """The practice's Patient gp1 with a Condition and an encounter under way at the trust,
    and the trust's Patient acute1 (another identifier; the same person once the index
    says so)."""
    with RecordStore(records_url, clock=lambda: NOW) as opened:
        opened.keep_people(SYSTEMS)  # as the API does when it starts
        opened.update(_patient("gp1", GP_IDS, "G-1"))
        opened.update(_patient("acute1", PAS_IDS, "A-1"))
        opened.update({
            "resourceType": "Condition", "id": "asthma",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001"}]},
            "subject": {"reference": "Patient/gp1"},
        })  # fmt: skip
        opened.update({
            "resourceType": "Encounter", "id": "a-and-e", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "EMER"},
            "subject": {"reference": "Patient/gp1"},
            "serviceProvider": {"reference": "Organization/RXX"},
        })  # fmt: skip
        yield opened


def _finds(store: RecordStore, who: Requester) -> tuple[int, str | None]:
    """How many of gp1's Conditions `who`'s search finds, and what the read's check says
    withholds gp1 from them (None: nothing, or a break-glass grant shows it)."""
    policy = Policy(store, clock=lambda: NOW, index_systems=lambda: SYSTEMS)
    scope, _ = policy.scope(who)
    found = store.search("Condition", {"patient": "Patient/gp1"}, patients_of=scope).total
    decision = policy.decide(who, "gp1")
    assert decision.allowed == (found == 1), (who.username, decision, found)
    return found, (None if decision.allowed and decision.grant is None else decision.withheld)


def _rows(url: str) -> set[tuple[str, str, str, str]]:
    held = withheld_patients.c
    engine = create_engine(database_url(url))
    try:
        with engine.connect() as conn:
            query = select(held.systems_key, held.patient_id, held.objecting_id, held.organisation)
            return {tuple(r) for r in conn.execute(query)}  # type: ignore[misc]
    finally:
        engine.dispose()


def _built_afresh(url: str) -> set[tuple[str, str, str, str]]:
    """The rows as building every key afresh gives them (in a transaction rolled back)."""
    held = withheld_patients.c
    engine = create_engine(database_url(url))
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            for key in ["", *(k for k, _ in person_links.kept_mappings(conn))]:
                withheld.rebuild(conn, key)
            query = select(held.systems_key, held.patient_id, held.objecting_id, held.organisation)
            found = {tuple(r) for r in conn.execute(query)}
            transaction.rollback()
            return found  # type: ignore[return-value]
    finally:
        engine.dispose()


def _kept(url: str) -> set[tuple[str, str, str, str]]:
    """The rows as kept, having checked they are what building them afresh gives, and that
    whom they withhold from users of each set of organisations is whom the join over the
    Consents and the people withholds (withholding.objected and person_objected)."""
    rows = _rows(url)
    assert rows == _built_afresh(url)
    sources = tuple(sorted(SYSTEMS.items()))
    engine = create_engine(database_url(url))
    try:
        with engine.connect() as conn:
            for organisations in ({"A11111"}, {"RXX"}, {"A11111", "RXX"}, set()):
                given = frozenset(organisations)
                for followed, joined in (
                    (None, withholding.objected(given)),
                    (sources, withholding.person_objected(given, SYSTEMS)),
                ):
                    kept = set(conn.execute(withholding.withheld_from(given, followed)).scalars())
                    assert kept == set(conn.execute(joined).scalars()), (given, followed)
    finally:
        engine.dispose()
    return rows


def _run(index_store: PersonIndexStore, engine: Engine, links: list[Link], day: int) -> None:
    """A `joinedup link index --records` run written over the one before."""
    previous = index_store.read_previous()
    at = datetime(2026, 6, day, 9, 0, tzinfo=UTC)
    index = build_index(engine, record_table(RECORDS), link_table(links), threshold=0.9,
                        previous=previous, run_at=at)  # fmt: skip
    index_store.write_index(engine, index, previous, {"run_at": at.isoformat()})


def test_a_consent_created_withdrawn_and_deleted(store: RecordStore, records_url: str) -> None:
    """The practice's objection on gp1: its users see gp1, the trust's do not (but under
    break-glass); withdrawn (status inactive) both see it; active again, withheld again;
    deleted, seen. The rows follow each write, and are what a fresh build gives."""
    assert _finds(store, PRACTICE) == _finds(store, TRUST) == (1, None)
    store.update(objection("gp1", "A11111", cid="no-sharing"))
    assert _kept(records_url) >= {
        ("", "gp1", "gp1", ""), ("", "gp1", "gp1", "A11111"),
        (KEY, "gp1", "gp1", ""), (KEY, "gp1", "gp1", "A11111"),
    }  # fmt: skip
    assert _finds(store, PRACTICE) == (1, None)
    assert _finds(store, TRUST) == (0, OBJECTION)
    assert _finds(store, BOTH) == (1, None)
    store.update(objection("gp1", "A11111", status="inactive", cid="no-sharing"))
    assert {r for r in _kept(records_url) if r[1] == "gp1"} == set()
    assert _finds(store, TRUST) == (1, None)
    store.update(objection("gp1", "A11111", cid="no-sharing"))
    assert _finds(store, TRUST) == (0, OBJECTION)
    # A second objection, by the trust: each organisation's users now see gp1.
    store.create(objection("gp1", "RXX", cid="ignored"))
    assert ("", "gp1", "gp1", "RXX") in _kept(records_url)
    assert _finds(store, TRUST) == _finds(store, PRACTICE) == (1, None)
    store.delete("Consent", "no-sharing")
    assert ("", "gp1", "gp1", "A11111") not in _kept(records_url)
    assert _finds(store, PRACTICE) == (0, OBJECTION)
    assert _finds(store, TRUST) == (1, None)
    # Under break-glass the practice sees it again, audited as overriding the objection.
    policy = Policy(store, clock=lambda: NOW, index_systems=lambda: SYSTEMS)
    policy.break_glass(PRACTICE, "gp1", "seen in clinic, record needed for an urgent decision")
    assert _finds(store, PRACTICE) == (1, "objection to sharing")
    assert _finds(store, TRUST) == (1, None)


def test_bulk_writes_keep_the_rows_too(store: RecordStore, records_url: str) -> None:
    """The bulk load's path (load_chunk): an objection loaded, then loaded again withdrawn."""
    store.load_chunk([objection("gp1", "RXX", cid="no-sharing")])
    assert _kept(records_url) >= {("", "gp1", "gp1", ""), ("", "gp1", "gp1", "RXX")}
    assert _finds(store, PRACTICE) == (0, OBJECTION)
    assert _finds(store, TRUST) == (1, None)
    store.load_chunk([objection("gp1", "RXX", status="rejected", cid="no-sharing")])
    assert _kept(records_url) == set()
    assert _finds(store, PRACTICE) == (1, None)


def test_a_chunk_moving_a_patient_and_writing_an_objection(
    store: RecordStore, records_url: str, engine: Engine
) -> None:
    """One chunk of the bulk load moves gp1 into acute1's person and writes the trust's
    objection on acute1 (their rows written in one pass): gp1 is withheld from the
    practice; the next moves it out again and withdraws the objection: nothing is."""
    store.update(_patient("gp1", GP_IDS, "G-9"))  # out of the person to begin with
    certain = [Link(RECORDS[0], RECORDS[1], "nhs_number", None, None, "NHS number agrees")]
    with PersonIndexStore(records_url) as index_store:
        _run(index_store, engine, certain, 1)
    store.load_chunk([_patient("gp1", GP_IDS, "G-1"), objection("acute1", "RXX", cid="x")])
    assert {(KEY, "gp1", "acute1", ""), (KEY, "gp1", "acute1", "RXX")} <= _kept(records_url)
    assert _finds(store, PRACTICE) == (0, PERSON_OBJECTION)
    store.load_chunk(
        [objection("acute1", "RXX", status="inactive", cid="x"), _patient("gp1", GP_IDS, "G-9")]
    )
    assert _kept(records_url) == set()
    assert _finds(store, PRACTICE) == (1, None)


def test_a_patient_merged_by_an_index_run_and_split_again(
    store: RecordStore, records_url: str, engine: Engine
) -> None:
    """The practice objected on its own Patient gp1. A run links the trust's acute1 to the
    same person: acute1 is withheld from the trust's users too (and gp1 still), but under
    break-glass for acute1; a reviewer rejects the link and the run after splits them: the
    trust sees acute1 again. The rows name acute1 only while the two are one person."""
    store.update(objection("gp1", "A11111", cid="no-sharing"))
    policy = Policy(store, clock=lambda: NOW, index_systems=lambda: SYSTEMS)
    uncertain = [Link(RECORDS[0], RECORDS[1], "splink", 0.7, 1.2, "similar names")]

    def trust_on_acute1() -> tuple[bool, str | None, int]:
        scope, _ = policy.scope(TRUST)
        found = store.search("Patient", {"_id": "acute1"}, patients_of=scope).total
        decision = policy.decide(TRUST, "acute1")
        return decision.allowed, decision.withheld, found

    # The trust's relationship with acute1: an encounter of its own.
    store.update({
        "resourceType": "Encounter", "id": "ward", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/acute1"},
        "serviceProvider": {"reference": "Organization/RXX"},
    })  # fmt: skip
    assert trust_on_acute1() == (True, None, 1)
    with PersonIndexStore(records_url) as index_store:
        _run(index_store, engine, uncertain, 1)  # awaiting review: not one person
        assert not {r for r in _kept(records_url) if "acute1" in r[1:3]}
        index_store.decide(Decision(RECORDS[1], RECORDS[0], "accept", "ash", NOW, "same"))
        _run(index_store, engine, uncertain, 2)
        assert {r for r in _kept(records_url) if r[1] == "acute1"} == {
            (KEY, "acute1", "gp1", ""), (KEY, "acute1", "gp1", "A11111")}  # fmt: skip
        assert trust_on_acute1() == (False, PERSON_OBJECTION, 0)
        assert _finds(store, TRUST) == (0, OBJECTION)
        assert _finds(store, PRACTICE) == (1, None)
        grant = policy.break_glass(TRUST, "acute1", "unconscious in A&E, allergies needed")
        assert grant.patient_id == "acute1"
        assert trust_on_acute1()[::2] == (True, 1)
        assert _finds(store, TRUST) == (0, OBJECTION)  # the grant is for acute1 alone
        later = datetime(2026, 6, 2, 15, 0, tzinfo=UTC)
        index_store.decide(Decision(RECORDS[1], RECORDS[0], "reject", "ash", later, "twins"))
        _run(index_store, engine, uncertain, 3)
        assert not {r for r in _kept(records_url) if "acute1" in r[1:3]}


def test_a_patient_moved_by_its_own_writes(store: RecordStore, records_url: str,
                                           engine: Engine) -> None:  # fmt: skip
    """Linked by NHS number, the trust's objection on acute1 withholds gp1 from the practice;
    gp1 given another identifier leaves the person (its rows go), given its own back rejoins
    it, deleted takes its place in the person with it; acute1 deleted keeps its objection
    (as the Consent stands) but no longer withholds gp1."""
    store.update(objection("acute1", "RXX", cid="no-sharing"))
    certain = [Link(RECORDS[0], RECORDS[1], "nhs_number", None, None, "NHS number agrees")]
    with PersonIndexStore(records_url) as index_store:
        _run(index_store, engine, certain, 1)
    assert (KEY, "gp1", "acute1", "RXX") in _kept(records_url)
    assert _finds(store, PRACTICE) == (0, PERSON_OBJECTION)
    assert _finds(store, TRUST) == (1, None)
    store.update(_patient("gp1", GP_IDS, "G-9"))
    assert not {r for r in _kept(records_url) if r[1] == "gp1"}
    assert _finds(store, PRACTICE) == (1, None)
    store.update(_patient("gp1", GP_IDS, "G-1"))
    assert (KEY, "gp1", "acute1", "") in _kept(records_url)
    store.delete("Patient", "acute1")
    assert not {r for r in _kept(records_url) if r[1] == "gp1"}
    assert _finds(store, PRACTICE) == (1, None)


def test_an_objection_and_a_patient_joining_its_person_written_at_once(
    store: RecordStore, records_url: str, engine: Engine
) -> None:
    """The trust's objection on acute1 is written in a transaction that stays open while
    another server process writes gp1 back into acute1's person: the second waits for the
    first to commit (PostgreSQL: the rows' lock; SQLite: the write lock) and so sees the
    objection, and gp1 is withheld from the practice. Neither sees the other otherwise,
    and gp1 would be shown."""
    store.update(_patient("gp1", GP_IDS, "G-9"))  # out of the person to begin with
    certain = [Link(RECORDS[0], RECORDS[1], "nhs_number", None, None, "NHS number agrees")]
    with PersonIndexStore(records_url) as index_store:
        _run(index_store, engine, certain, 1)
    written, joined = threading.Event(), threading.Event()

    def writes() -> Iterator[Operation]:
        yield Update(objection("acute1", "RXX", cid="no-sharing"))
        written.set()
        joined.wait(timeout=3)  # the other process's write, if it does not wait for this

    with RecordStore(records_url, clock=lambda: NOW) as other:
        other.keep_people(SYSTEMS)

        def join() -> None:
            written.wait(timeout=30)
            other.update(_patient("gp1", GP_IDS, "G-1"))
            joined.set()

        writer = threading.Thread(target=join)
        writer.start()
        store.transaction(writes())
        writer.join(timeout=60)
    assert not writer.is_alive()
    assert (KEY, "gp1", "acute1", "RXX") in _kept(records_url)
    assert _finds(store, PRACTICE) == (0, PERSON_OBJECTION)


def test_a_store_made_before_the_rows_builds_them_when_opened(records_url: str) -> None:
    """A store whose rows were never written (made before the table) has them built when it
    is next opened, and withholds as before."""
    with RecordStore(records_url, clock=lambda: NOW) as opened:
        opened.update(_patient("gp1", GP_IDS, "G-1"))
        opened.update(objection("gp1", "RXX", cid="no-sharing"))
        opened.keep_people(SYSTEMS)
    expected = _rows(records_url)
    assert (KEY, "gp1", "gp1", "RXX") in expected
    engine = create_engine(database_url(records_url))
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE withheld_patients"))
        conn.execute(text("DROP TABLE withheld_built"))
    engine.dispose()
    with RecordStore(records_url, clock=lambda: NOW) as opened:
        assert _rows(records_url) == expected
        policy = Policy(opened, clock=lambda: NOW, index_systems=lambda: SYSTEMS)
        scope, _ = policy.scope(PRACTICE)
        assert opened.search("Patient", {"_id": "gp1"}, patients_of=scope).total == 0


def _opposite_orders(
    store: RecordStore,
    other: RecordStore,
    first: Operation,
    second: Operation,
    *,
    kinds: list[str] | None = None,
) -> list[BaseException]:
    """`first` then `second` in one transaction through `store`, and `second` then `first`
    in another through `other`, at once: each pauses after its first write until the other
    has made its own (or a second has passed). What either raised."""
    firsts = [threading.Event(), threading.Event()]
    failed: list[BaseException] = []

    def writes(mine: int, operations: list[Operation]) -> Iterator[Operation]:
        yield operations[0]
        firsts[mine].set()
        firsts[1 - mine].wait(timeout=1)  # the other's first write, unless it waits for us
        yield operations[1]

    def run(mine: int, through: RecordStore, operations: list[Operation]) -> None:
        try:
            through.transaction(writes(mine, operations), kinds=kinds)
        except Exception as err:
            failed.append(err)

    threads = [
        threading.Thread(target=run, args=(0, store, [first, second])),
        threading.Thread(target=run, args=(1, other, [second, first])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return failed


@pytest.mark.parametrize("kinds", [None, ["Consent", "Patient"]], ids=["unnamed", "named"])
def test_a_consent_and_a_patient_written_in_opposite_orders_at_once(
    store: RecordStore, records_url: str, kinds: list[str] | None
) -> None:
    """Two transactions (two server processes) each write an objection of the trust's on
    acute1 and gp1's Patient, in opposite orders, each waiting after its first write for the
    other's: on PostgreSQL the one that wrote its Consent (holding the withheld rows' lock)
    waited for gp1's row, which the other held while it waited for that lock, and PostgreSQL
    cancelled one (a deadlock). Every transaction writing a Consent or a Patient now takes
    the lock before writing anything, whether its operations are named beforehand (`kinds`,
    as a transaction Bundle does) or not: the second waits for the first, and both are
    written."""
    with RecordStore(records_url, clock=lambda: NOW) as other:
        other.keep_people(SYSTEMS)
        failed = _opposite_orders(
            store, other, Update(objection("acute1", "RXX", cid="x")),
            Update(_patient("gp1", GP_IDS, "G-1")), kinds=kinds,
        )  # fmt: skip
        failed += _opposite_orders(
            store, other, Update(objection("acute1", "RXX", cid="y")),
            Update(_patient("gp1", GP_IDS, "G-1")), kinds=kinds,
        )  # fmt: skip
    assert failed == []
    assert len(store.history("Patient", "gp1")) == 5
    assert {(KEY, "acute1", "acute1", "RXX"), ("", "acute1", "acute1", "RXX")} <= _kept(records_url)


def test_transaction_bundles_in_opposite_orders_repeated(
    store: RecordStore, records_url: str, engine: Engine
) -> None:
    """Two clients send transaction Bundles at once, over and over, through the API's own
    handling: one writes the trust's objection on acute1 then gp1's Patient, the other gp1
    then an objection of the practice's, each Bundle's Patient moving gp1 in or out of
    acute1's person. Every Bundle is written (none cancelled as a deadlock, none refused as
    a conflict) and the rows are what a fresh build gives."""
    rounds = 15
    with RecordStore(records_url, clock=lambda: NOW) as other:
        other.keep_people(SYSTEMS)
        certain = [Link(RECORDS[0], RECORDS[1], "nhs_number", None, None, "NHS number agrees")]
        with PersonIndexStore(records_url) as index_store:
            _run(index_store, engine, certain, 1)
        start = threading.Barrier(2)
        failed: list[BaseException] = []

        def entry(resource: dict[str, Any]) -> dict[str, Any]:
            url = f"{resource['resourceType']}/{resource['id']}"
            return {"fullUrl": url, "resource": resource, "request": {"method": "PUT", "url": url}}

        def client(through: RecordStore, consent: dict[str, Any], value: str, first: bool) -> None:
            patient = _patient("gp1", GP_IDS, value)
            entries = (
                [entry(consent), entry(patient)] if first else [entry(patient), entry(consent)]
            )
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            for _ in range(rounds):
                start.wait(timeout=60)
                try:
                    transaction(through, "http://records.example", bundle)
                except Exception as err:
                    failed.append(err)

        threads = [
            threading.Thread(target=client,
                             args=(store, objection("acute1", "RXX", cid="x"), "G-1", True)),
            threading.Thread(target=client,
                             args=(other, objection("acute1", "A11111", cid="y"), "G-9", False)),
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert failed == []
    assert len(store.history("Patient", "gp1")) == 1 + 2 * rounds
    _kept(records_url)


def test_a_transaction_writing_a_kind_it_did_not_name_is_refused(store: RecordStore) -> None:
    """A generator that names the kinds it writes and then writes another (whose locks it
    would take late, after other rows) is refused before that write, and nothing of it is
    written."""

    def writes() -> Iterator[Operation]:
        yield Update(objection("acute1", "RXX", cid="named"))
        yield Update(_patient("gp1", GP_IDS, "G-9"))

    with pytest.raises(ValueError, match="operation 1 writes a Patient, not one of the kinds"):
        store.transaction(writes(), kinds=["Consent"])
    assert len(store.history("Patient", "gp1")) == 1
    assert store.objections("acute1") == []
