"""`joinedup export fhir` and `joinedup ingest fhir` as a user runs them: the round trip from a
synthetic population to UK Core NDJSON and back, the quality report, and UK Core's examples."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from cli_run import flat, joinedup

from joinedup.warehouse import POPULATION_TABLES

PEOPLE = 1_000


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A 1,000-person synthetic warehouse, its FHIR export, and a new warehouse ingested from
    the export alone."""
    folder = tmp_path_factory.mktemp("fhir")
    original = folder / "original.duckdb"
    built = joinedup("synth", "-n", str(PEOPLE), "--seed", "5", "-w", str(original), cwd=folder)
    assert built.returncode == 0, built.stderr
    exported = joinedup("export", "fhir", "--out", "ndjson", "-w", str(original), cwd=folder)
    assert exported.returncode == 0, exported.stderr
    loaded = folder / "from_fhir.duckdb"
    ingested = joinedup(
        "ingest", "fhir", "ndjson", "-w", str(loaded), "--report", "quality.json", cwd=folder
    )
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    return folder, original, loaded


def _differences(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, int]:
    """Rows only in the original and rows only in the copy (as multisets), with the copy's
    person ids translated back to the original's through the NHS number."""
    columns = [c[0] for c in con.sql(f"DESCRIBE a.{table}").fetchall()]
    translated = ", ".join(
        "m.person_id AS person_id" if c == "person_id" else f"b_t.{c}" for c in columns
    )
    mapped = (
        f"SELECT {translated} FROM b.{table} b_t JOIN (SELECT bi.person_id AS new_id, "
        "ai.person_id FROM a.identity ai JOIN b.identity bi USING (nhs_number)) m "
        "ON m.new_id = b_t.person_id"
    )
    only_a = con.sql(f"SELECT count(*) FROM (SELECT * FROM a.{table} EXCEPT ALL {mapped})")
    only_b = con.sql(f"SELECT count(*) FROM ({mapped} EXCEPT ALL SELECT * FROM a.{table})")
    return only_a.fetchall()[0][0], only_b.fetchall()[0][0]


def test_round_trip_gives_back_every_canonical_table(round_trip: tuple[Path, Path, Path]) -> None:
    _, original, loaded = round_trip
    con = duckdb.connect()
    con.execute(f"ATTACH '{original}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{loaded}' AS b (READ_ONLY)")
    for table in POPULATION_TABLES:
        rows = con.sql(f"SELECT count(*) FROM a.{table.name}").fetchall()[0][0]
        assert rows > 0, table.name
        assert _differences(con, table.name) == (0, 0), table.name
    people = con.sql("SELECT count(*) FROM b.person").fetchall()[0][0]
    assert people >= PEOPLE


def test_names_birth_dates_and_postcodes_go_out_as_uk_core_and_come_back(
    round_trip: tuple[Path, Path, Path],
) -> None:
    folder, original, loaded = round_trip
    con = duckdb.connect()
    con.execute(f"ATTACH '{original}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{loaded}' AS b (READ_ONLY)")
    details = "nhs_number, given_name, family_name, birth_date, postcode"
    before = con.sql(f"SELECT {details} FROM a.identity ORDER BY ALL").fetchall()
    after = con.sql(f"SELECT {details} FROM b.identity ORDER BY ALL").fetchall()
    assert len(before) >= PEOPLE
    assert all(None not in row for row in before)
    assert after == before
    by_nhs = {row[0]: row for row in before}
    lines = (folder / "ndjson" / "Patient.ndjson").read_text().splitlines()
    for line in lines[:50]:
        patient = json.loads(line)
        _, given, family, born, postcode = by_nhs[patient["identifier"][0]["value"]]
        assert patient["name"] == [{"use": "official", "family": family, "given": [given]}]
        assert patient["birthDate"] == born.isoformat()
        (address,) = patient["address"]
        assert address["use"] == "home"
        assert address["postalCode"] == postcode
        (lsoa,) = address["extension"]  # the LSOA stays beside the postcode
        assert lsoa["url"].endswith("/lsoa")
        assert lsoa["valueCode"]


