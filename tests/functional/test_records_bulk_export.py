"""SMART/HL7 FHIR Bulk Data `$export` on the records API end to end over HTTP, on SQLite and
PostgreSQL: kick-off, status polling, the manifest and its NDJSON files; `_type`, `_since` and
`Patient/$export`; bad parameters named; only the system and admin roles export, only whoever
started an export (or an admin) reads it; cancelling and expiry remove the files; every request
audited with no patient's name or NHS number; and the UK Core examples exported and loaded with
the load that `joinedup records load` runs into a fresh store come back identical, as do the
demo population's records exported from the demo's SQLite store into a fresh PostgreSQL one."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cli_run import flat
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from joinedup.cli.main import app as cli
from joinedup.cli.records import load_demo_records
from joinedup.fhir.validate import NHS_NUMBER_SYSTEM
from joinedup.records import RecordStore
from joinedup.records.bulk import load
from joinedup.records.exports import Exports
from joinedup.web.access import AccessStore
from joinedup.web.records_api import create_records_app
from joinedup.web.settings import WebSettings

PASSWORD = "a long enough password"
BASE = "/fhir/R4"
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
USERS = (("ada", "admin"), ("feed", "system"), ("other", "system"), ("cai", "clinician"))
NHS_NUMBER = "9000000009"
FAMILY = "Exportwright"
#: The demo build of the acceptance round trip, and the people whose records it loads: the
#: smallest whose two demo PCNs give both clinicians patients (10 people give none).
DEMO_PEOPLE = 500
DEMO_RECORDS = 40


class Clock:
    """The exports' clock, moved on by a test to expire a finished export."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


class Api:
    """Signed-in clients of the API, the exports behind it and its audit log."""

    def __init__(self, client: TestClient, tokens: dict[str, str], exports: Exports) -> None:
        self.client = client
        self.tokens = tokens
        self.exports = exports

    def __call__(self, method: str, url: str, *, user: str | None = "feed", **kwargs: Any) -> Any:
        headers = {**kwargs.pop("headers", {})}
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        if "json" in kwargs:
            kwargs["content"] = json.dumps(kwargs.pop("json"))
            headers["Content-Type"] = "application/fhir+json"
        full = url if url.startswith("http") else BASE + url
        return self.client.request(method, full, headers=headers, **kwargs)

    def kick_off(self, url: str, user: str = "feed") -> str:
        answer = self("GET", url, user=user, headers=ASYNC)
        assert answer.status_code == 202, answer.text
        status_url: str = answer.headers["Content-Location"]
        assert status_url.startswith(f"http://testserver{BASE}/$export-status/")
        return status_url

    def finished(self, status_url: str, user: str = "feed") -> dict[str, Any]:
        """Poll until the export is done; its manifest."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = self("GET", status_url, user=user)
            if answer.status_code != 202:
                assert answer.status_code == 200, answer.text
                assert answer.headers["content-type"].startswith("application/json")
                manifest: dict[str, Any] = answer.json()
                return manifest
            assert answer.headers["X-Progress"].endswith("resources written")
            time.sleep(0.05)
        raise AssertionError("the export did not finish in 30 s")

    def audit(self) -> list[dict[str, Any]]:
        store: AccessStore = self.client.app.state.access  # type: ignore[attr-defined]
        return store.audit_entries(limit=100000)[1]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The users' access store, made once (hashing their passwords is slow) and copied."""
    folder = tmp_path_factory.mktemp("site")
    settings = WebSettings(warehouse=folder / "warehouse.duckdb")
    users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    for name, role in USERS:
        users.add_user(name, PASSWORD, role, pcn_code="U12345" if role == "clinician" else None)
    users.close()
    return folder


def _app(records_url: str, site: Path, tmp_path: Path, clock: Clock) -> Iterator[Api]:
    shutil.copytree(site, tmp_path / "site")
    settings = WebSettings(warehouse=tmp_path / "site" / "warehouse.duckdb")
    users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    tokens = {name: users.issue_token(name, 1)[1] for name, _ in USERS}
    users.close()
    with RecordStore(records_url) as store:
        exports = Exports(store, tmp_path / "exports", timedelta(hours=1), clock=clock)
        with TestClient(create_records_app(settings, store, exports=exports)) as client:
            yield Api(client, tokens, exports)


@pytest.fixture
def api(records_url: str, site: Path, tmp_path: Path, clock: Clock) -> Iterator[Api]:
    yield from _app(records_url, site, tmp_path, clock)


def _patient(rid: str, family: str = FAMILY) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": rid,
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": NHS_NUMBER}],
        "name": [{"family": family, "given": ["Ann"]}],
        "gender": "female",
        "birthDate": "1980-02-03",
    }


