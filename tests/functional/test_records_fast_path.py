"""The short path to reads and searches (records_api/fast_path.py) answers every GET exactly
as FastAPI's routes do: the same status, headers that matter, body and audit entry for the
URLs it takes (search, read) and for those other routes take first (AuditEvent, `$export`,
`metadata`, `_history`, `$everything`), for an unrestricted user, a clinician without a
relationship and a request without a token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from joinedup.records import RecordStore, Update
from joinedup.web.access import AccessStore
from joinedup.web.records_api import create_records_app
from joinedup.web.records_api.fast_path import FastReads, interaction
from joinedup.web.settings import WebSettings

PASSWORD = "a long enough password"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
#: GET URLs under /fhir/R4 of every route's shape, the short path's and the others'.
PATHS = [
    "/Patient",
    "/Patient?identifier=" + NHS + "|9990000018",
    "/Condition?patient=Patient/p1",
    "/Condition?patient=Patient/p1&_count=1",
    "/Condition?bogus=1",
    "/Patient/p1",
    "/Patient/missing",
    "/Condition/c1",
    "/NotAType",
    "/NotAType/x",
    "/Patient/_search",
    "/metadata",
    "/AuditEvent",
    "/AuditEvent/1",
    "/AuditEvent/_history",
    "/Patient/_history",
    "/Patient/p1/_history",
    "/Patient/p1/_history/1",
    "/Patient/p1/$everything",
    "/$export",
    "/Patient/$export",
    "/$export-status/nothing",
    "/$export-file/nothing/Patient.ndjson",
    "/Patient/",
    "/Patient/p1/",
]
#: Headers a client acts on (the date and length may differ between two answers).
HEADERS = (
    "content-type", "etag", "last-modified", "location", "www-authenticate", "cache-control",
    "content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy",
)  # fmt: skip


def _served(
    tmp: Path, store: RecordStore, fast: bool, stack: ExitStack
) -> tuple[TestClient, dict[str, str]]:
    settings = WebSettings(warehouse=tmp / "warehouse.duckdb")
    users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    users.add_user("ada", PASSWORD, "admin")
    users.add_user("cai", PASSWORD, "clinician", practice_code="Y00001")
    users.close()
    app: FastAPI = create_records_app(settings, store)
    if not fast:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not FastReads]
    client = stack.enter_context(TestClient(app))
    tokens = {"": ""}
    for name in ("ada", "cai"):
        answer = client.post("/api/v1/token", json={"username": name, "password": PASSWORD})
        tokens[name] = answer.json()["access_token"]
    return client, tokens


@pytest.fixture
def both(tmp_path: Path) -> Iterator[dict[bool, tuple[TestClient, dict[str, str]]]]:
    with RecordStore(tmp_path / "records.sqlite") as store, ExitStack() as stack:
        store.transaction(
            [
                Update({"resourceType": "Patient", "id": "p1", "gender": "female",
                        "identifier": [{"system": NHS, "value": "9990000018"}]}),
                Update({"resourceType": "Condition", "id": "c1",
                        "subject": {"reference": "Patient/p1"}}),
                Update({"resourceType": "Condition", "id": "c2",
                        "subject": {"reference": "Patient/p1"}}),
            ]
        )  # fmt: skip
        yield {
            fast: _served(tmp_path / ("fast" if fast else "routed"), store, fast, stack)
            for fast in (True, False)
        }


def _seen(client: TestClient, path: str, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = client.get("/fhir/R4" + path, headers=headers)
    body: Any = answer.text
    if answer.headers.get("content-type", "").startswith("application/fhir+json"):
        body = _stable(json.loads(answer.text))
    return {
        "status": answer.status_code,
        "headers": {k: answer.headers.get(k) for k in HEADERS},
        "body": body,
    }


def _stable(body: dict[str, Any]) -> dict[str, Any]:
    """`body` less what differs between two servers answering alike: a Bundle's id, the
    CapabilityStatement's date, and each AuditEvent's instant and hash chain (each server
    has its own log)."""
    body.pop("date", None)
    if body.get("resourceType") == "Bundle":
        body.pop("id", None)
        for entry in body.get("entry", []):
            _stable(entry.get("resource", {}))
    if body.get("resourceType") == "AuditEvent":
        for volatile in ("recorded", "meta", "extension"):
            body.pop(volatile, None)
    return body


def _audit(client: TestClient) -> list[tuple[str, ...]]:
    store: AccessStore = client.app.state.access  # type: ignore[attr-defined]
    entries = store.audit_entries(limit=10000)[1]
    keys = ("username", "role", "action", "resource", "detail", "reason", "purpose", "patients")
    return [tuple(str(e.get(k)) for k in keys) for e in reversed(entries)]


def test_reads_and_searches_are_answered_as_the_routes_answer_them(
    both: dict[bool, tuple[TestClient, dict[str, str]]],
) -> None:
    taken = 0
    for user in ("ada", "cai", ""):
        for path in PATHS:
            seen = {
                fast: _seen(client, path, tokens[user]) for fast, (client, tokens) in both.items()
            }
            assert seen[True] == seen[False], (user, path)
            taken += interaction("/fhir/R4" + path.split("?")[0]) is not None
    assert _audit(both[True][0]) == _audit(both[False][0])
    # the short path did answer the reads and searches (and only those)
    assert taken == 3 * 11
    assert interaction("/fhir/R4/Patient/p1") == ("Patient", "p1")
    assert interaction("/fhir/R4/metadata") is None
