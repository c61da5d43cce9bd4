"""Read FHIR R4 resources from files or folders: bulk-data NDJSON (plain or gzip), Bundles
(their entries' resources), single resources in JSON, and FHIR XML (`fhir/xml.py`).

`records` streams every resource with where it came from (file and line), and turns a record
that cannot be read (a line that is not JSON, an entry that is not a resource) into a `Record`
with a `problem` instead of raising, so bulk ingest can quarantine it and load the rest.
`read_resources` is the strict form `views run` uses: the first problem stops it.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from joinedup.errors import InputError

_SUFFIXES = (
    ".ndjson", ".ndjson.gz", ".json", ".json.gz", ".jsonl", ".jsonl.gz", ".xml", ".xml.gz",
)  # fmt: skip


@dataclass(frozen=True)
class Record:
    """One resource read from `file` at `line` (1-based; for a whole-file resource, 1), or the
    reason it could not be read."""

    file: str
    line: int
    resource: dict[str, Any] | None
    problem: str | None = None
    text: str | None = None  # the raw text of a bad NDJSON line, for the quarantine
    context: str = ""  # where inside the file, e.g. "Bundle entry 3: "

    @property
    def where(self) -> str:
        return f"{self.file}, line {self.line}"


def input_files(paths: Iterable[Path]) -> list[Path]:
    """The FHIR files in `paths` (files, or folders searched recursively), in a stable order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.name.endswith(_SUFFIXES))
            if not found:
                raise InputError(str(path), f"no FHIR files ({', '.join(_SUFFIXES)}) in it")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(str(path), "no such file or folder")
    return files


def _open(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open(encoding="utf-8")


_ID_TAIL = re.compile(r"^urn:(?:uuid|oid):([A-Za-z0-9\-.]{1,64})$")


def _bundle_entries(bundle: dict[str, Any]) -> list[Any] | None:
    """A Bundle's entry resources, made loadable as a FHIR server would on a transaction:
    an entry without an id takes the id of its `urn:uuid:` fullUrl, and references to another
    entry's fullUrl become `Type/id`."""
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        return None
    resolved: dict[str, str] = {}
    out: list[Any] = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            continue
        full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and isinstance(full_url, str):
            tail = _ID_TAIL.match(full_url)
            if tail and not resource.get("id"):
                resource = {**resource, "id": tail.group(1)}
            kind, rid = resource.get("resourceType"), resource.get("id")
            if isinstance(kind, str) and isinstance(rid, str):
                resolved[full_url] = f"{kind}/{rid}"
        out.append(resource)
    if resolved:
        out = [_resolve(r, resolved) for r in out]
    return out


def _resolve(value: Any, resolved: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: resolved.get(v, v)
            if k == "reference" and isinstance(v, str)
            else _resolve(v, resolved)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolve(v, resolved) for v in value]
    return value


def _unpack(item: Any, file: str, line: int, where: str = "") -> Iterator[Record]:
    """The resources in `item`: itself, or a Bundle's entries (recursively)."""
    if not isinstance(item, dict) or not isinstance(item.get("resourceType"), str):
        yield Record(file, line, None, f"{where}not a FHIR resource (no resourceType)")
        return
    if item["resourceType"] == "Bundle":
        entries = _bundle_entries(item)
        if entries is None:
            yield Record(file, line, None, f"{where}Bundle.entry is not a list")
            return
        for i, resource in enumerate(entries):
            yield from _unpack(resource, file, line, f"{where}Bundle entry {i}: ")
        return
    yield Record(file, line, item, context=where)


def _is_ndjson(path: Path) -> bool:
    return ".ndjson" in path.name or ".jsonl" in path.name


def records(paths: Iterable[Path]) -> Iterator[Record]:
    """Every resource in `paths`, with its file and line, streaming NDJSON line by line."""
    for path in input_files(paths):
        yield from file_records(path)


def file_records(path: Path) -> Iterator[Record]:
    """Every resource in one file, with its line."""
    name = str(path)
    if path.name.endswith((".xml", ".xml.gz")):
        from joinedup.fhir.xml import read_xml_resource  # noqa: PLC0415 - lxml only for XML

        try:
            yield from _unpack(read_xml_resource(path), name, 1)
        except InputError as err:
            yield Record(name, 1, None, err.reason)
        return
    with _open(path) as handle:
        if _is_ndjson(path):
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as err:
                    yield Record(name, number, None, f"not JSON ({err.msg})", line.rstrip("\n"))
                    continue
                yield from _unpack(item, name, number)
            return
        try:
            item = json.load(handle)
        except json.JSONDecodeError as err:
            yield Record(name, err.lineno, None, f"not JSON ({err.msg})")
            return
        yield from _unpack(item, name, 1)


def read_resources(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every resource in `paths` (files or folders); the first unreadable record raises
    InputError naming its file and line."""
    for record in records(paths):
        if record.resource is None:
            raise InputError(record.where, record.problem or "unreadable")
        yield record.resource
