"""Who may read what through the FHIR API, end to end over HTTP on SQLite and PostgreSQL: a GP
clinician reads their registered patient and is refused another practice's (403, saying how to
break glass, whether the record exists or not); an open Encounter at their organisation lets
them in; a break-glass grant lets them in until it expires (the store's clock is moved, no
sleeping); searches hold only permitted patients' resources, total included; writes need a
relationship; every access and refusal is audited with its rule, without names or NHS numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from joinedup.fhir.validate import NHS_NUMBER_SYSTEM
from joinedup.records import RecordStore
from joinedup.web.access import AccessStore
from joinedup.web.records_api import create_records_app
from joinedup.web.settings import WebSettings

PASSWORD = "a long enough password"
BASE = "/fhir/R4"
FHIR_JSON = "application/fhir+json"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REASON = "Unconscious in the emergency department, no history available"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class Api:
    def __init__(self, client: TestClient, tokens: dict[str, str], clock: Clock) -> None:
        self.client = client
        self.tokens = tokens
        self.clock = clock

    def __call__(self, method: str, path: str, *, user: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        if "json" in kwargs:
            kwargs["content"] = json.dumps(kwargs.pop("json"))
            headers["Content-Type"] = FHIR_JSON
        return self.client.request(method, BASE + path, headers=headers, **kwargs)

    def audit(self) -> list[dict[str, Any]]:
        store: AccessStore = self.client.app.state.access  # type: ignore[attr-defined]
        """The API's audit entries, oldest first."""
        entries = store.audit_entries(limit=100000)[1]
        return [e for e in reversed(entries) if e["action"].startswith("fhir")]


@pytest.fixture
def api(records_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = WebSettings(warehouse=tmp_path / "warehouse.duckdb")
    users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    users.add_user("feed", PASSWORD, "system")
    users.add_user("gp", PASSWORD, "clinician", pcn_code="U11111", practice_code="A11111")
    users.add_user("analyst", PASSWORD, "analyst")
    users.add_user("privacy", PASSWORD, "privacy-officer")
    users.close()
    clock = Clock()
    with (
        RecordStore(records_url, clock=clock) as store,
        TestClient(create_records_app(settings, store)) as c,
    ):
        tokens = {}
        for name in ("feed", "gp", "analyst", "privacy"):
            answer = c.post("/api/v1/token", json={"username": name, "password": PASSWORD})
            assert answer.status_code == 200, answer.text
            tokens[name] = answer.json()["access_token"]
        yield Api(c, tokens, clock)


def _patient(api: Api, practice: str, family: str, nhs_number: str) -> str:
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}],
        "name": [{"family": family, "given": ["Ann"]}],
        "gender": "female",
        "birthDate": "1980-02-03",
        "generalPractitioner": [{"reference": f"Organization/{practice}"}],
    }
    made = api("POST", "/Patient", json=resource, user="feed")
    assert made.status_code == 201, made.text
    rid: str = made.json()["id"]
    return rid


def _observation(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-05-01",
        "valueQuantity": {"value": 70, "unit": "kg"},
    }


def _refused(answer: Any) -> None:
    assert answer.status_code == 403, answer.text
    issue = answer.json()["issue"][0]
    assert issue["code"] == "forbidden"
    assert "no legitimate relationship" in issue["diagnostics"]
    assert "$break-glass" in issue["diagnostics"]


def test_registered_patients_only_until_an_encounter_or_break_glass(api: Api) -> None:
    mine = _patient(api, "A11111", "Ownpractice", "9000000009")
    other = _patient(api, "B22222", "Otherpractice", "9434765919")
    observation = api("POST", "/Observation", json=_observation(other), user="feed").json()["id"]

    assert api("GET", f"/Patient/{mine}", user="gp").status_code == 200
    _refused(api("GET", f"/Patient/{other}", user="gp"))
    _refused(api("GET", f"/Observation/{observation}", user="gp"))
    _refused(api("GET", f"/Observation/{observation}/_history/1", user="gp"))
    _refused(api("GET", "/Patient/no-such-patient", user="gp"))  # existence is not told
    _refused(api("POST", "/Observation", json=_observation(other), user="gp"))
    assert api("POST", "/Observation", json=_observation(mine), user="gp").status_code == 201
    assert api("GET", f"/Patient/{other}", user="analyst").status_code == 403

    encounter = {
        "resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{other}"},
        "serviceProvider": {"reference": "Organization/A11111"},
        "period": {"start": "2026-06-01T11:00:00Z"},
    }  # fmt: skip
    made = api("POST", "/Encounter", json=encounter, user="feed").json()["id"]
    assert api("GET", f"/Patient/{other}", user="gp").status_code == 200
    assert api("GET", f"/Observation/{observation}/_history/1", user="gp").status_code == 200
    api("PUT", f"/Encounter/{made}", json={**encounter, "id": made, "status": "cancelled"},
        user="feed")  # fmt: skip
    _refused(api("GET", f"/Patient/{other}", user="gp"))

    entries = api.audit()
    seen = {(e["action"], e["resource"], e["reason"]) for e in entries if e["username"] == "gp"}
    assert seen >= {
        ("fhir read", f"fhir/Patient/{mine}", "legitimate relationship: registered"),
        ("fhir read", f"fhir/Patient/{other}", "no legitimate relationship"),
        ("fhir vread", f"fhir/Observation/{observation}/_history/1", "no legitimate relationship"),
        ("fhir vread", f"fhir/Observation/{observation}/_history/1",
         "legitimate relationship: encounter"),
        ("fhir read", f"fhir/Patient/{other}", "legitimate relationship: encounter"),
        ("fhir create", "fhir/Observation", "no legitimate relationship"),
    }  # fmt: skip
    logged = json.dumps(entries).lower()
    assert "9434765919" not in logged and "otherpractice" not in logged


