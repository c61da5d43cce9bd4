"""Read FHIR R4 JSON resources from files or folders: bulk-data NDJSON (plain or gzip),
Bundles (their entries' resources) and single resources, one resource at a time.

A line or file that is not valid JSON, or not a resource, raises InputError naming the file and
line: `views run` stops on it. (Bulk ingest with a quarantine for bad records is separate.)
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from joinedup.errors import InputError

_SUFFIXES = (".ndjson", ".ndjson.gz", ".json", ".json.gz", ".jsonl", ".jsonl.gz")


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.name.endswith(_SUFFIXES))
            if not found:
                raise InputError(str(path), f"no FHIR files ({', '.join(_SUFFIXES)}) in it")
            yield from found
        elif path.is_file():
            yield path
        else:
            raise InputError(str(path), "no such file or folder")


def _open(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open(encoding="utf-8")


def _resources(item: Any, where: str) -> Iterator[dict[str, Any]]:
    if not isinstance(item, dict) or not isinstance(item.get("resourceType"), str):
        raise InputError(where, "not a FHIR resource (no resourceType)")
    if item["resourceType"] == "Bundle":
        for i, entry in enumerate(item.get("entry") or []):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if resource is not None:
                yield from _resources(resource, f"{where}, entry {i}")
        return
    yield item


def read_resources(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every resource in `paths` (files or folders), streaming line by line for NDJSON."""
    for path in _files(paths):
        ndjson = ".ndjson" in path.name or ".jsonl" in path.name
        with _open(path) as handle:
            if ndjson:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise InputError(
                            f"{path}, line {number}", f"not JSON ({err.msg})"
                        ) from None
                    yield from _resources(item, f"{path}, line {number}")
            else:
                try:
                    item = json.load(handle)
                except json.JSONDecodeError as err:
                    raise InputError(
                        f"{path}, line {err.lineno}", f"not JSON ({err.msg})"
                    ) from None
                yield from _resources(item, str(path))
