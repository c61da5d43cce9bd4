"""Citizen access (issue 16): a person signs in and sees their own record and who has looked at
it. Through the FHIR API, on SQLite and PostgreSQL: a citizen reads and searches their own
Patient and Conditions (rule `self`), is refused another patient's (403, audited as a refusal),
writes nothing, and searches AuditEvent only for their own record, where a clinician's
break-glass read appears. In the dashboard (SQLite): /my-record shows their items with the
organisation that recorded each and the who-looked table; other roles get 403; without a
records store the page says so. An access store from before the citizen role gets the column.
Sharing choices (SQLite): the citizen objects to sharing outside their GP practice and
withdraws it on /my-record; a proxy may not.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from cli_run import PhmWarehouse
from fastapi.testclient import TestClient
from fhir_calls import BASE, created_id, fhir_request
from test_records_access_consent import objection

from joinedup.cli.web import add_demo_users
from joinedup.errors import InputError
from joinedup.fhir.validate import NHS_NUMBER_SYSTEM
from joinedup.records import RecordsSettings, RecordStore
from joinedup.web.access import AccessStore, RecordsAuditQuery, Role
from joinedup.web.app import create_app
from joinedup.web.records_api import create_records_app, mount_records
from joinedup.web.settings import WebSettings
from joinedup.web.site import SESSION_COOKIE

PASSWORD = "a long enough password"
REASON = "Unconscious in the emergency department, no history available"


def _patient(
    practice: str, family: str, nhs_number: str, born: str = "1980-02-03"
) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}],
        "name": [{"family": family, "given": ["Ann"]}],
        "birthDate": born,
        "generalPractitioner": [{"reference": f"Organization/{practice}"}],
    }


def _condition(pid: str, text: str, recorder: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}],
                 "text": text},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": "2020-01-01",
        "asserter": {"reference": f"Organization/{recorder}"},
        "recorder": {"reference": f"Organization/{recorder}"},
    }  # fmt: skip


class Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.tokens: dict[str, str] = {}

    @property
    def log(self) -> AccessStore:
        store: AccessStore = self.client.app.state.access  # type: ignore[attr-defined]
        return store

    def sign_in(self, name: str) -> None:
        answer = self.client.post("/api/v1/token", json={"username": name, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        self.tokens[name] = answer.json()["access_token"]

    def __call__(self, method: str, path: str, *, user: str, **kwargs: Any) -> Any:
        return fhir_request(self.client, self.tokens[user], method, path, **kwargs)

    def created(self, resource: dict[str, Any]) -> str:
        return created_id(self("POST", f"/{resource['resourceType']}", json=resource, user="feed"))


@pytest.fixture
def api(records_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = WebSettings(warehouse=tmp_path / "warehouse.duckdb")
    users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    users.add_user("feed", PASSWORD, "system")
    users.add_user("er", PASSWORD, "clinician", pcn_code="U99999", practice_code="Z99999")
    users.close()
    with RecordStore(records_url) as store, TestClient(create_records_app(settings, store)) as c:
        client = Api(c)
        client.sign_in("feed")
        client.sign_in("er")
        yield client


def test_a_citizen_sees_only_their_own_record_and_its_audit(api: Api) -> None:
    mine = api.created(_patient("A11111", "Own", "9000000009"))
    other = api.created(_patient("B22222", "Other", "9434765919"))
    my_condition = api.created(_condition(mine, "Asthma", "A11111"))
    their_condition = api.created(_condition(other, "Diabetes", "B22222"))
    api.log.add_user("cy", PASSWORD, Role.CITIZEN, patient_id=mine)
    api.sign_in("cy")

    # Their own: the Patient, a Condition by id and every search, kept to them.
    assert api("GET", f"/Patient/{mine}", user="cy").json()["id"] == mine
    assert api("GET", f"/Condition/{my_condition}", user="cy").status_code == 200
    for query, expected in (
        ({"patient": f"Patient/{mine}"}, [my_condition]),
        ({}, [my_condition]),
        ({"patient": f"Patient/{other}"}, []),
    ):
        found = api("GET", "/Condition", params=query, user="cy").json()
        ids = [e["resource"]["id"] for e in found.get("entry", [])]
        assert ids == expected, query
        assert found["total"] == len(ids)
    assert api("GET", "/Patient", user="cy").json()["total"] == 1

    # Anyone else's: refused as without a relationship, whether it exists or not; no writes.
    for path in (f"/Patient/{other}", f"/Condition/{their_condition}", "/Patient/nobody"):
        refused = api("GET", path, user="cy")
        assert refused.status_code == 403, path
        assert "not your record" in refused.json()["issue"][0]["diagnostics"]
        assert "break-glass" not in refused.json()["issue"][0]["diagnostics"]
    assert api("POST", "/Condition", json=_condition(mine, "Hay fever", "A11111"),
               user="cy").status_code == 403  # fmt: skip
    assert api("POST", "/$break-glass", user="cy", json={}).status_code == 403

    entries = [e for e in reversed(api.log.audit_entries(limit=1000)[1]) if e["username"] == "cy"]
    reads = {e["resource"]: e["reason"] for e in entries if e["action"] == "fhir read"}
    assert reads[f"fhir/Patient/{mine}"] == "legitimate relationship: self"
    assert reads[f"fhir/Patient/{other}"] == "no legitimate relationship"
    assert all(e["detail"].startswith("403") for e in entries
               if e["resource"] == f"fhir/Patient/{other}")  # fmt: skip

    # A clinician with no relationship breaks glass and reads the citizen's record.
    grant = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{mine}"}},
            {"name": "reason", "valueString": REASON},
        ],
    }
    assert api("GET", f"/Patient/{mine}", user="er").status_code == 403
    assert api("POST", "/$break-glass", json=grant, user="er").status_code == 201
    assert api("GET", f"/Patient/{mine}", user="er").status_code == 200
    api("GET", f"/Patient/{other}", user="er")  # about the other person only

    # The citizen's AuditEvents: every one names them; the break-glass read is there.
    seen = api("GET", "/AuditEvent", params={"_count": "200"}, user="cy").json()
    events = [e["resource"] for e in seen["entry"]]
    assert seen["total"] == len(events) > 0
    for event in events:
        assert f"Patient/{mine}" in [x.get("what", {}).get("reference") for x in event["entity"]]
    by_er = [e for e in events if e["agent"][0]["who"]["identifier"]["value"] == "er"]
    purposes = {c["code"] for e in by_er for p in e.get("purposeOfEvent", [])
                for c in p["coding"]}  # fmt: skip
    assert "BTG" in purposes
    assert {e["outcome"] for e in by_er} == {"0", "4"}  # refused first, then let in
    # Asking for anyone else's audit is refused; so is reading an entry not about them.
    asked = api("GET", "/AuditEvent", params={"patient": other}, user="cy")
    assert asked.status_code == 403
    theirs = api.log.records_audit(RecordsAuditQuery(patients=(frozenset({other}),)), 1)[1][0]
    assert mine not in theirs["patients"].split()
    assert api("GET", f"/AuditEvent/{theirs['seq']}", user="cy").status_code == 404
    assert api("GET", "/AuditEvent", params={"patient": mine}, user="cy").json()["total"] > 0


def test_a_user_other_than_a_citizen_has_no_patient_and_older_stores_gain_the_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:  # the users table as it was before citizens
        con.execute(
            "CREATE TABLE users (username TEXT PRIMARY KEY, display_name TEXT NOT NULL, "
            "role TEXT NOT NULL, pcn_code TEXT, practice_code TEXT, password_hash TEXT NOT NULL, "
            "demo INTEGER NOT NULL DEFAULT 0, active INTEGER NOT NULL DEFAULT 1, "
            "created_at TEXT NOT NULL)"
        )
        con.execute(
            "INSERT INTO users VALUES ('old', 'Old', 'analyst', NULL, NULL, 'x', 0, 1, '2025')"
        )
    store = AccessStore(path)
    try:
        assert [u.patient_id for u in store.users()] == [None]
        cy = store.add_user("cy", PASSWORD, "citizen", patient_id="p-1")
        assert (cy.patient_id, cy.scope) == ("p-1", "their own record")
        assert {u.username: u.patient_id for u in store.users()} == {"old": None, "cy": "p-1"}
        with pytest.raises(InputError, match="patient"):
            store.add_user("cy2", PASSWORD, "citizen")
        with pytest.raises(InputError, match="only citizens"):
            store.add_user("an", PASSWORD, "analyst", patient_id="p-1")
        with pytest.raises(InputError, match="FHIR id"):
            store.add_user("cy3", PASSWORD, "citizen", patient_id="9000000009 OR 1")
    finally:
        store.close()


# --- the dashboard page ---------------------------------------------------------------------


@pytest.fixture
def page_site(web_warehouse: PhmWarehouse, tmp_path: Path) -> Iterator[TestClient]:
    settings = WebSettings(warehouse=web_warehouse.path, access_db=tmp_path / "access.sqlite")
    app = create_app(settings, warm=False)
    with RecordStore(str(tmp_path / "records.sqlite")) as store:
        mount_records(app, store)
        with TestClient(app) as client:
            yield client


def _browser(client: TestClient, name: str) -> None:
    client.cookies.clear()
    answer = client.post(
        "/login", data={"username": name, "password": PASSWORD}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    client.cookies.set(SESSION_COOKIE, answer.cookies[SESSION_COOKIE])


def test_my_record_page_shows_the_citizens_items_and_who_looked(page_site: TestClient) -> None:
    client = page_site
    log: AccessStore = client.app.state.access  # type: ignore[attr-defined]
    store: RecordStore = client.app.state.records  # type: ignore[attr-defined]
    store.update({"resourceType": "Organization", "id": "A11111", "name": "Riverside Surgery"})
    store.update({"resourceType": "Organization", "id": "Z9", "name": "Coast Hospital ED"})
    mine = store.create(_patient("A11111", "Own", "9000000009")).resource["id"]
    other = store.create(_patient("B22222", "Other", "9434765919")).resource["id"]
    store.create(_condition(mine, "Asthma", "A11111"))
    store.create(_condition(other, "Diabetes", "B22222"))
    store.create({
        "resourceType": "AllergyIntolerance", "patient": {"reference": f"Patient/{mine}"},
        "code": {"text": "Penicillin"}, "recorder": {"reference": "Organization/A11111"},
    })  # fmt: skip
    log.add_user("cy", PASSWORD, "citizen", patient_id=mine, display_name="Cy Citizen")
    log.add_user("er", PASSWORD, "clinician", pcn_code="U9", practice_code="Z9",
                 display_name="Dr Emma Room")  # fmt: skip
    er = client.post("/api/v1/token", json={"username": "er", "password": PASSWORD}).json()
    bearer = {"Authorization": f"Bearer {er['access_token']}", "Content-Type": "application/json"}
    grant = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{mine}"}},
        {"name": "reason", "valueString": REASON}]}  # fmt: skip
    assert client.get(f"{BASE}/Patient/{mine}", headers=bearer).status_code == 403
    assert client.post(f"{BASE}/$break-glass", json=grant, headers=bearer).status_code == 201
    assert client.get(f"{BASE}/Patient/{mine}", headers=bearer).status_code == 200

    # The citizen's home is their record; the other pages are not theirs.
    client.cookies.clear()
    signed = client.post("/login", data={"username": "cy", "password": PASSWORD},
                         follow_redirects=False)  # fmt: skip
    assert signed.headers["location"] == "/my-record"
    page = client.get("/my-record", headers={"accept": "text/html"})
    assert page.status_code == 200, page.text
    text = unescape(page.text)
    assert 'href="/my-record"' in text
    assert "Asthma" in text and "Penicillin" in text and "Diabetes" not in text
    assert "Riverside Surgery (A11111)" in text
    looked = text.split('id="who-looked-table"')[1]
    assert "Dr Emma Room (Clinician)" in looked
    assert "Emergency access (break-glass)" in looked
    body = looked.split("<tbody")[1].split("</tbody>")[0]
    rows = [re.sub(r"<[^>]+>", "|", r) for r in body.split("<tr")[1:]]
    # Newest first: the read by break-glass, the grant, and the refusal before it.
    assert len(rows) == 3, rows
    assert "looked at part of your record" in rows[0] and "|Yes|" in rows[0]
    assert "asked for emergency access" in rows[1]
    assert "looked at part of your record" in rows[2] and "No, refused" in rows[2]
    assert "|Your care|" in rows[2]  # refused, so not by break-glass
    assert "|Coast Hospital ED (Z9)|" in rows[0]  # the clinician's organisation
    assert client.get("/", headers={"accept": "text/html"}).status_code == 403
    assert client.get("/api/v1/overview").status_code == 403
    views = [e for e in log.audit_entries(limit=500)[1] if e["action"] == "my-record view"]
    assert views and views[0]["username"] == "cy" and views[0]["detail"].startswith("200")

    # As a carer for the other person: their record, less the sensitive category.
    store.create({**_condition(other, "HIV infection", "B22222"), "code": {"coding": [HIV]}})
    log.set_proxy("cy", other, "carer")
    theirs = unescape(client.get("/my-record", params={"patient": other}).text)
    assert "Diabetes" in theirs and "HIV" not in theirs and "Asthma" not in theirs
    assert 'id="proxy-note"' in theirs and "Ann Other" in theirs
    assert f'href="/my-record?patient={other}"' in unescape(client.get("/my-record").text)
    stranger = client.get("/my-record", params={"patient": "someone-else"})
    assert stranger.status_code == 403

    # Nobody else has a /my-record.
    _browser(client, "er")
    assert client.get("/my-record", headers={"accept": "text/html"}).status_code == 403


def test_my_record_says_so_without_a_records_store(
    web_warehouse: PhmWarehouse, tmp_path: Path
) -> None:
    settings = WebSettings(warehouse=web_warehouse.path, access_db=tmp_path / "access.sqlite")
    with TestClient(create_app(settings, warm=False)) as client:
        log: AccessStore = client.app.state.access  # type: ignore[attr-defined]
        log.add_user("cy", PASSWORD, "citizen", patient_id="p1")
        _browser(client, "cy")
        page = client.get("/my-record", headers={"accept": "text/html"})
        assert page.status_code == 409
        assert "not connected to the shared care record" in page.text


def test_demo_citizens_only_beside_a_records_store_with_patients(
    web_warehouse: PhmWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOINEDUP_ACCESS_DB", str(tmp_path / "access.sqlite"))
    monkeypatch.delenv("JOINEDUP_RECORDS", raising=False)
    records = str(tmp_path / "records.sqlite")
    assert not [u for u in add_demo_users(web_warehouse.path) if u.role is Role.CITIZEN]
    with RecordStore(records):  # a store with no patients yet
        pass
    assert not [u for u in add_demo_users(web_warehouse.path, records) if u.role is Role.CITIZEN]
    with RecordStore(records) as store:
        patients = [
            _patient("A11111", "One", "9000000009"),
            _patient("A11111", "Two", "9434765919"),
            {"resourceType": "Patient", "gender": "unknown"},
        ]
        ids = sorted(store.create(p).resource["id"] for p in patients)  # the first two by id
    made = add_demo_users(web_warehouse.path, records)
    citizens = {u.username: u.patient_id for u in made if u.role is Role.CITIZEN}
    assert citizens == {"citizen": ids[0], "citizen2": ids[1]}


HIV = {"system": "http://snomed.info/sct", "code": "86406008"}  # shipped sensitive (hiv)
#: A child's birth date: a parent's access ends at their 16th birthday (records.proxy_age).
CHILD_BORN = "2018-04-05"


def test_a_proxy_sees_the_person_they_act_for_less_what_is_withheld(api: Api) -> None:
    parent = api.created(_patient("A11111", "Parent", "9000000009"))
    child = api.created(_patient("A11111", "Child", "9434765919", CHILD_BORN))
    stranger = api.created(_patient("A11111", "Stranger", "9434765870"))
    plain = api.created(_condition(child, "Eczema", "A11111"))
    sensitive = api.created({**_condition(child, "HIV", "A11111"), "code": {"coding": [HIV]}})
    api.log.add_user("pa", PASSWORD, Role.CITIZEN, patient_id=parent)
    api.sign_in("pa")
    assert api("GET", f"/Patient/{child}", user="pa").status_code == 403  # no proxy yet

    user = api.log.set_proxy("pa", child, "parent")
    assert user.proxy_for == frozenset({child})
    granted = api.log.audit_entries(limit=1)[1][0]
    assert (granted["action"], granted["detail"]) == ("proxy granted", "as parent")
    with pytest.raises(InputError, match="relationship"):
        api.log.set_proxy("pa", child, "neighbour")
    with pytest.raises(InputError, match="citizen"):
        api.log.set_proxy("er", child, "parent")

    # every request reads the user afresh: their sessions carry the relationship at once
    assert api("GET", f"/Patient/{child}", user="pa").status_code == 200
    assert api("GET", f"/Condition/{plain}", user="pa").status_code == 200
    assert api("GET", f"/Condition/{sensitive}", user="pa").status_code == 403
    assert api("GET", f"/Patient/{stranger}", user="pa").status_code == 403
    found = api("GET", "/Condition", params={"patient": child}, user="pa").json()
    assert [e["resource"]["id"] for e in found["entry"]] == [plain]
    assert found["total"] == 1  # the sensitive one is not counted either
    assert api("GET", "/Patient", user="pa").json()["total"] == 2  # their own and the child's
    reasons = {
        e["resource"]: e["reason"]
        for e in reversed(api.log.audit_entries(limit=50)[1])  # the newest kept
        if e["username"] == "pa" and e["action"] == "fhir read"
    }
    assert reasons[f"fhir/Patient/{child}"] == "legitimate relationship: proxy as parent"
    assert api("GET", "/AuditEvent", params={"patient": child}, user="pa").status_code == 200
    assert api("GET", "/AuditEvent", params={"patient": stranger}, user="pa").status_code == 403

    # The child objects to sharing: withheld from the proxy too. Then revoked: refused.
    api.created(objection(child, "A11111"))
    assert api("GET", f"/Patient/{child}", user="pa").status_code == 403
    assert api("GET", "/Condition", params={"patient": child}, user="pa").json()["total"] == 0
    api.log.set_proxy("pa", child, "parent", revoke=True)
    assert api.log.audit_entries(limit=1)[1][0]["action"] == "proxy revoked"
    api.sign_in("pa")
    assert api("GET", "/Patient", user="pa").json()["total"] == 1


def _choose(client: TestClient, choice: str, **form: str) -> Any:
    page = client.get("/my-record", headers={"accept": "text/html"})
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text
    return client.post(
        "/my-record/sharing", data={"csrf": csrf.group(1), "choice": choice, **form},
        follow_redirects=False,
    )  # fmt: skip


def test_a_citizen_objects_to_sharing_and_withdraws_it(page_site: TestClient) -> None:
    client = page_site
    log: AccessStore = client.app.state.access  # type: ignore[attr-defined]
    store: RecordStore = client.app.state.records  # type: ignore[attr-defined]
    store.update({"resourceType": "Organization", "id": "A11111", "name": "Riverside Surgery"})
    mine = store.create(_patient("A11111", "Own", "9000000009")).resource["id"]
    child = store.create(_patient("A11111", "Child", "9434765919", CHILD_BORN)).resource["id"]
    store.create({
        "resourceType": "EpisodeOfCare", "status": "active",
        "patient": {"reference": f"Patient/{mine}"},
        "managingOrganization": {"reference": "Organization/H1"},
        "period": {"start": "2026-01-01"},
    })  # fmt: skip
    log.add_user("cy", PASSWORD, "citizen", patient_id=mine)
    log.add_user("gp", PASSWORD, "clinician", pcn_code="U1", practice_code="A11111")
    log.add_user("ward", PASSWORD, "clinician", pcn_code="U2", practice_code="H1")
    bearer = {}
    for name in ("gp", "ward"):
        token = client.post("/api/v1/token", json={"username": name, "password": PASSWORD})
        bearer[name] = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def status(name: str) -> int:
        return int(client.get(f"{BASE}/Patient/{mine}", headers=bearer[name]).status_code)

    assert (status("gp"), status("ward")) == (200, 200)  # registered; an open episode

    _browser(client, "cy")
    page = unescape(client.get("/my-record").text)
    assert 'data-objected="no"' in page and "not objected to sharing your record" in page
    assert "Riverside Surgery (A11111)" in page.split('id="sharing-choice"')[1]
    assert 'href="https://www.nhs.uk/your-nhs-data-matters/"' in page

    # Without the form's token: refused, nothing written.
    refused = client.post("/my-record/sharing", data={"csrf": "x", "choice": "object"})
    assert refused.status_code == 403 and not store.objections(mine)

    made = _choose(client, "object")
    assert (made.status_code, made.headers["location"]) == (303, "/my-record#sharing")
    assert store.objections(mine) == [frozenset({"A11111"})]
    consent = store.search("Consent", [("patient", f"Patient/{mine}")]).resources[0]
    assert consent["performer"] == [{"reference": f"Patient/{mine}"}]
    assert (status("gp"), status("ward")) == (200, 403)  # the hospital is outside the practice
    page = unescape(client.get("/my-record").text)
    assert 'data-objected="yes"' in page and "You have objected to sharing your record" in page
    assert "Only staff at Riverside Surgery (A11111)" in page
    assert "emergency access (break-glass)" in page and "Withdraw my objection" in page
    assert "changed the sharing choices" in page.split('id="who-looked-table"')[1]
    assert _choose(client, "object").status_code == 303  # again: nothing more written
    assert len(store.search("Consent", [("patient", f"Patient/{mine}")]).resources) == 1

    # A proxy sees the child's choice but may not change it.
    log.set_proxy("cy", child, "parent")
    theirs = unescape(client.get("/my-record", params={"patient": child}).text)
    assert "They have not objected" in theirs and 'id="sharing-form"' not in theirs
    ends = theirs.split('id="access-ends">')[1].split("</p>")[0]  # when, and why
    assert "as their parent ends after 2034-04-04, the day before the person's 16th" in ends
    proxy = _choose(client, "object", patient=child)
    assert proxy.status_code == 403 and "Only the person themselves" in proxy.text
    assert not store.objections(child)

    withdrawn = _choose(client, "withdraw")
    assert withdrawn.status_code == 303 and not store.objections(mine)
    history = store.history("Consent", consent["id"])
    assert [h.resource["status"] for h in history if h.resource] == ["inactive", "active"]
    assert (status("gp"), status("ward")) == (200, 200)
    assert 'data-objected="no"' in client.get("/my-record").text
    assert _choose(client, "nonsense").status_code == 400

    mine_only = RecordsAuditQuery(patients=(frozenset({mine}),))
    changes = [(e["action"], e["resource"], e["detail"][:3], e["patients"])
               for e in log.records_audit(mine_only, 100)[1]
               if e["reason"] == "self; sharing choice"]  # fmt: skip
    assert changes == [("fhir update", f"fhir/Consent/{consent['id']}", "200", mine),
                       ("fhir create", f"fhir/Consent/{consent['id']}", "201", mine)]  # fmt: skip
    entries = [e for e in log.audit_entries(limit=200)[1] if e["username"] == "cy"]
    refusals = [e["detail"] for e in entries if e["reason"] == "sharing choice refused"]
    assert refusals == ["400; bad choice", "403; not their own record"]
    assert not any("9000000009" in str(e) or "Own" in str(e) for e in entries)


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February: the day after, still that age
        return date(day.year - years, 3, 1)


def test_the_proxy_and_the_person_are_told_before_a_review_or_the_end(
    page_site: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NHS England's DAPB3051 7.2 and 7.3: proxies and patients are told ahead of a review
    or an end. Within JOINEDUP_RECORDS_PROXY_NOTICE_DAYS (30) of the child's 11th birthday the
    parent's page for them, and the child's own page, say when and why; further off, nothing;
    renewed, the end at 16 is told the same way when it comes near."""
    client = page_site
    log: AccessStore = client.app.state.access  # type: ignore[attr-defined]
    store: RecordStore = client.app.state.records  # type: ignore[attr-defined]
    today = datetime.now(UTC).date()
    soon = _years_before(today + timedelta(days=10), 11)  # 11 in 10 days
    later = _years_before(today + timedelta(days=45), 11)  # 11 in 45 days
    leaving = _years_before(today + timedelta(days=20), 16)  # 16 in 20 days
    mum = store.create(_patient("A11111", "Mum", "9000000009")).resource["id"]
    kids = {
        born: store.create(_patient("A11111", "Kid", nhs, born.isoformat())).resource["id"]
        for born, nhs in ((soon, "9434765919"), (later, "9434765870"), (leaving, "9449306060"))
    }
    log.add_user("mum", PASSWORD, "citizen", patient_id=mum, display_name="Mum Kid")
    log.add_user("kid", PASSWORD, "citizen", patient_id=kids[soon])
    log.add_user("admin1", PASSWORD, "admin")
    policy = client.app.state.records_policy  # type: ignore[attr-defined]
    for pid in kids.values():
        log.set_proxy("mum", pid, "parent")
    end = policy.proxy_age_end(kids[leaving], "parent")
    log.renew_proxy("mum", kids[leaving], "admin1", registered=frozenset(), age_check=lambda: end)

    _browser(client, "mum")
    page = unescape(client.get("/my-record", params={"patient": kids[soon]}).text)
    notice = page.split('id="access-notice"')[1].split("</div>")[0]
    assert f"comes up for review on {today + timedelta(days=10)}" in notice
    assert "the person's 11th birthday" in notice and "ask the practice" in notice
    page = unescape(client.get("/my-record", params={"patient": kids[later]}).text)
    assert 'id="access-notice"' not in page  # 45 days off: not yet
    page = unescape(client.get("/my-record", params={"patient": kids[leaving]}).text)
    notice = page.split('id="access-notice"')[1].split("</div>")[0]
    last = today + timedelta(days=19)
    assert f"ends after {last} (the day before the person's 16th birthday)" in notice

    # a carer's access to an adult, to a day recorded with --until: told as it nears
    gran = store.create(_patient("A11111", "Gran", "9449304130", "1950-03-04")).resource["id"]
    log.set_proxy("mum", gran, "carer", until=today + timedelta(days=5))
    page = unescape(client.get("/my-record", params={"patient": gran}).text)
    notice = page.split('id="access-notice"')[1].split("</div>")[0]
    assert f"as their carer ends after {today + timedelta(days=5)} (the last day recorded" in notice

    _browser(client, "kid")  # the child, signed in to their own record
    page = unescape(client.get("/my-record").text)
    notice = page.split('id="access-notice"')[1].split("</div>")[0]
    assert "Mum Kid's access to your record as your parent comes up for review on" in notice

    # a longer notice period reaches the one 45 days off (read when the server starts)
    monkeypatch.setenv("JOINEDUP_RECORDS_PROXY_NOTICE_DAYS", "60")
    wider = RecordsSettings().records_proxy_notice_days
    client.app.state.records_policy.proxy_notice_days = wider  # type: ignore[attr-defined]
    _browser(client, "mum")
    page = unescape(client.get("/my-record", params={"patient": kids[later]}).text)
    assert f"comes up for review on {today + timedelta(days=45)}" in page
    entries = log.audit_entries(limit=500)[1]
    assert not any(d.isoformat() in json.dumps(entries) for d in (soon, later, leaving))
