"""`_include`, `_revinclude` (with and without `:iterate`) and `Patient/$everything` through
the FHIR API, end to end over HTTP on SQLite and PostgreSQL: included resources come back once
each, marked `include`, with the total counting matches only; `:iterate` follows links from
included resources, level by level, to a bound it says it stopped at; a clinician never gets an
included resource (or an $everything entry) of a patient they may not see, at any level, and
no count betrays one; $everything pages by its next links, filters by `_type` and `_since`, and
is refused like a read (a 403 that says nothing of whether the patient exists); every request
audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from fhir_calls import BASE, created_id, fhir_request

from joinedup.fhir.validate import NHS_NUMBER_SYSTEM
from joinedup.records import RecordStore
from joinedup.web.access import AccessStore
from joinedup.web.records_api import create_records_app
from joinedup.web.settings import WebSettings

PASSWORD = "a long enough password"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REASON = "Unconscious in the emergency department, no history available"
MINE_NHS = "9000000009"
OTHER_NHS = "9434765919"


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

    def __call__(self, method: str, path: str, *, user: str = "feed", **kwargs: Any) -> Any:
        return fhir_request(self.client, self.tokens[user], method, path, **kwargs)

    def make(self, resource: dict[str, Any]) -> str:
        return created_id(self("POST", f"/{resource['resourceType']}", json=resource))

    def audit(self, user: str) -> list[dict[str, Any]]:
        """The API's audit entries for `user`, oldest first."""
        store: AccessStore = self.client.app.state.access  # type: ignore[attr-defined]
        entries = store.audit_entries(limit=100000)[1]
        return [
            e for e in reversed(entries) if e["action"].startswith("fhir") and e["username"] == user
        ]


@pytest.fixture
def api(records_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = WebSettings(warehouse=tmp_path / "warehouse.duckdb")
    users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    users.add_user("feed", PASSWORD, "system")
    users.add_user("gp", PASSWORD, "clinician", pcn_code="U11111", practice_code="A11111")
    users.close()
    clock = Clock()
    with (
        RecordStore(records_url, clock=clock) as store,
        TestClient(create_records_app(settings, store)) as c,
    ):
        tokens = {}
        for name in ("feed", "gp"):
            answer = c.post("/api/v1/token", json={"username": name, "password": PASSWORD})
            assert answer.status_code == 200, answer.text
            tokens[name] = answer.json()["access_token"]
        yield Api(c, tokens, clock)


def _patient(practice: str, family: str, nhs_number: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}],
        "name": [{"family": family, "given": ["Ann"]}],
        "gender": "female",
        "birthDate": "1980-02-03",
        "generalPractitioner": [{"reference": f"Organization/{practice}"}],
    }


def _observation(pid: str, day: str = "2026-05-01") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": day,
        "valueQuantity": {"value": 70, "unit": "kg"},
    }


def _condition(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
        "subject": {"reference": f"Patient/{pid}"},
    }  # fmt: skip


def _hiv_recorded_elsewhere(patient: str) -> dict[str, Any]:
    """An HIV diagnosis (a sensitive category) recorded by another organisation (B22222)."""
    return {
        **_condition(patient),
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "86406008"}]},
        "extension": [{
            "url": "https://fhir.joinedup.org/StructureDefinition/recorded-by-organisation",
            "valueReference": {"reference": "Organization/B22222"}}],
    }  # fmt: skip


def _encounter(pid: str, provider: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{pid}"},
        "serviceProvider": {"reference": f"Organization/{provider}"},
        "period": {"start": "2026-01-05T09:00:00Z", "end": "2026-01-05T09:20:00Z"},
    }  # fmt: skip


def _care_team(pid: str, member: str) -> dict[str, Any]:
    """A care team of patient `pid` with another patient (a carer) among its members."""
    return {
        "resourceType": "CareTeam", "status": "active",
        "subject": {"reference": f"Patient/{pid}"},
        "participant": [{"member": {"reference": f"Patient/{member}"}}],
    }  # fmt: skip


