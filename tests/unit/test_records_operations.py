"""The records store's operations, the same tests on SQLite and on PostgreSQL (`records_url`):
versions, history, deletion, optimistic locking, conditional writes, all-or-nothing
transactions and search over the index tables."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from joinedup.records import (
    ConditionalUpdate,
    Create,
    Delete,
    InvalidResourceError,
    InvalidSearchError,
    PreconditionFailedError,
    RecordStore,
    ResourceDeletedError,
    ResourceNotFoundError,
    TransactionFailedError,
    Update,
    VersionConflictError,
)
from joinedup.records.parameters import normalise
from ticking_clock import Clock

NHS = "https://fhir.nhs.uk/Id/nhs-number"
# Valid NHS numbers (Modulus 11) from the range kept for testing.
NUMBERS = ["9000000009", "9000000017", "9000000025", "9000000033", "9000000041"]


@pytest.fixture
def store(records_url: str) -> Iterator[RecordStore]:
    with RecordStore(records_url, clock=Clock()) as opened:
        yield opened


def patient(number: str = NUMBERS[0], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": number}],
        "name": [{"family": "Smith", "given": ["Richard"]}],
        "gender": "male",
        "birthDate": "1970-09-11",
        **extra,
    }


def observation(subject: str, when: str, code: str = "271649006") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": 120, "unit": "mm[Hg]"},
    }


def test_create_assigns_an_id_and_version_one_and_reads_back_equal(store: RecordStore) -> None:
    given = patient(id="chosen-by-client")
    kept = copy.deepcopy(given)
    created = store.create(given)
    assert given == kept  # the caller's resource is not changed
    assert created.created and created.version_id == 1
    assert created.resource_id != "chosen-by-client"  # a create's id is the server's
    stored = store.read("Patient", created.resource_id)
    assert stored == created.resource
    assert stored["meta"] == {"versionId": "1", "lastUpdated": "2026-03-01T12:00:01.000000Z"}
    assert {k: v for k, v in stored.items() if k not in ("id", "meta")} == {
        k: v for k, v in kept.items() if k != "id"
    }


def test_update_adds_a_version_and_every_version_stays_readable(store: RecordStore) -> None:
    rid = store.create(patient()).resource_id
    updated = store.update({**patient(gender="female"), "id": rid})
    assert (updated.version_id, updated.created) == (2, False)
    assert store.read("Patient", rid)["gender"] == "female"
    assert store.vread("Patient", rid, 1)["gender"] == "male"
    history = store.history("Patient", rid)
    assert [h.version_id for h in history] == [2, 1]
    assert history[0].last_updated == datetime(2026, 3, 1, 12, 0, 2, tzinfo=UTC)
    assert history[0].last_updated.tzinfo is not None
    with pytest.raises(ResourceNotFoundError, match=r"_history/3: no such version"):
        store.vread("Patient", rid, 3)


def test_update_of_an_unknown_id_creates_it(store: RecordStore) -> None:
    made = store.update({**patient(), "id": "pat-1"})
    assert (made.resource_id, made.version_id, made.created) == ("pat-1", 1, True)


def test_if_match_refuses_a_stale_version_and_changes_nothing(store: RecordStore) -> None:
    rid = store.create(patient()).resource_id
    store.update({**patient(gender="female"), "id": rid}, if_match=1)
    with pytest.raises(VersionConflictError, match=r"If-Match version 1, but it is at version 2"):
        store.update({**patient(gender="other"), "id": rid}, if_match=1)
    assert store.read("Patient", rid)["gender"] == "female"
    assert len(store.history("Patient", rid)) == 2
    with pytest.raises(VersionConflictError, match="does not exist"):
        store.update({**patient(), "id": "nobody"}, if_match=1)


def test_two_stores_on_one_database_cannot_both_update_version_one(records_url: str) -> None:
    with RecordStore(records_url) as first, RecordStore(records_url) as second:
        rid = first.create(patient()).resource_id
        second.update({**patient(gender="female"), "id": rid}, if_match=1)
        with pytest.raises(VersionConflictError):
            first.update({**patient(gender="other"), "id": rid}, if_match=1)
        assert first.read("Patient", rid)["gender"] == "female"


def test_delete_is_a_new_version_flagged_deleted(store: RecordStore) -> None:
    rid = store.create(patient()).resource_id
    store.update({**patient(gender="female"), "id": rid})
    deleted = store.delete("Patient", rid)
    assert deleted is not None and deleted.version_id == 3
    with pytest.raises(ResourceDeletedError):
        store.read("Patient", rid)
    with pytest.raises(ResourceDeletedError):
        store.vread("Patient", rid, 3)
    assert store.vread("Patient", rid, 2)["gender"] == "female"
    assert [
        (h.version_id, h.deleted, h.resource is None) for h in store.history("Patient", rid)
    ] == [
        (3, True, True),
        (2, False, False),
        (1, False, False),
    ]
    assert store.search("Patient", {"identifier": f"{NHS}|{NUMBERS[0]}"}).total == 0
    assert store.delete("Patient", rid) is None  # deleting again changes nothing
    assert store.delete("Patient", "never-was") is None
    back = store.update({**patient(), "id": rid})
    assert (back.version_id, back.created) == (4, True)
    assert store.search("Patient", {"identifier": f"{NHS}|{NUMBERS[0]}"}).total == 1


def test_reading_what_was_never_written_is_not_found(store: RecordStore) -> None:
    with pytest.raises(ResourceNotFoundError, match="Patient/nobody: no such resource"):
        store.read("Patient", "nobody")
    with pytest.raises(ResourceNotFoundError):
        store.history("Patient", "nobody")


def test_an_invalid_resource_is_refused_naming_the_element(store: RecordStore) -> None:
    with pytest.raises(InvalidResourceError, match=r"Patient\.identifier\[0\]\.value: NHS number"):
        store.create(patient("9000000001"))
    with pytest.raises(InvalidResourceError, match=r"Patient\.id: an update needs"):
        store.update(patient())
    assert store.search("Patient").total == 0


def test_conditional_create_by_identifier(store: RecordStore) -> None:
    criteria = f"identifier={NHS}|{NUMBERS[0]}"
    first = store.create(patient(), if_none_exist=criteria)
    again = store.create(patient(gender="female"), if_none_exist=criteria)
    assert first.created and not again.created
    assert again.resource_id == first.resource_id and again.version_id == 1
    assert store.read("Patient", first.resource_id)["gender"] == "male"
    store.create(patient())  # a second record with the same number, made unconditionally
    with pytest.raises(PreconditionFailedError, match="matches 2 resources"):
        store.create(patient(), if_none_exist=criteria)


def test_conditional_update_by_identifier(store: RecordStore) -> None:
    criteria = f"identifier={NHS}|{NUMBERS[1]}"
    made = store.conditional_update(patient(NUMBERS[1]), criteria)
    assert made.created and made.version_id == 1
    changed = store.conditional_update(patient(NUMBERS[1], gender="female"), criteria)
    assert (changed.resource_id, changed.version_id, changed.created) == (
        made.resource_id,
        2,
        False,
    )
    with pytest.raises(InvalidResourceError, match="differs from the resource the search found"):
        store.conditional_update({**patient(NUMBERS[1]), "id": "other"}, criteria)
    with pytest.raises(PreconditionFailedError, match="needs search criteria"):
        store.conditional_update(patient(), "")


def _everything(store: RecordStore) -> tuple[int, int]:
    return store.search("Patient").total, store.search("Observation").total


@pytest.mark.parametrize("failing", [0, 2, 4])
def test_a_transaction_failing_at_entry_n_writes_nothing(store: RecordStore, failing: int) -> None:
    existing = store.create(patient(NUMBERS[4])).resource_id
    before = _everything(store)
    operations: list[Any] = [Create(patient(n)) for n in NUMBERS[:4]] + [
        Update({**patient(NUMBERS[4], gender="female"), "id": existing}, if_match=1)
    ]
    # entry `failing` breaks: an invalid resource, or (the last) a stale If-Match after four
    # writes have already gone into the database transaction
    if failing == 4:
        operations[4] = Update({**patient(NUMBERS[4]), "id": existing}, if_match=7)
    else:
        operations[failing] = Create(patient("9000000001"))
    with pytest.raises(TransactionFailedError, match=rf"transaction entry {failing}: .*nothing"):
        store.transaction(operations)
    assert _everything(store) == before
    assert store.read("Patient", existing)["gender"] == "male"
    assert len(store.history("Patient", existing)) == 1
    for number in NUMBERS[:4]:
        assert store.search("Patient", {"identifier": number}).total == 0


def test_a_transaction_writes_every_entry_together(store: RecordStore) -> None:
    gone = store.create(patient(NUMBERS[4])).resource_id
    outcomes = store.transaction(
        [
            Create(patient(NUMBERS[0])),
            Update({**patient(NUMBERS[1]), "id": "pat-b"}),
            ConditionalUpdate(patient(NUMBERS[2]), f"identifier={NHS}|{NUMBERS[2]}"),
            Create(patient(NUMBERS[0]), if_none_exist=f"identifier={NUMBERS[0]}"),
            Delete("Patient", gone),
        ]
    )
    assert [o.created if o else None for o in outcomes] == [True, True, True, False, False]
    first = outcomes[0]
    assert first is not None and outcomes[3] is not None
    assert outcomes[3].resource_id == first.resource_id  # the entry saw the one before it
    assert store.search("Patient").total == 3


@pytest.fixture
def records(store: RecordStore) -> dict[str, str]:
    """Three patients and five observations to search."""
    ids = {
        "smith": store.create(patient(NUMBERS[0])).resource_id,
        "oneill": store.create(
            patient(
                NUMBERS[1],
                name=[{"family": "Ó Néill", "given": ["Siobhán"]}],
                gender="female",
                birthDate="1985-02",
                generalPractitioner=[{"reference": "Organization/Y12345"}],
            )
        ).resource_id,
        "jones": store.create(
            patient(NUMBERS[2], name=[{"family": "Jones_50%"}], birthDate="2001-12-31")
        ).resource_id,
    }
    for when in ("2023-01-05", "2023-03-01T10:00:00Z", "2022-11-30T23:30:00-01:00", "2024"):
        store.create(observation(ids["smith"], when))
    store.create(observation(ids["oneill"], "2023-02-01", code="60621009"))
    return ids


def _ids(store: RecordStore, kind: str, query: Any) -> list[str]:
    return [r["id"] for r in store.search(kind, query).resources]


def test_search_patients_by_each_parameter(store: RecordStore, records: dict[str, str]) -> None:
    def found(query: Any) -> set[str]:
        return {
            next(k for k, v in records.items() if v == i) for i in _ids(store, "Patient", query)
        }

    assert found({"identifier": f"{NHS}|{NUMBERS[1]}"}) == {"oneill"}
    assert found({"identifier": NUMBERS[1]}) == {"oneill"}
    assert found({"identifier": f"http://elsewhere|{NUMBERS[1]}"}) == set()
    assert found({"identifier": f"{NHS}|"}) == {"smith", "oneill", "jones"}
    assert found({"name": "o ne"}) == {"oneill"}  # accents and case ignored, from the start
    assert found({"name": "SIOBHAN"}) == {"oneill"}
    assert found({"name": "jones_5"}) == {"jones"}
    assert found({"name": "jones_%"}) == set()  # _ and % are letters, not wildcards
    assert found({"family:contains": "mit"}) == {"smith"}
    assert found({"gender": "female"}) == {"oneill"}
    assert found({"gender": "male,female"}) == {"smith", "oneill", "jones"}
    assert found({"birthdate": "1985"}) == {"oneill"}  # 1985-02 lies within 1985
    assert found({"birthdate": "1985-02-10"}) == set()  # 1985-02 is wider than that day
    assert found({"birthdate": "ge1985-02-10"}) == {"oneill", "jones"}
    assert found({"birthdate": "lt1985"}) == {"smith"}
    assert found({"birthdate": ["gt1970", "lt2000"]}) == {"oneill"}  # AND
    assert found({"general-practitioner": "Organization/Y12345"}) == {"oneill"}
    assert found({"general-practitioner": "Y12345"}) == {"oneill"}
    assert found({"_id": records["jones"]}) == {"jones"}
    assert found(f"gender=male&birthdate=2001&identifier={NUMBERS[2]}") == {"jones"}


def test_search_observations_by_patient_date_and_code(
    store: RecordStore, records: dict[str, str]
) -> None:
    smith = records["smith"]
    assert store.search("Observation", {"patient": smith}).total == 4
    assert store.search("Observation", {"patient": f"Patient/{smith}"}).total == 4
    assert store.search("Observation", {"subject": f"Patient/{smith}"}).total == 4
    assert store.search("Observation", {"patient": f"Group/{smith}"}).total == 0
    assert store.search("Observation", {"code": "http://snomed.info/sct|60621009"}).total == 1
    # 2022-11-30T23:30-01:00 is 2022-12-01T00:30Z: compared as an instant, in December
    assert store.search("Observation", {"date": "2022-12"}).total == 1
    assert store.search("Observation", {"date": "2022-11"}).total == 0
    assert store.search("Observation", {"date": ["ge2023", "lt2024"]}).total == 3
    assert store.search("Observation", {"status": "final", "date": "2024"}).total == 1


def test_search_pages_with_count_and_sorts_by_date(
    store: RecordStore, records: dict[str, str]
) -> None:
    query = {"patient": records["smith"], "_sort": "date", "_count": "3"}
    first = store.search("Observation", query)
    dates = [r["effectiveDateTime"] for r in first.resources]
    assert (first.total, dates) == (
        4,
        ["2022-11-30T23:30:00-01:00", "2023-01-05", "2023-03-01T10:00:00Z"],
    )
    rest = store.search("Observation", {**query, "_offset": "3"})
    assert [r["effectiveDateTime"] for r in rest.resources] == ["2024"]
    # The total is the same on every page: a short last page ends it, a full one or one past
    # the end is counted.
    assert rest.total == 4
    assert store.search("Observation", {**query, "_count": "2", "_offset": "2"}).total == 4
    past = store.search("Observation", {**query, "_offset": "9"})
    assert (past.total, past.resources) == (4, [])
    newest = store.search("Observation", {**query, "_sort": "-date", "_count": "2"})
    assert [r["effectiveDateTime"] for r in newest.resources] == ["2024", "2023-03-01T10:00:00Z"]
    assert store.search("Observation", {"_count": "0"}).resources == []
    assert store.search("Observation", {"_count": "0"}).total == 5


def test_search_sorts_by_any_date_or_string_parameter(
    store: RecordStore, records: dict[str, str]
) -> None:
    """`_sort` by a type's own date and string parameters, several keys, `-` descending: a
    resource with no value comes last, ties by id (FHIR's search `_sort`)."""
    every = store.search("Patient", {"_count": "1000"}).resources
    assert len(every) > 2

    def family(r: dict[str, Any]) -> str:
        return min(normalise(n.get("family") or "") for n in r.get("name") or [{}])

    def ids(query: dict[str, str]) -> list[str]:
        return [r["id"] for r in store.search("Patient", {**query, "_count": "1000"}).resources]

    by_family = sorted(every, key=lambda r: (family(r) == "", family(r), r["id"]))
    assert ids({"_sort": "family"}) == [r["id"] for r in by_family]
    born = [r for r in every if r.get("birthDate")]
    newest_first = sorted(born, key=lambda r: r["id"])
    newest_first.sort(key=lambda r: r["birthDate"], reverse=True)
    unborn = sorted(r["id"] for r in every if not r.get("birthDate"))
    assert ids({"_sort": "-birthdate"}) == [r["id"] for r in newest_first] + unborn
    assert ids({"_sort": "-_id"}) == sorted((r["id"] for r in every), reverse=True)
    two_keys = sorted(every, key=lambda r: r["id"])
    two_keys.sort(key=lambda r: r.get("birthDate") or "", reverse=True)
    two_keys.sort(key=lambda r: (family(r) == "", family(r)))
    assert ids({"_sort": "family,-birthdate"}) == [r["id"] for r in two_keys]


@pytest.mark.parametrize(
    ("kind", "query", "message"),
    [
        ("Patient", {"shoe-size": "9"}, r"Patient\?shoe-size: not a search parameter"),
        ("Patient", {"birthdate": "soon"}, r"birthdate: not a FHIR date"),
        ("Patient", {"_count": "-1"}, r"_count: not a whole number"),
        ("Patient", {"_sort": "gender"}, r"_sort: the store sorts by _id, .* not gender"),
        ("Patient", {"_sort": "family,"}, r"_sort: .* not \(nothing\)"),
        ("Patient", {"gender:text": "male"}, r"gender:text: the store does not support"),
        ("Banana", {}, r"Banana: not a FHIR R4 resource type"),
        ("Location", {"name": "x"}, r"Location\?name: not a search parameter .*\(none but _id\)"),
    ],
)
def test_a_search_the_store_cannot_run_is_refused_naming_the_parameter(
    store: RecordStore, kind: str, query: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidSearchError, match=message):
        store.search(kind, query)