def test_break_glass_is_granted_audited_listed_and_expires(api: Api) -> None:
    other = _patient(api, "B22222", "Otherpractice", "9434765919")
    _refused(api("GET", f"/Patient/{other}", user="gp"))
    ask = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{other}"}},
        {"name": "reason", "valueString": "need it"},
    ]}  # fmt: skip
    short = api("POST", "/$break-glass", json=ask, user="gp")
    assert short.status_code == 400
    assert short.json()["issue"][0]["expression"] == ["Parameters.reason"]
    ask["parameter"][1]["valueString"] = REASON
    assert api("POST", "/$break-glass", json=ask, user="feed").status_code == 403
    granted = api("POST", "/$break-glass", json=ask, user="gp")
    assert granted.status_code == 201, granted.text
    expires = granted.json()["parameter"][2]["valueInstant"]
    assert expires == "2026-06-01T16:00:00Z"

    assert api("GET", f"/Patient/{other}", user="gp").status_code == 200
    found = api("GET", "/Patient", params={"gender": "female"}, user="gp").json()
    assert [e["resource"]["id"] for e in found["entry"]] == [other]
    api.clock.now = NOW + timedelta(hours=3, minutes=59)
    assert api("GET", f"/Patient/{other}", user="gp").status_code == 200
    api.clock.now = NOW + timedelta(hours=4)
    _refused(api("GET", f"/Patient/{other}", user="gp"))

    gp = [e for e in api.audit() if e["username"] == "gp"]
    glass = [e for e in gp if e["reason"].startswith("BREAK-GLASS")]
    assert [e["action"] for e in glass] == [
        "fhir break-glass",
        "fhir read",
        "fhir search",
        "fhir read",
    ]
    assert all(e["detail"].endswith("; break-glass") for e in glass)
    assert REASON not in json.dumps(gp)  # the stated reason is for the privacy officer's list
    assert gp[-1]["reason"] == "no legitimate relationship"


def test_searches_hold_only_permitted_patients(api: Api) -> None:
    mine = _patient(api, "A11111", "Ownpractice", "9000000009")
    other = _patient(api, "B22222", "Otherpractice", "9434765919")
    for pid in (mine, other, other):
        api("POST", "/Observation", json=_observation(pid), user="feed")
    everything = api("GET", "/Observation", user="feed").json()
    assert everything["total"] == 3
    seen = api("GET", "/Observation", params={"code": "27113001"}, user="gp").json()
    assert seen["total"] == 1
    assert [e["resource"]["subject"]["reference"] for e in seen["entry"]] == [f"Patient/{mine}"]
    asked = api("GET", "/Observation", params={"patient": f"Patient/{other}"}, user="gp").json()
    assert asked["total"] == 0 and not asked.get("entry")
    patients = api("GET", "/Patient", params={"gender": "female"}, user="gp").json()
    assert [e["resource"]["id"] for e in patients["entry"]] == [mine]
    assert api("GET", "/AuditEvent", user="gp").status_code == 403
    assert api("GET", "/Observation/_history", user="gp").status_code == 403
    searches = [e for e in api.audit() if e["username"] == "gp" and e["action"] == "fhir search"]
    assert searches[0]["reason"] == ("legitimate relationship: search kept to permitted patients")
    assert searches[0]["detail"] == "200; 1 in all, 1 sent"


def test_the_privacy_officer_lists_break_glass_grants(api: Api) -> None:
    other = _patient(api, "B22222", "Otherpractice", "9434765919")
    ask = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{other}"}},
        {"name": "reason", "valueString": REASON},
    ]}  # fmt: skip
    assert api("POST", "/$break-glass", json=ask, user="gp").status_code == 201

    def listed(user: str) -> Any:
        headers = {"Authorization": f"Bearer {api.tokens[user]}"}
        return api.client.get("/api/v1/privacy/break-glass", headers=headers)

    assert listed("gp").status_code == 403
    assert listed("feed").status_code == 403
    shown = listed("privacy").json()["grants"]
    assert [(g["username"], g["patient"], g["reason"], g["active"]) for g in shown] == [
        ("gp", f"Patient/{other}", REASON, True)
    ]
    api.clock.now = NOW + timedelta(hours=5)
    assert listed("privacy").json()["grants"][0]["active"] is False
