"""Bulk Data export jobs are shared by every server process over one exports folder
(`records serve --workers N`): a job started by one is seen, polled and cancelled by another,
one export at a time per user holds across them, and a job whose process died while writing
it is reported failed with its partial files removed, not left running for ever."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from joinedup.records.exports import ExportBusyError, ExportJob, Exports
from joinedup.records.store import RecordStore

RETENTION = timedelta(hours=1)


def _patient(rid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": rid, "gender": "female", "birthDate": "1980-02-03"}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with RecordStore(str(tmp_path / "records.sqlite")) as opened:
        for i in range(30):
            opened.update(_patient(f"p{i}"))
        yield opened


def _finished(exports: Exports, job_id: str) -> ExportJob:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = exports.get(job_id)
        assert job is not None
        if job.state != "running":
            return job
        time.sleep(0.02)
    raise AssertionError(f"export {job_id} still running after 30 s")


def test_a_job_started_by_one_server_is_answered_by_another(store: Any, tmp_path: Path) -> None:
    first = Exports(store, tmp_path / "exports", RETENTION)
    second = Exports(store, tmp_path / "exports", RETENTION)
    job = first.start("system", "http://x/fhir/R4/$export")
    done = _finished(second, job.job_id)
    assert done.state == "done"
    assert done.counts == {"Patient": 30}
    path = done.file("Patient")
    assert path is not None
    assert len(path.read_text().splitlines()) == 30
    # a server started later (a restart) still answers for it
    assert Exports(store, tmp_path / "exports", RETENTION).get(job.job_id) == done
    # the other server cancels it: gone for both, files removed
    assert second.cancel(job.job_id) is not None
    assert first.get(job.job_id) is None
    assert not (tmp_path / "exports" / job.job_id).exists()


def test_a_cancel_from_another_server_stops_and_removes_a_running_job(
    store: Any, tmp_path: Path
) -> None:
    first = Exports(store, tmp_path / "exports", RETENTION)
    second = Exports(store, tmp_path / "exports", RETENTION)
    job = first.start("system", "http://x/fhir/R4/$export")
    assert second.cancel(job.job_id) is not None
    assert first.get(job.job_id) is None and second.get(job.job_id) is None
    deadline = time.monotonic() + 30  # the writing thread removes what it wrote when it sees
    folder = tmp_path / "exports"
    while any(job.job_id in p.name for p in folder.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(job.job_id in p.name for p in folder.iterdir())


def _job_file(folder: Path, job: ExportJob) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{job.job_id}.json").write_text(json.dumps(job.as_json()))


def test_one_running_export_per_user_across_servers_and_a_dead_writer_fails(
    store: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "exports"
    exports = Exports(store, folder, RETENTION)
    # a job another live process is writing (this test's own process stands for it)
    running = ExportJob(
        job_id="a" * 32, owner="system", request="r", resource_types=(), since=None,
        transaction_time=store.now(), folder=folder / ("a" * 32),
    )  # fmt: skip
    _job_file(folder, running)
    with pytest.raises(ExportBusyError):
        exports.start("system", "http://x/fhir/R4/$export")

    # the process writing it died part-way (its pid no longer runs): reported failed, its
    # partial files removed, and the user may export again
    dead = subprocess.Popen(["true"])
    dead.wait()
    running.pid = dead.pid
    _job_file(folder, running)
    staging = folder / f".{running.job_id}-x1"
    staging.mkdir()
    (staging / "Patient.ndjson").write_text("{}\n")
    failed = exports.get(running.job_id)
    assert failed is not None and failed.state == "failed"
    assert failed.error is not None and "stopped" in failed.error
    assert not staging.exists()
    job = exports.start("system", "http://x/fhir/R4/$export")
    assert _finished(exports, job.job_id).state == "done"


def test_job_ids_that_are_not_ours_are_unknown(store: Any, tmp_path: Path) -> None:
    exports = Exports(store, tmp_path / "exports", RETENTION)
    (tmp_path / "secret.json").write_text("{}")
    for job_id in ("../secret", "A" * 32, "", "x" * 32):
        assert exports.get(job_id) is None
        assert exports.cancel(job_id) is None
    assert (tmp_path / "secret.json").exists()
