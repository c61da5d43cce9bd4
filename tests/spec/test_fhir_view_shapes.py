"""Spec: elements FHIR R4 says hold one value (`fhir.elements`) give the FHIRPath answer in
every shape JSON allows, on every engine: DuckDB reads such an element's children directly
and the element itself only when it is an array, so the rarer shapes must come out the same."""

from __future__ import annotations

from typing import Any

import pytest

from joinedup.fhir.elements import single_paths
from joinedup.fhir.testsuite import resource_table, run_view
from joinedup.warehouse.engines import Engine

#: Encounter.subject and Encounter.serviceProvider in each shape, with the references the
#: paths below should find.
SHAPES: list[tuple[str, Any, list[str]]] = [
    ("object", {"reference": "Patient/1"}, ["Patient/1"]),
    ("array", [{"reference": "Patient/1"}, {"reference": "Patient/2"}], ["Patient/1", "Patient/2"]),
    ("empty array", [], []),
    ("null", None, []),
    ("array led by null", [None, {"reference": "Patient/2"}], ["Patient/2"]),
    ("text", "Patient/1", []),
    ("object without the child", {"display": "x"}, []),
]

VIEW = {
    "resource": "Encounter",
    "select": [
        {
            "column": [
                {"name": "id", "path": "id", "type": "string"},
                {"name": "refs", "path": "subject.reference", "collection": True},
                {"name": "keys", "path": "subject.getReferenceKey(Patient)", "collection": True},
                {"name": "first_key", "path": "subject.getReferenceKey().first()",
                 "type": "string"},
                {"name": "provider", "path": "serviceProvider.identifier.value",
                 "collection": True},
                {"name": "start", "path": "period.start.first()", "type": "dateTime"},
            ]
        }
    ],
}  # fmt: skip


def test_the_hinted_elements_are_listed() -> None:
    hinted = single_paths("Encounter")
    assert {("subject",), ("serviceProvider",), ("serviceProvider", "identifier")} <= hinted
    assert ("identifier",) not in hinted  # Encounter.identifier is 0..*
    assert single_paths("NoSuchResource") == frozenset()


@pytest.mark.parametrize(("shape", "subject", "refs"), SHAPES, ids=[s[0] for s in SHAPES])
def test_single_elements_in_every_shape(
    engine: Engine, shape: str, subject: Any, refs: list[str]
) -> None:
    provider = (
        [{"identifier": {"value": r}} for r in refs] if isinstance(subject, list)
        else {"identifier": {"value": refs[0]}} if isinstance(subject, dict) and refs
        else subject
    )  # fmt: skip
    period = [{"start": "2024-01-02"}] if isinstance(subject, list) else {"start": "2024-01-02"}
    encounter = {"resourceType": "Encounter", "id": "e1", "subject": subject,
                 "serviceProvider": provider, "period": period}  # fmt: skip
    rows = run_view(VIEW, resource_table([encounter]), engine)[1]
    assert rows == [
        {
            "id": "e1",
            "refs": refs,
            "keys": refs,
            "first_key": refs[0] if refs else None,
            "provider": refs,
            "start": "2024-01-02",
        }
    ]


def test_a_missing_single_element(engine: Engine) -> None:
    rows = run_view(VIEW, resource_table([{"resourceType": "Encounter", "id": "e2"}]), engine)[1]
    assert rows == [
        {"id": "e2", "refs": [], "keys": [], "first_key": None, "provider": [], "start": None}
    ]
