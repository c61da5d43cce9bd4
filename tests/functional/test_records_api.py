"""The FHIR R4 REST API (`/fhir/R4`) end to end over HTTP, on SQLite and on PostgreSQL: UK Core
examples (../shared/specs/uk-core, read by the loader) created, read back and searched;
versions, ETags and If-Match; deletions answered 410; search pages followed by their links;
transactions all or nothing with urn:uuid references rewritten; batches entry by entry;
refusals as OperationOutcomes; a clinician with no relationship refused, and every request in
the audit log with no patient's name or NHS number in it (more on access: test_records_access)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from joinedup.errors import InputError
from joinedup.fhir.validate import NHS_NUMBER_SYSTEM
from joinedup.records import SEARCH_PARAMETERS, RecordStore, read_resource
from joinedup.web.access import AccessStore
from joinedup.web.app import create_app
from joinedup.web.records_api import create_records_app, mount_records
from joinedup.web.settings import WebSettings

PASSWORD = "a long enough password"
BASE = "/fhir/R4"
FHIR_JSON = "application/fhir+json"


class Api:
    """A signed-in client of the API, and the audit log behind it."""

    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    def __call__(
        self, method: str, path: str, *, user: str = "admin", **kwargs: Any
    ) -> Any:  # an httpx.Response
        headers = {"Authorization": f"Bearer {self.tokens[user]}", **kwargs.pop("headers", {})}
        if "json" in kwargs:
            kwargs["content"] = json.dumps(kwargs.pop("json"))
            headers["Content-Type"] = FHIR_JSON
        return self.client.request(method, BASE + path, headers=headers, **kwargs)

    def audit(self) -> list[dict[str, Any]]:
        store: AccessStore = self.client.app.state.access  # type: ignore[attr-defined]
        return store.audit_entries(limit=100000)[1]


@pytest.fixture
def api(records_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = WebSettings(warehouse=tmp_path / "warehouse.duckdb")
    users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    users.add_user("ada", PASSWORD, "admin")
    users.add_user("feed", PASSWORD, "system")
    users.add_user("cai", PASSWORD, "clinician", pcn_code="U12345")
    users.close()
    with RecordStore(records_url) as store, TestClient(create_records_app(settings, store)) as c:
        tokens = {}
        for role, name in (("admin", "ada"), ("system", "feed"), ("clinician", "cai")):
            answer = c.post("/api/v1/token", json={"username": name, "password": PASSWORD})
            assert answer.status_code == 200, answer.text
            tokens[role] = answer.json()["access_token"]
        yield Api(c, tokens)


@pytest.fixture(scope="module")
def examples(uk_core_examples: Path) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(uk_core_examples.glob("*.xml")):
        try:
            found.append((path.name, read_resource(path)))
        except InputError:
            continue
    assert len(found) > 200
    return found


def _content(resource: dict[str, Any]) -> str:
    meta = {
        k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated")
    }
    rest = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    return json.dumps({**rest, **({"meta": meta} if meta else {})}, sort_keys=True)


def _outcome(answer: Any, status: int) -> list[dict[str, Any]]:
    """The issues of an OperationOutcome answered with `status`, checked for its shape."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(FHIR_JSON)
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"], body
    for issue in body["issue"]:
        assert issue["severity"] == "error" and issue["code"] and issue["diagnostics"]
    issues: list[dict[str, Any]] = body["issue"]
    return issues


def _patient(family: str, nhs_number: str = "9000000009") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}],
        "name": [{"family": family, "given": ["Ann"]}],
        "gender": "female",
        "birthDate": "1980-02-03",
    }


def _observation(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2024-01-02",
        "valueQuantity": {"value": 70, "unit": "kg"},
    }


