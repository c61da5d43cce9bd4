"""Consent and sensitive categories through the FHIR API, over HTTP on SQLite and PostgreSQL
(issue 16): the access matrix of role x relationship x consent x sensitive x break-glass.

Two GP practices (A11111 and B22222), a clinician at each, a feed and an analyst. A person's
objection to sharing keeps their record from everyone outside the organisation that recorded
it, relationship or not, until withdrawn or until break-glass; a resource coded in a sensitive
category is shown only within the organisation that recorded it (searches count it for no one
else, page by page); the national data opt-out changes nothing in direct care. Every refusal
looks like a no-relationship refusal and is audited with the consent rule that applied.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient
from fhir_calls import created_id, fhir_request

from consent_builders import objection
from joinedup.errors import ConfigurationError, InputError
from joinedup.records import RecordStore
from joinedup.records.consent import citizen_objection
from joinedup.web.access import AccessStore
from joinedup.web.records_api import create_records_app
from joinedup.web.settings import WebSettings

PASSWORD = "a long enough password"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REASON = "Unconscious in the emergency department, no history available"
SCT = "http://snomed.info/sct"
HIV = "86406008"  # Human immunodeficiency virus infection (disorder), in the shipped list
HIV_POSITIVE = "165816005"
ASTHMA = "195967001"
RECORDED_BY = "https://fhir.joinedup.org/StructureDefinition/recorded-by-organisation"
NDOP = "https://digital.nhs.uk/services/national-data-opt-out"
NHS_NUMBERS = ("9000000009", "9434765919", "9434765870", "9434765889", "9434765897")
TRUST = "RXX"  # an NHS trust: a user's organisation beyond practices and PCNs
COUNCIL = "ZZL01"  # a council, as the synthetic footprint codes them


class Api:
    def __init__(self, client: TestClient, tokens: dict[str, str], store: RecordStore) -> None:
        self.client = client
        self.tokens = tokens
        self.store = store
        self.calls: Counter[str] = Counter()  # API requests made, by user

    def __call__(self, method: str, path: str, *, user: str, **kwargs: Any) -> Any:
        self.calls[user] += 1
        return fhir_request(self.client, self.tokens[user], method, path, **kwargs)

    def made(self, resource: dict[str, Any]) -> str:
        return created_id(self("POST", f"/{resource['resourceType']}", json=resource, user="feed"))

    def status(self, path: str, user: str) -> int:
        code: int = self("GET", path, user=user).status_code
        return code

    def ids(self, path: str, user: str, **params: str) -> tuple[int, list[str]]:
        found = self("GET", path, user=user, params=params).json()
        return found["total"], [e["resource"]["id"] for e in found.get("entry", [])]

    def audit(self, user: str) -> list[dict[str, Any]]:
        """The API's audit entries of `user`, oldest first."""
        store: AccessStore = self.client.app.state.access  # type: ignore[attr-defined]
        entries = store.audit_entries(limit=100000)[1]
        return [e for e in reversed(entries) if e["username"] == user]


@pytest.fixture
def api(records_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = WebSettings(warehouse=tmp_path / "warehouse.duckdb")
    users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    users.add_user("feed", PASSWORD, "system")
    users.add_user("gp-a", PASSWORD, "clinician", pcn_code="U11111", practice_code="A11111")
    users.add_user("gp-b", PASSWORD, "clinician", pcn_code="U22222", practice_code="B22222")
    users.add_user("analyst", PASSWORD, "analyst")
    users.add_user("trust", PASSWORD, "clinician", organisation_code=TRUST)
    users.add_user("carer", PASSWORD, "care-worker", organisation_code=COUNCIL)
    users.add_user("carer-a", PASSWORD, "care-worker", organisation_code="A11111")
    users.add_user("cy", PASSWORD, "citizen", patient_id="cy")
    users.set_proxy("cy", "cy-child", "parent")
    users.close()
    with (
        RecordStore(records_url, clock=lambda: NOW) as store,
        TestClient(create_records_app(settings, store)) as c,
    ):
        tokens = {}
        for name in ("feed", "gp-a", "gp-b", "analyst", "trust", "carer", "carer-a", "cy"):
            answer = c.post("/api/v1/token", json={"username": name, "password": PASSWORD})
            tokens[name] = answer.json()["access_token"]
        yield Api(c, tokens, store)


def _patient(api: Api, nhs_number: str) -> str:
    """A patient registered at practice A11111 and seen today at B22222 (an Encounter under
    way), so both clinicians have a legitimate relationship."""
    pid = api.made({
        "resourceType": "Patient",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number}],
        "name": [{"family": "Consentcase", "given": ["Jo"]}],
        "gender": "female",
        "birthDate": "1980-02-03",
        "generalPractitioner": [{"reference": "Organization/A11111"}],
    })  # fmt: skip
    api.made({
        "resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{pid}"},
        "serviceProvider": {"reference": "Organization/B22222"},
        "period": {"start": "2026-06-01T11:00:00Z"},
    })  # fmt: skip
    return pid


