"""Read FHIR R4 resources from files or folders: bulk-data NDJSON (plain or gzip), Bundles
(their entries' resources), single resources in JSON, and FHIR XML (`fhir/xml.py`).

`records` streams every resource with where it came from (file and line), and turns a record
that cannot be read into a `Record` with a `problem` instead of raising, so bulk ingest can
quarantine it and load the rest. The reading is byte-level: a line that is not UTF-8, not JSON,
nested deeper than `MAX_DEPTH`, longer than `max_line_bytes`, or an entry that is not a
resource, is one bad record, and the next line is read as usual. Whether a file is gzip is
decided by its first bytes, not its name; a gzip stream that breaks part-way gives one bad
record at the line where it broke, after every line before it. A UTF-8 byte order mark at the
start of a file is skipped. `read_resources` is the strict form `views run` uses: the first
problem stops it.
"""

from __future__ import annotations

import gzip
import json
import mmap
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import numpy.typing as npt

from joinedup.errors import InputError

_SUFFIXES = (
    ".ndjson", ".ndjson.gz", ".json", ".json.gz", ".jsonl", ".jsonl.gz", ".xml", ".xml.gz",
)  # fmt: skip

#: How deeply JSON may nest (objects and arrays). FHIR resources, Bundles of them included,
#: nest a few dozen levels at most; deeper is refused before it can exhaust the stack.
MAX_DEPTH = 100
#: The longest NDJSON line read (bytes); a longer one is quarantined unread.
MAX_LINE_BYTES = 64 * 1024 * 1024

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


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