def test_uk_core_examples_round_trip_over_http(api: Api, examples: list[tuple[str, Any]]) -> None:
    created = refused = 0
    for name, resource in examples:
        kind = resource["resourceType"]
        answer = api("POST", f"/{kind}", json=resource)
        if name == "UKCore-Patient-BabyPatient-Example.xml":
            issues = _outcome(answer, 422)
            assert issues[0]["expression"] == ["Patient.identifier[0].value"]
            assert "Modulus 11" in issues[0]["diagnostics"]
            refused += 1
            continue
        if kind == "AuditEvent":  # the audit trail is the server's own: append-only
            assert _outcome(answer, 405)[0]["code"] == "not-supported"
            refused += 1
            continue
        assert answer.status_code == 201, (name, answer.text)
        body = answer.json()
        rid = body["id"]
        assert answer.headers["etag"] == 'W/"1"'
        assert answer.headers["location"].endswith(f"{BASE}/{kind}/{rid}/_history/1")
        assert answer.headers["last-modified"].endswith(" GMT")
        read = api("GET", f"/{kind}/{rid}")
        assert read.status_code == 200 and read.headers["etag"] == 'W/"1"'
        assert _content(read.json()) == _content(resource), name
        assert api("GET", f"/{kind}/{rid}/_history/1").json() == read.json()
        found = api("GET", f"/{kind}", params={"_id": rid}).json()
        assert found["total"] == 1 and found["entry"][0]["resource"]["id"] == rid
        created += 1
    assert refused == 2 and created == len(examples) - 2


