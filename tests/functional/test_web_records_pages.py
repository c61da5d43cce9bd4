"""The joined-up record in the dashboard (issue 16, item 6) over a SQLite records store: a GP
with a relationship sees one person's timeline across GP, hospital, community, mental health
and social care, newest first, each item with its source organisation, and the trend of a
repeated result; a sensitive problem recorded elsewhere is never shown; a clinician with no
relationship sees no clinical content, breaks glass on the page and then sees it, audited as
the FHIR API audits (AuditEvents with purpose BTG); analysts and finance get 403; the privacy
officer's page lists the grant under an alert."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from cli_run import PhmWarehouse, joinedup
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert

from joinedup.fhir.validate import NHS_NUMBER_SYSTEM
from joinedup.records import RecordStore
from joinedup.records.store import database_url
from joinedup.records.store.person_index import mpi_person_index
from joinedup.web.access import AccessStore
from joinedup.web.app import create_app
from joinedup.web.records_api import mount_records
from joinedup.web.records_pages import mount_records_pages
from joinedup.web.settings import WebSettings
from joinedup.web.site import SESSION_COOKIE

PASSWORD = "a long enough password"
NHS_NUMBER = "9434765919"
REASON = "Collapsed in the emergency department, no history available"
SNOMED = "http://snomed.info/sct"
ORGANISATIONS = {
    "A11111": "Riverside Surgery",
    "RXX01": "County Hospital NHS Trust",
    "RYY01": "County Community Health",
    "RMH01": "County Mental Health Trust",
    "LA001": "County Council Adult Social Care",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> PhmWarehouse:
    """The smallest warehouse the dashboard opens (300 people), with the test's users."""
    folder = tmp_path_factory.mktemp("records_pages")
    path = folder / "ics.duckdb"
    run = None
    for step in (
        ("synth", "--people", "300", "--seed", "5", "--workers", "1", "-w", str(path)),
        ("phm", "run", "-w", str(path)),
    ):
        run = joinedup(*step, cwd=folder)
        assert run.returncode == 0, f"joinedup {' '.join(step)}: {run.stdout}{run.stderr}"
    assert run is not None
    settings = WebSettings(warehouse=path)
    users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    users.add_user("gp", PASSWORD, "clinician", pcn_code="U11111", practice_code="A11111")
    users.add_user("stranger", PASSWORD, "clinician", pcn_code="U22222", practice_code="B22222")
    users.add_user("social", PASSWORD, "care-worker", organisation_code="LA001")
    for name, role in (("analyst", "analyst"), ("finance", "finance"),
                       ("privacy", "privacy-officer"), ("admin", "admin")):  # fmt: skip
        users.add_user(name, PASSWORD, role)
    users.close()
    return PhmWarehouse(path, folder, run)


