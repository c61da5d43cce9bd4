"""Bulk Data exports run in the background (issue 16, SMART/HL7 FHIR Bulk Data `$export`): each
kick-off starts a job that writes the store's current resources as `<Type>.ndjson` with
`records.bulk.export` into a folder of its own under the exports folder, one job running at a
time per user; a finished job's files are kept for the retention time, then removed, and a
cancelled job's at once.

A job is a small JSON file beside its folder (`<job id>.json`), read and written under a lock
on the exports folder (`.jobs.lock`), so every server process sharing the folder (`records
serve --workers N`) answers for every job, and a status URL outlives a server restart: the
process that started a job writes it, records its progress about every second and notices a
cancel (its job file gone) within a quarter of a second; a job whose process stopped while
writing it is reported failed, and its partial files removed. The web edge
(`web.records_api.bulk_export`) serves the kick-off, status, manifest and files.
See docs/records.md, "Bulk Data $export"."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from joinedup.records.bulk import export
from joinedup.records.store import RecordStore

log = logging.getLogger(__name__)

#: A job's id: its folder's name, and the only folders the exports folder's sweep removes.
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_STAGING = re.compile(r"\.([0-9a-f]{32})-.*")
#: How often a running job writes its progress to its job file, and looks for a cancel.
_FLUSH_S = 1.0
_CANCEL_CHECK_S = 0.25


class ExportBusyError(Exception):
    """The user already has an export running (one at a time per user)."""

    def __init__(self, job: ExportJob) -> None:
        self.job = job
        super().__init__(f"export {job.job_id} is still running; wait for it or cancel it")


class _CancelledError(Exception):
    """Raised from the export's progress callback to stop a cancelled job."""


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _moment(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


@dataclass
class ExportJob:
    """One export: who asked, what for, and how far it has got. `state` is `running`, `done`,
    `failed` or `cancelled`; `counts` (resources a type) once done; `pid` and `host` the
    server process writing it."""

    job_id: str
    owner: str
    request: str
    resource_types: tuple[str, ...]
    since: datetime | None
    transaction_time: datetime
    folder: Path
    state: str = "running"
    written: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    finished_at: datetime | None = None
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)

    def file(self, resource_type: str) -> Path | None:
        """The NDJSON file of `resource_type`, when the job is done and wrote one."""
        if self.state != "done" or resource_type not in self.counts:
            return None
        return self.folder / f"{resource_type}.ndjson"

    def as_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "owner": self.owner, "request": self.request,
            "resource_types": list(self.resource_types), "since": _instant(self.since),
            "transaction_time": _instant(self.transaction_time), "state": self.state,
            "written": self.written, "counts": self.counts, "error": self.error,
            "finished_at": _instant(self.finished_at), "pid": self.pid, "host": self.host,
        }  # fmt: skip

    @classmethod
    def of_json(cls, data: dict[str, Any], folder: Path) -> ExportJob:
        transaction_time = _moment(data["transaction_time"])
        if transaction_time is None:
            raise ValueError("no transaction time")
        return cls(
            job_id=str(data["job_id"]), owner=str(data["owner"]), request=str(data["request"]),
            resource_types=tuple(str(t) for t in data["resource_types"]),
            since=_moment(data["since"]), transaction_time=transaction_time,
            folder=folder / str(data["job_id"]), state=str(data["state"]),
            written=int(data["written"]),
            counts={str(k): int(v) for k, v in dict(data["counts"]).items()},
            error=None if data["error"] is None else str(data["error"]),
            finished_at=_moment(data["finished_at"]), pid=int(data["pid"]), host=str(data["host"]),
        )  # fmt: skip

    def writer_gone(self) -> bool:
        """Whether the job is marked running but the process writing it on this host has
        stopped (a job written on another host is taken at its word)."""
        if self.state != "running" or self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, someone else's
            return False
        return False