def opt_out(pid: str) -> dict[str, Any]:
    """A national data opt-out as `joinedup export fhir` writes it."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{pid}"},
        "policy": [{"uri": NDOP}],
        "provision": {"type": "deny"},
    }  # fmt: skip


def condition(pid: str, code: str, recorded: dict[str, Any] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": "active"}]},
        "code": {"coding": [{"system": SCT, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "recordedDate": "2026-05-01",
    }  # fmt: skip
    return {**found, **(recorded or {})}


def by_extension(organisation: str) -> dict[str, Any]:
    ref = {"reference": f"Organization/{organisation}"}
    return {"extension": [{"url": RECORDED_BY, "valueReference": ref}]}


def by_contained_role(organisation: str) -> dict[str, Any]:
    role = {
        "resourceType": "PractitionerRole",
        "id": "role",
        "organization": {"reference": f"Organization/{organisation}"},
    }
    return {"contained": [role], "recorder": {"reference": "#role"}}


def _refused(answer: Any) -> None:
    """A consent refusal looks exactly like a no-relationship refusal."""
    assert answer.status_code == 403, answer.text
    issue = answer.json()["issue"][0]
    assert issue["code"] == "forbidden"
    assert issue["diagnostics"].startswith("no legitimate relationship with this patient")


def _break_glass(api: Api, user: str, pid: str) -> None:
    ask = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}},
        {"name": "reason", "valueString": REASON},
    ]}  # fmt: skip
    assert api("POST", "/$break-glass", json=ask, user=user).status_code == 201


def test_an_objection_withholds_the_record_outside_the_recording_organisation(api: Api) -> None:
    objects_at_a, objects_at_b, withdrawn, opted_out = (_patient(api, n) for n in NHS_NUMBERS[:4])
    api.made(objection(objects_at_a, "A11111"))
    api.made(objection(objects_at_b, "B22222"))
    consent = api.made(objection(withdrawn, "B22222"))
    api.made(opt_out(opted_out))
    notes = {p: api.made(condition(p, ASTHMA)) for p in (objects_at_a, objects_at_b, withdrawn)}

    # role x objection: inside the recording organisation (with a relationship) or not
    expected = {
        ("gp-a", objects_at_a): 200, ("gp-b", objects_at_a): 403,
        ("gp-a", objects_at_b): 403, ("gp-b", objects_at_b): 200,
        ("gp-a", withdrawn): 403, ("gp-b", withdrawn): 200,
        ("gp-a", opted_out): 200, ("gp-b", opted_out): 200,
        ("feed", objects_at_a): 200, ("analyst", objects_at_a): 403,
    }  # fmt: skip
    for (user, pid), status in expected.items():
        assert api.status(f"/Patient/{pid}", user) == status, (user, pid)
        if pid in notes:
            assert api.status(f"/Condition/{notes[pid]}", user) == status, (user, pid)
    _refused(api("GET", f"/Patient/{objects_at_a}", user="gp-b"))
    _refused(api("GET", f"/Condition/{notes[objects_at_a]}/_history/1", user="gp-b"))
    _refused(api("POST", "/Condition", json=condition(objects_at_a, ASTHMA), user="gp-b"))

    # searches: the withheld are in no total, whatever the relationship
    assert sorted(api.ids("/Patient", "gp-a", gender="female")[1]) == sorted(
        [objects_at_a, opted_out]
    )
    total, found = api.ids("/Condition", "gp-b", code=ASTHMA)
    assert total == 2 and sorted(found) == sorted([notes[objects_at_b], notes[withdrawn]])
    assert api.ids("/Condition", "gp-b", patient=objects_at_a) == (0, [])

    # withdrawn: the objection stops applying
    withdrawal = {**objection(withdrawn, "B22222", status="inactive"), "id": consent}
    assert api("PUT", f"/Consent/{consent}", json=withdrawal, user="feed").status_code == 200
    assert api.status(f"/Patient/{withdrawn}", "gp-a") == 200
    assert api.ids("/Condition", "gp-a", patient=withdrawn)[0] == 1

    # Consent is searchable by patient and status, kept to permitted patients like the rest
    assert api.ids("/Consent", "feed", patient=objects_at_a, status="active")[0] == 1
    assert api.ids("/Consent", "feed", patient=objects_at_a, status="inactive")[0] == 0
    assert api.ids("/Consent", "feed", patient=withdrawn, status="inactive")[1] == [consent]
    assert api.ids("/Consent", "gp-a", patient=opted_out, status="active")[0] == 1
    assert api.ids("/Consent", "gp-b", patient=objects_at_a)[0] == 0

    _refused(api("GET", f"/Patient/{objects_at_a}/$everything", user="gp-b"))

    # break-glass shows the record, audited as overriding the objection
    _break_glass(api, "gp-b", objects_at_a)
    assert api.status(f"/Patient/{objects_at_a}", "gp-b") == 200
    assert api.ids("/Condition", "gp-b", patient=objects_at_a)[1] == [notes[objects_at_a]]

    gp_b = api.audit("gp-b")
    refusals = [e for e in gp_b if e["detail"].startswith("403")]
    assert {e["reason"] for e in refusals} == {
        "withheld: objection to sharing recorded by another organisation"
    }
    assert any(
        e["action"] == "fhir read"
        and e["reason"]
        == "BREAK-GLASS; legitimate relationship: break-glass; objection to "
        "sharing overridden by break-glass"
        for e in gp_b
    )
    logged = json.dumps(api.audit("gp-a") + gp_b).lower()
    assert not any(n in logged for n in NHS_NUMBERS) and "consentcase" not in logged


def test_the_national_data_opt_out_is_for_secondary_use_only(api: Api) -> None:
    opted_out, other = (_patient(api, n) for n in NHS_NUMBERS[:2])
    api.made(opt_out(opted_out))
    api.made(objection(other, "A11111"))
    note = api.made(condition(opted_out, ASTHMA))
    assert api.store.opted_out_patients() == {opted_out}  # what warehouse outputs leave out
    for user in ("gp-a", "gp-b"):  # direct care is not affected
        assert api.status(f"/Patient/{opted_out}", user) == 200
        assert api.status(f"/Condition/{note}", user) == 200
    assert api.ids("/Condition", "gp-b", patient=opted_out) == (1, [note])
    withdrawn = api.ids("/Consent", "feed", patient=opted_out)[1][0]
    update = {**opt_out(opted_out), "id": withdrawn, "status": "inactive"}
    assert api("PUT", f"/Consent/{withdrawn}", json=update, user="feed").status_code == 200
    assert api.store.opted_out_patients() == set()


def test_sensitive_categories_only_within_the_recording_organisation(api: Api) -> None:
    pid = _patient(api, NHS_NUMBERS[0])
    hiv_at_a = api.made(condition(pid, HIV, by_extension("A11111")))
    hiv_at_b = api.made(condition(pid, HIV, by_contained_role("B22222")))
    hiv_nowhere = api.made(condition(pid, HIV))  # no recording organisation: no one's
    asthma = api.made(condition(pid, ASTHMA))
    result = api.made({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "7917-8"}]},
        "valueCodeableConcept": {"coding": [{"system": SCT, "code": HIV_POSITIVE}]},
        "subject": {"reference": f"Patient/{pid}"},
        "performer": [{"reference": "Organization/A11111"}],
        "effectiveDateTime": "2026-05-01",
    })  # fmt: skip

    # role x sensitive (both clinicians have a relationship)
    expected = {
        hiv_at_a: {"gp-a": 200, "gp-b": 403, "feed": 200},
        hiv_at_b: {"gp-a": 403, "gp-b": 200, "feed": 200},
        hiv_nowhere: {"gp-a": 403, "gp-b": 403, "feed": 200},
        asthma: {"gp-a": 200, "gp-b": 200, "feed": 200},
    }
    for rid, statuses in expected.items():
        for user, status in statuses.items():
            assert api.status(f"/Condition/{rid}", user) == status, (rid, user)
            assert api.status(f"/Condition/{rid}/_history", user) == status, (rid, user)
    assert api.status(f"/Observation/{result}", "gp-b") == 403
    assert api.status(f"/Observation/{result}", "gp-a") == 200
    _refused(api("GET", f"/Condition/{hiv_at_a}", user="gp-b"))
    _refused(api("DELETE", f"/Condition/{hiv_at_a}", user="gp-b"))
    assert api.status(f"/Condition/{hiv_at_a}", "feed") == 200  # not deleted

    # searches leave them out in the query: totals and every page agree
    assert api.ids("/Condition", "gp-b", patient=pid) == (2, sorted([hiv_at_b, asthma]))
    assert api.ids("/Condition", "gp-a", code=HIV)[1] == [hiv_at_a]
    pages = [api.ids("/Condition", "gp-a", patient=pid, _count="1", _offset=str(n)) for n in (0, 1)]
    assert [p[0] for p in pages] == [2, 2]
    assert sorted(p[1][0] for p in pages) == sorted([hiv_at_a, asthma])
    assert api.ids("/Observation", "gp-b", patient=pid)[0] == 0
    assert api.ids("/Condition", "feed", patient=pid)[0] == 4

    # _revinclude and $everything leave out the same
    bundle = api(
        "GET", "/Patient", user="gp-b", params={"_id": pid, "_revinclude": "Condition:patient"}
    )
    entries = bundle.json()["entry"]
    included = [e["resource"]["id"] for e in entries if e["search"]["mode"] == "include"]
    assert sorted(included) == sorted([hiv_at_b, asthma])
    everything = api("GET", f"/Patient/{pid}/$everything", user="gp-b").json()
    shown = {e["resource"]["id"] for e in everything["entry"]}
    assert {hiv_at_b, asthma} <= shown and not {hiv_at_a, hiv_nowhere, result} & shown
    assert everything["total"] == len(shown)

    # re-coded as not sensitive: shown; a version that was is still withheld by vread
    recoded = {**condition(pid, ASTHMA, by_extension("A11111")), "id": hiv_at_a}
    assert api("PUT", f"/Condition/{hiv_at_a}", json=recoded, user="feed").status_code == 200
    assert api.ids("/Condition", "gp-b", patient=pid)[0] == 3
    assert api.status(f"/Condition/{hiv_at_a}", "gp-b") == 200
    assert api.status(f"/Condition/{hiv_at_a}/_history/1", "gp-b") == 403

    # break-glass shows every sensitive resource of that patient
    _break_glass(api, "gp-a", pid)
    assert api.status(f"/Condition/{hiv_at_b}", "gp-a") == 200
    assert api.ids("/Condition", "gp-a", patient=pid)[0] == 4

    withheld = [e for e in api.audit("gp-b") if e["detail"].startswith("403")]
    assert {e["reason"] for e in withheld} == {
        "withheld: sensitive category hiv recorded by another organisation"
    }
    glass = [e for e in api.audit("gp-a") if e["reason"].startswith("BREAK-GLASS")]
    assert any("sensitive category shown by break-glass" in e["reason"] for e in glass)


def test_a_bad_sensitive_code_list_stops_the_server_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = tmp_path / "sensitive.csv"
    listed.write_text(f"category,system,code,display,source\nhiv,{SCT},,HIV,local\n")
    monkeypatch.setenv("JOINEDUP_RECORDS_SENSITIVE_CODES", str(listed))
    settings = WebSettings(warehouse=tmp_path / "warehouse.duckdb")
    with (
        RecordStore(tmp_path / "records.sqlite") as store,
        pytest.raises(ConfigurationError, match=f"{listed}: row 2: code is empty"),
    ):
        create_records_app(settings, store)


def registered(
    api: Api, nhs_number: str, practice: str = "A11111", born: str = "1950-07-08"
) -> str:
    """A patient registered at `practice` and nothing else."""
    return api.made({
        "resourceType": "Patient",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number}],
        "name": [{"family": "Orgcase", "given": ["Sam"]}],
        "gender": "male",
        "birthDate": born,
        "generalPractitioner": [{"reference": f"Organization/{practice}"}],
    })  # fmt: skip


def relationship(kind: str, pid: str, organisation: str, status: str) -> dict[str, Any]:
    """An EpisodeOfCare, ServiceRequest or CareTeam linking `pid` to `organisation`."""
    subject = {"reference": f"Patient/{pid}"}
    ours = {"reference": f"Organization/{organisation}"}
    if kind == "EpisodeOfCare":
        return {"resourceType": kind, "status": status, "patient": subject,
                "managingOrganization": ours}  # fmt: skip
    if kind == "ServiceRequest":
        return {"resourceType": kind, "status": status, "intent": "order", "subject": subject,
                "performer": [ours]}  # fmt: skip
    return {"resourceType": kind, "status": status, "subject": subject,
            "participant": [{"member": ours}]}  # fmt: skip


def test_a_trust_is_a_users_organisation_for_every_relationship_rule(api: Api) -> None:
    episode, referral, team, closed, unrelated = (registered(api, n) for n in NHS_NUMBERS)
    api.made(relationship("EpisodeOfCare", episode, TRUST, "active"))
    api.made(relationship("ServiceRequest", referral, TRUST, "active"))
    api.made(relationship("CareTeam", team, TRUST, "active"))
    api.made(relationship("EpisodeOfCare", closed, TRUST, "finished"))
    api.made(relationship("ServiceRequest", closed, TRUST, "completed"))
    api.made(relationship("EpisodeOfCare", unrelated, COUNCIL, "active"))
    notes = {p: api.made(condition(p, ASTHMA)) for p in (episode, closed, unrelated)}

    # the trust's clinician: through the trust's open episode, referral and care team only,
    # never by registration (a trust has no registered list)
    expected = {episode: 200, referral: 200, team: 200, closed: 403, unrelated: 403}
    for pid, status in expected.items():
        assert api.status(f"/Patient/{pid}", "trust") == status, pid
        assert api.status(f"/Patient/{pid}/$everything", "trust") == status, pid
    assert api.status(f"/Condition/{notes[episode]}", "trust") == 200
    for pid in (closed, unrelated):
        _refused(api("GET", f"/Condition/{notes[pid]}", user="trust"))
        _refused(api("GET", f"/Condition/{notes[pid]}/_history/1", user="trust"))
        _refused(api("POST", "/Condition", json=condition(pid, ASTHMA), user="trust"))
    assert sorted(api.ids("/Patient", "trust", gender="male")[1]) == sorted(
        [episode, referral, team]
    )
    assert api.ids("/Condition", "trust", code=ASTHMA) == (1, [notes[episode]])
    assert api.ids("/Condition", "trust", patient=unrelated) == (0, [])
    # the practice's GP still sees them all by registration; another practice's none
    assert api.ids("/Patient", "gp-a", gender="male")[0] == 5
    assert api.ids("/Patient", "gp-b", gender="male")[0] == 0

    reasons = [(e["action"], e["reason"]) for e in api.audit("trust")]
    assert ("fhir read", "legitimate relationship: episode") in reasons
    assert ("fhir read", "legitimate relationship: referral") in reasons
    assert ("fhir read", "legitimate relationship: care-team") in reasons
    refused = [e for e in api.audit("trust") if e["detail"].startswith("403")]
    assert len(refused) == 10 and {e["reason"] for e in refused} == {"no legitimate relationship"}


def observation(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-05-01", "valueQuantity": {"value": 70, "unit": "kg"},
    }  # fmt: skip


def test_a_care_worker_sees_the_care_types_through_their_organisation_only(api: Api) -> None:
    episode, referral, team, objects, unrelated = (registered(api, n) for n in NHS_NUMBERS)
    api.made(relationship("EpisodeOfCare", episode, COUNCIL, "active"))
    api.made(relationship("ServiceRequest", referral, COUNCIL, "active"))
    api.made(relationship("CareTeam", team, COUNCIL, "proposed"))
    api.made(relationship("EpisodeOfCare", objects, COUNCIL, "active"))
    api.made(objection(objects, "A11111"))
    api.made(relationship("EpisodeOfCare", unrelated, COUNCIL, "finished"))
    notes = {p: api.made(condition(p, ASTHMA)) for p in (episode, objects, unrelated)}
    hiv = api.made(condition(episode, HIV, by_extension("A11111")))
    weight = api.made(observation(episode))
    plan = api.made({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                     "subject": {"reference": f"Patient/{episode}"}})  # fmt: skip

    # every read route: only through the council's open episode, referral or care team
    expected = {episode: 200, referral: 200, team: 200, objects: 403, unrelated: 403}
    for pid, status in expected.items():
        for path in ("", "/_history", "/_history/1", "/$everything"):
            assert api.status(f"/Patient/{pid}{path}", "carer") == status, (pid, path)
    for path in ("", "/_history", "/_history/1"):
        assert api.status(f"/Condition/{notes[episode]}{path}", "carer") == 200
        assert api.status(f"/CarePlan/{plan}{path}", "carer") == 200
        for pid in (objects, unrelated):
            _refused(api("GET", f"/Condition/{notes[pid]}{path}", user="carer"))
        _refused(api("GET", f"/Condition/{hiv}{path}", user="carer"))  # sensitive, A's
    # a care worker of the practice itself sees none of its registered patients
    for pid in expected:
        assert api.status(f"/Patient/{pid}", "carer-a") == 403
    assert api.ids("/Patient", "carer-a", gender="male") == (0, [])
    assert api.ids("/Patient", "gp-a", gender="male")[0] == 5

    # searches: the permitted patients only, in the total and the pages
    assert sorted(api.ids("/Patient", "carer", gender="male")[1]) == sorted(
        [episode, referral, team]
    )
    assert api.ids("/Condition", "carer", code=ASTHMA) == (1, [notes[episode]])
    assert api.ids("/Condition", "carer", patient=episode) == (1, [notes[episode]])
    assert api.ids("/Condition", "carer", patient=objects) == (0, [])
    everything = api("GET", f"/Patient/{episode}/$everything", user="carer").json()
    shown = {e["resource"]["resourceType"] for e in everything["entry"]}
    assert shown == {"Patient", "EpisodeOfCare", "Condition", "CarePlan"}
    assert everything["total"] == 4  # not the Observation, nor the sensitive Condition

    # types a care worker does not see: refused even with a relationship
    for path in (f"/Observation/{weight}", f"/Observation/{weight}/_history"):
        refusal = api("GET", path, user="carer")
        assert refusal.status_code == 403
        assert "not open to the care-worker role" in refusal.json()["issue"][0]["diagnostics"]
    assert api.status("/Observation", "carer") == 403
    assert api.status(f"/Observation?patient={episode}", "carer") == 403
    included = api("GET", "/Patient", user="carer", params={
        "_id": episode, "_revinclude": "Observation:patient"})  # fmt: skip
    assert included.status_code == 403
    assert api.status("/AuditEvent", "carer") == 403

    # writes: not a Condition, with a relationship or not (the care types' writes: below)
    assert (
        api("POST", "/Condition", json=condition(episode, ASTHMA), user="carer").status_code == 403
    )
    update = {**condition(episode, ASTHMA), "id": notes[episode]}
    assert api("PUT", f"/Condition/{notes[episode]}", json=update, user="carer").status_code == 403
    assert api("DELETE", f"/Condition/{notes[episode]}", user="carer").status_code == 403
    assert api.status(f"/Condition/{notes[episode]}", "feed") == 200  # not deleted

    # break-glass: the objecting person's record, still only the care types
    _break_glass(api, "carer", objects)
    assert api.status(f"/Patient/{objects}", "carer") == 200
    assert api.ids("/Condition", "carer", patient=objects) == (1, [notes[objects]])
    assert api.status(f"/Observation?patient={objects}", "carer") == 403

    # every request audited, refusals with the rule that refused them; no identifiers
    audited = [e for e in api.audit("carer") if e["action"].startswith("fhir")]
    assert len(audited) == api.calls["carer"]
    reasons = {e["reason"] for e in audited if e["detail"].startswith("403")}
    assert reasons >= {
        "no legitimate relationship",
        "withheld: objection to sharing recorded by another organisation",
        "withheld: sensitive category hiv recorded by another organisation",
    }
    allowed = {e["reason"] for e in audited if e["detail"].startswith("200")}
    assert {"legitimate relationship: episode", "legitimate relationship: referral",
            "legitimate relationship: care-team"} <= allowed  # fmt: skip
    assert any(e["reason"].startswith("BREAK-GLASS") for e in audited)
    assert (
        len([e for e in api.audit("carer-a") if e["action"].startswith("fhir")])
        == (api.calls["carer-a"])
    )
    logged = json.dumps(audited).lower()
    assert not any(n in logged for n in NHS_NUMBERS) and "orgcase" not in logged
    access: AccessStore = api.client.app.state.access  # type: ignore[attr-defined]
    with sqlite3.connect(access.path) as con:
        context = set(
            con.execute(
                "SELECT organisation, purpose FROM audit WHERE username = 'carer' "
                "AND action LIKE 'fhir %'"
            ).fetchall()
        )
    assert context == {(COUNCIL, "COC"), (COUNCIL, "BTG")}


def test_a_pcn_clinician_sees_the_registered_patients_of_the_pcns_practices(
    records_url: str, tmp_path: Path
) -> None:
    """The server reads each PCN's practices from the warehouse's practice table at start."""
    warehouse = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse))
    con.execute("CREATE TABLE practice (practice_code VARCHAR, pcn_code VARCHAR)")
    con.execute(
        "INSERT INTO practice VALUES ('A11111', 'U11111'), ('A11112', 'U11111'), "
        "('B22222', 'U22222')"
    )
    con.close()
    without = WebSettings(warehouse=tmp_path / "none" / "warehouse.duckdb")
    settings = WebSettings(warehouse=warehouse, access_db=without.access_path)
    users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    users.add_user("feed", PASSWORD, "system")
    users.add_user("pcn-lead", PASSWORD, "clinician", pcn_code="U11111")
    users.close()
    practices = ("A11111", "A11112", "B22222")
    found: dict[str, Any] = {}
    with RecordStore(records_url, clock=lambda: NOW) as store:
        for name, given in (("with", settings), ("without", without)):
            with TestClient(create_records_app(given, store)) as c:
                tokens = {}
                for user in ("feed", "pcn-lead"):
                    answer = c.post("/api/v1/token", json={"username": user, "password": PASSWORD})
                    tokens[user] = answer.json()["access_token"]
                api = Api(c, tokens, store)
                if name == "with":
                    ids = [
                        registered(api, n, p)
                        for p, n in zip(practices, NHS_NUMBERS[:3], strict=True)
                    ]
                total, shown = api.ids("/Patient", "pcn-lead", gender="male")
                found[name] = (total, sorted(shown))
                found[f"{name} reads"] = [api.status(f"/Patient/{p}", "pcn-lead") for p in ids]
                reads = [e for e in api.audit("pcn-lead") if e["action"] == "fhir read"]
                found[f"{name} audit"] = [e["reason"] for e in reads[-3:]]
    assert found["with"] == (2, sorted(ids[:2]))
    assert found["with reads"] == [200, 200, 403]
    registration = "legitimate relationship: registered"
    assert found["with audit"] == [registration, registration, "no legitimate relationship"]
    # without a warehouse to read the PCN's practices from, registration finds no one
    assert found["without"] == (0, [])
    assert found["without reads"] == [403, 403, 403]
    assert found["without audit"] == ["no legitimate relationship"] * 3


def test_a_citizen_sets_their_own_sharing_choice_through_the_api(api: Api) -> None:
    for pid, nhs_number in (("cy", NHS_NUMBERS[0]), ("cy-child", NHS_NUMBERS[1])):
        made = api("PUT", f"/Patient/{pid}", user="feed", json={
            "resourceType": "Patient", "id": pid,
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number}],
            "name": [{"family": "Choicecase"}], "gender": "female",
            "generalPractitioner": [{"reference": "Organization/A11111"}],
        })  # fmt: skip
        assert made.status_code == 201, made.text
        api.made(relationship("EpisodeOfCare", pid, "B22222", "active"))
    childs = api.made(objection("cy-child", "A11111"))
    own = citizen_objection("cy", ["A11111"], "2026-06-01T12:00:00Z")

    def problem(resource: dict[str, Any], method: str = "POST", path: str = "/Consent") -> Any:
        answer = api(method, path, json=resource, user="cy")
        assert answer.status_code == 422, answer.text
        issue = answer.json()["issue"][0]
        return issue["expression"][0], issue["diagnostics"]

    # what is not theirs to choose, or not a sharing choice made by them at their practice
    assert problem({**own, "patient": {"reference": "Patient/cy-child"}})[0] == "Consent.patient"
    assert problem({**own, "performer": []})[0] == "Consent.performer"
    elsewhere = {**own, "organization": [{"reference": "Organization/B22222"}]}
    assert problem(elsewhere) == (
        "Consent.organization",
        "your sharing choice is recorded by your registered GP practice: Organization/A11111",
    )
    assert problem({**own, "policy": [{"uri": NDOP}]})[0] == "Consent.scope"
    assert problem({**own, "scope": {"text": "research"}})[0] == "Consent.scope"
    assert api("POST", "/Observation", json=observation("cy"), user="cy").status_code == 403
    assert api.status("/Patient/cy", "gp-b") == 200  # nothing was written

    # an objection: the record is withheld outside their practice at once
    made = api("POST", "/Consent", json=own, user="cy")
    assert made.status_code == 201, made.text
    consent = made.json()["id"]
    _refused(api("GET", "/Patient/cy", user="gp-b"))
    assert api.status("/Patient/cy", "gp-a") == 200
    assert api.status("/Patient/cy", "cy") == 200  # never withheld from them

    # withdrawn by updating it; never deleted; another's choice is not theirs to change
    assert api("DELETE", f"/Consent/{consent}", user="cy").status_code == 403
    withdrawal = {**own, "id": consent, "status": "inactive"}
    assert api("PUT", f"/Consent/{consent}", json=withdrawal, user="cy").status_code == 200
    assert api.status("/Patient/cy", "gp-b") == 200
    over_childs = {**own, "id": childs, "status": "inactive"}
    assert api("PUT", f"/Consent/{childs}", json=over_childs, user="cy").status_code == 403
    assert api.ids("/Consent", "feed", patient="cy-child", status="active")[0] == 1

    # every request audited, with the patient's id only
    audited = [e for e in api.audit("cy") if e["action"].startswith("fhir")]
    assert len(audited) == api.calls["cy"]
    written = [e for e in audited if e["action"] in ("fhir create", "fhir update")]
    assert [
        (e["action"], e["detail"][:3], e["reason"]) for e in written if e["detail"][0] == "2"
    ] == [
        ("fhir create", "201", "legitimate relationship: self"),
        ("fhir update", "200", "legitimate relationship: self"),
    ]
    logged = json.dumps(audited).lower()
    assert not any(n in logged for n in NHS_NUMBERS) and "choicecase" not in logged


def _audit_column(api: Api, user: str, column: str) -> list[str]:
    """One context column (`purpose`, `organisation`) of `user`'s API entries, oldest first."""
    access: AccessStore = api.client.app.state.access  # type: ignore[attr-defined]
    with sqlite3.connect(access.path) as con:
        rows = con.execute(
            f"SELECT {column} FROM audit WHERE username = ? AND action LIKE 'fhir %' "  # noqa: S608
            "ORDER BY seq",
            (user,),
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_a_proxy_reads_the_record_only_while_the_relationship_is_recorded(api: Api) -> None:
    own, stranger = registered(api, NHS_NUMBERS[0]), registered(api, NHS_NUMBERS[2])
    child = registered(api, NHS_NUMBERS[1], born="2018-04-05")  # a parent's: until they are 16
    note = api.made(condition(child, ASTHMA))
    hiv = api.made(condition(child, HIV, by_extension("A11111")))  # sensitive: never a proxy's
    access: AccessStore = api.client.app.state.access  # type: ignore[attr-defined]
    access.add_user("mum", PASSWORD, "citizen", patient_id=own)
    token = api.client.post("/api/v1/token", json={"username": "mum", "password": PASSWORD})
    api.tokens["mum"] = token.json()["access_token"]
    today = datetime.now(UTC).date()

    def reads() -> list[int]:
        return [
            api.status(f"/Patient/{child}", "mum"),
            api.status(f"/Patient/{child}/_history/1", "mum"),
            api.status(f"/Condition/{note}", "mum"),
            api.status(f"/Condition/{note}/_history", "mum"),
            api.status(f"/Patient/{child}/$everything", "mum"),
            api.status(f"/AuditEvent?patient={child}", "mum"),
        ]

    # no relationship recorded: refused on every route, searches find nothing of theirs
    assert reads() == [403] * 6
    assert api.ids("/Condition", "mum", patient=child) == (0, [])

    # recorded through today: the same view a citizen has of their own, less sensitive items
    with pytest.raises(InputError, match="--until"):
        access.set_proxy("mum", child, "parent", until=date(2020, 1, 1))
    access.set_proxy("mum", child, "parent", until=today)
    granted = access.audit_entries(limit=1)[1][0]
    assert (granted["action"], granted["detail"]) == ("proxy granted", f"as parent until {today}")
    assert reads() == [200] * 6
    assert api.ids("/Condition", "mum", patient=child) == (1, [note])  # not the HIV one
    # a search names the relationship of the person it showed, as a read does
    searched = api.audit("mum")[-1]
    assert (searched["action"], searched["reason"]) == (
        "fhir search", "legitimate relationship: proxy as parent,search kept to permitted patients"
    )  # fmt: skip
    everything = api("GET", f"/Patient/{child}/$everything", user="mum").json()
    assert hiv not in {e["resource"]["id"] for e in everything["entry"]}
    _refused_citizen = [
        api("GET", f"/Condition/{hiv}", user="mum"),
        api("GET", f"/Patient/{stranger}", user="mum"),
        api("POST", "/Condition", json=condition(child, ASTHMA), user="mum"),
        api("PUT", f"/Condition/{note}", json={**condition(child, ASTHMA), "id": note}, user="mum"),
        api("DELETE", f"/Condition/{note}", user="mum"),
        api("GET", f"/AuditEvent?patient={stranger}", user="mum"),
    ]
    assert [a.status_code for a in _refused_citizen] == [403] * 6
    assert api.status(f"/Condition/{note}", "feed") == 200  # nothing written or deleted
    ask = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{stranger}"}},
        {"name": "reason", "valueString": REASON},
    ]}  # fmt: skip
    assert api("POST", "/$break-glass", json=ask, user="mum").status_code == 403

    # its last day passes (as it would overnight): refused again at the next request
    with sqlite3.connect(access.path) as con:
        con.execute("UPDATE proxies SET until_date = '2020-01-01' WHERE username = 'mum'")
    assert reads() == [403] * 6
    assert [p.status for p in access.proxies("mum")] == ["expired"]

    # recorded again as carer, then revoked: allowed as carer, then refused
    access.set_proxy("mum", child, "carer")
    assert api.status(f"/Patient/{child}", "mum") == 200
    access.set_proxy("mum", child, "carer", revoke=True)
    assert reads() == [403] * 6
    [listed] = access.proxies("mum")
    assert (listed.relationship, listed.until_date, listed.status) == (
        "carer", None, "revoked"
    )  # fmt: skip

    # every request audited, naming the relationship and the purpose it gave; no identifiers
    audited = [e for e in api.audit("mum") if e["action"].startswith("fhir")]
    assert len(audited) == api.calls["mum"]
    allowed = [e["reason"] for e in audited if e["detail"][:1] == "2"]
    assert set(allowed) == {
        "legitimate relationship: proxy as parent",
        "legitimate relationship: proxy as carer",
        "legitimate relationship: search kept to permitted patients",
        "legitimate relationship: proxy as parent,search kept to permitted patients",
        "records audit: own record",
    }
    refusals = {e["reason"] for e in audited if e["detail"][:3] == "403"}
    assert "no legitimate relationship" in refusals
    assert "withheld: sensitive category hiv recorded by another organisation" in refusals
    reasons = [e["reason"] for e in audited]
    purposes = dict(zip(reasons, _audit_column(api, "mum", "purpose"), strict=True))
    assert purposes["legitimate relationship: proxy as parent"] == "FAMRQT"
    assert purposes["legitimate relationship: proxy as carer"] == "SUPNWK"
    assert purposes["no legitimate relationship"] == "PATRQT"
    logged = json.dumps(access.audit_entries(limit=100000)[1]).lower()
    assert not any(n in logged for n in NHS_NUMBERS) and "orgcase" not in logged