def _coded(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": SNOMED, "code": code, "display": display}]}


def _load(store: RecordStore) -> str:
    for ods, name in ORGANISATIONS.items():
        store.update({"resourceType": "Organization", "id": ods, "name": name})
    pid = store.create({
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": NHS_NUMBER}],
        "name": [{"use": "official", "family": "Jones", "given": ["Ann"]}],
        "gender": "female", "birthDate": "1950-02-03",
        "generalPractitioner": [{"reference": "Organization/A11111"}],
    }).resource["id"]  # fmt: skip
    subject = {"reference": f"Patient/{pid}"}
    encounters = {}
    for key, klass, ods, day, what in (
        ("gp", "AMB", "A11111", "2025-01-10", "GP consultation"),
        ("ae", "EMER", "RXX01", "2025-06-02", "Emergency department attendance"),
        ("community", "HH", "RYY01", "2025-08-15", "District nurse visit"),
        ("mh", "AMB", "RMH01", "2025-09-01", "Memory clinic appointment"),
        ("social", "HH", "LA001", "2025-10-05", "Social care needs assessment"),
    ):
        encounters[key] = store.create({
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
            "type": [{"text": what}], "subject": subject,
            "period": {"start": f"{day}T10:00:00Z", "end": f"{day}T11:00:00Z"},
            "serviceProvider": {"reference": f"Organization/{ods}"},
        }).resource["id"]  # fmt: skip
    store.create({
        "resourceType": "Condition", "subject": subject,
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": _coded("44054006", "Type 2 diabetes mellitus"),
        "encounter": {"reference": f"Encounter/{encounters['gp']}"},
        "onsetDateTime": "2025-01-10",
    })  # fmt: skip
    store.create({
        "resourceType": "Condition", "subject": subject,
        "clinicalStatus": {"coding": [{"code": "resolved"}]},
        "code": _coded("65966004", "Fracture of forearm"),
        "encounter": {"reference": f"Encounter/{encounters['ae']}"},
        "onsetDateTime": "2025-06-02",
    })  # fmt: skip
    store.create({  # sensitive, recorded by the hospital: withheld from the GP
        "resourceType": "Condition", "subject": subject,
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": _coded("86406008", "Human immunodeficiency virus infection"),
        "encounter": {"reference": f"Encounter/{encounters['ae']}"},
        "asserter": {"reference": "Organization/RXX01"}, "onsetDateTime": "2025-06-03",
    })  # fmt: skip
    store.create({
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": subject, "authoredOn": "2025-01-11",
        "medicationCodeableConcept": {"text": "Metformin 500mg tablets"},
        "dosageInstruction": [{"text": "One tablet twice a day"}],
        "requester": {"reference": "Organization/A11111"},
    })  # fmt: skip
    store.create({
        "resourceType": "AllergyIntolerance", "patient": subject,
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": _coded("91936005", "Allergy to penicillin"), "recordedDate": "2025-06-02",
        "encounter": {"reference": f"Encounter/{encounters['ae']}"},
    })  # fmt: skip
    for day, value in (("2025-01-10", 58), ("2025-04-12", 52), ("2025-09-20", 49)):
        store.create({
            "resourceType": "Observation", "status": "final", "subject": subject,
            "code": _coded("1049301000000100", "HbA1c level"), "effectiveDateTime": day,
            "valueQuantity": {"value": value, "unit": "mmol/mol"},
            "performer": [{"reference": "Organization/A11111"}],
        })  # fmt: skip
    for day, ods, systolic, diastolic in (("2025-06-02", "RXX01", 150, 95),
                                          ("2025-08-15", "RYY01", 138, 85)):  # fmt: skip
        store.create({
            "resourceType": "Observation", "status": "final", "subject": subject,
            "code": _coded("75367002", "Blood pressure"), "effectiveDateTime": day,
            "performer": [{"reference": f"Organization/{ods}"}],
            "component": [
                {"code": _coded("271649006", "Systolic blood pressure"),
                 "valueQuantity": {"value": systolic, "unit": "mmHg"}},
                {"code": _coded("271650006", "Diastolic blood pressure"),
                 "valueQuantity": {"value": diastolic, "unit": "mmHg"}},
            ],
        })  # fmt: skip
    store.create({
        "resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": subject,
        "title": "Frailty care plan", "description": "Falls prevention and home support",
        "period": {"start": "2025-10-06"}, "author": {"reference": "Organization/A11111"},
        "activity": [{"detail": {"status": "scheduled",
                                 "code": {"text": "Strength and balance classes"}}}],
    })  # fmt: skip
    return str(pid)


class Site:
    def __init__(self, client: TestClient, pid: str) -> None:
        self.client = client
        self.pid = pid

    def as_(self, user: str) -> TestClient:
        self.client.cookies.clear()
        answer = self.client.post("/api/v1/token", json={"username": user, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        self.client.cookies.set(SESSION_COOKIE, answer.json()["access_token"])
        return self.client

    def audit(self) -> list[dict[str, Any]]:
        store: AccessStore = self.client.app.state.access  # type: ignore[attr-defined]
        return list(reversed(store.audit_entries(limit=100_000)[1]))


@pytest.fixture
def site(world: PhmWarehouse, tmp_path: Path) -> Iterator[Site]:
    with RecordStore(tmp_path / "records.sqlite") as store:
        pid = _load(store)
        app = create_app(WebSettings(warehouse=world.path), warm=False)
        mount_records(app, store)
        mount_records_pages(app)
        with TestClient(app) as client:
            yield Site(client, pid)


def _timeline(page: str) -> list[tuple[str, str, str]]:
    """The timeline's rows: (date, what, source organisation)."""
    body = page.split('id="timeline"', 1)[1]
    rows = re.findall(r'<tr class="nhsuk-table__row jd-item".*?</tr>', body, re.S)
    found = []
    for row in rows:
        cells = [
            re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        found.append((cells[0], unescape(cells[1]), unescape(cells[4])))
    return found


def test_a_gp_finds_the_person_and_sees_their_joined_up_record(site: Site) -> None:
    gp = site.as_("gp")
    assert 'href="/records"' in gp.get("/records").text  # the navigation offers it
    bad = gp.get("/records", params={"nhs_number": "943 476 5918"})
    assert bad.status_code == 422 and "check digit is wrong" in bad.text
    found = gp.get("/records", params={"nhs_number": "943 476 5919"}, follow_redirects=False)
    assert found.status_code == 303
    assert found.headers["location"] == f"/records/patient/{site.pid}"
    page = gp.get(found.headers["location"])
    assert page.status_code == 200, page.text
    text = unescape(page.text)
    assert "Ann JONES" in text and "943 476 5919" in text and "1950-02-03" in text
    assert "Riverside Surgery" in text.split('id="practice"', 1)[1][:200]
    assert "Why you can see this record: the person is registered with your practice." in text
    rows = _timeline(page.text)
    dates = [d for d, _, _ in rows]
    assert dates == sorted(dates, reverse=True)  # newest first
    assert ("2025-10-05", "Encounter (home visit): Social care needs assessment",
            "County Council Adult Social Care (LA001)") in rows  # fmt: skip
    assert ("2025-09-01", "Encounter (outpatient or clinic): Memory clinic appointment",
            "County Mental Health Trust (RMH01)") in rows  # fmt: skip
    assert ("2025-08-15", "Encounter (home visit): District nurse visit",
            "County Community Health (RYY01)") in rows  # fmt: skip
    assert ("2025-06-02", "Encounter (emergency): Emergency department attendance",
            "County Hospital NHS Trust (RXX01)") in rows  # fmt: skip
    # A problem takes its encounter's organisation; results their performer's.
    assert ("2025-01-10", "Problem: Type 2 diabetes mellitus", "Riverside Surgery (A11111)") in rows
    assert ("2025-06-02", "Allergy: Allergy to penicillin",
            "County Hospital NHS Trust (RXX01)") in rows  # fmt: skip
    assert ("2025-01-11", "Medicine prescribed: Metformin 500mg tablets",
            "Riverside Surgery (A11111)") in rows  # fmt: skip
    assert ("2025-10-06", "Care plan: Frailty care plan", "Riverside Surgery (A11111)") in rows
    assert "Strength and balance classes" in text.split('id="timeline"', 1)[1]
    # encounters, problems, medicine, allergy, results, care plan
    assert len(rows) == 5 + 2 + 1 + 1 + 3 + 2 + 1
    assert "Human immunodeficiency virus" not in text  # sensitive, recorded by the hospital
    problems = text.split('id="problems"', 1)[1].split("</ul>", 1)[0]
    assert "Type 2 diabetes mellitus" in problems and "active" in problems
    assert "Fracture of forearm" in problems and "resolved" in problems
    assert "One tablet twice a day" in text.split('id="medicines"', 1)[1].split("</ul>", 1)[0]
    # Trends: HbA1c (three readings) and blood pressure (two, with its components).
    assert text.count('<svg role="img"') == 2
    hba1c = text.split("HbA1c level</h3>", 1)[1].split("</section>", 1)[0]
    assert re.findall(r"<td>(2025-\d\d-\d\d)</td><td>(\d+ mmol/mol)</td>", hba1c) == [
        ("2025-09-20", "49 mmol/mol"), ("2025-04-12", "52 mmol/mol"), ("2025-01-10", "58 mmol/mol"),
    ]  # fmt: skip
    assert "150/95 mmHg" in text and "138/85 mmHg" in text
    # Audited as the records API audits $everything, with the rule and no identifiers.
    views = [e for e in site.audit() if e["resource"] == f"fhir/Patient/{site.pid}/$everything"]
    assert [(v["username"], v["action"]) for v in views] == [("gp", "fhir everything")]
    assert views[0]["reason"].startswith("legitimate relationship: registered")
    assert all(NHS_NUMBER not in str(e) and "Jones" not in str(e) for e in site.audit())


def test_no_relationship_shows_nothing_until_break_glass(site: Site) -> None:
    stranger = site.as_("stranger")
    refused = stranger.get(f"/records/patient/{site.pid}")
    assert refused.status_code == 403
    text = unescape(refused.text)
    assert "no legitimate relationship" in text
    for clinical in ("JONES", "943 476 5919", "1950-02-03", "diabetes", "Metformin", "HbA1c",
                     "penicillin", "Riverside Surgery", "County Hospital"):  # fmt: skip
        assert clinical not in text
    assert "Break glass only in an emergency" in text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', refused.text)
    assert csrf is not None
    short = stranger.post(
        f"/records/patient/{site.pid}/break-glass", data={"csrf": csrf[1], "reason": "need it"}
    )
    assert short.status_code == 400 and "at least 20" in short.text
    assert "diabetes" not in short.text
    granted = stranger.post(
        f"/records/patient/{site.pid}/break-glass", data={"csrf": csrf[1], "reason": REASON},
        follow_redirects=False,
    )  # fmt: skip
    assert granted.status_code == 303
    page = stranger.get(f"/records/patient/{site.pid}")
    assert page.status_code == 200
    text = unescape(page.text)
    assert "Break-glass access" in text and "Type 2 diabetes mellitus" in text
    assert "Why you can see this record: your break-glass grant." in text
    # Break-glass shows what a sensitive category withheld from the GP, as the API does.
    assert "Human immunodeficiency virus infection" in text
    entries = [(e["username"], e["action"], e["detail"], e["reason"]) for e in site.audit()
               if e["username"] == "stranger" and e["action"].startswith("fhir")]  # fmt: skip
    assert entries[0][1:] == (
        "fhir everything",
        "403; refused; dashboard record page",
        "no legitimate relationship",
    )
    assert entries[1][1:3] == ("fhir break-glass", "400; invalid; dashboard break-glass form")
    assert entries[2][1:] == (
        "fhir break-glass", "201; dashboard break-glass form; break-glass",
        "BREAK-GLASS; legitimate relationship: break-glass",
    )  # fmt: skip
    assert entries[3][1] == "fhir everything" and entries[3][3].startswith("BREAK-GLASS;")
    # The privacy officer finds the page's accesses among the AuditEvents, as break-glass.
    privacy = site.as_("privacy")
    token = privacy.cookies.get(SESSION_COOKIE)
    events = privacy.get(
        "/fhir/R4/AuditEvent", params={"patient": site.pid, "purpose": "BTG"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()  # fmt: skip
    subtypes = sorted(
        c["code"] for e in events["entry"] for c in e["resource"]["subtype"]
        if c["system"].endswith("records-interaction")
    )  # fmt: skip
    assert subtypes == ["break-glass", "everything"], events
    # ... and the grant on their page, under an alert for the last 7 days.
    listed = privacy.get("/privacy/break-glass")
    assert listed.status_code == 200
    text = unescape(listed.text)
    assert "1 break-glass grant in the last 7 days" in text
    grants = text.split('id="break-glass-grants"', 1)[1]
    assert "stranger" in grants and REASON in grants and f"Patient/{site.pid}" in grants
    assert 'href="/privacy/break-glass" aria-current="page"' in listed.text


def test_analysts_finance_and_the_privacy_officer_open_no_record(site: Site) -> None:
    for user in ("analyst", "finance", "privacy"):
        client = site.as_(user)
        assert 'href="/records"' not in client.get("/about").text
        for path in ("/records", f"/records/patient/{site.pid}",
                     f"/records?nhs_number={NHS_NUMBER}"):  # fmt: skip
            answer = client.get(path)
            assert answer.status_code == 403, (user, path)
            assert "JONES" not in answer.text and "diabetes" not in answer.text
    assert site.as_("analyst").get("/privacy/break-glass").status_code == 403
    denied = [e["username"] for e in site.audit() if e["action"] == "denied"]
    assert denied.count("analyst") == 3 and denied.count("privacy") == 3
    # The administrator is unrestricted, as in the records API, and audited as such.
    admin = site.as_("admin")
    assert "Type 2 diabetes mellitus" in admin.get(f"/records/patient/{site.pid}").text
    assert site.audit()[-1]["reason"] == "records API: admin role (unrestricted)"
    assert admin.get("/records/patient/no-such-person").status_code == 404


def test_a_care_worker_sees_the_care_parts_of_the_record_through_their_council(
    site: Site,
) -> None:
    social = site.as_("social")
    assert 'href="/records"' in social.get("/records").text  # the navigation offers it
    refused = social.get(f"/records/patient/{site.pid}")  # a finished visit long ago: no one's
    assert refused.status_code == 403 and "diabetes" not in refused.text
    assert "Break glass only in an emergency" in refused.text
    store: RecordStore = site.client.app.state.records  # type: ignore[attr-defined]
    store.create({
        "resourceType": "EpisodeOfCare", "status": "active",
        "patient": {"reference": f"Patient/{site.pid}"},
        "managingOrganization": {"reference": "Organization/LA001"},
    })  # fmt: skip
    page = social.get(f"/records/patient/{site.pid}")
    assert page.status_code == 200, page.text
    text = unescape(page.text)
    assert "Why you can see this record: an open episode of care with your organisation." in text
    rows = _timeline(page.text)
    assert ("2025-10-05", "Encounter (home visit): Social care needs assessment",
            "County Council Adult Social Care (LA001)") in rows  # fmt: skip
    for shown in ("Type 2 diabetes mellitus", "Metformin 500mg tablets", "Allergy to penicillin",
                  "Frailty care plan"):  # fmt: skip
        assert shown in text
    # results are for clinicians; a sensitive problem recorded elsewhere for no one outside
    for hidden in ("HbA1c", "Blood pressure", "mmol/mol", "Human immunodeficiency virus"):
        assert hidden not in text
    # encounters, problems, medicine, allergy, care plan, and the council's episode
    assert len(rows) == 5 + 2 + 1 + 1 + 1 + 1
    views = [(e["username"], e["detail"][:3], e["reason"]) for e in site.audit()
             if e["resource"] == f"fhir/Patient/{site.pid}/$everything"]  # fmt: skip
    assert views == [
        ("social", "403", "no legitimate relationship"),
        ("social", "200", "legitimate relationship: episode,search kept to permitted patients"),
    ]


def test_the_page_follows_the_person_index(site: Site, tmp_path: Path) -> None:
    """With a master person index in the store, the page brings in the same person's Patient
    at the trust (its own PAS number, no NHS number) for a clinician with a relationship with
    it too, names it under the access rule, and audits it as its own access; without that
    relationship the page is the practice's Patient alone, the trust's not mentioned."""
    gp_ids, pas_ids = "https://gp.example.org/patient-id", "https://trust.example.org/pas-number"
    app = site.client.app
    app.state.records_index_systems = {"gp": gp_ids, "acute": pas_ids}  # type: ignore[attr-defined]
    store: RecordStore = app.state.records  # type: ignore[attr-defined]
    patient = store.read("Patient", site.pid)
    patient["identifier"].append({"system": gp_ids, "value": "G-1"})
    store.update(patient)
    acute = store.create({
        "resourceType": "Patient", "identifier": [{"system": pas_ids, "value": "PAS-1"}],
        "name": [{"family": "Jones", "given": ["Ann"]}], "birthDate": "1950-02-03",
    }).resource_id  # fmt: skip
    store.create({
        "resourceType": "Condition", "subject": {"reference": f"Patient/{acute}"},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": _coded("49436004", "Atrial fibrillation"), "onsetDateTime": "2025-11-02",
        "asserter": {"reference": "Organization/RXX01"},
    })  # fmt: skip
    team = store.create({
        "resourceType": "CareTeam", "status": "active",
        "subject": {"reference": f"Patient/{acute}"},
        "participant": [{"member": {"reference": "Practitioner/gp"}}],
    }).resource_id  # fmt: skip
    engine = create_engine(database_url(tmp_path / "records.sqlite"))
    with engine.begin() as conn:  # as `joinedup link index --records` writes the index
        conn.execute(insert(mpi_person_index), [
            {"source": source, "record_id": record, "person_id": "P000000001",
             "linked_by": "splink", "match_weight": 9.5, "needs_review": False}
            for source, record in (("gp", "G-1"), ("acute", "PAS-1"))
        ])  # fmt: skip
    engine.dispose()
    store.refresh_person_links()  # as a run writing the index does
    gp = site.as_("gp")
    page = unescape(gp.get(f"/records/patient/{site.pid}").text)
    assert f"Patient {acute} (linked by probabilistic match)" in page
    assert "Atrial fibrillation" in page
    store.delete("CareTeam", team)  # no relationship with the trust's Patient any more
    page = unescape(gp.get(f"/records/patient/{site.pid}").text)
    assert "Type 2 diabetes mellitus" in page
    assert 'id="linked-records"' not in page and "Atrial fibrillation" not in page
    linked = [e for e in site.audit() if e["resource"] == f"fhir/Patient/{acute}"]
    assert [e["reason"] for e in linked] == [
        "legitimate relationship: care-team",
        "no relationship",
    ]
    assert linked[0]["detail"].startswith(f"200; linked to Patient/{site.pid} by the person index")
