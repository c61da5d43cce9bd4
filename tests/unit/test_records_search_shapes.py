"""A search's statements are built once for every search of the same shape and reused with
each search's own values (records.store.search.prepared): searches of one shape one after the
other each find their own matches, on SQLite and on PostgreSQL, including values that LIKE
would read as wildcards, `_id` lists of different lengths, date prefixes and pages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from joinedup.records import RecordStore, Update
from joinedup.records.store import search as searching

NHS = "https://fhir.nhs.uk/Id/nhs-number"
PATIENTS = [
    ("p1", "9000000009", "O_Brien", "1950-03-01"),
    ("p2", "9000000017", "Ox%ley", "1960-07-15"),
    ("p3", "9000000025", "Oxford", "1970-11-30"),
]


@pytest.fixture
def store(records_url: str) -> Iterator[RecordStore]:
    with RecordStore(records_url) as opened:
        opened.transaction(
            [
                Update(
                    {
                        "resourceType": "Patient", "id": pid, "birthDate": born,
                        "identifier": [{"system": NHS, "value": nhs}],
                        "name": [{"family": family}],
                    }
                )
                for pid, nhs, family, born in PATIENTS
            ]
        )  # fmt: skip
        yield opened


def _ids(store: RecordStore, query: dict[str, str]) -> tuple[int, list[str]]:
    page = store.search("Patient", query)
    return page.total, [r["id"] for r in page.resources]


def test_searches_of_one_shape_each_find_their_own(store: RecordStore) -> None:
    for pid, nhs, _, _ in PATIENTS:
        assert _ids(store, {"identifier": f"{NHS}|{nhs}"}) == (1, [pid])
    assert _ids(store, {"identifier": f"{NHS}|9000000033"}) == (0, [])
    # _ and % are letters in a name, not LIKE's wildcards, whichever search built the statement
    assert _ids(store, {"family": "O_"}) == (1, ["p1"])
    assert _ids(store, {"family": "Ox%"}) == (1, ["p2"])
    assert _ids(store, {"family": "Ox"}) == (2, ["p2", "p3"])
    assert _ids(store, {"family:contains": "_b"}) == (1, ["p1"])
    # one statement for lists of any length
    assert _ids(store, {"_id": "p1,p3"}) == (2, ["p1", "p3"])
    assert _ids(store, {"_id": "p2"}) == (1, ["p2"])
    assert _ids(store, {"_id": "p1,p2,p3,p4"}) == (3, ["p1", "p2", "p3"])
    # the same prefix with other dates, another prefix with the same date
    assert _ids(store, {"birthdate": "ge1960-01-01"}) == (2, ["p2", "p3"])
    assert _ids(store, {"birthdate": "ge1970-01-01"}) == (1, ["p3"])
    assert _ids(store, {"birthdate": "lt1960-01-01"}) == (1, ["p1"])
    # pages: the count and offset are the search's own
    assert _ids(store, {"_count": "1", "_offset": "1"}) == (3, ["p2"])
    assert _ids(store, {"_count": "2", "_offset": "0"}) == (3, ["p1", "p2"])


def test_a_shape_is_built_once(store: RecordStore) -> None:
    first = searching.prepared("Condition", {"patient": "Patient/p1"})
    second = searching.prepared("Condition", {"patient": "Patient/p2", "_count": "10"})
    assert first.page is second.page and first.total is second.total
    assert (first.values["p1"], second.values["p1"]) == ("p1", "p2")
    other = searching.prepared("Condition", {"patient": "p2"})  # no type: another shape
    assert other.page is not first.page
