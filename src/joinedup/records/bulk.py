"""Bulk load into the records store and bulk export out of it (issue 16): the path from source
files (NDJSON, Bundles) into the store, and from the store to the NDJSON folder layout that
`joinedup ingest fhir` and `joinedup views run` read, so the warehouse can be built from the
store. See docs/records.md, "Bulk load and export"."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
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

#: Resources written per database transaction: each chunk is all or nothing.
CHUNK_SIZE = 500


@dataclass
class LoadResult:
    """What a load did: resources read, created, updated (content differed), unchanged (same
    content already stored, so no new version), and the one-line problems of those skipped."""

    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: list[str] = field(default_factory=list)


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


def load(
    store: RecordStore,
    paths: Iterable[Path],
    *,
    chunk_size: int = CHUNK_SIZE,
    on_progress: Callable[[int], None] | None = None,
    on_invalid: Callable[[str], None] | None = None,
) -> LoadResult:
    """Write every resource in `paths` (NDJSON plain or gzip, Bundles, single resources; files
    or folders) to the store at its own id, `chunk_size` resources per transaction.

    A resource already stored with the same content is left alone (an update `if_changed`),
    so a second run of the same load makes no new versions. A resource that cannot be read,
    has no id, or fails validation is reported (file, line, element) and skipped; the rest of
    its chunk is written. A failure of any other kind refuses the chunk being written and
    stops the load: the chunks before it stay written, whole.
    """
    if chunk_size < 1:
        raise InputError("--chunk-size", "must be at least 1")
    result = LoadResult()

    def invalid(record: Record, reason: str) -> None:
        message = _problem(record, reason)
        result.invalid.append(message)
        if on_invalid is not None:
            on_invalid(message)

    for chunk in _chunks(records(list(paths)), chunk_size):
        result.read += len(chunk)
        pending: list[Record] = []
        for record in chunk:
            resource = record.resource
            if record.problem is not None or resource is None:
                invalid(record, record.problem or "not a FHIR resource")
            elif not isinstance(resource.get("id"), str) or not resource["id"]:
                kind = resource.get("resourceType")
                invalid(record, f"{kind}.id: missing (a load keeps each resource at its own id)")
            else:
                pending.append(record)
        if pending:
            try:
                written = store.load_chunk([_as_given(r.resource) for r in pending])
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
        if on_progress is not None:
            on_progress(len(chunk))
    return result


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
