"""Bad options to the commands this round added or changed, as a mistyped script would give
them: `joinedup users add --organisation` (a code that is no ODS code, or no warehouse to find
it in), `--practice` with no warehouse, and `joinedup ingest fhir --person-index` naming
nothing. Each is refused in one line naming the option, with a non-zero exit code, and leaves
the folder as it was: no access database, audit key or warehouse is created on the way; and
`joinedup users proxy --revoke --until`, refused naming --until with the relationship left in
force."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest
from cli_run import PhmWarehouse, joinedup

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


def test_a_practice_outside_the_pcn_given_is_refused(
    small_web_warehouse: PhmWarehouse, tmp_path: Path
) -> None:
    """`--pcn U99001 --practice P` where the warehouse has P in another PCN: the clinician
    would be scoped to a PCN their practice is not in; refused naming both."""
    warehouse = tmp_path / "w.duckdb"
    shutil.copyfile(small_web_warehouse.path, warehouse)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        practice = con.execute(
            "SELECT min(practice_code) FROM practice WHERE pcn_code = 'U99002'"
        ).fetchall()[0][0]
    assert practice
    args = ("users", "add", "doc", "--role", "clinician", "--pcn", "U99001",
            "--practice", practice, "-w", str(warehouse))  # fmt: skip
    assert_refused(args, tmp_path, "--practice", f"{practice} is in PCN U99002, not --pcn U99001")


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


def test_a_revocation_with_an_until_day_is_refused_and_the_proxy_stays_in_force(
    tmp_path: Path,
) -> None:
    """`users proxy --revoke --until DAY`: a revocation ends access at once, so a last day
    beside it is a mistake; refused in one line naming --until, and the relationship is left
    as it was (not revoked)."""
    from joinedup.web.access import AccessStore
    from joinedup.web.settings import WebSettings

    settings = WebSettings(warehouse=tmp_path / "w.duckdb")
    store = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    store.add_user("mum", ENV["JOINEDUP_NEW_PASSWORD"], "citizen", patient_id="mum-1")
    store.set_proxy("mum", "child-1", "parent")
    store.close()
    run = joinedup(
        "users", "proxy", "mum", "--patient", "child-1", "--relationship", "parent", "--revoke",
        "--until", "2030-01-01", "-w", str(settings.warehouse), cwd=tmp_path, env=ENV,
    )  # fmt: skip
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode != 0 and len(lines) == 1, run.stdout + run.stderr
    assert lines[0].startswith("error: --until: a revocation ends the access now"), lines[0]
    store = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    try:
        (record,) = store.proxies("mum")
        assert record.revoked_at is None  # still in force: nothing was half-done
    finally:
        store.close()