def _kinds(bundle: dict[str, Any], mode: str) -> list[str]:
    return sorted(
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    )


@pytest.fixture
def world(api: Api) -> dict[str, str]:
    """Two patients (the clinician's registered one and another practice's), with records;
    each is the other's carer on a care team."""
    ids = {"mine": api.make(_patient("A11111", "Ownpractice", MINE_NHS)),
           "other": api.make(_patient("B22222", "Otherpractice", OTHER_NHS))}  # fmt: skip
    org = {"resourceType": "Organization", "id": "RXX", "name": "A trust"}
    assert api("PUT", "/Organization/RXX", json=org).status_code == 201
    ids |= {
        "enc1": api.make(_encounter(ids["mine"], "RXX")),
        "enc2": api.make(_encounter(ids["mine"], "RXX")),
        "cond": api.make(_condition(ids["mine"])),
        "obs": api.make(_observation(ids["mine"])),
        "team_of_mine": api.make(_care_team(ids["mine"], ids["other"])),
        "team_of_other": api.make(_care_team(ids["other"], ids["mine"])),
        "other_obs": api.make(_observation(ids["other"])),
    }
    return ids


def test_includes_come_once_marked_include_and_outside_the_total(
    api: Api, world: dict[str, str]
) -> None:
    mine = world["mine"]
    query = [
        ("patient", mine),
        ("_include", "Encounter:subject"),
        ("_include", "Encounter:service-provider"),
        ("_include", "Encounter:subject"),
    ]
    found = api("GET", "/Encounter", params=query).json()
    assert found["total"] == 2
    assert _kinds(found, "match") == sorted([f"Encounter/{world['enc1']}",
                                             f"Encounter/{world['enc2']}"])  # fmt: skip
    assert _kinds(found, "include") == ["Organization/RXX", f"Patient/{mine}"]
    included = next(e for e in found["entry"] if e["search"]["mode"] == "include")
    assert included["fullUrl"].endswith(f"/{included['resource']['resourceType']}/"
                                        f"{included['resource']['id']}")  # fmt: skip
    every = api("GET", "/Encounter", params=[("patient", mine), ("_include", "Encounter:*")])
    assert _kinds(every.json(), "include") == ["Organization/RXX", f"Patient/{mine}"]

    paged = api("GET", "/Encounter", params=[*query, ("_count", "1")]).json()
    assert len(_kinds(paged, "match")) == 1 and paged["total"] == 2
    after = next(link["url"] for link in paged["link"] if link["relation"] == "next")
    assert "_include=Encounter%3Asubject" in after
    second = api("GET", "/Encounter?" + urlsplit(after).query).json()
    assert len(_kinds(second, "match")) == 1 and f"Patient/{mine}" in _kinds(second, "include")

    by_number = [
        ("identifier", f"{NHS_NUMBER_SYSTEM}|{MINE_NHS}"),
        ("_revinclude", "Condition:subject"),
        ("_revinclude", "Observation:patient"),
    ]
    revinclude = api("GET", "/Patient", params=by_number).json()
    assert revinclude["total"] == 1 and _kinds(revinclude, "match") == [f"Patient/{mine}"]
    assert _kinds(revinclude, "include") == sorted(
        [f"Condition/{world['cond']}", f"Observation/{world['obs']}"]
    )

    for bad, element in (
        ([("_include", "Observation:subject")], "_include"),  # not the searched type
        ([("_include", "Encounter:code")], "_include"),  # not a reference parameter
        ([("_revinclude", "Observation:performer")], "_revinclude"),
        ([("_include:recurse", "Encounter:subject")], "_include:recurse"),  # STU3's name
        ([("_revinclude:iterate", "Condition:patient:Organization")], "_revinclude:iterate"),
    ):
        refused = api("GET", "/Encounter", params=bad)
        assert refused.status_code == 400, refused.text
        assert refused.json()["issue"][0]["expression"] == [element]