def test_export_writes_one_ndjson_file_per_resource_type(
    round_trip: tuple[Path, Path, Path],
) -> None:
    folder, _, _ = round_trip
    names = sorted(p.name for p in (folder / "ndjson").iterdir())
    assert names == sorted(
        f"{t}.ndjson"
        for t in (
            "Condition", "Consent", "Encounter", "EpisodeOfCare", "MedicationRequest",
            "Observation", "Organization", "Patient", "ServiceRequest",
        )
    )  # fmt: skip
    patient = json.loads((folder / "ndjson" / "Patient.ndjson").read_text().splitlines()[0])
    systems = [i["system"] for i in patient["identifier"]]
    assert systems == ["https://fhir.nhs.uk/Id/nhs-number"]
    assert "null" not in (folder / "ndjson" / "Encounter.ndjson").read_text()


def test_quality_report_accounts_for_every_resource(round_trip: tuple[Path, Path, Path]) -> None:
    folder, _, loaded = round_trip
    report = json.loads((folder / "quality.json").read_text())
    assert report["resources_in"] == report["stored"]
    assert report["quarantined"] == {}
    assert report["rows_out"]["person"] >= PEOPLE
    con = duckdb.connect(str(loaded), read_only=True)
    stored = dict(
        con.sql("SELECT resource_type, count(*) FROM fhir_resource GROUP BY 1").fetchall()
    )
    assert stored == report["resources_in"]


def test_a_warehouse_loaded_from_fhir_keeps_the_datas_history_and_runs_phm(
    round_trip: tuple[Path, Path, Path],
) -> None:
    """The build record of a FHIR warehouse once gave the load date as its whole history, so
    `phm run` refused it ("needs three years of history"). The history is now the span of the
    events loaded: the synthetic world's three years."""
    folder, original, loaded = round_trip

    def history(path: Path) -> list[tuple[object, ...]]:
        con = duckdb.connect(str(path), read_only=True)
        try:
            return con.sql(
                "SELECT history_start_date, history_end_date FROM build "
                "ORDER BY built_at DESC LIMIT 1"
            ).fetchall()
        finally:
            con.close()

    assert history(loaded) == history(original)
    run = joinedup("phm", "run", "-w", str(loaded), cwd=folder)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "for index date 2026-04-01" in flat(run.stdout)


def test_rerunning_a_load_changes_nothing(round_trip: tuple[Path, Path, Path]) -> None:
    folder, _, loaded = round_trip

    def snapshot() -> dict[str, int]:
        con = duckdb.connect(str(loaded), read_only=True)
        try:
            tables = [t.name for t in POPULATION_TABLES] + ["fhir_resource", "fhir_quarantine"]
            return {
                t: con.sql(f"SELECT count(*), sum(hash(x)) FROM {t} x").fetchall()[0]
                for t in tables
            }
        finally:
            con.close()

    before = snapshot()
    again = joinedup("ingest", "fhir", "ndjson", "-w", str(loaded), cwd=folder)
    assert again.returncode == 0, again.stderr
    assert "0 stored" in flat(again.stdout)
    assert snapshot() == before


