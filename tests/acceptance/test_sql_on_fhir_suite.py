"""Acceptance: the official SQL-on-FHIR v2 test suite (../shared/specs/sql-on-fhir-v2/tests).

Every `shareable` test passes on DuckDB and on Spark (local mode); `experimental` ones are
reported. The report file has the official test_report.json shape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from joinedup.fhir.testsuite import run_suite
from joinedup.warehouse import open_empty_engine


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def test_every_shareable_test_passes(sql_on_fhir_tests: Path, engine: str) -> None:
    with open_empty_engine(engine) as opened:
        outcomes = run_suite(sql_on_fhir_tests, opened)
    assert len({o.file for o in outcomes}) >= 17
    failed = [
        f"{o.file}: {o.name}: {o.reason}"
        for o in outcomes
        if "shareable" in o.tags and not o.passed
    ]
    assert not failed, "\n".join(failed)
    assert sum("shareable" in o.tags for o in outcomes) >= 90


def test_the_report_has_the_official_shape(sql_on_fhir_tests: Path, tmp_path: Path) -> None:
    out = tmp_path / "test_report.json"
    done = subprocess.run(
        [sys.executable, "-c", "from joinedup.cli import main; main()", "views", "test-suite",
         str(sql_on_fhir_tests), "--report", str(out)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "shareable: " in done.stdout and "passed" in done.stdout
    written = json.loads(out.read_text(encoding="utf-8"))
    assert set(written) == {p.name for p in sql_on_fhir_tests.glob("*.json")}
    for file in written.values():
        for test in file["tests"]:
            assert isinstance(test["name"], str)
            assert isinstance(test["result"]["passed"], bool)
    passed = sum(t["result"]["passed"] for f in written.values() for t in f["tests"])
    total = sum(len(f["tests"]) for f in written.values())
    assert f"{passed}/{total} passed on duckdb" in " ".join(done.stdout.split())
