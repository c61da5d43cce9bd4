"""Bulk load into the records store and bulk export out of it (issue 16): the path from source
files (NDJSON, Bundles) into the store, and from the store to the NDJSON folder layout that
`joinedup ingest fhir` and `joinedup views run` read, so the warehouse can be built from the
store. See docs/records.md, "Bulk load and export"."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import Any

from joinedup.errors import InputError
from joinedup.fhir.reader import Record, records
from joinedup.records.errors import (
    InvalidResourceError,
    TransactionFailedError,
    VersionConflictError,
)
from joinedup.records.operations import Outcome, Update
from joinedup.records.store import RecordStore
from joinedup.records.validation import validate_resource

#: Resources written per database transaction: each chunk is all or nothing.
CHUNK_SIZE = 500

#: A stamp like the one the store gives each version (any version's is valid alike).
_STAMP = datetime(2000, 1, 1, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

Verdict = tuple[str, list[str]] | bool


@dataclass
class LoadResult:
    """What a load did: resources read, created, updated (content differed), unchanged (same
    content already stored, so no new version), and the one-line problems of those skipped."""

    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: list[str] = field(default_factory=list)


def loaded_counts(result: LoadResult) -> str:
    """A load's counts in a line, as the audit log keeps them (no identifier)."""
    return (
        f"{result.read} read, {result.created} created, {result.updated} updated, "
        f"{result.unchanged} unchanged, {len(result.invalid)} skipped"
    )


def _problem(record: Record, reason: str) -> str:
    return f"{record.where}: {record.context}{reason}"


