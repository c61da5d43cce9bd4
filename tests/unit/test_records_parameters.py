"""The search index entries a resource gives, and how FHIR dates become ranges of instants."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from joinedup.records.parameters import (
    EARLIEST,
    LATEST,
    date_range,
    entries,
    normalise,
    split_reference,
)


def _at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("1980", _at(1980, 1, 1), _at(1981, 1, 1)),
        ("1980-02", _at(1980, 2, 1), _at(1980, 3, 1)),
        ("1980-12", _at(1980, 12, 1), _at(1981, 1, 1)),
        ("1980-02-29", _at(1980, 2, 29), _at(1980, 3, 1)),
        ("2023-08-10T09:15:00Z", _at(2023, 8, 10, 9, 15), _at(2023, 8, 10, 9, 15, 1)),
        # an offset is moved to UTC; no offset is read as UTC
        ("2023-08-10T09:15:00+01:00", _at(2023, 8, 10, 8, 15), _at(2023, 8, 10, 8, 15, 1)),
        ("2023-08-10T09:15:00", _at(2023, 8, 10, 9, 15), _at(2023, 8, 10, 9, 15, 1)),
        (
            "2023-08-10T09:15:00.25Z",
            _at(2023, 8, 10, 9, 15, 0, 250000),
            _at(2023, 8, 10, 9, 15, 0, 260000),
        ),
    ],
)
def test_a_fhir_date_covers_the_whole_of_its_precision(
    text: str, low: datetime, high: datetime
) -> None:
    assert date_range(text) == (low, high)


@pytest.mark.parametrize("text", ["1980-13", "1980-02-30", "yesterday", "9999-12"])
def test_text_that_is_no_date_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a|beyond|month|day"):
        date_range(text)


def test_patient_entries_cover_every_parameter() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
        "name": [{"family": "Ó Súilleabháin", "given": ["Siobhán", "Mary"], "prefix": ["Ms"]}],
        "gender": "female",
        "birthDate": "1970-09-11",
        "generalPractitioner": [{"reference": "Organization/Y12345"}],
    }
    found = entries(patient)
    assert ("identifier", "https://fhir.nhs.uk/Id/nhs-number", "9000000009") in found.tokens
    assert ("gender", None, "female") in found.tokens
    assert ("name", "o suilleabhain") in found.strings
    assert {("given", "siobhan"), ("given", "mary"), ("family", "o suilleabhain")} <= set(
        found.strings
    )
    assert found.dates == [("birthdate", _at(1970, 9, 11), _at(1970, 9, 12))]
    assert found.references == [("general-practitioner", "Organization", "Y12345")]


def test_observation_entries_read_codes_periods_and_only_patient_subjects() -> None:
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "category": [{"coding": [{"system": "http://cat", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "271649006"}]},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2023-01-01"},
    }
    found = entries(observation)
    assert ("code", "http://snomed.info/sct", "271649006") in found.tokens
    assert ("category", "http://cat", "vital-signs") in found.tokens
    assert ("status", None, "final") in found.tokens
    assert ("patient", "Patient", "p1") in found.references
    assert ("subject", "Patient", "p1") in found.references
    assert found.dates == [("date", _at(2023, 1, 1), LATEST)]
    device = entries({**observation, "subject": {"reference": "Device/d1"}})
    assert ("subject", "Device", "d1") in device.references
    assert not [r for r in device.references if r[0] == "patient"]


def test_an_open_start_reaches_back_to_the_earliest_instant() -> None:
    encounter = {"resourceType": "Encounter", "id": "e", "period": {"end": "2020"}}
    assert entries(encounter).dates == [("date", EARLIEST, _at(2021, 1, 1))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Patient/123", ("Patient", "123")),
        ("Patient/123/_history/2", ("Patient", "123")),
        ("https://example.org/fhir/Patient/abc", ("Patient", "abc")),
        ("#contained", None),
        ("urn:uuid:0b8a7c8e-1f3e-4f4f-9d7f-3c5a8e6f1a2b", None),
        ("Banana/123", None),
    ],
)
def test_references_split_into_type_and_id(text: str, expected: tuple[str, str] | None) -> None:
    assert split_reference(text) == expected


def test_strings_are_held_without_case_accents_or_extra_spaces() -> None:
    assert normalise("  ÉLODIE   d'Arcy ") == "elodie d'arcy"
