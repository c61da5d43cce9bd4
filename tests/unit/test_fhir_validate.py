"""What makes a FHIR resource unfit to load, each reason naming the element."""

from __future__ import annotations

import pytest

from joinedup.fhir.validate import (
    NHS_NUMBER_SYSTEM,
    R4_RESOURCE_TYPES,
    is_valid_nhs_number,
    problems,
)


def patient(**fields: object) -> dict[str, object]:
    return {"resourceType": "Patient", "id": "p1", **fields}


def test_a_good_uk_core_patient_has_no_problems() -> None:
    good = patient(
        identifier=[{"system": NHS_NUMBER_SYSTEM, "value": "9000000009"}],
        birthDate="1970-02-28",
        meta={"lastUpdated": "2024-03-01T10:15:00+00:00"},
        name=[{"family": "Smith", "text": "2023 annual review"}],
    )
    assert problems(good) == []


@pytest.mark.parametrize(
    ("number", "valid"),
    [("9000000009", True), ("943 476 5919", True), ("9000000001", False), ("123", False),
     ("90000000AB", False)],
)  # fmt: skip
def test_nhs_numbers_are_checked_with_modulus_11(number: str, valid: bool) -> None:
    assert is_valid_nhs_number(number) is valid


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        ({"id": "x"}, "resourceType is missing"),
        ({"resourceType": "Pateint", "id": "x"}, "resourceType is not a FHIR R4 resource type"),
        ({"resourceType": "Patient"}, "Patient.id is missing"),
        (patient(id="has space"), "not a valid id"),
        (patient(birthDate="2023-02-30"), "Patient.birthDate: not a real date (the month has no"),
        (patient(birthDate="2023-13"), "Patient.birthDate: not a real date (the month is not"),
        (
            {"resourceType": "Observation", "id": "o", "effectiveDateTime": "2024-01-01T25:00:00Z"},
            "Observation.effectiveDateTime",
        ),
        (
            patient(identifier=[{"system": NHS_NUMBER_SYSTEM, "value": "9000000001"}]),
            "Patient.identifier[0].value: NHS number fails the Modulus 11 check",
        ),
        (
            {"resourceType": "Observation", "id": "o", "valueQuantity": {"value": float("nan")}},
            "Observation.valueQuantity.value: not a finite number",
        ),
        (
            {"resourceType": "Observation", "id": "o", "valueInteger": 10**400},
            "Observation.valueInteger: not a finite number",
        ),
        (patient(birthDate="2099-01-01"), "Patient.birthDate: after the date of loading"),
        (
            patient(birthDate="1950-04-02", deceasedDateTime="1950-04-01T23:00:00Z"),
            "Patient.deceasedDateTime: before Patient.birthDate",
        ),
    ],
)
def test_each_problem_names_the_element(resource: dict[str, object], reason: str) -> None:
    found = problems(resource)
    assert any(reason in p for p in found), found
    dates = [
        v for k, v in resource.items() if k not in ("resourceType", "id") and isinstance(v, str)
    ]
    assert not any(v in p for p in found for v in dates), found  # the rule, never the value


def test_r4_resource_types() -> None:
    assert {"Patient", "Encounter", "EpisodeOfCare", "MedicationStatement"} <= R4_RESOURCE_TYPES
    assert "CatalogEntry" in R4_RESOURCE_TYPES  # R4 only; gone in R5
    assert not {"ActorDefinition", "Requirements", "Transport"} & R4_RESOURCE_TYPES  # R5 only
