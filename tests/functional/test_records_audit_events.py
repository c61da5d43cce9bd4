"""The records API's audit trail as FHIR AuditEvents, end to end over HTTP on SQLite and
PostgreSQL: a clinician's read is found by the privacy officer by patient, date, agent, action
and outcome, with who, role, organisation, purpose and the patient, and hashes that follow one
another; a refusal is recorded with its outcome; break-glass with purpose BTG; clinicians and
other roles are refused the audit (and that is audited); nobody writes an AuditEvent; a broken
chain is said, not answered; and the log holds no NHS number or name.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from joinedup.fhir.validate import NHS_NUMBER_SYSTEM
from joinedup.records import RecordStore
from joinedup.web.access import AccessStore
from joinedup.web.records_api import create_records_app
from joinedup.web.settings import WebSettings

PASSWORD = "a long enough password"
BASE = "/fhir/R4"
FHIR_JSON = "application/fhir+json"
USERS = {
    "feed": ("system", {}),
    "gp": ("clinician", {"pcn_code": "U11111", "practice_code": "A11111"}),
    "analyst": ("analyst", {}),
    "privacy": ("privacy-officer", {}),
    "admin": ("admin", {}),
}
NHS_NUMBERS = ("9000000009", "9434765919")
FAMILIES = ("Ownpractice", "Otherpractice")
REASON = "Unconscious in the emergency department, no history available"


class Api:
    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    def __call__(self, method: str, path: str, *, user: str | None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        if "json" in kwargs:
            kwargs["content"] = json.dumps(kwargs.pop("json"))
            headers["Content-Type"] = FHIR_JSON
        return self.client.request(method, BASE + path, headers=headers, **kwargs)

    def events(self, user: str = "privacy", **params: str) -> dict[str, Any]:
        answer = self("GET", "/AuditEvent", user=user, params=params)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    @property
    def log(self) -> AccessStore:
        store: AccessStore = self.client.app.state.access  # type: ignore[attr-defined]
        return store


@pytest.fixture(scope="module")
def signed_in(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """An access store with the users signed in, made once (Argon2 is slow on purpose):
    each test copies its files, tokens and all."""
    folder = tmp_path_factory.mktemp("access")
    users = AccessStore(folder / "access.sqlite")
    tokens = {}
    for name, (role, orgs) in USERS.items():
        users.add_user(name, PASSWORD, role, **orgs)
        token = users.sign_in(name, PASSWORD, client="testclient", kind="api").token
        assert token
        tokens[name] = token
    users.close()
    return folder, tokens


def _app(
    signed_in: tuple[Path, dict[str, str]], tmp_path: Path, store: RecordStore
) -> Iterator[Api]:
    folder, tokens = signed_in
    settings = WebSettings(warehouse=tmp_path / "warehouse.duckdb")
    for made in folder.iterdir():  # the database, its audit key (mode 0600 kept) and head
        suffix = made.name.removeprefix("access.sqlite")
        shutil.copy2(made, settings.access_path.with_name(settings.access_path.name + suffix))
    with TestClient(create_records_app(settings, store)) as client:
        yield Api(client, tokens)


@pytest.fixture
def api(records_url: str, tmp_path: Path, signed_in: tuple[Path, dict[str, str]]) -> Iterator[Api]:
    with RecordStore(records_url) as store:
        yield from _app(signed_in, tmp_path, store)


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


def _observation(api: Api, pid: str) -> str:
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-05-01",
        "valueQuantity": {"value": 70, "unit": "kg"},
    }
    made = api("POST", "/Observation", json=resource, user="feed")
    assert made.status_code == 201, made.text
    rid: str = made.json()["id"]
    return rid


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])]


def _chain(event: dict[str, Any]) -> dict[str, Any]:
    (chain,) = [x for x in event["extension"] if x["url"].endswith("/audit-chain")]
    return {
        x["url"]: next(v for k, v in x.items() if k.startswith("value")) for x in chain["extension"]
    }


def _agent(event: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(a for a in event["agent"] if a.get("requestor"))
    return found


def _patients(event: dict[str, Any]) -> set[str]:
    return {
        e["what"]["reference"]
        for e in event["entity"]
        if e.get("role", {}).get("code") == "1" and "what" in e
    }


def _purpose(event: dict[str, Any]) -> str:
    code: str = event["purposeOfEvent"][0]["coding"][0]["code"]
    return code


def _assert_no_identifiers(api: Api) -> None:
    with sqlite3.connect(api.log.path) as con:
        text = json.dumps(con.execute("SELECT * FROM audit").fetchall()).lower()
    for secret in (*NHS_NUMBERS, *FAMILIES):
        assert secret.lower() not in text


def test_a_clinicians_read_is_found_by_the_privacy_officer(api: Api) -> None:
    mine = _patient(api, "A11111", FAMILIES[0], NHS_NUMBERS[0])
    other = _patient(api, "B22222", FAMILIES[1], NHS_NUMBERS[1])
    observation = _observation(api, mine)
    assert api("GET", f"/Patient/{mine}", user="gp").status_code == 200
    assert api("GET", f"/Observation/{observation}", user="gp").status_code == 200
    found = api("GET", "/Observation", params={"code": "27113001"}, user="gp").json()
    assert found["total"] == 1

    by_patient = api.events(patient=f"Patient/{mine}")
    Bundle.model_validate(by_patient)  # a searchset of AuditEvents fhir.resources accepts
    events = _resources(by_patient)
    gp = [e for e in events if _agent(e)["who"]["identifier"]["value"] == "gp"]
    # Newest first: the search, the Observation read, the Patient read, each with the patient.
    assert [(e["action"], e["subtype"][-1]["code"]) for e in gp] == [
        ("E", "search"),
        ("R", "read"),
        ("R", "read"),
    ]
    read = gp[-1]
    AuditEvent.model_validate(read)
    assert read["type"]["code"] == "rest" and read["outcome"] == "0"
    assert read["outcomeDesc"] == "200"
    assert _patients(read) == {f"Patient/{mine}"}
    assert read["entity"][0]["what"]["reference"] == f"Patient/{mine}"  # what was read
    agent = _agent(read)
    assert agent["role"][0]["coding"][0]["code"] == "clinician"
    assert agent["purposeOfUse"][0]["coding"][0]["code"] == "TREAT"
    organisations = [a["who"]["identifier"]["value"] for a in read["agent"] if not a["requestor"]
                     and "identifier" in a.get("who", {})]  # fmt: skip
    assert organisations == ["A11111"]
    assert _purpose(read) == "TREAT"
    assert read["purposeOfEvent"][0]["text"] == "legitimate relationship: registered"
    assert gp[1]["entity"][0]["what"]["reference"] == f"Observation/{observation}"
    # Every entry the feed wrote for this patient is there too: the creates, as C.
    feed = [e for e in events if _agent(e)["who"]["identifier"]["value"] == "feed"]
    assert {e["action"] for e in feed} == {"C"}
    assert len(feed) == 2  # the Patient, the Observation; not the other patient's
    assert all(f"Patient/{other}" not in _patients(e) for e in events)

    # Each AuditEvent gives its place in the chain: consecutive entries' hashes follow.
    chain = sorted((_chain(e) for e in _resources(api.events(_count="1000"))),
                   key=lambda c: c["sequence"])  # fmt: skip
    followed = [
        after["previousHash"] == before["hash"]
        for before, after in itertools.pairwise(chain)
        if after["sequence"] == before["sequence"] + 1
    ]
    assert len(followed) >= 6 and all(followed)
    assert all(len(c["hash"]) == 64 for c in chain)

    # The other filters, and paging (the privacy officer's own searches, which name the
    # patient too, left out by role).
    today = datetime.now(UTC).date()
    care = {"agent-role": "clinician,system"}
    assert api.events(patient=mine, date=f"ge{today}", agent="gp", action="R")["total"] == 2
    assert api.events(patient=mine, date=f"lt{today}")["total"] == 0
    assert api.events(patient=mine, date=f"le{today + timedelta(days=1)}", **care)["total"] == 5
    assert api.events(patient=mine, outcome="4")["total"] == 0
    assert api.events(patient=mine, subtype="search", purpose="TREAT")["total"] == 1
    assert api.events(patient=mine, type="rest", **{"agent-role": "system"})["total"] == 2
    first = api.events(patient=mine, _count="2", **care)
    assert first["total"] == 5 and len(first["entry"]) == 2
    following = api.client.get(
        next(link["url"] for link in first["link"] if link["relation"] == "next"),
        headers={"Authorization": f"Bearer {api.tokens['privacy']}"},
    ).json()
    assert [e["resource"]["id"] for e in following["entry"]] == [e["id"] for e in events[2:4]]
    one = api("GET", f"/AuditEvent/{read['id']}", user="admin")
    assert one.status_code == 200 and one.json() == read

    # Searching the audit is audited: the privacy officer's searches, with the patient.
    reviews = _resources(api.events(agent="privacy", subtype="search", _sort="date"))
    assert reviews and _patients(reviews[0]) == {f"Patient/{mine}"}
    assert _purpose(reviews[0]) == "HCOMPL"
    assert reviews[0]["entity"][0]["name"] == "AuditEvent"
    assert "patient" in reviews[0]["entity"][0]["description"]
    _assert_no_identifiers(api)


def test_refusals_and_break_glass_are_recorded(api: Api) -> None:
    other = _patient(api, "B22222", FAMILIES[1], NHS_NUMBERS[1])
    assert api("GET", f"/Patient/{other}", user="gp").status_code == 403

    refused = _resources(api.events(patient=other, outcome="4"))
    assert len(refused) == 1
    (event,) = refused
    assert event["action"] == "R" and event["outcome"] == "4"
    assert event["outcomeDesc"] == "403; forbidden"
    assert event["purposeOfEvent"][0]["text"] == "no legitimate relationship"
    assert _agent(event)["who"]["identifier"]["value"] == "gp"

    ask = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{other}"}},
        {"name": "reason", "valueString": REASON},
    ]}  # fmt: skip
    assert api("POST", "/$break-glass", json=ask, user="gp").status_code == 201
    assert api("GET", f"/Patient/{other}", user="gp").status_code == 200

    glass = _resources(api.events(patient=other, purpose="BTG", _sort="date"))
    assert [(e["subtype"][-1]["code"], e["action"], e["outcome"]) for e in glass] == [
        ("break-glass", "E", "0"),
        ("read", "R", "0"),
    ]
    for event in glass:
        assert _purpose(event) == "BTG"
        assert _agent(event)["purposeOfUse"][0]["coding"][0]["code"] == "BTG"
        assert event["purposeOfEvent"][0]["text"].startswith("BREAK-GLASS")
        assert _patients(event) == {f"Patient/{other}"}
    care = {"agent-role": "clinician,system"}  # the privacy officer's searches left out
    assert api.events(patient=other, **care)["total"] == 4  # create, refusal, glass, read
    with sqlite3.connect(api.log.path) as con:
        logged = json.dumps(con.execute("SELECT * FROM audit").fetchall())
    assert REASON not in logged  # the stated reason is for the privacy officer's list
    _assert_no_identifiers(api)


def test_only_the_privacy_officer_and_admin_read_and_nobody_writes(api: Api) -> None:
    pid = _patient(api, "A11111", FAMILIES[0], NHS_NUMBERS[0])
    for user in ("gp", "analyst", "feed"):
        answer = api("GET", "/AuditEvent", params={"patient": pid}, user=user)
        assert answer.status_code == 403, answer.text
        assert answer.json()["issue"][0]["code"] == "forbidden"
        assert answer.headers["content-type"] == FHIR_JSON
    assert api("GET", "/AuditEvent/1", user="gp").status_code == 403
    assert api("GET", "/AuditEvent", user=None).status_code == 401
    assert api("GET", "/AuditEvent", user="admin").status_code == 200

    event = {"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded":
             "2026-01-01T00:00:00Z", "agent": [{"requestor": True}], "source": {"observer":
             {"display": "x"}}}  # fmt: skip
    for method, path in (("POST", "/AuditEvent"), ("PUT", "/AuditEvent/1"),
                         ("DELETE", "/AuditEvent/1"), ("PATCH", "/AuditEvent/1")):  # fmt: skip
        answer = api(method, path, json=event, user="admin")
        assert answer.status_code == 405, (method, answer.text)
        assert answer.json()["issue"][0]["code"] == "not-supported"
        assert "append-only" in answer.json()["issue"][0]["diagnostics"]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": event, "request": {"method": "POST", "url": "AuditEvent"}},
    ]}  # fmt: skip
    answer = api("POST", "", json=bundle, user="admin")
    assert answer.status_code == 403
    assert answer.json()["issue"][0]["expression"] == ["Bundle.entry[0]"]
    for name, value in (("date", "yesterday"), ("patient", "not an id!"), ("colour", "red"),
                        ("_count", "5000"), ("action", "X")):  # fmt: skip
        answer = api("GET", "/AuditEvent", params={name: value}, user="privacy")
        assert answer.status_code == 400, (name, answer.text)
        assert answer.json()["issue"][0]["expression"] == [name]

    # The refusals are themselves in the trail, with their outcome.
    tried = _resources(api.events(agent="gp", subtype="search"))
    assert [(e["outcome"], e["outcomeDesc"]) for e in tried] == [("4", "403; forbidden")]
    assert tried[0]["entity"][0]["name"] == "AuditEvent"
    writes = api.events(agent="admin", outcome="4", action="C,U,D")
    assert writes["total"] == 3  # the create, the update and the delete; PATCH is E
    assert api.events(patient=pid, action="C")["total"] == 1  # only the feed's create

    capability = api("GET", "/metadata", user="admin").json()
    (entry,) = [r for r in capability["rest"][0]["resource"] if r["type"] == "AuditEvent"]
    assert [i["code"] for i in entry["interaction"]] == ["read", "vread", "search-type"]
    assert {"patient", "date", "agent", "action", "outcome", "purpose"} <= {
        p["name"] for p in entry["searchParam"]
    }


def test_a_broken_chain_is_said_not_answered(
    tmp_path: Path, signed_in: tuple[Path, dict[str, str]]
) -> None:
    with RecordStore(str(tmp_path / "records.sqlite")) as store:
        for api in _app(signed_in, tmp_path, store):
            assert api.events()["total"] == 0
            pid = _patient(api, "A11111", FAMILIES[0], NHS_NUMBERS[0])
            assert api.events(patient=pid)["total"] == 1
            with sqlite3.connect(api.log.path) as con:  # a forged entry, without the key
                con.execute(
                    "INSERT INTO audit (at, username, role, action, resource, detail, reason, "
                    "client, prev_hash, hash) VALUES ('2026-01-01T00:00:00.000000+00:00', 'x', "
                    "'admin', 'fhir read', 'fhir/Patient/p', '200', '', 'x', 'x', 'y')"
                )
            answer = api("GET", "/AuditEvent", params={"patient": pid}, user="privacy")
            assert answer.status_code == 500
            issue = answer.json()["issue"][0]
            assert issue["code"] == "exception"
            assert "hash chain is broken" in issue["diagnostics"]
            assert api("GET", "/AuditEvent/1", user="privacy").status_code == 500
