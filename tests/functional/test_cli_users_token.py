"""`joinedup users token NAME`: a feed's bearer token issued at the command line, alone on
standard output, that the FHIR API takes, that expires and is revoked, and whose issue is
audited; bad names and lifetimes refused naming the argument."""

from __future__ import annotations

import json
from pathlib import Path

from cli_run import flat, joinedup
from fastapi.testclient import TestClient

from joinedup.records import RecordStore
from joinedup.web.access import AccessStore
from joinedup.web.records_api import create_records_app
from joinedup.web.settings import WebSettings

ENV = {"JOINEDUP_NEW_PASSWORD": "a long enough password"}
PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
    "name": [{"family": "Token", "given": ["Ann"]}],
    "birthDate": "1980-02-03",
}


def test_a_feed_token_from_the_command_line_writes_to_the_fhir_api(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "warehouse.duckdb")
    added = joinedup(
        "users", "add", "feed", "--role", "system", "-w", warehouse, cwd=tmp_path, env=ENV
    )
    assert added.returncode == 0, added.stdout + added.stderr

    issued = joinedup("users", "token", "feed", "--hours", "2", "-w", warehouse, cwd=tmp_path)
    assert issued.returncode == 0, issued.stdout + issued.stderr
    token = issued.stdout.strip()
    assert len(token) >= 40 and "\n" not in token  # the token alone, for TOKEN=$(...)
    assert "valid until" in flat(issued.stderr)

    settings = WebSettings(warehouse=Path(warehouse))
    store = RecordStore(tmp_path / "records.sqlite")
    with store, TestClient(create_records_app(settings, store)) as client:
        made = client.post(
            "/fhir/R4/Patient", content=json.dumps(PATIENT),
            headers={"Authorization": f"Bearer {token}",
                     "Content-Type": "application/fhir+json"},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        wrong = client.get("/fhir/R4/Patient", headers={"Authorization": f"Bearer {token[:-2]}xx"})
        assert wrong.status_code == 401
        revoked = client.delete("/api/v1/token", headers={"Authorization": f"Bearer {token}"})
        assert revoked.status_code == 204
        after = client.get("/fhir/R4/Patient", headers={"Authorization": f"Bearer {token}"})
        assert after.status_code == 401

    access = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    try:
        entries = access.audit_entries(limit=100)[1]
    finally:
        access.close()
    issue = [e for e in entries if e["action"] == "token issued"]
    assert len(issue) == 1 and issue[0]["username"] == "feed"
    assert token not in json.dumps(entries)  # never the token itself


def test_unknown_users_and_bad_lifetimes_are_refused(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "warehouse.duckdb")
    joinedup("users", "add", "feed", "--role", "system", "-w", warehouse, cwd=tmp_path, env=ENV)
    unknown = joinedup("users", "token", "nobody", "-w", warehouse, cwd=tmp_path)
    assert unknown.returncode != 0 and not unknown.stdout.strip()
    assert "'nobody' is not an active user" in flat(unknown.stderr)
    for hours in ("0", "9000"):
        bad = joinedup("users", "token", "feed", "--hours", hours, "-w", warehouse, cwd=tmp_path)
        assert bad.returncode != 0 and not bad.stdout.strip()
        assert "--hours" in flat(bad.stderr) and "at most 8784" in flat(bad.stderr)
