"""`joinedup records load` and `joinedup records export` as a user runs them, on SQLite and
PostgreSQL: a small synthetic world's FHIR export loaded into the store, loaded again without a
new version, exported and ingested into a warehouse the same as ingesting the files directly
(sources -> records -> views -> warehouse), and an invalid resource named by file and line."""

from __future__ import annotations

import getpass
import json
import re
from pathlib import Path

import duckdb
import pytest
from cli_run import flat, joinedup
from fhir.resources.R4B.auditevent import AuditEvent as AuditEventR4

from joinedup.records import RecordStore
from joinedup.warehouse import POPULATION_TABLES
from joinedup.web.access import AccessStore, RecordsAuditQuery
from joinedup.web.records_api.audit_events import audit_event

PEOPLE = 150


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """A small synthetic world's FHIR NDJSON export, and the canonical row counts of a
    warehouse ingested from those files directly."""
    folder = tmp_path_factory.mktemp("world")
    built = joinedup("synth", "-n", str(PEOPLE), "--seed", "7", "-w", "w.duckdb", cwd=folder)
    assert built.returncode == 0, built.stderr
    exported = joinedup("export", "fhir", "--out", "ndjson", "-w", "w.duckdb", cwd=folder)
    assert exported.returncode == 0, exported.stderr
    direct = joinedup("ingest", "fhir", "ndjson", "-w", "direct.duckdb", cwd=folder)
    assert direct.returncode == 0, direct.stdout + direct.stderr
    return folder / "ndjson", _counts(folder / "direct.duckdb")


def _counts(warehouse: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            t.name: con.sql(f"SELECT count(*) FROM {t.name}").fetchall()[0][0]  # noqa: S608
            for t in POPULATION_TABLES
        }


def _lines(folder: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in folder.glob("*.ndjson"))