def test_versions_if_match_412_and_deleted_410(api: Api) -> None:
    made = api("POST", "/Patient", json=_patient("Version")).json()
    rid = made["id"]
    changed = {**made, "gender": "other"}
    answer = api("PUT", f"/Patient/{rid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert answer.status_code == 200 and answer.headers["etag"] == 'W/"2"'
    assert answer.json()["meta"]["versionId"] == "2"
    stale = api("PUT", f"/Patient/{rid}", json=changed, headers={"If-Match": 'W/"1"'})
    issues = _outcome(stale, 412)
    assert issues[0]["code"] == "conflict" and "version 2" in issues[0]["diagnostics"]
    _outcome(api("PUT", f"/Patient/{rid}", json=changed, headers={"If-Match": "two"}), 400)
    assert api("DELETE", f"/Patient/{rid}").status_code == 204
    gone = _outcome(api("GET", f"/Patient/{rid}"), 410)
    assert gone[0]["code"] == "deleted"
    assert api("GET", f"/Patient/{rid}/_history/2").json()["gender"] == "other"
    _outcome(api("GET", f"/Patient/{rid}/_history/3"), 410)
    _outcome(api("GET", f"/Patient/{rid}/_history/9"), 404)
    history = api("GET", f"/Patient/{rid}/_history").json()
    assert history["type"] == "history" and history["total"] == 3
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT", "POST"]
    assert "resource" not in history["entry"][0]
    assert api("GET", "/Patient", params={"_id": rid}).json()["total"] == 0
    everything = api("GET", "/Patient/_history").json()
    assert everything["total"] == 3
    # an update at a new id creates it (201); one whose id differs from the URL is refused
    again = api("PUT", "/Patient/chosen-id", json={**_patient("Put"), "id": "chosen-id"})
    assert again.status_code == 201 and again.headers["etag"] == 'W/"1"'
    wrong = _outcome(api("PUT", "/Patient/other-id", json={**_patient("Put"), "id": "x"}), 400)
    assert wrong[0]["expression"] == ["Patient.id"]


def test_conditional_create_and_update(api: Api) -> None:
    criteria = f"identifier={NHS_NUMBER_SYSTEM}|9434765919"
    first = api(
        "POST", "/Patient", json=_patient("Cond", "9434765919"), headers={"If-None-Exist": criteria}
    )
    assert first.status_code == 201
    second = api(
        "POST", "/Patient", json=_patient("Cond", "9434765919"), headers={"If-None-Exist": criteria}
    )
    assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
    updated = api("PUT", f"/Patient?{criteria}", json={**_patient("Changed", "9434765919")})
    assert updated.status_code == 200 and updated.json()["id"] == first.json()["id"]
    assert updated.headers["etag"] == 'W/"2"'
    api("POST", "/Patient", json=_patient("Cond", "9434765919"))  # a second match
    issues = _outcome(api("PUT", f"/Patient?{criteria}", json=_patient("X", "9434765919")), 412)
    assert "matches 2" in issues[0]["diagnostics"]


def test_search_pages_follow_their_links(api: Api) -> None:
    made = [api("POST", "/Patient", json=_patient(f"Pager{i}")).json()["id"] for i in range(7)]
    first = api("GET", "/Patient", params={"family": "pager", "_count": "3"})
    assert first.status_code == 200 and first.headers["content-type"].startswith(FHIR_JSON)
    page = first.json()
    assert page["type"] == "searchset" and page["total"] == 7 and len(page["entry"]) == 3
    relations = {link["relation"] for link in page["link"]}
    assert relations == {"self", "next"}
    seen = [e["resource"]["id"] for e in page["entry"]]
    pages = 1
    while True:
        following = next((x["url"] for x in page["link"] if x["relation"] == "next"), None)
        if following is None:
            break
        answer = api.client.get(
            following, headers={"Authorization": f"Bearer {api.tokens['admin']}"}
        )
        page = answer.json()
        assert any(x["relation"] == "previous" for x in page["link"])
        seen += [e["resource"]["id"] for e in page["entry"]]
        pages += 1
    assert pages == 3 and sorted(seen) == sorted(made)
    newest = api("GET", "/Patient", params={"family": "pager", "_sort": "-_lastUpdated"}).json()
    assert [e["resource"]["id"] for e in newest["entry"]] == made[::-1]
    posted = api(
        "POST", "/Patient/_search", content="family=pager&_count=2",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert posted.json()["total"] == 7 and len(posted.json()["entry"]) == 2
    unknown = _outcome(api("GET", "/Patient", params={"shoe-size": "9"}), 400)
    assert "shoe-size" in unknown[0]["expression"][0]
    _outcome(api("GET", "/Patient", params={"_count": "5000"}), 400)
    _outcome(api("GET", "/NotAType", params={"a": "b"}), 400)


def test_transaction_rewrites_urn_uuid_references(api: Api) -> None:
    existing = api("POST", "/Patient", json=_patient("Known", "9434765870")).json()["id"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0c7ea4a9-45f4-4a4e-9e3f-0d6d3f8e7a01",
                "resource": _observation("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                "resource": _patient("Newborn", "9000000009"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:7a3bd5a4-8a43-4a23-b0c8-5b35c4a8d2f1",
                "resource": _patient("Known", "9434765870"),
                "request": {
                    "method": "POST", "url": "Patient",
                    "ifNoneExist": f"identifier={NHS_NUMBER_SYSTEM}|9434765870",
                },
            },
            {
                "resource": _observation("urn:uuid:7a3bd5a4-8a43-4a23-b0c8-5b35c4a8d2f1"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }  # fmt: skip
    answer = api("POST", "", json=bundle)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201 Created", "201 Created", "200 OK", "201 Created"]
    patient = result["entry"][1]["response"]["location"].split("/")[1]
    observation = result["entry"][0]["response"]["location"].split("/")[1]
    read = api("GET", f"/Observation/{observation}").json()
    assert read["subject"]["reference"] == f"Patient/{patient}"
    found = api("GET", "/Observation", params={"patient": f"Patient/{patient}"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [observation]
    known = api("GET", "/Observation", params={"patient": existing}).json()
    assert known["total"] == 1  # the conditional create's urn became the existing patient


def test_transaction_with_a_failing_entry_writes_nothing(api: Api) -> None:
    bad = {**_patient("Broken"), "gender": "not-a-gender"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": _patient("Rollback"),
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": _observation("urn:uuid:1"),
             "request": {"method": "POST", "url": "Observation"}},
            {"resource": bad, "request": {"method": "POST", "url": "Patient"}},
        ],
    }  # fmt: skip
    issues = _outcome(api("POST", "", json=bundle), 422)
    assert issues[0]["expression"] == ["Patient.gender"]
    assert issues[0]["diagnostics"].startswith("transaction entry 2: ")
    assert api("GET", "/Patient/_history").json()["total"] == 0
    assert api("GET", "/Observation/_history").json()["total"] == 0
    dangling = {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [{"resource": _observation("urn:uuid:nowhere"),
                   "request": {"method": "POST", "url": "Observation"}}],
    }  # fmt: skip
    _outcome(api("POST", "", json=dangling), 400)
    _outcome(api("POST", "", json={"resourceType": "Bundle", "type": "collection"}), 400)


def test_batch_answers_each_entry_on_its_own(api: Api) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": _patient("Batch"), "request": {"method": "POST", "url": "Patient"}},
            {"resource": {**_patient("Bad"), "birthDate": "1980-02-30"},
             "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/missing"}},
            {"request": {"method": "GET", "url": "Patient?family=batch"}},
        ],
    }  # fmt: skip
    result = api("POST", "/", json=bundle).json()  # the base with its slash, as fhirpy posts
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"].split()[0] for e in result["entry"]]
    assert statuses == ["201", "422", "404", "200"]
    bad = result["entry"][1]["response"]["outcome"]["issue"][0]
    assert bad["expression"] == ["Patient.birthDate"]
    assert result["entry"][3]["resource"]["total"] == 1


def test_a_clinician_without_a_relationship_is_refused_and_every_request_audited(
    api: Api,
) -> None:
    made = api("POST", "/Patient", json=_patient("Secretname"), user="system")
    assert made.status_code == 201
    rid = made.json()["id"]
    api("GET", "/Patient", params={"identifier": f"{NHS_NUMBER_SYSTEM}|9000000009"})
    refused = _outcome(api("GET", f"/Patient/{rid}", user="clinician"), 403)
    assert refused[0]["code"] == "forbidden"
    assert "no legitimate relationship" in refused[0]["diagnostics"]
    _outcome(api("POST", "/Patient", json=_patient("Other"), user="clinician"), 403)
    anonymous = api.client.get(f"{BASE}/Patient/{rid}")
    assert _outcome(anonymous, 401)[0]["code"] == "login"
    assert anonymous.headers["www-authenticate"] == "Bearer"
    entries = api.audit()
    fhir = [e for e in entries if e["action"].startswith("fhir ")]
    assert len(fhir) == 5
    clinician = [e for e in fhir if e["role"] == "clinician"]
    assert {(e["action"], e["resource"], e["detail"]) for e in clinician} == {
        ("fhir read", f"fhir/Patient/{rid}", "403; forbidden"),
        ("fhir create", "fhir/Patient", "403; forbidden"),
    }
    assert any(
        e["username"] == "feed" and e["role"] == "system" and e["action"] == "fhir create"
        and e["resource"] == f"fhir/Patient/{rid}" and e["detail"] == "201"
        for e in fhir
    )  # fmt: skip
    assert any(
        e["action"] == "fhir search" and e["resource"] == "fhir/Patient?identifier" for e in fhir
    )
    assert any(e["username"] == "-" and e["detail"].startswith("401") for e in fhir)
    logged = json.dumps(entries)
    assert "9000000009" not in logged and "secretname" not in logged.lower()


def test_capability_statement_and_validate(api: Api) -> None:
    answer = api("GET", "/metadata")
    assert answer.status_code == 200
    statement = answer.json()
    CapabilityStatement.model_validate(statement)  # FHIR's own model of it accepts it
    rest = statement["rest"][0]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    names = {p["name"] for p in patient["searchParam"]}
    assert names == {"_id", *SEARCH_PARAMETERS["Patient"]}
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    assert {i["code"] for i in patient["interaction"]} >= {"read", "vread", "create", "update"}
    validate = next(o for o in patient["operation"] if o["name"] == "validate")
    assert "{type}/{id}/$validate" in validate["documentation"]
    good = api("POST", "/Patient/$validate", json=_patient("Valid"))
    assert good.status_code == 200 and good.json()["issue"][0]["severity"] == "information"
    # 200 whether or not the resource is valid (FHIR's Resource-validate); errors name elements
    issues = _outcome(api("POST", "/Patient/$validate", json={**_patient("V"), "gender": "x"}), 200)
    assert issues[0]["expression"] == ["Patient.gender"]
    assert api.audit()[0]["detail"] == "200; invalid Patient.gender"
    assert api("GET", "/Patient", params={"family": "valid"}).json()["total"] == 0
    _outcome(
        api("POST", "/Patient", content=b"{not json", headers={"Content-Type": FHIR_JSON}), 400
    )
    mismatch = _outcome(api("POST", "/Patient", json=_observation("Patient/x")), 400)
    assert mismatch[0]["expression"] == ["resourceType"]
    _outcome(api("GET", "/Patient/no-such-id"), 404)


def test_instance_validate_checks_an_update_of_that_id(api: Api) -> None:
    """`{type}/{id}/$validate`: the resource checked as an update of that id would be, without
    writing; its id must be there and be the URL's (an error naming Patient.id, in a 200 as
    Resource-validate answers); mode, from the URL or the Parameters, only `update`."""
    body = {**_patient("Instance"), "id": "p1"}
    good = api("POST", "/Patient/p1/$validate", json=body)
    assert good.status_code == 200 and good.json()["issue"][0]["severity"] == "information"
    wrapped = {"resourceType": "Parameters", "parameter": [
        {"name": "mode", "valueCode": "update"},
        {"name": "resource", "resource": body},
    ]}  # fmt: skip
    assert api("POST", "/Patient/p1/$validate", json=wrapped).json()["issue"][0]["severity"] == (
        "information"
    )
    other = _outcome(api("POST", "/Patient/p1/$validate", json={**_patient("I"), "id": "p2"}), 200)
    assert other[0]["expression"] == ["Patient.id"] and "differs" in other[0]["diagnostics"]
    assert api.audit()[0]["detail"] == "200; invalid Patient.id"
    assert api.audit()[0]["resource"] == "fhir/Patient/p1"
    missing = _outcome(api("POST", "/Patient/p1/$validate", json=_patient("I")), 200)
    assert missing[0]["expression"] == ["Patient.id"]
    # the store's own checks, as the type-level $validate makes them
    bad = {**_patient("I"), "id": "p1", "gender": "x"}
    assert _outcome(api("POST", "/Patient/p1/$validate", json=bad), 200)[0]["expression"] == [
        "Patient.gender"
    ]
    for mode in ("create", "delete", "profile"):
        refused = _outcome(api("POST", f"/Patient/p1/$validate?mode={mode}", json=body), 400)
        assert refused[0]["expression"] == ["mode"] and mode in refused[0]["diagnostics"]
    in_parameters = {**wrapped, "parameter": [{"name": "mode", "valueCode": "create"}, *wrapped[
        "parameter"][1:]]}  # fmt: skip
    assert _outcome(api("POST", "/Patient/p1/$validate", json=in_parameters), 400)
    mismatch = _outcome(api("POST", "/Patient/p1/$validate", json=_observation("Patient/x")), 400)
    assert mismatch[0]["expression"] == ["resourceType"]
    # nothing written: p1 was never created, and no Patient of that name exists
    _outcome(api("GET", "/Patient/p1"), 404)
    assert api("GET", "/Patient", params={"family": "instance"}).json()["total"] == 0


def test_anything_else_under_the_base_is_an_operation_outcome(api: Api) -> None:
    assert _outcome(api("GET", "/Patient/a/b/c"), 404)[0]["code"] == "not-supported"
    assert _outcome(api("PATCH", "/Patient/a", json=[]), 405)[0]["code"] == "not-supported"
    assert api.audit()[0]["action"] == "fhir unsupported"


@pytest.mark.slow
def test_mounted_in_the_dashboard(web_settings: WebSettings, tmp_path: Path) -> None:
    """`joinedup serve --records`: the dashboard's app with the API beside its pages, signed in
    with the demo `system` user, refusing the demo clinician, audited in the dashboard's log."""
    with RecordStore(tmp_path / "records.sqlite") as store:
        app = create_app(web_settings, warm=False)
        mount_records(app, store)
        with TestClient(app) as client:
            tokens = {
                name: client.post(
                    "/api/v1/token", json={"username": name, "password": f"{name}-demo-2026"}
                ).json()["access_token"]
                for name in ("system", "clinician")
            }
            made = client.post(
                f"{BASE}/Patient", content=json.dumps(_patient("Mounted")),
                headers={"Authorization": f"Bearer {tokens['system']}", "Content-Type": FHIR_JSON},
            )  # fmt: skip
            assert made.status_code == 201, made.text
            assert made.headers["cache-control"] == "no-store"
            refused = client.get(
                made.headers["location"],
                headers={"Authorization": f"Bearer {tokens['clinician']}"},
            )
            assert _outcome(refused, 403)[0]["code"] == "forbidden"
            pages = client.get(
                "/api/v1/overview", headers={"Authorization": f"Bearer {tokens['system']}"}
            )
            assert pages.status_code == 403  # a feed sees no dashboard page
            logged = app.state.access.audit_entries(limit=20)[1]
            assert any(
                e["username"] == "clinician" and e["action"] == "fhir vread"
                and e["detail"] == "403; forbidden"
                for e in logged
            )  # fmt: skip
