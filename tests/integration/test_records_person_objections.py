"""An objection to sharing follows the person (issue 16) from the person each Patient is kept
as in the records store (store.person_links: written with every Patient write and every
index run, in the same transaction): what a practice user is refused, and finds, as the index
and the Patients change, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from consent_builders import objection
from joinedup.linkage.mpi import Decision, Link, build_index, link_table, record_table
from joinedup.records import PersonIndexStore, RecordStore
from joinedup.records.policy import PERSON_OBJECTION, Policy, Requester
from joinedup.warehouse import Engine
from joinedup.warehouse.engines import DuckDBEngine

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
GP_IDS = "https://gp.example.org/patient-id"
PAS_IDS = "https://trust.example.org/pas-number"
SYSTEMS = {"gp": GP_IDS, "acute": PAS_IDS}
RECORDS = [("gp", "G-1"), ("acute", "A-1")]
PRACTICE = Requester("gp", frozenset({"A11111"}), frozenset({"A11111"}))
TRUST = Requester("nurse", frozenset({"RXX"}), frozenset())


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
    """The practice's Patient gp1 (registered there) with a Condition, and the trust's
    Patient acute1 of the same person, whose objection the trust recorded."""
    with RecordStore(records_url, clock=lambda: NOW) as opened:
        opened.update(_patient("gp1", GP_IDS, "G-1"))
        opened.update(_patient("acute1", PAS_IDS, "A-1"))
        opened.update({
            "resourceType": "Condition", "id": "asthma",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001"}]},
            "subject": {"reference": "Patient/gp1"},
        })  # fmt: skip
        opened.update(objection("acute1", "RXX", cid="objection-acute1"))
        yield opened


def _sees(store: RecordStore, who: Requester = PRACTICE) -> tuple[bool, str | None, int]:
    """Whether `who` may read gp1 (and what withholds it), and how many of gp1's Conditions
    their search finds."""
    policy = Policy(store, clock=lambda: NOW, index_systems=lambda: SYSTEMS)
    decision = policy.decide(who, "gp1")
    scope, _ = policy.scope(who)
    found = store.search("Condition", {"patient": "Patient/gp1"}, patients_of=scope).total
    return decision.allowed, decision.withheld, found


SEEN = (True, None, 1)
WITHHELD = (False, PERSON_OBJECTION, 0)


def _run(index_store: PersonIndexStore, engine: Engine, links: list[Link], day: int) -> None:
    """A `joinedup link index --records` run: the index built from `links` and the
    decisions saved in the store, written over the one before."""
    previous = index_store.read_previous()
    at = datetime(2026, 6, day, 9, 0, tzinfo=UTC)
    index = build_index(engine, record_table(RECORDS), link_table(links), threshold=0.9,
                        previous=previous, run_at=at)  # fmt: skip
    index_store.write_index(engine, index, previous, {"run_at": at.isoformat()})


def test_a_link_accepted_then_rejected_on_review_carries_the_objection_then_not(
    store: RecordStore, records_url: str, engine: Engine
) -> None:
    """An uncertain link awaits review and carries nothing; accepted, the next run links the
    two Patients and the trust's objection withholds the practice's Patient; rejected later,
    the run after splits them and the practice sees its Patient again. The trust, which
    recorded the objection, sees the practice's Patient throughout (when it may at all)."""
    uncertain = [Link(RECORDS[0], RECORDS[1], "splink", 0.7, 1.2, "similar names")]
    with PersonIndexStore(records_url) as index_store:
        _run(index_store, engine, uncertain, 1)
        assert _sees(store) == SEEN  # awaiting review: not followed
        index_store.decide(Decision(RECORDS[1], RECORDS[0], "accept", "ash", NOW, "same"))
        _run(index_store, engine, uncertain, 2)
        assert _sees(store) == WITHHELD
        assert _sees(store, TRUST)[1] is None  # its own objection withholds nothing from it
        later = datetime(2026, 6, 2, 15, 0, tzinfo=UTC)
        index_store.decide(Decision(RECORDS[1], RECORDS[0], "reject", "ash", later, "twins"))
        _run(index_store, engine, uncertain, 3)
        assert _sees(store) == SEEN


def test_the_patients_own_writes_move_it_in_and_out_of_the_person(
    store: RecordStore, records_url: str, engine: Engine
) -> None:
    """With the two Patients linked by NHS number: the practice's Patient given another
    identifier leaves the person (seen), loaded back in bulk with its own rejoins it
    (withheld); the objecting Patient deleted takes its objection with it (seen), written
    again brings it back (withheld). A second store on the same database (another server
    process) decides alike, and what it writes the first sees at once."""
    certain = [Link(RECORDS[0], RECORDS[1], "nhs_number", None, None, "NHS number agrees")]
    with PersonIndexStore(records_url) as index_store:
        _run(index_store, engine, certain, 1)
    assert _sees(store) == WITHHELD
    store.update(_patient("gp1", GP_IDS, "G-9"))
    assert _sees(store) == SEEN
    store.load_chunk([_patient("gp1", GP_IDS, "G-1")])
    assert _sees(store) == WITHHELD
    store.delete("Patient", "acute1")
    assert _sees(store) == SEEN
    store.update(_patient("acute1", PAS_IDS, "A-1"))
    assert _sees(store) == WITHHELD
    with RecordStore(records_url, clock=lambda: NOW) as other:
        assert _sees(other) == WITHHELD
        other.update(_patient("gp1", GP_IDS, "G-9"))
        assert _sees(store) == _sees(other) == SEEN
