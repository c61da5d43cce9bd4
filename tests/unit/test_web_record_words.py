"""The joined-up record in words: a record that carries codes alone (joinedup's own export,
and many feeds, write no display) shows the term for each code joinedup knows, and the code
itself where it knows none."""

from __future__ import annotations

from typing import Any

from joinedup.fhir.ukcore import ACTIVITY_NAMES, ACTIVITY_TYPE_SYSTEM, ICD10, SNOMED
from joinedup.warehouse.schema import ACTIVITY_TYPES
from joinedup.web.record_timeline import build_record

_PATIENT = {"resourceType": "Patient", "id": "p1"}


def _subject(resource: dict[str, Any]) -> dict[str, Any]:
    return {**resource, "subject": {"reference": "Patient/p1"}}


def _record(*resources: dict[str, Any]) -> dict[str, str]:
    record = build_record("p1", [_PATIENT, *map(_subject, resources)], {})
    return {str(i.title): i.kind for i in record.timeline} | {
        t.title: "trend" for t in record.trends
    }


def test_codes_alone_are_shown_in_words() -> None:
    copd = {
        "resourceType": "Condition",
        "id": "c1",
        "recordedDate": "2025-01-02",
        "code": {"coding": [{"system": SNOMED, "code": "13645005"}]},
    }
    alcohol = {
        "resourceType": "Condition",
        "id": "c2",
        "recordedDate": "2025-02-03",
        "code": {"coding": [{"system": ICD10, "code": "F10.2"}]},
    }
    unknown = {
        "resourceType": "Condition",
        "id": "c3",
        "recordedDate": "2025-03-04",
        "code": {"coding": [{"system": ICD10, "code": "Q99.9"}]},
    }
    visit = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "period": {"start": "2025-04-05"},
        "type": [{"coding": [{"system": ACTIVITY_TYPE_SYSTEM, "code": "gp_consultation"}]}],
    }
    egfr = [
        {"resourceType": "Observation", "id": f"o{n}", "status": "final",
         "effectiveDateTime": f"2025-0{n}-01", "valueQuantity": {"value": 60 + n},
         "code": {"coding": [{"system": SNOMED, "code": "1011481000000105"}]}}
        for n in (1, 2)
    ]  # fmt: skip
    titles = _record(copd, alcohol, unknown, visit, *egfr)
    assert "Chronic obstructive lung disease" in titles
    # an ICD-10 subdivision takes its category's title
    assert "Mental and behavioural disorders due to use of alcohol" in titles
    assert "Q99.9" in titles  # no words known: the code, as before
    assert "GP consultation" in titles
    assert titles.get("eGFR (estimated glomerular filtration rate)") == "trend"
    assert not [t for t in titles if t in ("13645005", "gp_consultation", "1011481000000105")]


def test_a_display_or_text_given_is_kept() -> None:
    given = {
        "resourceType": "Condition",
        "id": "c1",
        "recordedDate": "2025-01-02",
        "code": {"coding": [{"system": SNOMED, "code": "13645005", "display": "COPD"}]},
    }
    assert "COPD" in _record(given)


def test_every_activity_type_has_words() -> None:
    assert set(ACTIVITY_NAMES) == set(ACTIVITY_TYPES)