def _chunks(found: Iterator[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in found:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _pending(chunk: list[Record]) -> list[tuple[Record, str | None]]:
    """Each record of `chunk` with why it cannot be written (None: it goes to the store)."""
    found: list[tuple[Record, str | None]] = []
    for record in chunk:
        resource = record.resource
        if record.problem is not None or resource is None:
            found.append((record, record.problem or "not a FHIR resource"))
        elif not isinstance(resource.get("id"), str) or not resource["id"]:
            kind = resource.get("resourceType")
            found.append((record, f"{kind}.id: missing (a load keeps each resource at its own id)"))
        else:
            found.append((record, None))
    return found


def _verdicts(given: list[dict[str, Any]]) -> list[Verdict]:
    """In a worker process: what the store's validation finds in each resource once stamped
    with a version (`RecordStore.load_chunk` checks the same copy): True valid, the
    InvalidResourceError's (where, problems), or False when the worker could not tell (the
    store then validates it itself, and reports whatever it raises)."""
    found: list[Verdict] = []
    for item in given:
        try:
            resource = json.loads(json.dumps(item))
            resource["meta"] = {**(resource.get("meta") or {}), "versionId": "1",
                                "lastUpdated": _STAMP}  # fmt: skip
            validate_resource(resource)
        except InvalidResourceError as err:
            found.append((err.where, err.problems))
        except Exception:  # left to the store, which raises it as it would
            found.append(False)
        else:
            found.append(True)
    return found


def _parts(given: list[dict[str, Any]], count: int) -> list[list[dict[str, Any]]]:
    """`given` in up to `count` runs of about equal length, in order."""
    size = max(1, -(-len(given) // max(count, 1)))
    return [given[i : i + size] for i in range(0, len(given), size)]


def _checked(verdicts: list[Verdict]) -> list[InvalidResourceError | bool]:
    return [v if isinstance(v, bool) else InvalidResourceError(*v) for v in verdicts]


def load(
    store: RecordStore,
    paths: Iterable[Path],
    *,
    chunk_size: int = CHUNK_SIZE,
    on_progress: Callable[[int], None] | None = None,
    on_invalid: Callable[[str], None] | None = None,
    validation_workers: int = 0,
) -> LoadResult:
    """Write every resource in `paths` (NDJSON plain or gzip, Bundles, single resources; files
    or folders) to the store at its own id, `chunk_size` resources per transaction.

    A resource already stored with the same content is left alone (an update `if_changed`),
    so a second run of the same load makes no new versions. A resource that cannot be read,
    has no id, or fails validation is reported (file, line, element) and skipped; the rest of
    its chunk is written. A failure of any other kind refuses the chunk being written and
    stops the load: the chunks before it stay written, whole.

    `validation_workers` above 0 validates each chunk in that many worker processes while
    the chunk before it is written; the store then skips its own check of those, so the
    results and messages are the same. It pays only with idle cores (docs/records.md). The
    workers are new processes (`spawn`, no copy of the store's connections), so a script
    calling this with workers needs the `if __name__ == "__main__":` guard.
    """
    if chunk_size < 1:
        raise InputError("--chunk-size", "must be at least 1")
    if validation_workers < 0:
        raise InputError("--validation-workers", "must be 0 or more")
    workers = validation_workers
    result = LoadResult()

    def invalid(record: Record, reason: str) -> None:
        message = _problem(record, reason)
        result.invalid.append(message)
        if on_invalid is not None:
            on_invalid(message)

    with ExitStack() as stack:
        pool: list[ProcessPoolExecutor] = []

        def ahead(chunks: Iterator[list[Record]]) -> Iterator[_Chunk]:
            """Each chunk, with its validation (in the workers) started before the chunk
            before it is given back, so the two overlap. A failure reading the next chunk
            comes after the chunk before it is written, as it would without workers."""
            before = None
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except BaseException:
                    if before is not None:
                        yield before
                    raise
                if workers and not pool:
                    context = multiprocessing.get_context("spawn")  # no copy of the store
                    pool.append(
                        stack.enter_context(ProcessPoolExecutor(workers, mp_context=context))
                    )
                sorted_out = _pending(chunk)
                given = [_as_given(r.resource) for r, why in sorted_out if why is None]
                futures = (
                    [pool[0].submit(_verdicts, p) for p in _parts(given, workers)] if pool else []
                )
                if before is not None:
                    yield before
                before = _Chunk(chunk, sorted_out, futures)
            if before is not None:
                yield before

        for item in ahead(_chunks(records(list(paths)), chunk_size)):
            _write_chunk(store, item, result, invalid)
            if on_progress is not None:
                on_progress(len(item.records))
    return result


@dataclass
class _Chunk:
    """A chunk read: its records, each with why it cannot be written (or None), and the
    workers' validation of those that can, part by part (none when validated in-process)."""

    records: list[Record]
    sorted_out: list[tuple[Record, str | None]]
    futures: list[Future[list[Verdict]]]


def _write_chunk(
    store: RecordStore,
    chunk: _Chunk,
    result: LoadResult,
    invalid: Callable[[Record, str], None],
) -> None:
    result.read += len(chunk.records)
    pending: list[Record] = []
    for record, why in chunk.sorted_out:
        if why is not None:
            invalid(record, why)
        else:
            pending.append(record)
    checked = _checked([v for f in chunk.futures for v in f.result()]) if chunk.futures else None
    if pending:
        try:
            written = store.load_chunk([_as_given(r.resource) for r in pending], checked=checked)
        except VersionConflictError:
            # Another writer got to one of them: the chunk was not written. Write it one
            # resource at a time instead, which names the resource if it fails again.
            _one_at_a_time(store, pending, result, invalid)
        else:
            for record, outcome in zip(pending, written, strict=True):
                if isinstance(outcome, InvalidResourceError):
                    invalid(record, str(outcome))
                else:
                    _count(result, outcome)


def _count(result: LoadResult, outcome: Outcome | None) -> None:
    assert outcome is not None  # an update always has an outcome
    if outcome.created:
        result.created += 1
    elif outcome.changed:
        result.updated += 1
    else:
        result.unchanged += 1


def _one_at_a_time(
    store: RecordStore,
    pending: list[Record],
    result: LoadResult,
    invalid: Callable[[Record, str], None],
) -> None:
    """Write a chunk through `RecordStore.transaction`, one update at a time: the chunk all
    or nothing, its invalid resources reported and left out (the transaction is retried
    without each), any other failure an InputError naming the resource's file and line."""
    pending = list(pending)
    while pending:
        try:
            outcomes = store.transaction(
                [Update(_as_given(r.resource), if_changed=True) for r in pending]
            )
        except TransactionFailedError as err:
            if not isinstance(err.cause, InvalidResourceError):
                bad = pending[err.index]
                raise InputError(
                    bad.where,
                    f"{bad.context}{err.cause}; its chunk of {len(pending)} was not written "
                    f"({result.created + result.updated + result.unchanged:,} before it were)",
                ) from None
            # Report the invalid resource and write the rest of the chunk without it.
            invalid(pending[err.index], str(err.cause))
            del pending[err.index]
            continue
        for outcome in outcomes:
            _count(result, outcome)
        break


def _as_given(resource: dict[str, Any] | None) -> dict[str, Any]:
    assert resource is not None  # records without a resource were reported above
    return resource


def export(
    store: RecordStore,
    out_dir: Path,
    *,
    resource_types: Iterable[str] = (),
    since: datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write the store's current, not deleted resources (of `resource_types`, or all; last
    updated at or after `since`) to `out_dir` as NDJSON, one `<Type>.ndjson` a type, and give
    how many of each. The files are written in a temporary folder beside `out_dir` and renamed
    into place, so `out_dir` is never seen half-written; it must not exist or be empty."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(str(out_dir), "already exists and is not an empty folder")
    wanted: list[str | None] = [*sorted(set(resource_types))]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    counts: Counter[str] = Counter()
    try:
        for kind in wanted or [None]:
            _write_ndjson(store, staging, kind, since, counts, on_progress)
        if out_dir.exists():
            out_dir.rmdir()
        staging.replace(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dict(sorted(counts.items()))


def _write_ndjson(
    store: RecordStore,
    folder: Path,
    kind: str | None,
    since: datetime | None,
    counts: Counter[str],
    on_progress: Callable[[int], None] | None,
) -> None:
    """Write each type's resources to its file; the store gives them by type, so one file is
    open at a time."""
    by_type = groupby(store.current_resources(kind, since=since), key=lambda r: r["resourceType"])
    for rtype, resources in by_type:
        with (folder / f"{rtype}.ndjson").open("a", encoding="utf-8") as out:
            for resource in resources:
                out.write(json.dumps(resource, ensure_ascii=False, separators=(",", ":")) + "\n")
                counts[rtype] += 1
                if on_progress is not None:
                    on_progress(1)