def _observation(rid: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2024-01-02",
        "valueQuantity": {"value": 70, "unit": "kg"},
    }


def _put(api: Api, resource: dict[str, Any]) -> dict[str, Any]:
    answer = api("PUT", f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert answer.status_code in (200, 201), answer.text
    stored: dict[str, Any] = answer.json()
    return stored


def _small_record(api: Api) -> None:
    for rid in ("p1", "p2", "p3"):
        _put(api, _patient(rid))
    _put(api, _observation("o1", "p1"))
    _put(api, _observation("o2", "p2"))
    _put(api, {"resourceType": "Organization", "id": "org1", "name": "A practice"})


def _issue(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    issue: dict[str, Any] = body["issue"][0]
    return issue


def _lines(api: Api, url: str, user: str = "feed") -> list[dict[str, Any]]:
    answer = api("GET", url, user=user)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+ndjson")
    return [json.loads(line) for line in answer.text.splitlines()]


def test_kick_off_poll_manifest_download_and_cancel(api: Api, tmp_path: Path) -> None:
    _small_record(api)
    status_url = api.kick_off("/$export")
    manifest = api.finished(status_url)
    assert manifest["request"] == f"http://testserver{BASE}/$export"
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    assert datetime.fromisoformat(manifest["transactionTime"]).tzinfo is not None
    outputs = {o["type"]: o for o in manifest["output"]}
    assert {k: o["count"] for k, o in outputs.items()} == {
        "Observation": 2, "Organization": 1, "Patient": 3,
    }  # fmt: skip
    patients = _lines(api, outputs["Patient"]["url"])
    assert [p["id"] for p in patients] == ["p1", "p2", "p3"]
    assert patients[0]["name"][0]["family"] == FAMILY
    assert [o["subject"] for o in _lines(api, outputs["Observation"]["url"])] == [
        {"reference": "Patient/p1"}, {"reference": "Patient/p2"},
    ]  # fmt: skip

    # the token is required, and only whoever started the export (or an admin) reads it
    assert api("GET", outputs["Patient"]["url"], user=None).status_code == 401
    assert _issue(api("GET", outputs["Patient"]["url"], user="other"), 404)["code"] == "not-found"
    assert _issue(api("GET", status_url, user="other"), 404)["code"] == "not-found"
    assert len(_lines(api, outputs["Patient"]["url"], user="ada")) == 3
    assert api("GET", status_url, user="ada").status_code == 200
    assert api("GET", status_url.replace("status", "file") + "/Condition.ndjson").status_code == 404

    # cancelling removes the files; the status and file URLs are then gone
    job_folder = tmp_path / "exports" / status_url.rsplit("/", 1)[1]
    assert (job_folder / "Patient.ndjson").is_file()
    assert api("DELETE", status_url).status_code == 202
    assert not job_folder.exists()
    assert api("GET", status_url).status_code == 404
    assert api("GET", outputs["Patient"]["url"]).status_code == 404

    entries = [e for e in api.audit() if e["action"].startswith("fhir export")]
    actions = [e["action"] for e in reversed(entries)]
    assert actions[0] == "fhir export" and "fhir export-status" in actions
    assert actions.count("fhir export-file") == 7 and actions[-1] == "fhir export-file"
    assert "fhir export-cancel" in actions
    assert all(e["username"] in ("feed", "other", "ada", "-") for e in entries)
    refused = [e for e in entries if e["username"] == "other"]
    assert refused and all(e["detail"].startswith("404") for e in refused)
    log = json.dumps(api.audit())
    assert NHS_NUMBER not in log and FAMILY not in log


def test_type_since_patient_export_and_expiry(api: Api, tmp_path: Path, clock: Clock) -> None:
    _small_record(api)
    changed = _put(api, {**_patient("p2"), "gender": "unknown"})
    since = changed["meta"]["lastUpdated"]

    manifest = api.finished(api.kick_off(f"/$export?_type=Patient&_since={since}"))
    assert [(o["type"], o["count"]) for o in manifest["output"]] == [("Patient", 1)]
    assert [p["gender"] for p in _lines(api, manifest["output"][0]["url"])] == ["unknown"]

    manifest = api.finished(api.kick_off("/$export?_type=Observation,Organization"))
    assert [(o["type"], o["count"]) for o in manifest["output"]] == [
        ("Observation", 2), ("Organization", 1),
    ]  # fmt: skip

    # Patient/$export: the patients' records, not the directory
    manifest = api.finished(
        api.kick_off("/Patient/$export?_outputFormat=application%2Ffhir%2Bndjson")
    )
    assert [o["type"] for o in manifest["output"]] == ["Observation", "Patient"]
    refused = _issue(api("GET", "/Patient/$export?_type=Organization", headers=ASYNC), 400)
    assert refused["expression"] == ["_type"]

    # bad parameters are named
    for url, headers, named in (
        ("/$export", {}, "Prefer"),
        ("/$export?_outputFormat=text/csv", ASYNC, "_outputFormat"),
        ("/$export?_type=Patient,Nonsense", ASYNC, "_type"),
        ("/$export?_since=yesterday", ASYNC, "_since"),
        ("/$export?_since=2024-01-01T00:00:00", ASYNC, "_since"),
        ("/$export?_typeFilter=Patient%3Fgender%3Dfemale", ASYNC, "_typeFilter"),
    ):
        assert _issue(api("GET", url, headers=headers), 400)["expression"] == [named], url

    # a finished export's files are removed once the retention has passed
    folder = tmp_path / "exports"
    assert len([p for p in folder.iterdir() if p.is_dir()]) == 3
    assert len(list(folder.glob("*.json"))) == 3  # one job file each
    clock.at += timedelta(hours=1, seconds=1)
    assert api("GET", manifest["output"][0]["url"]).status_code == 404
    assert [p.name for p in folder.iterdir()] == [".jobs.lock"]


def test_clinicians_may_not_export_and_the_operation_is_declared(api: Api) -> None:
    rest = api("GET", "/metadata").json()["rest"][0]
    assert [o["name"] for o in rest["operation"]] == ["export"]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert "export" in [o["name"] for o in patient["operation"]]
    _small_record(api)
    for url in ("/$export", "/Patient/$export"):
        refused = _issue(api("GET", url, user="cai", headers=ASYNC), 403)
        assert refused["code"] == "forbidden" and "system and admin" in refused["diagnostics"]
    status_url = api.kick_off("/$export?_type=Patient")
    api.finished(status_url)
    assert api("GET", status_url, user="cai").status_code == 403
    assert api("DELETE", status_url, user="cai").status_code == 403
    mine = [e for e in api.audit() if e["username"] == "cai" and "export" in e["action"]]
    assert len(mine) == 4
    assert all(e["detail"].startswith("403") for e in mine)
    assert all(e["reason"] == "bulk export: role not allowed" for e in mine)


def test_one_export_at_a_time_progress_and_cancel_while_running(
    postgresql_server: Any, site: Path, tmp_path: Path, clock: Clock
) -> None:
    """On PostgreSQL, with the resources table locked so the export waits: the status says
    it is running, a second kick-off by the same user is refused (429), and a cancel stops
    it and leaves no files once the lock is let go."""
    name = f"records_export_lock_{time.monotonic_ns()}"
    url = postgresql_server.create_database(name)
    for api in _app(url, site, tmp_path, clock):
        _small_record(api)
        conninfo = (
            f"host={postgresql_server.socket_dir} port={postgresql_server.port} "
            f"user={postgresql_server.superuser} dbname={name}"
        )
        with psycopg.connect(conninfo) as lock:
            lock.execute("LOCK TABLE resources IN ACCESS EXCLUSIVE MODE")
            status_url = api.kick_off("/$export")
            running = api("GET", status_url)
            assert running.status_code == 202
            assert running.headers["X-Progress"] == "0 resources written"
            busy = _issue(api("GET", "/$export", headers=ASYNC), 429)
            assert busy["code"] == "throttled" and status_url in busy["diagnostics"]
            assert (
                api("GET", "/$export?_type=Patient", user="other", headers=ASYNC).status_code == 202
            )
            assert api("DELETE", status_url).status_code == 202
            assert api("GET", status_url).status_code == 404
            lock.rollback()
        deadline = time.monotonic() + 10
        folder = tmp_path / "exports"
        job = status_url.rsplit("/", 1)[1]
        while any(job in p.name for p in folder.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(job in p.name for p in folder.iterdir())
        # the same user may start again
        api.finished(api.kick_off("/$export?_type=Organization"))


def _canonical(resource: dict[str, Any], *, keep_version: bool = False) -> str:
    """`resource` as JSON with sorted keys, without what a store stamps on each version."""
    stamped = ("lastUpdated",) if keep_version else ("versionId", "lastUpdated")
    meta = {k: v for k, v in resource.get("meta", {}).items() if k not in stamped}
    rest = {k: v for k, v in resource.items() if k != "meta"}
    return json.dumps({**rest, **({"meta": meta} if meta else {})}, sort_keys=True)


def test_uk_core_examples_round_trip_through_export_into_a_fresh_store(
    api: Api, records_url: str, uk_core_examples: Path, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    store: RecordStore = api.client.app.state.records  # type: ignore[attr-defined]
    loaded = load(store, [uk_core_examples])
    assert loaded.created > 150
    manifest = api.finished(api.kick_off("/$export"))
    files = tmp_path / "downloaded"
    files.mkdir()
    for output in manifest["output"]:
        answer = api("GET", output["url"])
        assert answer.status_code == 200
        (files / f"{output['type']}.ndjson").write_bytes(answer.content)
    assert sum(o["count"] for o in manifest["output"]) == loaded.created

    if records_url.startswith("postgresql"):
        fresh = postgresql_server_of(request).create_database(f"records_fresh_{time.time_ns()}")
    else:
        fresh = str(tmp_path / "fresh.sqlite")
    with RecordStore(fresh) as other:  # what `joinedup records load FOLDER` does
        again = load(other, [files])
        assert (again.created, again.updated, again.invalid) == (loaded.created, 0, [])
    original = {(r["resourceType"], r["id"]): _canonical(r) for r in store.current_resources()}
    with RecordStore(fresh) as other:
        copied = {(r["resourceType"], r["id"]): _canonical(r) for r in other.current_resources()}
    assert len(original) == loaded.created
    assert copied == original


def postgresql_server_of(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("postgresql_server")


def joinedup(*args: str) -> Any:  # a click Result
    """Run `joinedup ARGS` in this process (the command's start-up costs seconds a run)."""
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})


def _by_type(found: dict[tuple[str, str], str]) -> dict[str, int]:
    return dict(sorted(Counter(kind for kind, _ in found).items()))


@pytest.mark.slow
def test_the_demo_population_round_trips_through_export_into_a_fresh_postgresql_store(
    postgresql_server: Any, site: Path, tmp_path: Path, clock: Clock
) -> None:
    """The acceptance item: the records `joinedup demo` loads (its own step, on a
    DEMO_PEOPLE-person build) in the demo's SQLite store, exported over HTTP by a system
    user, every file downloaded and loaded with `joinedup records load` into a fresh store
    on PostgreSQL: the same resources, type by type, id by id, content for content.

    Compared: each resource's JSON with sorted keys, `meta.versionId` included (both stores
    hold each as its first version); `meta.lastUpdated` left out, since a store stamps each
    version with the instant it wrote it (checked to be no earlier than the original's)."""
    warehouse = tmp_path / "demo.duckdb"
    made = joinedup("synth", "-n", str(DEMO_PEOPLE), "--seed", "7", "-w", str(warehouse))
    assert made.exit_code == 0, made.output
    demo_store = tmp_path / "records.sqlite"  # where `joinedup demo` puts it
    loaded = load_demo_records(warehouse, demo_store, DEMO_RECORDS)
    assert loaded is not None and loaded.invalid == []
    assert loaded.created == loaded.read > DEMO_RECORDS * 20
    fresh = postgresql_server.create_database(f"records_demo_copy_{time.time_ns()}")
    for api in _app(str(demo_store), site, tmp_path, clock):
        store: RecordStore = api.client.app.state.records  # type: ignore[attr-defined]
        manifest = api.finished(api.kick_off("/$export"))
        files = tmp_path / "downloaded"
        files.mkdir()
        for output in manifest["output"]:
            answer = api("GET", output["url"])
            assert answer.status_code == 200, answer.text
            (files / f"{output['type']}.ndjson").write_bytes(answer.content)
        original = {(r["resourceType"], r["id"]): r for r in store.current_resources()}

    done = joinedup("records", "load", str(files), "--records", fresh, "-w", str(warehouse))
    assert done.exit_code == 0, done.output
    assert f"{loaded.read:,} created, 0 updated, 0 unchanged, 0 skipped" in flat(done.output)
    with RecordStore(fresh) as other:
        assert other.dialect == "postgresql"
        copied = {(r["resourceType"], r["id"]): r for r in other.current_resources()}

    wanted = {(r["resourceType"], r["id"]): _canonical(r, keep_version=True)
              for r in original.values()}  # fmt: skip
    found = {key: _canonical(r, keep_version=True) for key, r in copied.items()}
    counts = _by_type(wanted)
    assert {o["type"]: o["count"] for o in manifest["output"]} == counts
    assert {"Patient", "Organization", "Encounter", "Condition", "Observation"} <= set(counts)
    assert counts["Patient"] > DEMO_RECORDS // 2
    assert sum(counts.values()) == loaded.read
    assert _by_type(found) == counts
    assert sorted(set(wanted) - set(found)) == [] and sorted(set(found) - set(wanted)) == []
    differing = sorted(key for key in wanted if wanted[key] != found[key])
    assert differing == []
    assert all(
        copied[key]["meta"]["lastUpdated"] >= original[key]["meta"]["lastUpdated"]
        for key in original
    )
