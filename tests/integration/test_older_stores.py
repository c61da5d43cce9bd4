"""Stores written by an older version, before counts were renamed to end `_count`
(`registry.RENAMED_COLUMNS`): a warehouse is refused in one line naming the table, the column
and the command that rebuilds it, never a missing-column error from deep inside a reader; the
histories no command could write again (FHIR load records, the audit checkpoints) are renamed
in place."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from joinedup.errors import JoinedupError
from joinedup.fhir.ingest import ingest_fhir
from joinedup.warehouse import ALL_TABLES, open_engine
from joinedup.warehouse.engines.duckdb import DuckDBEngine
from joinedup.web.access import AccessStore, Role

OLD_TIERS = (
    "table phm_risk_tiers was written by an older version of joinedup (column people, now "
    "people_count): rebuild it with `joinedup phm run`"
)


def _canonical_warehouse(path: Path) -> Path:
    engine = DuckDBEngine(path)
    for table in ALL_TABLES:
        engine.create(table)
    engine.close()
    return path


def _older_phm_outputs(path: Path) -> None:
    """`phm_risk_tiers` as `phm run` wrote it before the rename."""
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE phm_risk_tiers (risk_tier VARCHAR, people BIGINT, "
            "people_suppressed BOOLEAN)"
        )
        con.execute("INSERT INTO phm_risk_tiers VALUES ('high', 40, false)")


def test_a_report_from_an_older_warehouse_is_refused_in_one_line(tmp_path: Path) -> None:
    warehouse = _canonical_warehouse(tmp_path / "old.duckdb")
    _older_phm_outputs(warehouse)
    done = subprocess.run(
        [sys.executable, "-c", "from joinedup.cli import main; main()", "phm", "report",
         "-o", str(tmp_path / "phm.html"), "-w", str(warehouse)],
        check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: {warehouse}: {OLD_TIERS}"
    assert not (tmp_path / "phm.html").exists()


def test_the_job_that_rebuilds_an_output_may_open_it_but_not_an_older_canonical_table(
    tmp_path: Path,
) -> None:
    warehouse = _canonical_warehouse(tmp_path / "old.duckdb")
    _older_phm_outputs(warehouse)
    with pytest.raises(JoinedupError) as refused:
        open_engine("duckdb", warehouse=warehouse)
    assert str(refused.value) == f"{warehouse}: {OLD_TIERS}"
    with open_engine("duckdb", warehouse=warehouse, read_only=False) as engine:  # `phm run`
        assert "phm_risk_tiers" in engine.table_names()
    with duckdb.connect(str(warehouse)) as con:
        con.execute("ALTER TABLE practice RENAME COLUMN registered_count TO list_size")
    with pytest.raises(JoinedupError, match=r"column list_size, now registered_count\): rebuild "
                       r"it with `joinedup synth` or `joinedup ingest fhir`$"):  # fmt: skip
        open_engine("duckdb", warehouse=warehouse, read_only=False)


def test_older_fhir_load_records_are_renamed_by_the_next_load(tmp_path: Path) -> None:
    warehouse = _canonical_warehouse(tmp_path / "w.duckdb")
    source = tmp_path / "p.ndjson"
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-04-02"}
    source.write_text(json.dumps(patient) + "\n", encoding="utf-8")
    with open_engine("duckdb", warehouse=warehouse, read_only=False) as engine:
        ingest_fhir(engine, [source], staging_dir=tmp_path)
    with duckdb.connect(str(warehouse)) as con:  # the load records as an older version kept them
        for new in ("resources_in", "stored", "unchanged", "quarantined"):
            con.execute(f"ALTER TABLE fhir_load RENAME COLUMN {new}_count TO {new}")
        con.execute("ALTER TABLE fhir_load_quality RENAME COLUMN items_count TO count")
    with pytest.raises(JoinedupError, match=r"table fhir_load was written by an older version"):
        open_engine("duckdb", warehouse=warehouse)
    with open_engine("duckdb", warehouse=warehouse, read_only=False) as engine:
        ingest_fhir(engine, [source], staging_dir=tmp_path)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        loads = con.execute(
            "SELECT resources_in_count, stored_count, unchanged_count FROM fhir_load "
            "ORDER BY load_seq"
        ).fetchall()
        quality = con.execute("SELECT sum(items_count) FROM fhir_load_quality").fetchone()
    assert loads == [(1, 1, 0), (1, 0, 1)]  # the first load's record kept, with its figures
    assert quality is not None and quality[0] > 0
    with open_engine("duckdb", warehouse=warehouse) as engine:  # and readers open it again
        assert engine.count("fhir_load") == 2


def test_an_older_access_store_keeps_its_signed_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "access.sqlite"
    store = AccessStore(path)
    gp = store.add_user("gp", "correct horse battery", Role.CLINICIAN, pcn_code="U1")
    for i in range(3):
        store.audit(gp, "view", "worklist/U1", detail=f"{i}", reason="mdt", client="x")
    store.close()  # signs a checkpoint
    with sqlite3.connect(path) as con:  # the column as an older version named it
        con.execute("ALTER TABLE audit_checkpoint RENAME COLUMN entries_count TO entries")
    again = AccessStore(path)
    with sqlite3.connect(path) as con:
        columns = {r[1] for r in con.execute("PRAGMA table_info(audit_checkpoint)")}
        (marks,) = con.execute("SELECT count(*) FROM audit_checkpoint").fetchone()
    assert "entries_count" in columns and "entries" not in columns
    assert marks >= 1
    check = again.verify_audit()
    assert check.intact and check.verified_through == 3, check
