"""Resources are validated before the store writes them; each problem names the element."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from joinedup.errors import InputError
from joinedup.records import (
    CodeSystems,
    InvalidResourceError,
    read_code_systems,
    validate_resource,
)


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


# --- codings against code systems (the UK Core CodeSystems given through the loader) ---------

ETHNIC = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"


def _code_system(url: str, content: str = "complete", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem", "url": url, "status": "active", "content": content,
        "concept": [{"code": "A", "concept": [{"code": "A1"}]}, {"code": "B"}], **extra,
    }  # fmt: skip


def _coded(code: str, system: str = ETHNIC) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    extension = {"url": "https://example.org/ethnic", "valueCodeableConcept": {"coding": [coding]}}
    return _patient(extension=[extension])


def test_a_code_outside_its_code_system_names_the_element_not_the_code() -> None:
    systems = CodeSystems.of([_code_system(ETHNIC)])
    with pytest.raises(InvalidResourceError) as caught:
        validate_resource(_coded("QQ"), systems)
    assert caught.value.problems == [
        f"Patient.extension[0].valueCodeableConcept.coding[0].code: not a code of the code "
        f"system {ETHNIC}"
    ]
    assert "QQ" not in str(caught.value)
    validate_resource(_coded("QQ"))  # without code systems, no such check


@pytest.mark.parametrize("code", ["A", "A1", "B"])
def test_codes_and_nested_codes_of_the_system_pass(code: str) -> None:
    validate_resource(_coded(code), CodeSystems.of([_code_system(ETHNIC)]))


def test_only_complete_code_systems_are_checked_and_case_follows_the_system() -> None:
    systems = CodeSystems.of(
        [
            _code_system(ETHNIC, content="fragment"),
            _code_system("https://example.org/folded", caseSensitive=False),
        ]
    )
    assert len(systems) == 1
    validate_resource(_coded("QQ"), systems)  # a fragment may lack a right code
    validate_resource(_coded("a1", "https://example.org/folded"), systems)
    validate_resource(_coded("QQ", "http://snomed.info/sct"), systems)  # not a loaded system
    with pytest.raises(InvalidResourceError):
        validate_resource(_coded("C", "https://example.org/folded"), systems)


def test_the_loader_reads_the_code_systems_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "cs.json").write_text(json.dumps(_code_system(ETHNIC)))
    (tmp_path / "patient.json").write_text(json.dumps(_patient()))
    systems = read_code_systems(tmp_path)
    assert len(systems) == 1 and systems.codes[ETHNIC] == {"A", "A1", "B"}
    (tmp_path / "cs.json").unlink()
    with pytest.raises(InputError, match="holds no CodeSystem"):
        read_code_systems(tmp_path)
