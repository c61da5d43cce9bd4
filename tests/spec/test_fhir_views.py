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


def test_row_index_under_for_each_or_null_is_zero_on_the_null_row(engine: Engine) -> None:
    """%rowIndex counts names from 0; a patient without names keeps one row, whose family is
    null and whose %rowIndex is 0 (the spec's Environment Variables)."""
    view = {
        "resource": "Patient",
        "select": [
            {"column": [{"path": "id", "name": "id", "type": "id"}]},
            {
                "forEachOrNull": "name",
                "column": [
                    {"path": "%rowIndex", "name": "name_index", "type": "integer"},
                    {"path": "family", "name": "family", "type": "string"},
                ],
            },
        ],
    }
    nameless = {"resourceType": "Patient", "id": "p2"}
    rows = _run(engine, view, PATIENT, nameless)
    assert sorted((r["id"], r["name_index"], r["family"] or "") for r in rows) == [
        ("p1", 0, "A"),
        ("p1", 1, "B"),
        ("p2", 0, ""),
    ]
    assert next(r for r in rows if r["id"] == "p2")["family"] is None


def _boundary_view(resource: str, columns: dict[str, tuple[str, str]]) -> dict[str, Any]:
    return {
        "resource": resource,
        "select": [
            {
                "column": [
                    {"path": "id", "name": "id", "type": "id"},
                    *({"path": p, "name": n, "type": t} for n, (p, t) in columns.items()),
                ]
            }
        ],
    }


def test_decimal_boundaries_are_half_a_last_digit_away(engine: Engine) -> None:
    """FHIRPath: 1.587 stands for [1.5865, 1.5875); to 2 digits 1.58 and 1.59; an integer
    1 for [0.5, 1.5]; a value that is not a number has no boundary."""
    value = "value.ofType(Quantity).value"
    view = _boundary_view(
        "Observation",
        {
            "low": (f"{value}.lowBoundary()", "decimal"),
            "high": (f"{value}.highBoundary()", "decimal"),
            "low2": (f"{value}.lowBoundary(2)", "decimal"),
            "high2": (f"{value}.highBoundary(2)", "decimal"),
        },
    )
    observations = [
        {"resourceType": "Observation", "id": "a", "valueQuantity": {"value": 1.587}},
        {"resourceType": "Observation", "id": "b", "valueQuantity": {"value": -0.5}},
        {"resourceType": "Observation", "id": "c", "valueQuantity": {"value": 1}},
        {"resourceType": "Observation", "id": "d", "valueString": "1.5"},
    ]
    rows = {r["id"]: r for r in _run(engine, view, *observations)}
    assert rows["a"] == pytest.approx(
        {"id": "a", "low": 1.5865, "high": 1.5875, "low2": 1.58, "high2": 1.59}
    )
    assert rows["b"] == pytest.approx(
        {"id": "b", "low": -0.55, "high": -0.45, "low2": -0.55, "high2": -0.45}
    )
    assert rows["c"] == pytest.approx(
        {"id": "c", "low": 0.5, "high": 1.5, "low2": 0.5, "high2": 1.5}
    )
    assert rows["d"] == {"id": "d", "low": None, "high": None, "low2": None, "high2": None}


def test_date_and_time_boundaries_fill_the_missing_digits(engine: Engine) -> None:
    """A partial date covers its whole year or month (February 2024 has 29 days); a dateTime
    without a zone is earliest at +14:00 and latest at -12:00; a time to the minute covers
    its 60 seconds, to the millisecond."""
    moments = _boundary_view(
        "Observation",
        {
            "low": ("value.ofType(dateTime).lowBoundary()", "dateTime"),
            "high": ("value.ofType(dateTime).highBoundary()", "dateTime"),
            "day": ("value.ofType(dateTime).highBoundary(8)", "date"),
            "time_low": ("value.ofType(time).lowBoundary()", "time"),
            "time_high": ("value.ofType(time).highBoundary()", "time"),
        },
    )
    observations = [
        {"resourceType": "Observation", "id": "a", "valueDateTime": "2024-02"},
        {"resourceType": "Observation", "id": "b", "valueDateTime": "2010-10-10T15:21"},
        {"resourceType": "Observation", "id": "c", "valueDateTime": "2010-10-10T11:45:50.12-10:00"},
        {"resourceType": "Observation", "id": "d", "valueTime": "12:34"},
    ]
    rows = {r.pop("id"): r for r in _run(engine, moments, *observations)}
    none = {"low": None, "high": None, "day": None, "time_low": None, "time_high": None}
    assert rows == {
        "a": none
        | {
            "low": "2024-02-01T00:00:00.000+14:00",
            "high": "2024-02-29T23:59:59.999-12:00",
            "day": "2024-02-29",
        },
        "b": none
        | {
            "low": "2010-10-10T15:21:00.000+14:00",
            "high": "2010-10-10T15:21:59.999-12:00",
            "day": "2010-10-10",
        },
        "c": none
        | {
            "low": "2010-10-10T11:45:50.120-10:00",
            "high": "2010-10-10T11:45:50.129-10:00",
            "day": "2010-10-10",
        },
        "d": none | {"time_low": "12:34:00.000", "time_high": "12:34:59.999"},
    }
    births = _boundary_view(
        "Patient",
        {
            "low": ("birthDate.lowBoundary()", "date"),
            "high": ("birthDate.highBoundary()", "date"),
            "month": ("birthDate.highBoundary(6)", "date"),
        },
    )
    patients = [
        {"resourceType": "Patient", "id": "y", "birthDate": "2003"},
        {"resourceType": "Patient", "id": "m", "birthDate": "1900-02"},
        {"resourceType": "Patient", "id": "d", "birthDate": "1994-05-18"},
    ]
    assert {r.pop("id"): r for r in _run(engine, births, *patients)} == {
        "y": {"low": "2003-01-01", "high": "2003-12-31", "month": "2003-12"},
        "m": {"low": "1900-02-01", "high": "1900-02-28", "month": "1900-02"},
        "d": {"low": "1994-05-18", "high": "1994-05-18", "month": "1994-05"},
    }


def test_a_boundary_precision_must_be_an_integer() -> None:
    view = _boundary_view("Patient", {"low": ("birthDate.lowBoundary('x')", "date")})
    with pytest.raises(InputError, match="precision must be an integer"):
        run_view(view, resource_table([PATIENT]))