def test_includes_are_kept_to_patients_the_clinician_may_see(
    api: Api, world: dict[str, str]
) -> None:
    mine, other = world["mine"], world["other"]
    carers = [("patient", mine), ("_include", "CareTeam:participant")]
    assert _kinds(api("GET", "/CareTeam", params=carers).json(), "include") == [f"Patient/{other}"]
    teams = [("_id", mine), ("_revinclude", "CareTeam:participant"),
             ("_revinclude", "CareTeam:patient")]  # fmt: skip
    assert _kinds(api("GET", "/Patient", params=teams).json(), "include") == sorted(
        [f"CareTeam/{world['team_of_mine']}", f"CareTeam/{world['team_of_other']}"]
    )

    # The clinician: the other patient's record never comes in, and nothing counts it.
    seen = api("GET", "/CareTeam", params=carers, user="gp")
    assert seen.status_code == 200
    assert seen.json()["total"] == 1 and _kinds(seen.json(), "include") == []
    assert len(seen.json()["entry"]) == 1  # no outcome entry, no trace of the one left out
    assert OTHER_NHS not in seen.text and "Otherpractice" not in seen.text
    own = api("GET", "/Patient", params=teams, user="gp").json()
    assert _kinds(own, "include") == [f"CareTeam/{world['team_of_mine']}"]
    asked = api("GET", "/Patient", params=[("_id", other), ("_revinclude", "Observation:patient")],
                user="gp").json()  # fmt: skip
    assert asked["total"] == 0 and not asked.get("entry")
    closed = api("GET", "/Patient", params=[("_id", mine), ("_revinclude", "AuditEvent:patient")],
                 user="gp")  # fmt: skip
    assert closed.status_code == 403

    ask = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{other}"}},
        {"name": "reason", "valueString": REASON},
    ]}  # fmt: skip
    assert api("POST", "/$break-glass", json=ask, user="gp").status_code == 201
    glass = api("GET", "/CareTeam", params=carers, user="gp").json()
    assert _kinds(glass, "include") == [f"Patient/{other}"]
    api.clock.now = NOW + timedelta(hours=5)  # the grant has expired
    assert _kinds(api("GET", "/CareTeam", params=carers, user="gp").json(), "include") == []

    searches = [e for e in api.audit("gp") if e["action"] == "fhir search"]
    assert [(e["detail"], e["reason"].startswith("BREAK-GLASS")) for e in searches] == [
        ("200; 1 in all, 1 sent", False),
        ("200; 1 in all, 1 sent, 1 included", False),
        ("200; 0 in all, 0 sent", False),
        ("403; forbidden", False),
        ("200; 1 in all, 1 sent, 1 included; break-glass", True),  # included by a grant
        ("200; 1 in all, 1 sent", False),
    ]
    assert searches[0]["resource"] == "fhir/CareTeam?patient,_include"
    logged = json.dumps(api.audit("gp")).lower()
    assert OTHER_NHS not in logged and "otherpractice" not in logged


def _everything(api: Api, pid: str, user: str = "feed", **params: str) -> Any:
    return api("GET", f"/Patient/{pid}/$everything", params=params, user=user)