def test_uk_core_examples_load_or_are_quarantined_with_reasons(
    uk_core_examples: Path, tmp_path: Path
) -> None:
    warehouse = tmp_path / "ukcore.duckdb"
    result = joinedup(
        "ingest", "fhir", str(uk_core_examples), "-w", str(warehouse), "--report", "q.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "q.json").read_text())
    for kind, n in report["resources_in"].items():
        assert report["stored"].get(kind, 0) + report["quarantined"].get(kind, 0) == n, kind
    con = duckdb.connect(str(warehouse), read_only=True)
    reasons = [r[0] for r in con.sql("SELECT reason FROM fhir_quarantine").fetchall()]
    # The baby example's NHS number fails Modulus 11; one extension example sets two value[x].
    assert any("NHS number fails the Modulus 11 check" in r for r in reasons)
    assert not any("9912003890" in r for r in reasons)  # the reason, never the number
    assert any(
        "ConditionEpisode" in r[0]
        for r in con.sql("SELECT source_file FROM fhir_quarantine").fetchall()
    )
    richard = con.sql(
        "SELECT p.birth_year, p.birth_month, p.sex, p.ethnic_category FROM person p "
        "JOIN identity i USING (person_id) WHERE i.nhs_number = '9912003888'"
    ).fetchall()
    assert richard == [(1970, 9, "male", "G")]
    # The UK Core blood pressure panel becomes a systolic and a diastolic row.
    bp = con.sql(
        "SELECT observation_type, value FROM observation WHERE observation_type LIKE '%bp' "
        "AND observation_date = DATE '2023-09-10' ORDER BY 1"
    ).fetchall()
    assert bp == [("diastolic_bp", 82.0), ("systolic_bp", 108.0)]
    inpatient = con.sql("SELECT activity_type, provider_code FROM activity").fetchall()
    assert ("elective_admission", "RR8") in inpatient


def test_bad_bytes_never_stop_a_load_nor_reach_the_terminal(tmp_path: Path) -> None:
    """A lone surrogate beside an NHS number once stopped the load with DuckDB's error, which
    echoed the record (NHS number included) on stderr; a gzip file cut short stopped it with a
    bare "Aborted.". Both are now quarantined and the rest loads."""
    nhs = "https://fhir.nhs.uk/Id/nhs-number"
    good = {
        "resourceType": "Patient",
        "id": "g1",
        "identifier": [{"system": nhs, "value": "9434765919"}],
    }
    surrogate = (
        '{"resourceType": "Patient", "id": "s1", "identifier": [{"system": "' + nhs + '", '
        '"value": "4010232137"}], "name": [{"family": "\\ud800"}]}'
    )
    (tmp_path / "Patient.ndjson").write_text(json.dumps(good) + "\n" + surrogate + "\n")
    whole = gzip.compress(
        "".join(json.dumps({**good, "id": f"z{i}"}) + "\n" for i in range(200)).encode()
    )
    (tmp_path / "More.ndjson.gz").write_bytes(whole[: len(whole) // 2])
    result = joinedup("ingest", "fhir", ".", "-w", "w.duckdb", "--report", "q.json", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and "Aborted" not in output
    assert "4010232137" not in output and "9434765919" not in output
    report = json.loads((tmp_path / "q.json").read_text())
    assert report["quarantined"] == {"(unreadable)": 2}
    assert report["stored"]["Patient"] > 1


def test_a_killed_load_leaves_scratch_that_the_next_load_removes(tmp_path: Path) -> None:
    """`kill -9` mid-load once left `.fhir-staging-*.wal` files that no later run removed.
    Scratch work now lives in a folder the next load removes (its owner being dead)."""
    nhs = "https://fhir.nhs.uk/Id/nhs-number"
    patient = {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1950-04-02"}
    with (tmp_path / "Patient.ndjson").open("w") as handle:
        for i in range(30_000):
            handle.write(json.dumps({**patient, "id": f"p{i}"}) + "\n")
    small = tmp_path / "small"
    small.mkdir()
    (small / "Patient.ndjson").write_text(
        json.dumps({**patient, "identifier": [{"system": nhs, "value": "9434765919"}]}) + "\n"
    )
    assert joinedup("ingest", "fhir", "small", "-w", "w.duckdb", cwd=tmp_path).returncode == 0
    command = shutil.which("joinedup", path=str(Path(sys.executable).parent))
    assert command is not None
    load = subprocess.Popen(
        [command, "ingest", "fhir", "Patient.ndjson", "-w", "w.duckdb"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".fhir-staging-*/staging.duckdb*")):
            assert load.poll() is None, load.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        if load.poll() is None:
            os.kill(load.pid, signal.SIGKILL)
        load.communicate()
    assert list(tmp_path.glob(".fhir-staging-*")), "killed mid-load, so its scratch is left"
    again = joinedup("ingest", "fhir", "small", "-w", "w.duckdb", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not list(tmp_path.glob(".fhir-*")), "the next load removes a dead load's scratch"
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    assert con.sql("SELECT count(*) FROM fhir_resource").fetchall() == [(1,)]