def _open(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when it starts as gzip does (whatever its name)."""
    with path.open("rb") as probe:
        start = probe.read(2)
    if start == _GZIP_MAGIC:
        return cast(BinaryIO, gzip.open(path, "rb"))
    return path.open("rb")


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


def records(paths: Iterable[Path], *, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Record]:
    """Every resource in `paths`, with its file and line, streaming NDJSON line by line."""
    for path in input_files(paths):
        yield from file_records(path, max_line_bytes=max_line_bytes)


def file_records(path: Path, *, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Record]:
    """Every resource in one file, with its line; never raises for what the file holds."""
    name = str(path)
    if path.name.endswith((".xml", ".xml.gz")):
        from joinedup.fhir.xml import read_xml_resource  # noqa: PLC0415 - lxml only for XML

        try:
            yield from _unpack(read_xml_resource(path), name, 1)
        except InputError as err:
            yield Record(name, 1, None, err.reason)
        except RecursionError:
            yield Record(name, 1, None, f"not readable XML (nested more than {MAX_DEPTH} deep)")
        return
    if _is_ndjson(path):
        yield from _ndjson_records(path, max_line_bytes)
        return
    with _open(path) as handle:
        try:
            data = handle.read()
        except _GZIP_ERRORS:
            yield Record(name, 1, None, "gzip stream is truncated or corrupt")
            return
    yield from _parsed(data.removeprefix(_BOM), name, 1, whole_file=True)


def _ndjson_records(path: Path, max_line_bytes: int) -> Iterator[Record]:
    """One record per non-blank line, bad lines included (as problems); reading goes on after
    each, and stops only where a compressed stream breaks."""
    name = str(path)
    number = 0
    with _open(path) as handle:
        while True:
            number += 1
            try:
                raw = handle.readline(max_line_bytes + 1)
                if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                    while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                        pass
                    yield Record(name, number, None, f"line longer than {max_line_bytes:,} bytes")
                    continue
            except _GZIP_ERRORS:
                yield Record(
                    name, number, None,
                    "gzip stream is truncated or corrupt from this line on: nothing after it "
                    "could be read",
                )  # fmt: skip
                return
            if not raw:
                return
            if number == 1:
                if raw.startswith(_UTF16_BOMS):
                    yield from _utf16_records(name, raw + handle.read())
                    return
                raw = raw.removeprefix(_BOM)
            if raw.strip():
                yield from _parsed(raw, name, number)


def _utf16_records(file: str, data: bytes) -> Iterator[Record]:
    """A UTF-16 file (it starts with UTF-16's byte order mark): every non-blank line is a bad
    record, FHIR NDJSON being UTF-8, kept as text for whoever re-encodes the feed."""
    text = data.decode("utf-16", "replace")
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            reason = "not UTF-8: the file is UTF-16 (FHIR NDJSON is UTF-8)"
            yield Record(file, number, None, reason, line)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _parsed(raw: bytes, file: str, line: int, *, whole_file: bool = False) -> Iterator[Record]:
    """The resources in one line (or whole file) of JSON bytes, or why there are none."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        where = line + raw.count(b"\n", 0, err.start) if whole_file else line
        bad = raw.decode("utf-8", "backslashreplace")
        yield Record(file, where, None, f"not UTF-8 (an invalid byte at byte {err.start + 1})", bad)
        return
    shown = None if whole_file else text.rstrip("\r\n")
    try:
        item = json.loads(text, parse_constant=_non_finite)
    except json.JSONDecodeError as err:
        where = err.lineno if whole_file else line
        yield Record(file, where, None, f"not JSON ({err.msg})", shown)
        return
    except RecursionError:
        yield Record(file, line, None, f"JSON nested more than {MAX_DEPTH} deep", shown)
        return
    except ValueError:  # e.g. an integer of more digits than Python converts
        yield Record(file, line, None, "not JSON (a number out of range)", shown)
        return
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and _too_deep(item):
        yield Record(file, line, None, f"JSON nested more than {MAX_DEPTH} deep", shown)
        return
    if _SURROGATE_ESCAPE.search(raw) and not _is_unicode(item):
        yield Record(
            file, line, None,
            "not valid Unicode: a \\uD800-\\uDFFF escape without its pair (a lone surrogate)",
            shown,
        )  # fmt: skip
        return
    yield from _unpack(item, file, line)


def _non_finite(constant: str) -> float:
    """NaN and Infinity are not JSON; kept as floats here so the check that refuses them can
    name the element (`validate.problems`)."""
    return float(constant)


def _too_deep(item: Any) -> bool:
    stack = [(item, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))
    return False


def _is_unicode(item: Any) -> bool:
    try:
        json.dumps(item, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_resources(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every resource in `paths` (files or folders); the first unreadable record raises
    InputError naming its file and line."""
    for record in records(paths):
        if record.resource is None:
            raise InputError(record.where, record.problem or "unreadable")
        yield record.resource


#: How bulk NDJSON starts every line: the resource type written first, as plain letters.
_TYPE_HEAD = b'{"resourceType":"'
_TYPE_NAME = re.compile(rb"[A-Za-z]{1,64}")
#: Bytes of a file scanned at once by `leading_type` (what it holds in memory, besides the
#: line starts found in them).
SCAN_BYTES = 2 * 1024 * 1024
#: Bytes of a file one thread of `leading_types` scans.
PIECE_BYTES = 128 * 1024 * 1024
#: Files `leading_types` maps into memory at a time.
FILES_AT_ONCE = 64


def leading_type(path: Path) -> tuple[str, int] | None:
    """The resource type every line of a plain (not gzip) NDJSON file starts with, written
    first as bulk exports write it (`{"resourceType":"Encounter"`), and how many lines; None
    when a line starts otherwise (spaces, another type, a blank line, another key first).

    This finds which files hold which type without parsing any line, as the type the JSON
    says is the first one written (`dialects.resource_type`): a line that is not JSON past
    its start is found by whatever parses it. The bytes are scanned in blocks with numpy
    (line starts, then each byte of the start at all of them); nothing per line is Python.
    """
    return leading_types([path])[path]


def leading_types(
    paths: Iterable[Path], workers: int | None = None
) -> dict[Path, tuple[str, int] | None]:
    """`leading_type` of each file, the files cut into pieces of about `PIECE_BYTES` at line
    ends and the pieces scanned by `workers` threads at once (by default one a CPU; numpy
    lets go of the GIL while it scans). `FILES_AT_ONCE` files are mapped at a time (a
    mapping holds a file descriptor: a bulk export may be thousands of files)."""
    listed = list(dict.fromkeys(paths))
    found: dict[Path, tuple[str, int] | None] = {}
    for low in range(0, len(listed), FILES_AT_ONCE):
        with ExitStack() as stack:  # every mapping closed once its files are scanned
            starts = {
                path: _mapped_start(path, stack) for path in listed[low : low + FILES_AT_ONCE]
            }
            counts = _count_lines(
                {path: (s[1], s[2]) for path, s in starts.items() if s is not None}, workers
            )
        for path, start in starts.items():
            lines = counts.get(path)
            found[path] = None if start is None or lines is None else (start[0], lines)
    return found


def _mapped_start(path: Path, stack: ExitStack) -> tuple[str, bytes, mmap.mmap] | None:
    """The type named at the start of `path`'s first line, that start, and the file mapped
    into memory (closed with `stack`); None when the first line starts otherwise."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with path.open("rb") as handle:  # the mapping keeps a descriptor of its own
        first = handle.read(len(_TYPE_HEAD) + 66)
        if not first.startswith(_TYPE_HEAD):
            return None
        name = _TYPE_NAME.match(first, len(_TYPE_HEAD))
        if name is None or first[name.end() : name.end() + 1] != b'"':
            return None
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    stack.callback(_unmap, mapped)
    return name.group().decode("ascii"), first[: name.end() + 1], mapped


def _unmap(mapped: mmap.mmap) -> None:
    """Close a mapping; while an error (or Ctrl-C) is on its way out, arrays in its
    traceback may still view the mapping, which then goes with them instead, so that the
    error, not a BufferError about the mapping, is what the caller sees."""
    with suppress(BufferError):
        mapped.close()


def _count_lines(
    files: dict[Path, tuple[bytes, mmap.mmap]], workers: int | None
) -> dict[Path, int | None]:
    """How many lines each mapped file holds when every one starts with its start, else
    None: the files' pieces scanned in a pool of threads."""
    pieces: list[tuple[Path, npt.NDArray[np.uint8], npt.NDArray[np.uint8]]] = []
    for path, (start, mapped) in files.items():
        data, head = np.frombuffer(mapped, dtype=np.uint8), np.frombuffer(start, np.uint8)
        pieces += [(path, data[low:high], head) for low, high in _pieces(data)]
    counts: dict[Path, int | None] = dict.fromkeys(files, 0)
    threads = max(1, min(workers or _cpus(), len(pieces)))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        scanned = list(pool.map(lambda piece: _lines_starting(piece[1], piece[2]), pieces))
    for (path, _, _), lines in zip(pieces, scanned, strict=True):
        total = counts[path]
        counts[path] = None if lines is None or total is None else total + lines
    return counts


def _cpus() -> int:
    """The CPUs this process may run on (all of them where the system cannot say)."""
    if hasattr(os, "sched_getaffinity"):  # Linux; not macOS or Windows
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _pieces(data: npt.NDArray[np.uint8]) -> list[tuple[int, int]]:
    """`data` cut into ranges of about `PIECE_BYTES`, each starting where a line starts."""
    size, low, cuts = len(data), 0, []
    while low < size:
        high = low + PIECE_BYTES
        if high < size:
            ends = np.flatnonzero(data[high - 1 : high - 1 + SCAN_BYTES] == 10)
            high = size if not len(ends) else high + int(ends[0])
        cuts.append((low, min(high, size)))
        low = min(high, size)
    return cuts


def _lines_starting(data: npt.NDArray[np.uint8], head: npt.NDArray[np.uint8]) -> int | None:
    """How many lines `data` holds when every one starts with `head`, else None."""
    size, lines = len(data), 0
    if size < len(head):
        return None
    windows = np.lib.stride_tricks.sliding_window_view(data, len(head))  # no copy
    for low in range(0, size, SCAN_BYTES):
        starts = np.flatnonzero(data[low : low + SCAN_BYTES] == 10) + (low + 1)
        if low == 0:
            starts = np.concatenate((np.zeros(1, dtype=starts.dtype), starts))
        starts = starts[starts < size]  # the newline that ends the file starts no line
        if len(starts) and int(starts[-1]) + len(head) > size:
            return None
        if not (windows[starts] == head).all():
            return None
        lines += len(starts)
    return lines
