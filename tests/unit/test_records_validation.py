"""Resources are validated before the store writes them; each problem names the element."""

from __future__ import annotations

from typing import Any

import pytest

from joinedup.records import InvalidResourceError, validate_resource


def _problems(resource: Any) -> list[str]:
    with pytest.raises(InvalidResourceError) as caught:
        validate_resource(resource)
    return caught.value.problems


def _patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", **extra}


def test_a_valid_resource_passes() -> None:
    validate_resource(
        _patient(
            identifier=[{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
            gender="female",
            birthDate="1970-09-11",
        )
    )


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (
            _patient(
                identifier=[{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000001"}]
            ),
            "Patient.identifier[0].value: NHS number fails the Modulus 11 check",
        ),
        (
            {"resourceType": "Observation", "id": "o", "code": {"text": "weight"}},
            "Observation.status: Value for the field 'status' is required.",
        ),
        (_patient(shoeSize=9), "Patient.shoeSize: Extra inputs are not permitted"),
        (_patient(name=[{"given": "John"}]), "Patient.name[0].given: Input should be a valid list"),
        (_patient(gender="bloke"), "Patient.gender: not a code of its required value set"),
        (
            {
                "resourceType": "Condition",
                "id": "c",
                "subject": {"reference": "Patient/p1"},
                "clinicalStatus": {"coding": [{"code": "better"}]},
            },
            "Condition.clinicalStatus.coding[0].code: not a code of its required value set",
        ),
        (_patient(birthDate="1990-02-30"), "Patient.birthDate: not a real date"),
        (
            {"resourceType": "Condition", "id": "c", "subject": {"reference": "Organization/x"}},
            "Condition.subject.reference: to a type this element cannot point to",
        ),
    ],
)
def test_each_problem_names_the_element_and_the_reason(
    resource: dict[str, Any], expected: str
) -> None:
    assert any(p.startswith(expected) for p in _problems(resource)), _problems(resource)


def test_the_problem_never_repeats_the_value() -> None:
    bad = _patient(
        identifier=[{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000001"}]
    )
    with pytest.raises(InvalidResourceError) as caught:
        validate_resource(bad)
    assert "9000000001" not in str(caught.value)


@pytest.mark.parametrize(
    "resource", [["not", "a", "resource"], {"id": "x"}, {"resourceType": "Banana", "id": "x"}]
)
def test_what_is_not_an_r4_resource_is_refused(resource: Any) -> None:
    assert _problems(resource)
