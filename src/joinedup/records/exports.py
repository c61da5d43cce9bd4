"""Bulk Data exports run in the background (issue 16, SMART/HL7 FHIR Bulk Data `$export`): each
kick-off starts a job that writes the store's current resources as `<Type>.ndjson` with
`records.bulk.export` into a folder of its own under the exports folder, one job running at a
time per user; a finished job's files are kept for the retention time, then removed, and a
cancelled job's at once. Jobs live in memory: the folders a stopped server left are removed
by the next one to start once they are older than the retention. The web edge
(`web.records_api.bulk_export`) serves the kick-off, status, manifest and files.
See docs/records.md, "Bulk Data $export"."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from joinedup.records.bulk import export
from joinedup.records.store import RecordStore

log = logging.getLogger(__name__)

#: A job's id: its folder's name, and the only folders the exports folder's sweep removes.
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_STAGING = re.compile(r"\.[0-9a-f]{32}-.*")


class ExportBusyError(Exception):
    """The user already has an export running (one at a time per user)."""

    def __init__(self, job: ExportJob) -> None:
        self.job = job
        super().__init__(f"export {job.job_id} is still running; wait for it or cancel it")


class _CancelledError(Exception):
    """Raised from the export's progress callback to stop a cancelled job."""


@dataclass
class ExportJob:
    """One export: who asked, what for, and how far it has got. `state` is `running`, `done`,
    `failed` or `cancelled`; `counts` (resources a type) once done."""

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
    cancelled: threading.Event = field(default_factory=threading.Event)

    def file(self, resource_type: str) -> Path | None:
        """The NDJSON file of `resource_type`, when the job is done and wrote one."""
        if self.state != "done" or resource_type not in self.counts:
            return None
        return self.folder / f"{resource_type}.ndjson"


class Exports:
    """The exports of one server over `store`, written under `folder` and kept for
    `retention` after they finish. `clock` gives the time retention is measured by."""

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
        self._jobs: dict[str, ExportJob] = {}
        self._lock = threading.Lock()
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Remove the job folders a previous server left that are older than the retention
        (their status URLs died with it); nothing else in the folder is touched."""
        if not self.folder.is_dir():
            return
        oldest = time.time() - self.retention.total_seconds()
        for path in self.folder.iterdir():
            if (
                path.is_dir()
                and (_JOB_ID.fullmatch(path.name) or _STAGING.fullmatch(path.name))
                and path.stat().st_mtime < oldest
            ):
                shutil.rmtree(path, ignore_errors=True)

    def start(
        self,
        owner: str,
        request: str,
        resource_types: Iterable[str] = (),
        since: datetime | None = None,
    ) -> ExportJob:
        """Start exporting in a background thread and give the job; ExportBusyError when
        `owner` already has one running."""
        self.sweep()
        with self._lock:
            for job in self._jobs.values():
                if job.owner == owner and job.state == "running":
                    raise ExportBusyError(job)
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
            self._jobs[job_id] = job
        threading.Thread(
            target=self._run, args=(job,), name=f"export-{job_id}", daemon=True
        ).start()
        return job

    def _run(self, job: ExportJob) -> None:
        def progress(written: int) -> None:
            if job.cancelled.is_set():
                raise _CancelledError
            job.written += written

        try:
            counts = export(
                self.store,
                job.folder,
                resource_types=job.resource_types,
                since=job.since,
                on_progress=progress,
            )
        except _CancelledError:
            with self._lock:
                job.state = "cancelled"
        except Exception as err:  # reported to the client on the status URL
            log.exception("bulk export %s failed", job.job_id)
            job.error = f"the export failed ({type(err).__name__}); see the server's log"
            job.state = "failed"
        else:
            job.counts = counts
            with self._lock:  # against cancel(): one of the two removes the files
                job.state = "cancelled" if job.cancelled.is_set() else "done"
        job.finished_at = self._clock()
        if job.state == "cancelled":
            shutil.rmtree(job.folder, ignore_errors=True)
            return
        # Remove the files when they expire, even if no one asks the server anything.
        later = threading.Timer(
            self.retention.total_seconds() + 1, self.sweep
        )  # after the retention, so the sweep finds it expired
        later.daemon = True
        later.start()

    def get(self, job_id: str) -> ExportJob | None:
        """The job `job_id`, unless it is unknown, cancelled or expired."""
        self.sweep()
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> ExportJob | None:
        """Stop `job_id` if it is running and remove its files; the job, or None if unknown."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
            if job is None:
                return None
            job.cancelled.set()
            running = job.state == "running"
        if not running:
            shutil.rmtree(job.folder, ignore_errors=True)
        # a running job removes what it wrote when its next resource sees the flag, or at its end
        return job

    def sweep(self) -> None:
        """Forget the jobs that finished more than the retention ago, and remove their files."""
        now = self._clock()
        with self._lock:
            expired = [
                job
                for job in self._jobs.values()
                if job.finished_at is not None and now - job.finished_at >= self.retention
            ]
            for job in expired:
                del self._jobs[job.job_id]
        for job in expired:
            shutil.rmtree(job.folder, ignore_errors=True)
