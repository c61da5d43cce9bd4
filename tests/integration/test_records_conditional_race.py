"""Conditional writes racing from several stores at once (each its own connections, as
`records serve --workers N` processes are), on SQLite and on PostgreSQL: whoever loses the
race finds what the winner wrote, so one person is one Patient, and nobody gets an error."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from joinedup.fhir.validate import NHS_NUMBER_SYSTEM, is_valid_nhs_number
from joinedup.records import (
    ConditionalUpdate,
    Create,
    Operation,
    Outcome,
    RecordStore,
)

WORKERS = 8
ROUNDS = 3


def _nhs_numbers(count: int) -> list[str]:
    candidates = (f"94{n:08d}" for n in itertools.count(1))
    return list(itertools.islice((c for c in candidates if is_valid_nhs_number(c)), count))


def _patient(nhs_number: str, family: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}],
        "name": [{"family": family}],
    }


def _criteria(nhs_number: str) -> str:
    return f"identifier={NHS_NUMBER_SYSTEM}|{nhs_number}"


def _race(records_url: str, work: Callable[[RecordStore, int], Any]) -> list[Any]:
    """`work(store, n)` on WORKERS threads released together, each with a store of its own;
    what each returned, in worker order (a failure is re-raised here)."""
    stores = [RecordStore(records_url) for _ in range(WORKERS)]
    start = threading.Barrier(WORKERS)
    results: list[Any] = [None] * WORKERS
    failures: list[BaseException] = []

    def run(n: int) -> None:
        try:
            start.wait(timeout=30)
            results[n] = work(stores[n], n)
        except BaseException as err:  # reported by the main thread
            failures.append(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=50)
    for store in stores:
        store.close()
    assert not failures, failures
    return results


def _found(records_url: str, nhs_number: str) -> list[str]:
    with RecordStore(records_url) as store:
        page = store.search("Patient", _criteria(nhs_number))
        return [r["id"] for r in page.resources]


def _written_otherwise(nhs_number: str, n: int) -> str:
    """A search finding the Patient by its NHS number (and birth date), written in one of
    four ways, as different feeds write it: with the system or without, with the birth date
    before or after, the `|` encoded or not."""
    identifier, born = _criteria(nhs_number), "birthdate=1970-01-01"
    return (
        identifier,
        f"identifier={nhs_number}",
        f"{identifier}&{born}",
        f"{born}&{identifier.replace('|', '%7C').replace(':', '%3A')}",
    )[n % 4]


def test_racing_conditional_creates_make_one_patient(records_url: str) -> None:
    """Among the racers the search is written in four ways: they take turns all the same."""
    for nhs_number in _nhs_numbers(ROUNDS):

        def create(store: RecordStore, n: int, nhs_number: str = nhs_number) -> Outcome:
            patient = {**_patient(nhs_number, f"Worker{n}"), "birthDate": "1970-01-01"}
            return store.create(patient, if_none_exist=_written_otherwise(nhs_number, n))

        outcomes = _race(records_url, create)
        found = _found(records_url, nhs_number)
        assert len(found) == 1, f"{len(found)} Patients for one NHS number"
        assert {o.resource_id for o in outcomes} == set(found)
        assert [o.created for o in outcomes].count(True) == 1
        assert {o.version_id for o in outcomes} == {1}


def test_racing_conditional_updates_make_one_patient(records_url: str) -> None:
    for nhs_number in _nhs_numbers(ROUNDS):

        def put(store: RecordStore, n: int, nhs_number: str = nhs_number) -> Outcome:
            return store.conditional_update(
                _patient(nhs_number, f"Worker{n}"), _criteria(nhs_number)
            )

        outcomes = _race(records_url, put)
        found = _found(records_url, nhs_number)
        assert len(found) == 1, f"{len(found)} Patients for one NHS number"
        assert {o.resource_id for o in outcomes} == set(found)
        assert [o.created for o in outcomes].count(True) == 1
        # one creation and an update on top of it by each of the others, none lost
        assert sorted(o.version_id for o in outcomes) == list(range(1, WORKERS + 1))
        with RecordStore(records_url) as store:
            assert len(store.history("Patient", found[0])) == WORKERS


def test_racing_transactions_of_two_conditional_entries(records_url: str) -> None:
    """Half the transactions name the two people in one order, half in the other, as a
    conditional create of one and a conditional update of the other: each person is one
    Patient, every transaction names the same two, and none waits for ever on another."""
    numbers = _nhs_numbers(2 * ROUNDS)
    for first, second in zip(numbers[::2], numbers[1::2], strict=True):

        def bundle(store: RecordStore, n: int, a: str = first, b: str = second) -> list[str]:
            people = (a, b) if n % 2 else (b, a)
            operations: list[Operation] = [
                Create(_patient(people[0], f"Worker{n}"), _criteria(people[0])),
                ConditionalUpdate(_patient(people[1], f"Worker{n}"), _criteria(people[1])),
            ]
            outcomes = store.transaction(operations)
            ids = {
                o.resource["identifier"][0]["value"]: o.resource_id
                for o in outcomes
                if o is not None and o.resource is not None
            }
            return [ids[a], ids[b]]

        named = _race(records_url, bundle)
        found = [_found(records_url, first), _found(records_url, second)]
        assert [len(f) for f in found] == [1, 1], found
        assert {tuple(ids) for ids in named} == {(found[0][0], found[1][0])}
