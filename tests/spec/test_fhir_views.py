"""Spec: SQL-on-FHIR features beyond the official test files, on every engine — `repeat`,
`%rowIndex`, absolute references, unions of collections and typed output."""

from __future__ import annotations

from typing import Any

import pytest

from joinedup.errors import InputError
from joinedup.fhir.testsuite import resource_table, run_view
from joinedup.warehouse.engines import Engine

QR = {
    "resourceType": "QuestionnaireResponse",
    "id": "qr1",
    "item": [
        {"linkId": "1", "text": "Demographics", "item": [{"linkId": "1.1", "text": "Age"}]},
        {
            "linkId": "2",
            "text": "History",
            "answer": [{"item": [{"linkId": "2.1", "text": "Conditions"}]}],
        },
    ],
}
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"family": "A", "given": ["x", "y"]}, {"family": "B"}],
    "generalPractitioner": [{"reference": "https://example.org/fhir/Practitioner/gp1/_history/2"}],
    "multipleBirthInteger": 2,
}


def _run(engine: Engine, view: dict[str, Any], *resources: dict[str, Any]) -> list[dict[str, Any]]:
    return run_view(view, resource_table(resources), engine)[1]


def test_repeat_follows_nested_items_depth_first(engine: Engine) -> None:
    view = {
        "resource": "QuestionnaireResponse",
        "select": [
            {
                "repeat": ["item", "answer.item"],
                "column": [
                    {"path": "linkId", "name": "item_id", "type": "string"},
                    {"path": "%rowIndex", "name": "position", "type": "integer"},
                ],
            }
        ],
    }
    rows = _run(engine, view, QR)
    assert sorted((r["item_id"], r["position"]) for r in rows) == [
        ("1", 0), ("1.1", 1), ("2", 2), ("2.1", 3),
    ]  # fmt: skip


def test_row_index_counts_within_each_foreach(engine: Engine) -> None:
    view = {
        "resource": "Patient",
        "select": [
            {
                "forEach": "name",
                "column": [
                    {"path": "family", "name": "family", "type": "string"},
                    {"path": "%rowIndex", "name": "name_index", "type": "integer"},
                ],
            }
        ],
    }
    assert sorted((r["family"], r["name_index"]) for r in _run(engine, view, PATIENT)) == [
        ("A", 0),
        ("B", 1),
    ]


def test_references_unions_and_typed_output(engine: Engine) -> None:
    view = {
        "resource": "Patient",
        "select": [
            {
                "column": [
                    {"path": "getResourceKey()", "name": "key", "type": "string"},
                    {
                        "path": "generalPractitioner.getReferenceKey(Practitioner)",
                        "name": "gp_key",
                        "type": "string",
                    },
                    {"path": "name.family | name.given", "name": "names", "collection": True},
                    {
                        "path": "multipleBirth.ofType(integer) + 1",
                        "name": "next",
                        "type": "integer",
                    },
                    {"path": "name.given.count() >= 2", "name": "two_given", "type": "boolean"},
                ]
            }
        ],
    }
    (row,) = _run(engine, view, PATIENT)
    assert row == {
        "key": "Patient/p1",
        "gp_key": "Practitioner/gp1",
        "names": ["A", "B", "x", "y"],
        "next": 3,
        "two_given": True,
    }


def test_repeat_and_foreach_together_are_refused() -> None:
    view = {"resource": "Patient", "select": [{"repeat": ["item"], "forEach": "item"}]}
    with pytest.raises(InputError, match="repeat cannot be combined"):
        run_view(view, resource_table([PATIENT]))