def test_load_again_and_export_builds_the_same_warehouse(
    world: tuple[Path, dict[str, int]], records_url: str, tmp_path: Path
) -> None:
    ndjson, direct_counts = world
    total = _lines(ndjson)

    first = joinedup("records", "load", str(ndjson), "--records", records_url, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{total:,} created, 0 updated, 0 unchanged, 0 skipped" in flat(first.stdout)

    again = joinedup("records", "load", str(ndjson), "--records", records_url, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"0 created, 0 updated, {total:,} unchanged" in flat(again.stdout)
    with RecordStore(records_url) as store:
        versions = {r["meta"]["versionId"] for r in store.current_resources()}
    assert versions == {"1"}  # the second load wrote no new version of anything

    out = tmp_path / "from_store"
    exported = joinedup("records", "export", "--records", records_url, "-o", str(out), cwd=tmp_path)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ndjson.iterdir())
    assert _lines(out) == total
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".from_store")]

    ingested = joinedup("ingest", "fhir", str(out), "-w", "store.duckdb", cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    counts = _counts(tmp_path / "store.duckdb")
    assert counts == direct_counts
    assert counts["person"] >= PEOPLE


def test_export_of_one_type_and_a_changed_resource(
    world: tuple[Path, dict[str, int]], records_url: str, tmp_path: Path
) -> None:
    ndjson, _ = world
    patients = (ndjson / "Patient.ndjson").read_text().splitlines()[:3]
    source = tmp_path / "in.ndjson"
    source.write_text("\n".join(patients) + "\n")
    assert (
        joinedup("records", "load", str(source), "--records", records_url, cwd=tmp_path).returncode
        == 0
    )
    changed = json.loads(patients[1])
    changed["gender"] = "unknown"
    source.write_text("\n".join([patients[0], json.dumps(changed), patients[2]]) + "\n")
    again = joinedup("records", "load", str(source), "--records", records_url, cwd=tmp_path)
    assert "0 created, 1 updated, 2 unchanged" in flat(again.stdout), again.stdout
    with RecordStore(records_url) as store:
        assert store.read("Patient", changed["id"])["meta"]["versionId"] == "2"
        since = max(h.last_updated for h in store.history("Patient", changed["id"]))

    out = tmp_path / "recent"
    done = joinedup(
        "records", "export", "--records", records_url, "-o", str(out), "--type", "Patient",
        "--since", since.isoformat(), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = (out / "Patient.ndjson").read_text().splitlines()
    assert [json.loads(line)["gender"] for line in written] == ["unknown"]

    refused = joinedup("records", "export", "--records", records_url, "-o", str(out), cwd=tmp_path)
    assert refused.returncode == 2
    assert "already exists and is not an empty folder" in refused.stderr


def test_an_invalid_resource_is_named_by_file_and_line_and_the_rest_load(
    world: tuple[Path, dict[str, int]], records_url: str, tmp_path: Path
) -> None:
    ndjson, _ = world
    patients = (ndjson / "Patient.ndjson").read_text().splitlines()[:3]
    bad = json.loads(patients[1])
    bad["gender"] = "bloke"
    source = tmp_path / "feed.ndjson"
    source.write_text("\n".join([patients[0], json.dumps(bad), patients[2], "{not json"]) + "\n")

    loaded = joinedup("records", "load", str(source), "--records", records_url, cwd=tmp_path)
    assert loaded.returncode == 1
    problems = [line for line in loaded.stderr.splitlines() if line.startswith("skipped:")]
    assert len(problems) == 2, loaded.stderr
    line_2 = [p for p in problems if f"{source}, line 2: " in p]
    assert len(line_2) == 1
    assert re.search(r"Patient\.gender", line_2[0]), line_2
    assert any(f"{source}, line 4: not JSON" in p for p in problems), problems
    assert "2 created, 0 updated, 0 unchanged, 2 skipped as invalid" in flat(loaded.stdout)
    with RecordStore(records_url) as store:
        kept = {r["id"] for r in store.current_resources("Patient")}
    assert kept == {json.loads(patients[0])["id"], json.loads(patients[2])["id"]}


def test_ingest_through_the_records_store(
    world: tuple[Path, dict[str, int]], records_url: str, tmp_path: Path
) -> None:
    """`ingest fhir --records`: the files go into the store, and the warehouse is loaded from
    what the store holds (sources -> records -> views -> warehouse), the same warehouse as
    ingesting the files directly; again, nothing changes; a resource the store refuses is
    named by file and line and kept out of both."""
    ndjson, direct_counts = world
    total = _lines(ndjson)
    command = ("ingest", "fhir", str(ndjson), "--records", records_url, "-w", "through.duckdb")

    first = joinedup(*command, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    out = flat(first.stdout)
    assert f"{total:,} resources read, {total:,} created, 0 updated, 0 unchanged" in out
    assert f"loading the warehouse from its {total:,} current resources" in out
    assert _counts(tmp_path / "through.duckdb") == direct_counts
    assert not [p for p in tmp_path.iterdir() if "records-out" in p.name]  # scratch removed

    again = joinedup(*command, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"0 created, 0 updated, {total:,} unchanged" in flat(again.stdout)
    assert _counts(tmp_path / "through.duckdb") == direct_counts

    patient = json.loads((ndjson / "Patient.ndjson").read_text().splitlines()[0])
    patient["id"], patient["gender"] = "refused-here", "bloke"
    feed = tmp_path / "feed.ndjson"
    feed.write_text(json.dumps(patient) + "\n")
    refused = joinedup("ingest", "fhir", str(feed), "--records", records_url,
                       "-w", "through.duckdb", cwd=tmp_path)  # fmt: skip
    assert refused.returncode == 0, refused.stdout + refused.stderr
    assert f"{feed}, line 1: " in refused.stderr and "Patient.gender" in refused.stderr
    assert "1 skipped as invalid" in flat(refused.stdout)
    assert _counts(tmp_path / "through.duckdb") == direct_counts
    with RecordStore(records_url) as store:
        assert "refused-here" not in {r["id"] for r in store.current_resources("Patient")}


def test_bulk_load_and_export_are_audited(
    world: tuple[Path, dict[str, int]], records_url: str, tmp_path: Path
) -> None:
    """A load or an export at the terminal is an entry in the audit log `records serve
    --warehouse` keeps (who ran it, what, how many; no identifier), as an API request is."""
    ndjson, _ = world
    total = _lines(ndjson)
    warehouse = ("-w", str(tmp_path / "w.duckdb"))
    loaded = joinedup("records", "load", str(ndjson), "--records", records_url, *warehouse,
                      cwd=tmp_path)  # fmt: skip
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    exported = joinedup("records", "export", "--records", records_url, "-o", "out",
                        "--type", "Patient", *warehouse, cwd=tmp_path)  # fmt: skip
    assert exported.returncode == 0, exported.stdout + exported.stderr

    store = AccessStore(tmp_path / "w.duckdb.access.sqlite")
    try:
        _, found = store.records_audit(RecordsAuditQuery())  # what AuditEvent search reads
        assert store.verify_audit(full=True).intact
    finally:
        store.close()
    bulk = {e["action"]: e for e in found if e["action"].startswith("fhir bulk-")}
    assert set(bulk) == {"fhir bulk-load", "fhir bulk-export"}
    assert bulk["fhir bulk-load"]["detail"].startswith(f"200; {total} read, {total} created")
    patients = len((ndjson / "Patient.ndjson").read_text().splitlines())
    assert bulk["fhir bulk-export"]["detail"] == f"200; {patients} resources (Patient)"
    assert all(e["username"] == f"cli:{getpass.getuser()}" for e in bulk.values())
    some_ids = {json.loads(line)["id"] for line in (ndjson / "Patient.ndjson").open()}
    assert not any(i in json.dumps(list(bulk.values())) for i in some_ids)
    event = audit_event(bulk["fhir bulk-load"])  # as GET /fhir/R4/AuditEvent answers it
    assert event["outcome"] == "0" and event["action"] == "E"
    assert AuditEventR4.model_validate(event).agent


def test_a_load_that_stops_is_audited_and_its_error_kept(records_url: str, tmp_path: Path) -> None:
    """A load that cannot go on (here: a path that is not there) still says why, in one line,
    and the log has it as a failure with how far it got."""
    missing = tmp_path / "nowhere.ndjson"
    stopped = joinedup("records", "load", str(missing), "--records", records_url,
                       "-w", str(tmp_path / "w.duckdb"), cwd=tmp_path)  # fmt: skip
    assert stopped.returncode != 0
    assert "nowhere.ndjson" in stopped.stderr and "Traceback" not in stopped.stderr
    store = AccessStore(tmp_path / "w.duckdb.access.sqlite")
    try:
        _, found = store.records_audit(RecordsAuditQuery())
    finally:
        store.close()
    assert [e["detail"] for e in found] == ["500; stopped (InputError) after 0 read"]