def care_record(kind: str, pid: str, organisation: str) -> dict[str, Any]:
    """A resource a care worker writes, recorded by `organisation` where the rules look."""
    subject = {"reference": f"Patient/{pid}"}
    ours = {"reference": f"Organization/{organisation}"}
    return {
        "CarePlan": {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                     "subject": subject, "author": ours,
                     "title": "Care and support plan (Care Act 2014)"},
        "CareTeam": {"resourceType": "CareTeam", "status": "active", "subject": subject,
                     "managingOrganization": [ours], "participant": [{"member": ours}]},
        "EpisodeOfCare": {"resourceType": "EpisodeOfCare", "status": "active",
                          "patient": subject, "managingOrganization": ours},
        "Encounter": {"resourceType": "Encounter", "status": "finished",
                      "class": {"code": "HH"}, "subject": subject, "serviceProvider": ours,
                      "period": {"start": "2026-05-30T10:00:00Z", "end": "2026-05-30T11:00:00Z"}},
        "ServiceRequest": {"resourceType": "ServiceRequest", "status": "active",
                           "intent": "order", "subject": subject, "requester": ours,
                           "performer": [{"reference": f"Organization/{TRUST}"}]},
    }[kind]  # fmt: skip


CARE_KINDS = ("CarePlan", "CareTeam", "EpisodeOfCare", "Encounter", "ServiceRequest")


