"""`ingest fhir` with a master person index: one person's Patients from two organisations, one
with a mistyped (still Modulus 11 valid) NHS number, are one person in the warehouse when the
index links their local ids, and two without it, as NHS-number matching alone gives (on
Spark as on DuckDB: `test_fhir_ingest_lake_spark.py`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlglot import exp
from typer.testing import CliRunner

from joinedup.cli import app
from joinedup.errors import JoinedupError
from joinedup.fhir.ingest import ingest_fhir
from joinedup.linkage.mpi import Link, build_index, link_table, record_table
from joinedup.records import PersonIndexStore
from joinedup.warehouse import ALL_TABLES, open_engine
from joinedup.warehouse.engines.duckdb import DuckDBEngine

NHS = "https://fhir.nhs.uk/Id/nhs-number"
GP_IDS = "https://gp.example.org/patient-id"
PAS_IDS = "https://acute.example.org/pas-number"
ACTIVITY = "https://fhir.joinedup.org/CodeSystem/activity-type"
RUN_AT = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)


def _patient(pid: str, source: str, local: tuple[str, str], nhs: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"source": source},
        "identifier": [{"system": NHS, "value": nhs}, {"system": local[0], "value": local[1]}],
        "name": [{"family": "Jackson", "given": ["Jane"]}],
        "gender": "female",
        "birthDate": "1950-04-02",
    }


def _encounter(eid: str, patient: str, kind: str, start: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [{"coding": [{"system": ACTIVITY, "code": kind}]}],
        "subject": {"reference": f"Patient/{patient}"},
        "period": {"start": start, "end": start},
    }


#: One woman: her practice knows her as G-17 with her NHS number, the acute trust as PAS-903
#: with a digit mistyped (9434765870 is a valid number, someone else's).
WORLD = [
    _patient("gp-1", "https://gp.example.org", (GP_IDS, "G-17"), "9434765919"),
    _patient("acute-1", "https://acute.example.org", (PAS_IDS, "PAS-903"), "9434765870"),
    _encounter("e-gp", "gp-1", "gp_consultation", "2025-03-04T09:00:00Z"),
    _encounter("e-ae", "acute-1", "ae_attendance", "2025-05-06T22:00:00Z"),
]
#: The index as `link index` keys records: source (here the identifier system) and record_id.
INDEX = pa.table(
    {
        "source": [GP_IDS, PAS_IDS, "social"],
        "record_id": ["G-17", "PAS-903", "S-1"],
        "person_id": ["P000000001", "P000000001", "P000000002"],
    }
)


def write_world(folder: Path) -> tuple[Path, Path]:
    """The world as NDJSON and the index as a `link index` folder's person_index.csv, in
    `folder`; returns (the NDJSON file, the index folder)."""
    source = folder / "world.ndjson"
    source.write_text("".join(json.dumps(r) + "\n" for r in WORLD))
    index = folder / "mpi"
    index.mkdir()
    lines = ["source,record_id,person_id"]
    lines += [f"{r['source']},{r['record_id']},{r['person_id']}" for r in INDEX.to_pylist()]
    (index / "person_index.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return source, index


def _load(tmp_path: Path, index: pa.Table | None) -> tuple[list[dict[str, Any]], Any, Any]:
    warehouse = tmp_path / "w.duckdb"
    engine = DuckDBEngine(warehouse)
    for table in ALL_TABLES:
        engine.create(table)
    engine.close()
    source = tmp_path / "world.ndjson"
    source.write_text("".join(json.dumps(r) + "\n" for r in WORLD))
    with open_engine("duckdb", warehouse=warehouse, read_only=False) as writer:
        report = ingest_fhir(writer, [source], staging_dir=tmp_path, person_index=index)
    query = exp.select("person_id", "activity_type").from_("activity").order_by("activity_type")
    with open_engine("duckdb", warehouse=warehouse) as reader:
        activity = reader.execute(query).to_pylist()
        people = reader.count("person")
        build = reader.execute(
            exp.select("parameters").from_("build").where("source = 'fhir'")
        ).to_pylist()
    return activity, people, (report, json.loads(build[0]["parameters"]))


def test_the_index_puts_both_organisations_encounters_on_one_person(tmp_path: Path) -> None:
    activity, people, (report, parameters) = _load(tmp_path, INDEX)
    assert people == 1
    assert [r["activity_type"] for r in activity] == ["ae_attendance", "gp_consultation"]
    assert len({r["person_id"] for r in activity}) == 1
    assert report.patients_indexed == 2
    assert parameters["person_index"] == {"records_count": 3, "patients_mapped_count": 2}
    assert ("people", "Patients found in the person index", "placed by their person_id", 2) in (
        report.quality
    )


def test_without_the_index_the_mistyped_number_splits_her_in_two(tmp_path: Path) -> None:
    activity, people, (report, parameters) = _load(tmp_path, None)
    assert people == 2
    assert len({r["person_id"] for r in activity}) == 2
    assert report.patients_indexed == 0
    assert parameters["person_index"] is None


def test_an_index_that_holds_neither_patient_changes_nothing(tmp_path: Path) -> None:
    other = pa.table({"source": ["gp"], "record_id": ["G-17"], "person_id": ["P000000009"]})
    _, people, (_, parameters) = _load(tmp_path, other)
    assert people == 2
    assert parameters["person_index"] == {"records_count": 1, "patients_mapped_count": 0}


def test_an_index_by_source_system_and_id_also_places_them(tmp_path: Path) -> None:
    """A source named as the Patient's meta.source, its record_id the Patient's id."""
    by_source = pa.table(
        {
            "source": ["https://gp.example.org", "https://acute.example.org"],
            "record_id": ["gp-1", "acute-1"],
            "person_id": ["P000000004", "P000000004"],
        }
    )
    _, people, (report, _) = _load(tmp_path, by_source)
    assert people == 1
    assert report.patients_indexed == 2


def test_an_index_without_person_id_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(JoinedupError, match=r"^person index: no person_id column$"):
        _load(tmp_path, INDEX.drop(["person_id"]))


def test_the_command_reads_the_index_folder_link_index_writes(tmp_path: Path) -> None:
    """`ingest fhir --person-index DIR` with the folder's person_index.csv as `link index -o`
    writes it, its sources named as `link index` names them (`gp`, `acute`) and mapped to
    their identifier systems with --index-source."""
    folder = tmp_path / "mpi"
    folder.mkdir()
    (folder / "person_index.csv").write_text(
        "source,record_id,person_id,linked_by,match_weight,needs_review\n"
        "gp,G-17,P000000001,splink,12.5,false\n"
        "acute,PAS-903,P000000001,splink,12.5,false\n"
        "social,S-1,P000000002,,,false\n",
        encoding="utf-8",
    )
    source = tmp_path / "world.ndjson"
    source.write_text("".join(json.dumps(r) + "\n" for r in WORLD))
    warehouse = tmp_path / "w.duckdb"
    base = ["ingest", "fhir", str(source), "-w", str(warehouse)]
    args = [*base, "--person-index", str(folder)]
    mapped = [*args, "--index-source", f"gp={GP_IDS}", "--index-source", f"acute={PAS_IDS}"]
    # Unmapped, the short names match no identifier system: nothing placed, two people.
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Person index: 3 records; 0 Patients placed by their person_id." in result.output
    with open_engine("duckdb", warehouse=warehouse) as reader:
        assert reader.count("person") == 2
    # Mapped, the load rebuilds the tables from everything stored: one person.
    result = CliRunner().invoke(app, mapped)
    assert result.exit_code == 0, result.output
    assert "Person index: 3 records; 2 Patients placed by their person_id." in result.output
    with open_engine("duckdb", warehouse=warehouse) as reader:
        assert reader.count("person") == 1
    for bad, message in (
        ([*base, "--person-index", str(tmp_path / "nowhere")], "nowhere is no folder or file"),
        ([*args, "--index-source", "gp"], "--index-source gp: give NAME=SYSTEM"),
        ([*base, "--index-source", f"gp={GP_IDS}"], "--index-source needs --person-index"),
    ):
        refused = CliRunner().invoke(app, bad)
        assert isinstance(refused.exception, JoinedupError), refused.output
        assert str(refused.exception).endswith(message)


def test_the_command_reads_the_index_from_the_records_store(
    tmp_path: Path, records_url: str
) -> None:
    """`--person-index URL|PATH`: the index `link index --records` keeps in the records store
    (SQLite and PostgreSQL); a store without one is refused naming it."""
    source, _ = write_world(tmp_path)
    warehouse = tmp_path / "w.duckdb"
    args = ["ingest", "fhir", str(source), "-w", str(warehouse), "--person-index", records_url]
    with PersonIndexStore(records_url) as store:  # a store no `link index` has written to
        assert not store.has_index()
    refused = CliRunner().invoke(app, args)
    assert isinstance(refused.exception, JoinedupError), refused.output
    assert str(refused.exception).startswith("--person-index: ")
    assert str(refused.exception).endswith(" holds no person index")
    link = Link(("gp", "G-17"), ("acute", "PAS-903"), "splink", 0.99, 11.2, "evidence")
    with DuckDBEngine() as engine, PersonIndexStore(records_url) as store:
        records = record_table([("gp", "G-17"), ("acute", "PAS-903")])
        index = build_index(engine, records, link_table([link]), threshold=0.9, run_at=RUN_AT)
        store.write_index(engine, index, None, {"seed": 1})
    systems = ["--index-source", f"gp={GP_IDS}", "--index-source", f"acute={PAS_IDS}"]
    result = CliRunner().invoke(app, [*args, *systems])
    assert result.exit_code == 0, result.output
    assert "Person index: 2 records; 2 Patients placed by their person_id." in result.output
    with open_engine("duckdb", warehouse=warehouse) as reader:
        assert reader.count("person") == 1