def test_everything_pages_filters_and_keeps_to_the_patient(api: Api, world: dict[str, str]) -> None:
    mine = world["mine"]
    gone = api.make(_observation(mine, "2026-02-01"))
    assert api("DELETE", f"/Observation/{gone}").status_code == 204
    whole = _everything(api, mine).json()
    record = [f"Patient/{mine}", *sorted(
        [f"Encounter/{world['enc1']}", f"Encounter/{world['enc2']}",
         f"Condition/{world['cond']}", f"Observation/{world['obs']}",
         f"CareTeam/{world['team_of_mine']}", f"CareTeam/{world['team_of_other']}"]
    )]  # fmt: skip
    assert whole["type"] == "searchset" and whole["total"] == len(record)
    listed = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in whole["entry"]]
    assert listed[0] == f"Patient/{mine}"  # the patient first
    assert sorted(listed) == sorted(record)  # not the other's Observation, not the deleted one

    pages, url = [], f"{BASE}/Patient/{mine}/$everything?_count=3"
    while url:
        page = api("GET", url.removeprefix(BASE).split("?")[0] + "?" + urlsplit(url).query).json()
        assert page["total"] == len(record)
        pages.append([f"{e['resource']['resourceType']}/{e['resource']['id']}"
                      for e in page["entry"]])  # fmt: skip
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), "")
        url = url and BASE + url.split(BASE, 1)[1]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [rid for p in pages for rid in p] == listed

    typed = _everything(api, mine, _type="Observation,Condition").json()
    assert _kinds(typed, "match") == sorted([f"Condition/{world['cond']}",
                                             f"Observation/{world['obs']}"])  # fmt: skip
    api.clock.now = NOW + timedelta(days=1)
    later = api.make(_observation(mine, "2026-06-02"))
    since = _everything(api, mine, _since=(NOW + timedelta(hours=1)).isoformat()).json()
    assert _kinds(since, "match") == [f"Observation/{later}"]

    bad = [
        ({"_type": "Shoe"}, "_type"),
        ({"_since": "yesterday"}, "_since"),
        ({"start": "2026-01-01"}, "start"),
        ({"_count": "-1"}, "_count"),
    ]
    for params, element in bad:
        refused = _everything(api, mine, **params)
        assert refused.status_code == 400, refused.text
        assert refused.json()["issue"][0]["expression"] == [element]
    assert _everything(api, "no-such-patient").status_code == 404


def test_everything_is_allowed_and_refused_as_reading_the_patient(
    api: Api, world: dict[str, str]
) -> None:
    mine, other = world["mine"], world["other"]
    own = _everything(api, mine, user="gp")
    assert own.status_code == 200
    # The other patient's care team (where mine is the carer) is the other's record.
    assert f"CareTeam/{world['team_of_other']}" not in _kinds(own.json(), "match")
    assert own.json()["total"] == 6 and OTHER_NHS not in own.text

    refused = _everything(api, other, user="gp")
    missing = _everything(api, "no-such-patient", user="gp")
    assert refused.status_code == missing.status_code == 403
    assert refused.json()["issue"] == missing.json()["issue"]  # existence is not told
    assert "$break-glass" in refused.json()["issue"][0]["diagnostics"]

    ask = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{other}"}},
        {"name": "reason", "valueString": REASON},
    ]}  # fmt: skip
    assert api("POST", "/$break-glass", json=ask, user="gp").status_code == 201
    glass = _everything(api, other, user="gp").json()
    assert _kinds(glass, "match") == sorted(
        [f"Patient/{other}", f"Observation/{world['other_obs']}",
         f"CareTeam/{world['team_of_other']}", f"CareTeam/{world['team_of_mine']}"]
    )  # fmt: skip

    everything = [e for e in api.audit("gp") if e["action"] == "fhir everything"]
    assert [(e["resource"], e["detail"], e["reason"]) for e in everything] == [
        (f"fhir/Patient/{mine}/$everything", "200; 6 in all, 6 sent",
         "legitimate relationship: registered,search kept to permitted patients"),
        (f"fhir/Patient/{other}/$everything", "403; forbidden", "no legitimate relationship"),
        ("fhir/Patient/no-such-patient/$everything", "403; forbidden",
         "no legitimate relationship"),
        (f"fhir/Patient/{other}/$everything", "200; 4 in all, 4 sent; break-glass",
         "BREAK-GLASS; legitimate relationship: break-glass,search kept to permitted patients"),
    ]  # fmt: skip