def test_a_care_worker_writes_their_organisations_care_records_and_nothing_else(
    api: Api,
) -> None:
    episode, objects, unrelated, glass = (registered(api, n) for n in NHS_NUMBERS[:4])
    for pid in (episode, objects):
        api.made(relationship("EpisodeOfCare", pid, COUNCIL, "active"))
    api.made(objection(objects, "A11111"))
    gps_plan = api.made(care_record("CarePlan", episode, "A11111"))
    note = api.made(condition(episode, ASTHMA))

    def write(method: str, resource: dict[str, Any], rid: str = "", user: str = "carer") -> Any:
        path = f"/{resource['resourceType']}" + (f"/{rid}" if rid else "")
        return api(method, path, json={**resource, **({"id": rid} if rid else {})}, user=user)

    def refused(answer: Any, says: str) -> None:
        assert answer.status_code == 403, answer.text
        assert says in answer.json()["issue"][0]["diagnostics"], answer.text

    # each care type, recorded by the council, for the person it has an open episode with
    made = {}
    for kind in CARE_KINDS:
        answer = write("POST", care_record(kind, episode, COUNCIL))
        assert answer.status_code == 201, (kind, answer.text)
        made[kind] = answer.json()["id"]
    revised = {**care_record("CarePlan", episode, COUNCIL), "status": "revoked"}
    assert write("PUT", revised, made["CarePlan"]).status_code == 200
    assert api("GET", f"/CarePlan/{made['CarePlan']}", user="feed").json()["status"] == "revoked"

    # not theirs to record: other types, another organisation's entry, or no organisation
    for resource in (condition(episode, ASTHMA), observation(episode),
                     objection(episode, COUNCIL)):  # fmt: skip
        refused(write("POST", resource), "not written by the care-worker role")
    refused(write("PUT", {**condition(episode, ASTHMA)}, note), "not written by the care-worker")
    refused(write("POST", care_record("CarePlan", episode, "A11111")), "CarePlan.author")
    unsigned = {k: v for k, v in care_record("Encounter", episode, COUNCIL).items()
                if k != "serviceProvider"}  # fmt: skip
    refused(write("POST", unsigned), "Encounter.serviceProvider")
    refused(write("PUT", care_record("CarePlan", episode, COUNCIL), gps_plan), "CarePlan.author")
    taken = care_record("CarePlan", episode, "A11111")
    refused(write("PUT", taken, made["CarePlan"]), "CarePlan.author")  # not handed to the GP
    refused(api("DELETE", f"/CarePlan/{made['CarePlan']}", user="carer"), "deletes nothing")
    assert api.status(f"/CarePlan/{made['CarePlan']}", "feed") == 200

    # nor for a person without the council's relationship, who objects, or by break-glass
    _refused(write("POST", care_record("CarePlan", unrelated, COUNCIL)))
    _refused(write("POST", care_record("CarePlan", objects, COUNCIL)))
    _break_glass(api, "carer", glass)
    assert api.status(f"/Patient/{glass}", "carer") == 200
    refused(write("POST", care_record("CarePlan", glass, COUNCIL)), "not by break-glass")
    # the practice's own care worker has no relationship with its registered patients
    _refused(write("POST", care_record("CarePlan", episode, "A11111"), user="carer-a"))
    assert api.ids("/CarePlan", "feed", patient=glass) == (0, [])
    assert api.ids("/CarePlan", "feed", patient=unrelated) == (0, [])

    # every request audited: writes by the relationship, refusals by the rule that refused
    audited = [e for e in api.audit("carer") if e["action"].startswith("fhir")]
    assert len(audited) == api.calls["carer"]
    writes = [(e["action"], e["reason"]) for e in audited if e["detail"][:1] == "2"]
    assert writes[: len(CARE_KINDS) + 1] == [
        ("fhir create", "legitimate relationship: episode")
    ] * 5 + [("fhir update", "legitimate relationship: episode")]
    refusals = [e["reason"] for e in audited if e["detail"][:3] == "403"]
    assert refusals == [
        "withheld: care worker write: Condition not theirs",
        "withheld: care worker write: Observation not theirs",
        "withheld: care worker write: Consent not theirs",
        "withheld: care worker write: Condition not theirs",
        "withheld: care worker write: not recorded by their organisation",
        "withheld: care worker write: not recorded by their organisation",
        "withheld: care worker write: not recorded by their organisation",
        "withheld: care worker write: not recorded by their organisation",
        "withheld: care worker write: deletion",
        "no legitimate relationship",
        "withheld: objection to sharing recorded by another organisation",
        "withheld: care worker write: not by break-glass",
    ]
    assert set(_audit_column(api, "carer", "organisation")) == {COUNCIL}
    assert "COC" in _audit_column(api, "carer", "purpose")
    carer_a = [e for e in api.audit("carer-a") if e["action"].startswith("fhir")]
    assert [e["reason"] for e in carer_a] == ["no legitimate relationship"]
