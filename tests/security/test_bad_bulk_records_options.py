"""Bulk work on the records store that cannot be audited or cannot reach its warehouse is
refused in one line before anything goes into the store: `joinedup records load` with an
audit log that cannot be opened (its folder is a file), and `joinedup ingest fhir --records`
into a warehouse the engine cannot write (Spark on a DuckDB file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import joinedup

pytestmark = pytest.mark.security

_PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female"}


def _one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr  # one line, no usage box or traceback
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def test_an_audit_log_that_cannot_be_opened_stops_the_load_before_it_starts(
    tmp_path: Path,
) -> None:
    feed = tmp_path / "feed.ndjson"
    feed.write_text(json.dumps(_PATIENT) + "\n")
    (tmp_path / "afile").write_text("")
    store = tmp_path / "r.sqlite"
    load = joinedup("records", "load", str(feed), "--records", str(store),
                    "-w", str(tmp_path / "afile" / "w.duckdb"), cwd=tmp_path)  # fmt: skip
    assert load.returncode != 0
    line = _one_line_error(load.stderr)
    assert "audit log" in line and "cannot open it" in line
    assert not store.exists()


def test_ingest_through_the_store_into_a_warehouse_it_cannot_write_loads_nothing(
    tmp_path: Path,
) -> None:
    feed = tmp_path / "feed.ndjson"
    feed.write_text(json.dumps(_PATIENT) + "\n")
    store = tmp_path / "r.sqlite"
    ingest = joinedup("ingest", "fhir", str(feed), "--records", str(store), "--engine", "spark",
                      "-w", str(tmp_path / "w.duckdb"), cwd=tmp_path)  # fmt: skip
    assert ingest.returncode != 0
    assert "reads a lake" in _one_line_error(ingest.stderr)
    assert not store.exists()