def test_consent_and_sensitive_categories_hold_for_includes_and_everything(
    api: Api, world: dict[str, str]
) -> None:
    mine, other = world["mine"], world["other"]
    api.make({
        "resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{other}"},
        "serviceProvider": {"reference": "Organization/A11111"},
        "period": {"start": "2026-06-01T11:00:00Z"},
    })  # fmt: skip
    hiv = api.make(_hiv_recorded_elsewhere(mine))
    carers = [("patient", mine), ("_include", "CareTeam:participant")]
    conditions = [("_id", mine), ("_revinclude", "Condition:subject")]
    assert _kinds(api("GET", "/CareTeam", params=carers, user="gp").json(), "include") == [
        f"Patient/{other}"  # a relationship with the carer: an encounter under way
    ]
    # HIV recorded by another organisation: shown to the feed, to no clinician outside it
    assert f"Condition/{hiv}" in _kinds(api("GET", "/Patient", params=conditions).json(), "include")
    own = api("GET", "/Patient", params=conditions, user="gp").json()
    assert _kinds(own, "include") == [f"Condition/{world['cond']}"]
    assert f"Condition/{hiv}" not in _kinds(_everything(api, mine, user="gp").json(), "match")

    objection = {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{other}"},
        "dateTime": "2026-05-01T09:00:00Z",
        "organization": [{"identifier": {
            "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "B22222"}}],
        "policyRule": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "deny"},
    }  # fmt: skip
    api.make(objection)  # the carer objects to sharing outside practice B22222
    assert _kinds(api("GET", "/CareTeam", params=carers, user="gp").json(), "include") == []
    everything = _everything(api, mine, user="gp").json()
    assert f"CareTeam/{world['team_of_other']}" not in _kinds(everything, "match")
    assert everything["total"] == 6  # the patient, 2 encounters, condition, observation, team
    assert _everything(api, other, user="gp").status_code == 403


# --- _include:iterate and _revinclude:iterate --------------------------------------------------

#: From the clinician's patient's encounters to the patient, the care teams they are a carer
#: on, those teams' patients and those patients' observations: a chain across two records.
CHAIN = [
    ("_include:iterate", "Encounter:subject"),
    ("_revinclude:iterate", "CareTeam:participant"),
    ("_include:iterate", "CareTeam:subject"),
    ("_revinclude:iterate", "Observation:subject"),
]


def test_iterate_follows_links_from_included_resources_level_by_level(
    api: Api, world: dict[str, str]
) -> None:
    mine, other = world["mine"], world["other"]
    for code in ("A11111", "B22222"):
        practice = {"resourceType": "Organization", "id": code, "name": f"Practice {code}"}
        assert api("PUT", f"/Organization/{code}", json=practice).status_code == 201
    # Without :iterate a link must start from the searched type; with it, from any included.
    practices = [("patient", mine), ("_include", "Encounter:subject")]
    refused = api(
        "GET", "/Encounter", params=[*practices, ("_include", "Patient:general-practitioner")]
    )
    assert refused.status_code == 400  # fmt: skip
    found = api("GET", "/Encounter", params=[
        *practices, ("_include:iterate", "Patient:general-practitioner")]).json()  # fmt: skip
    assert found["total"] == 2
    assert _kinds(found, "include") == ["Organization/A11111", f"Patient/{mine}"]
    # An iterate link is followed from the matches too (R4: the whole result set).
    own = api(
        "GET", "/Encounter", params=[("patient", mine), ("_include:iterate", "Encounter:subject")]
    ).json()
    assert _kinds(own, "include") == [f"Patient/{mine}"]  # fmt: skip

    chain = api("GET", "/Encounter", params=[("patient", mine), *CHAIN]).json()
    assert chain["total"] == 2 and len(_kinds(chain, "match")) == 2
    assert _kinds(chain, "include") == sorted([
        f"Patient/{mine}", f"CareTeam/{world['team_of_other']}", f"Observation/{world['obs']}",
        f"Patient/{other}", f"CareTeam/{world['team_of_mine']}",
        f"Observation/{world['other_obs']}",
    ])  # fmt: skip
    assert _kinds(chain, "outcome") == []  # the chain ended (back at mine) within the bound
    # Each once, a match never again as an include, however many paths lead to it.
    listed = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in chain["entry"]]
    assert len(listed) == len(set(listed))
    after = next((link["url"] for link in chain["link"] if link["relation"] == "self"), "")
    assert "_revinclude%3Aiterate=CareTeam%3Aparticipant" in after

    # From a practice: encounters it provided, their patient, the patient's care teams as a
    # carer, those teams' patient... The fifth level (the other patient's observation) is past
    # the bound: left out, and an outcome entry says so.
    longer = [("_id", "RXX"), ("_revinclude:iterate", "Encounter:service-provider"), *CHAIN]
    deep = api("GET", "/Organization", params=longer).json()
    assert deep["total"] == 1
    assert _kinds(deep, "include") == sorted([
        f"Encounter/{world['enc1']}", f"Encounter/{world['enc2']}", f"Patient/{mine}",
        f"CareTeam/{world['team_of_other']}", f"Observation/{world['obs']}", f"Patient/{other}",
    ])  # fmt: skip
    (outcome,) = [e["resource"] for e in deep["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome["issue"][0]["code"] == "too-costly"
    assert "followed 4 levels" in outcome["issue"][0]["diagnostics"]


def test_iterate_never_includes_what_the_clinician_may_not_see(
    api: Api, world: dict[str, str]
) -> None:
    mine, other = world["mine"], world["other"]
    hiv = api.make(_hiv_recorded_elsewhere(mine))
    query = [("patient", mine), *CHAIN, ("_revinclude:iterate", "Condition:subject")]
    everyone = api("GET", "/Encounter", params=query).json()
    assert {f"Patient/{other}", f"Condition/{hiv}"} <= set(_kinds(everyone, "include"))

    # The clinician: the chain stops at the other patient's care team (the other's record,
    # though it names theirs as a carer), so nothing of the other comes in at any level; the
    # HIV condition recorded elsewhere is left out as a read would refuse it; nothing counts
    # or mentions what was left out.
    seen = api("GET", "/Encounter", params=query, user="gp")
    assert seen.status_code == 200
    assert _kinds(seen.json(), "include") == sorted(
        [f"Patient/{mine}", f"Observation/{world['obs']}", f"Condition/{world['cond']}"]
    )
    assert seen.json()["total"] == 2 and _kinds(seen.json(), "outcome") == []
    assert OTHER_NHS not in seen.text and "Otherpractice" not in seen.text
    assert hiv not in seen.text
    # A type closed to clinicians is refused at whatever level it would come in.
    closed = api("GET", "/Encounter", user="gp", params=[
        ("patient", mine), ("_include:iterate", "Encounter:subject"),
        ("_revinclude:iterate", "AuditEvent:patient")])  # fmt: skip
    assert closed.status_code == 403

    ask = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{other}"}},
        {"name": "reason", "valueString": REASON},
    ]}  # fmt: skip
    assert api("POST", "/$break-glass", json=ask, user="gp").status_code == 201
    glass = api("GET", "/Encounter", params=[("patient", mine), *CHAIN], user="gp").json()
    assert _kinds(glass, "include") == _kinds(
        api("GET", "/Encounter", params=[("patient", mine), *CHAIN]).json(), "include"
    )

    searches = [e for e in api.audit("gp") if e["action"] == "fhir search"]
    assert [(e["resource"], e["detail"], e["reason"].startswith("BREAK-GLASS"))
            for e in searches] == [
        ("fhir/Encounter?patient,_include:iterate,_revinclude:iterate",
         "200; 2 in all, 2 sent, 3 included", False),
        ("fhir/Encounter?patient,_include:iterate,_revinclude:iterate", "403; forbidden", False),
        ("fhir/Encounter?patient,_include:iterate,_revinclude:iterate",
         "200; 2 in all, 2 sent, 6 included; break-glass", True),
    ]  # fmt: skip
    logged = json.dumps(api.audit("gp")).lower()
    assert OTHER_NHS not in logged and "otherpractice" not in logged
