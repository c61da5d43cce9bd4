"""Bad options and forged names around `joinedup records serve --workers` and the shared
export jobs: a worker count below one, a port out of range, an in-memory store that several
processes cannot share, a job id made to reach outside the exports folder, and a job file
someone has damaged. Each is refused (exit code 2, naming the option or variable and why, no
traceback) or treated as unknown, and nothing in the folder is created, changed or removed
on the way."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from pathlib import Path

import pytest
from cli_run import joinedup

from joinedup.records.exports import Exports
from joinedup.records.store import RecordStore

pytestmark = pytest.mark.security


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("records", "workers", "words"),
    [
        ("records.sqlite", "0", "greater than or equal to 1"),
        ("records.sqlite", "two", "valid integer"),
        ("sqlite:///:memory:", "2", "in-memory SQLite store cannot be shared"),
    ],
)
def test_bad_workers_are_refused_in_one_line_naming_the_option(
    tmp_path: Path, records: str, workers: str, words: str
) -> None:
    before = snapshot(tmp_path)
    run = joinedup(
        "records", "serve", "--records", records, "--workers", workers,
        "--warehouse", str(tmp_path / "w.duckdb"), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    assert "--workers" in run.stderr and words in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("command", "args", "env", "words"),
    [
        (["records", "serve"], ["--port", "0"], {}, "--port: Input should be greater than"),
        (["serve"], ["--port", "65536"], {}, "--port: Input should be less than"),
        (["records", "serve"], [], {"JOINEDUP_PORT": "70000"}, "JOINEDUP_PORT: Input"),
    ],
    ids=["records serve --port 0", "serve --port 65536", "JOINEDUP_PORT=70000"],
)
def test_a_port_out_of_range_is_refused_in_one_line_naming_where_it_came_from(
    tmp_path: Path, command: list[str], args: list[str], env: dict[str, str], words: str
) -> None:
    before = snapshot(tmp_path)
    options = ["--records", "records.sqlite"] if command == ["records", "serve"] else []
    run = joinedup(
        *command, *options, *args, "--warehouse", str(tmp_path / "w.duckdb"),
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    assert words in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr  # no pydantic block
    assert "Traceback" not in run.stderr and "errors.pydantic.dev" not in run.stderr
    assert snapshot(tmp_path) == before


def test_forged_and_damaged_export_jobs_are_unknown_and_nothing_else_is_touched(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (tmp_path / "secret.json").write_text('{"keep": true}')
    (folder / ("b" * 32 + ".json")).write_text("{not json")  # a damaged job file
    with RecordStore(str(tmp_path / "records.sqlite")) as store:
        exports = Exports(store, folder, timedelta(hours=1))
        before = snapshot(tmp_path)
        for job_id in ("../secret", "..%2Fsecret", "B" * 32, "b" * 31, "b" * 32):
            assert exports.get(job_id) is None
            assert exports.cancel(job_id) is None
        assert (tmp_path / "secret.json").read_text() == '{"keep": true}'
        # the damaged file is not another user's running export: a new one starts and
        # finishes (the store is empty, so it may be done before start() returns)
        job = exports.start("system", "http://x/fhir/R4/$export")
        assert job.job_id != "b" * 32
        deadline = time.monotonic() + 30
        while (done := exports.get(job.job_id)) is not None and done.state == "running":
            assert time.monotonic() < deadline, "export still running after 30 s"
            time.sleep(0.02)
        assert done is not None and done.state == "done", done
        # every file that was there is unchanged (SQLite's own shared-memory index aside,
        # which the export's reads update)
        after = snapshot(tmp_path)
        kept = {k: v for k, v in before.items() if not k.endswith("-shm")}
        assert {k: v for k, v in after.items() if k in kept} == kept
