"""Bulk load and export of the records store (`joinedup.records.bulk`), on SQLite and
PostgreSQL: an update `if_changed` writes no version for the same content, a Bundle's entries
load at their ids with their references resolved, chunks skip only their invalid resources,
and an export writes the current resources by type, never the deleted ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from joinedup.errors import InputError
from joinedup.records import RecordStore, Update
from joinedup.records.bulk import export, load
from ticking_clock import Clock

NHS = "https://fhir.nhs.uk/Id/nhs-number"
NUMBERS = ["9000000009", "9000000017", "9000000025"]


@pytest.fixture
def store(records_url: str) -> Iterator[RecordStore]:
    with RecordStore(records_url, clock=Clock(timedelta(minutes=1))) as opened:
        yield opened


def patient(rid: str, number: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": rid,
        "identifier": [{"system": NHS, "value": number}],
        "gender": "female",
        "birthDate": "1980-01-02",
        **extra,
    }


def test_an_update_if_changed_writes_only_a_different_content(store: RecordStore) -> None:
    first = store.transaction([Update(patient("p1", NUMBERS[0]), if_changed=True)])[0]
    assert first is not None and first.created and first.version_id == 1
    # The same content, even with the meta a store stamped elsewhere, is not a new version.
    stamped = patient(
        "p1", NUMBERS[0], meta={"versionId": "7", "lastUpdated": "2020-01-01T00:00:00Z"}
    )
    same = store.transaction([Update(stamped, if_changed=True)])[0]
    assert same is not None and not same.changed and same.version_id == 1
    assert len(store.history("Patient", "p1")) == 1
    other = store.transaction([Update(patient("p1", NUMBERS[0], gender="male"), if_changed=True)])[
        0
    ]
    assert other is not None and other.changed and other.version_id == 2
    # Without if_changed the same content is a new version, as a FHIR update is.
    assert store.update(patient("p1", NUMBERS[0], gender="male")).version_id == 3
    store.delete("Patient", "p1")
    back = store.transaction([Update(patient("p1", NUMBERS[0], gender="male"), if_changed=True)])[0]
    assert back is not None and back.created and back.version_id == 5


def test_a_bundle_loads_at_its_ids_and_skips_only_the_invalid(
    store: RecordStore, tmp_path: Path
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:a1", "resource": {**patient("x", NUMBERS[0]), "id": None}},
            {"resource": patient("b2", NUMBERS[1], gender="bloke")},
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "o1",
                    "status": "final",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "271649006"}]},
                    "subject": {"reference": "urn:uuid:a1"},
                }
            },
        ],
    }
    bundle["entry"][0]["resource"].pop("id")
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    heard: list[str] = []
    result = load(store, [path], chunk_size=2, on_invalid=heard.append)
    assert (result.read, result.created, result.updated, result.unchanged) == (3, 2, 0, 0)
    assert len(heard) == 1 and heard == result.invalid
    assert heard[0].startswith(f"{path}, line 1: Bundle entry 1: Patient/b2: Patient.gender")
    assert store.read("Observation", "o1")["subject"]["reference"] == "Patient/a1"
    assert store.read("Patient", "a1")["meta"]["versionId"] == "1"
    again = load(store, [path], chunk_size=2)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)


def test_export_writes_current_resources_by_type_and_not_the_deleted(
    store: RecordStore, tmp_path: Path
) -> None:
    for rid, number in zip(("p1", "p2", "p3"), NUMBERS, strict=True):
        store.update(patient(rid, number))
    store.delete("Patient", "p2")
    moment = store.now()
    store.update(patient("p3", NUMBERS[2], gender="male"))
    out = tmp_path / "all"
    assert export(store, out) == {"Patient": 2}
    lines = [json.loads(x) for x in (out / "Patient.ndjson").read_text().splitlines()]
    assert [(r["id"], r["meta"]["versionId"]) for r in lines] == [("p1", "1"), ("p3", "2")]
    recent = tmp_path / "recent"
    assert export(store, recent, resource_types=["Patient"], since=moment) == {"Patient": 1}
    assert export(store, tmp_path / "none", resource_types=["Observation"]) == {}
    assert list((tmp_path / "none").iterdir()) == []
    with pytest.raises(InputError, match="already exists and is not an empty folder"):
        export(store, out)
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("records."))
    assert left == ["all", "none", "recent"]  # no temporary folder left behind