class Exports:
    """The exports of the servers over `store` that share `folder`, kept for `retention`
    after they finish. `clock` gives the time retention is measured by."""

    def __init__(
        self,
        store: RecordStore,
        folder: Path,
        retention: timedelta,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if retention <= timedelta(0):
            raise ValueError("an export's retention must be positive")
        self.store = store
        self.folder = folder
        self.retention = retention
        self._clock = clock or store.now
        self._remove_leftovers()

    # --- the job files ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the exports folder's lock (every process and thread sharing the folder)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / ".jobs.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.json"

    def _read(self, job_id: str) -> ExportJob | None:
        try:
            data = json.loads(self._path(job_id).read_text(encoding="utf-8"))
            return ExportJob.of_json(data, self.folder)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("export job file %s is unreadable: %s", self._path(job_id), err)
            return None

    def _write(self, job: ExportJob) -> None:
        """Write `job`'s file whole (a new file renamed over the old)."""
        path = self._path(job.job_id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(job.as_json()), encoding="utf-8")
        tmp.replace(path)

    def _job_ids(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return [p.stem for p in self.folder.glob("*.json") if _JOB_ID.fullmatch(p.stem)]

    def _remove_files(self, job_id: str) -> None:
        shutil.rmtree(self.folder / job_id, ignore_errors=True)
        for path in self.folder.glob(f".{job_id}-*"):
            shutil.rmtree(path, ignore_errors=True)

    def _settle(self, job: ExportJob) -> ExportJob:
        """`job`, failed if the process writing it has stopped (its partial files removed);
        under the lock."""
        if job.writer_gone():
            job.state = "failed"
            job.error = "the export stopped: the server writing it stopped; start it again"
            job.finished_at = self._clock()
            self._write(job)
            self._remove_files(job.job_id)
        return job

    def _remove_leftovers(self) -> None:
        """Remove job folders with no job file (left by a server from before job files, or
        by a crash between the two) once they are older than the retention; nothing else in
        the folder is touched."""
        if not self.folder.is_dir():
            return
        oldest = time.time() - self.retention.total_seconds()
        with self._locked():
            known = set(self._job_ids())
            for path in self.folder.iterdir():
                match = _JOB_ID.fullmatch(path.name) or _STAGING.fullmatch(path.name)
                if (
                    path.is_dir()
                    and match
                    and (match.group(1) if match.groups() else path.name) not in known
                    and path.stat().st_mtime < oldest
                ):
                    shutil.rmtree(path, ignore_errors=True)

    # --- jobs -------------------------------------------------------------------------------

    def start(
        self,
        owner: str,
        request: str,
        resource_types: Iterable[str] = (),
        since: datetime | None = None,
    ) -> ExportJob:
        """Start exporting in a background thread and give the job; ExportBusyError when
        `owner` already has one running (in this process or another sharing the folder)."""
        with self._locked():
            for other in self._swept():
                if other.owner == owner and other.state == "running":
                    raise ExportBusyError(other)
            job_id = uuid.uuid4().hex
            job = ExportJob(
                job_id=job_id,
                owner=owner,
                request=request,
                resource_types=tuple(sorted(set(resource_types))),
                since=since,
                transaction_time=self.store.now(),
                folder=self.folder / job_id,
            )
            self._write(job)
        threading.Thread(
            target=self._run, args=(job,), name=f"export-{job_id}", daemon=True
        ).start()
        return job

    def _run(self, job: ExportJob) -> None:
        path = self._path(job.job_id)
        last_check = last_flush = time.monotonic()

        def progress(written: int) -> None:
            nonlocal last_check, last_flush
            job.written += written
            now = time.monotonic()
            if now - last_check < _CANCEL_CHECK_S:
                return
            last_check = now
            if not path.exists():
                raise _CancelledError
            if now - last_flush >= _FLUSH_S:
                last_flush = now
                with self._locked():
                    if not path.exists():
                        raise _CancelledError
                    self._write(job)

        try:
            counts = export(
                self.store,
                job.folder,
                resource_types=job.resource_types,
                since=job.since,
                on_progress=progress,
            )
        except _CancelledError:
            job.state = "cancelled"
        except Exception as err:  # reported to the client on the status URL
            log.exception("bulk export %s failed", job.job_id)
            job.error = f"the export failed ({type(err).__name__}); see the server's log"
            job.state = "failed"
        else:
            job.counts = counts
            job.state = "done"
        job.finished_at = self._clock()
        with self._locked():  # against cancel(): the job file gone means cancelled
            if job.state == "cancelled" or not path.exists():
                job.state = "cancelled"
                self._remove_files(job.job_id)
                return
            self._write(job)
        # Remove the files when they expire, even if no one asks the server anything.
        later = threading.Timer(
            self.retention.total_seconds() + 1, self.sweep
        )  # after the retention, so the sweep finds it expired
        later.daemon = True
        later.start()

    def get(self, job_id: str) -> ExportJob | None:
        """The job `job_id`, unless it is unknown, cancelled or expired."""
        if not _JOB_ID.fullmatch(job_id):
            return None
        with self._locked():
            return next((job for job in self._swept() if job.job_id == job_id), None)

    def cancel(self, job_id: str) -> ExportJob | None:
        """Stop `job_id` if it is running and remove its files; the job, or None if unknown.
        A running job's own process removes what it wrote when it next looks (within a
        quarter of a second) or at its end."""
        if not _JOB_ID.fullmatch(job_id):
            return None
        with self._locked():
            job = self._read(job_id)
            if job is None:
                return None
            self._path(job_id).unlink()
            if job.state != "running" or job.writer_gone():
                self._remove_files(job_id)
        return job

    def sweep(self) -> None:
        """Forget the jobs that finished more than the retention ago, and remove their files."""
        with self._locked():
            self._swept()

    def _swept(self) -> list[ExportJob]:
        """Every job there is, each read once, settled, and removed with its files when it
        finished more than the retention ago; the rest. Under the lock."""
        now = self._clock()
        kept = []
        for job_id in self._job_ids():
            job = self._read(job_id)
            if job is None:
                continue
            job = self._settle(job)
            if job.finished_at is not None and now - job.finished_at >= self.retention:
                self._path(job_id).unlink()
                self._remove_files(job_id)
            else:
                kept.append(job)
        return kept
