"""Bad options to the commands this round added or changed, as a mistyped script would give
them: `joinedup users add --organisation` (a code that is no ODS code, or no warehouse to find
it in), `--practice` with no warehouse, and `joinedup ingest fhir --person-index` naming
nothing. Each is refused in one line naming the option, with a non-zero exit code, and leaves
the folder as it was: no access database, audit key or warehouse is created on the way."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cli_run import joinedup

pytestmark = pytest.mark.security

ENV = {"JOINEDUP_NEW_PASSWORD": "a long enough password"}


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_refused(args: tuple[str, ...], folder: Path, option: str, words: str) -> None:
    before = snapshot(folder)
    run = joinedup(*args, cwd=folder, env=ENV)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode != 0, run.stdout + run.stderr
    assert len(lines) == 1, run.stderr  # one line, no usage box or traceback
    assert lines[0].startswith("error: ") and option in lines[0], lines[0]
    assert words in lines[0], lines[0]
    assert snapshot(folder) == before  # nothing created or changed


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("zz 1", "is not an ODS code"),
        ("RX", "is not an ODS code"),
        ("R1A'; DROP TABLE users;--", "is not an ODS code"),
        ("ZZL01", "no warehouse at"),  # well formed, but nowhere to look it up
    ],
)
def test_a_bad_organisation_is_refused_before_any_access_database_is_made(
    tmp_path: Path, code: str, words: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    args = ("users", "add", "carer", "--role", "care-worker", "--organisation", code,
            "-w", str(warehouse))  # fmt: skip
    assert_refused(args, tmp_path, "--organisation", words)
    assert list(tmp_path.iterdir()) == []


def test_a_practice_without_a_warehouse_is_refused_before_any_access_database_is_made(
    tmp_path: Path,
) -> None:
    args = ("users", "add", "doc", "--role", "clinician", "--practice", "A11111",
            "-w", str(tmp_path / "w.duckdb"))  # fmt: skip
    assert_refused(args, tmp_path, "w.duckdb", "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_a_person_index_that_is_not_there_is_refused_before_any_warehouse_is_made(
    tmp_path: Path,
) -> None:
    source = tmp_path / "fhir"
    source.mkdir()
    (source / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "a"}))
    args = ("ingest", "fhir", str(source), "-w", str(tmp_path / "w.duckdb"),
            "--person-index", str(tmp_path / "no-index"))  # fmt: skip
    assert_refused(args, tmp_path, "--person-index", "is no folder or file")
    assert not (tmp_path / "w.duckdb").exists()
