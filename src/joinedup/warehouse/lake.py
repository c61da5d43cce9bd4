"""The lake: a warehouse kept as a folder of plain Parquet datasets, one per table.

Layout::

    lake/
      _manifest.json            which version of each table is current (the only mutable file)
      person/v20261205T051200Z-3f9a1c2b7d10/part-00000.parquet
      phm_risk/v20261205T052012Z-a81c0e5d2f44/part-00000-....parquet   (written by Spark)
      _readers/                 one locked file per open reader, naming the versions it reads
      _scratch/                 a run's intermediate tables, removed when the run ends

A run writes each table it changes into a new version folder, then replaces the manifest in
one rename. A reader reads the manifest once and sees the tables it names, so it sees the old
tables or the new, never a mix, and a run killed at any moment leaves the old manifest and some
unreferenced folders that the next run removes. Old versions are removed once no live reader
names them. Any Spark, Databricks or DuckDB user can read the current table from the folder the
manifest names (`joinedup warehouse tables` prints them).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from joinedup.errors import JoinedupError

MANIFEST = "_manifest.json"
FORMAT = "joinedup-lake/1"
_READERS = "_readers"
_SCRATCH = "_scratch"
_WRITER_LOCK = "_writer.lock"
#: Names in a lake folder that are not tables.
_RESERVED = {MANIFEST, _READERS, _SCRATCH, _WRITER_LOCK}


class LakeError(JoinedupError):
    """A lake folder that cannot be read as joinedup wrote it."""


def is_lake(path: Path) -> bool:
    """A warehouse path names a lake unless it is (or ends like) a DuckDB file."""
    return path.suffix.lower() not in (".duckdb", ".db") and not path.is_file()


@dataclass(frozen=True)
class TableVersion:
    """One table's current version as the manifest records it."""

    name: str
    version: str
    columns: tuple[tuple[str, str], ...]
    rows: int
    run_id: str
    written_at: str

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "columns": [{"name": n, "type": t} for n, t in self.columns],
            "rows": self.rows,
            "run_id": self.run_id,
            "written_at": self.written_at,
        }


@dataclass(frozen=True)
class Manifest:
    tables: Mapping[str, TableVersion] = field(default_factory=dict)
    run_id: str | None = None
    updated_at: str | None = None

    def versions(self) -> dict[str, str]:
        return {name: t.version for name, t in self.tables.items()}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _type_text(t: pa.DataType) -> str:
    return str(t)


def parquet_columns(files: list[Path]) -> tuple[tuple[str, str], ...]:
    """Column names and Arrow types of a Parquet dataset, from its first file's footer."""
    schema = pq.read_schema(files[0])
    return tuple((f.name, _type_text(f.type)) for f in schema)


def parquet_rows(files: list[Path]) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def loosen(data: pa.Table) -> pa.Table:
    """`data` with every field nullable, as the engines write Parquet, so that all the parts
    of a table agree (NOT NULL is the schema registry's to check, not the file's)."""
    loose = pa.schema([f.with_nullable(True) for f in data.schema])
    return data if loose == data.schema else data.cast(loose)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Lake:
    """A lake folder: read its manifest, pin what a reader reads, write versions atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ---- reading -------------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> Manifest:
        """The current manifest (an empty one for a new lake)."""
        path = self.manifest_path
        if not path.is_file():
            return Manifest()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise LakeError(
                    f"{path}: format {data.get('format')!r} is not {FORMAT!r}; "
                    "this lake was not written by this version of joinedup"
                )
            tables = {
                name: TableVersion(
                    name=name,
                    version=str(t["version"]),
                    columns=tuple((str(c["name"]), str(c["type"])) for c in t["columns"]),
                    rows=int(t["rows"]),
                    run_id=str(t["run_id"]),
                    written_at=str(t["written_at"]),
                )
                for name, t in data["tables"].items()
            }
        except (ValueError, KeyError, TypeError) as err:
            raise LakeError(f"{path}: unreadable manifest ({err})") from err
        return Manifest(tables, data.get("run_id"), data.get("updated_at"))

    def files(self, entry: TableVersion) -> list[Path]:
        return sorted((self.root / entry.name / entry.version).glob("*.parquet"))

    def _table_folders(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for p in self.root.iterdir():
            if p.name in _RESERVED or p.name.startswith("."):
                continue
            yield p

    def check(
        self,
        manifest: Manifest,
        known: Callable[[str], bool],
        expected: Callable[[str, pa.Schema], list[str]] | None = None,
    ) -> None:
        """Refuse, in one line naming the table (and column), a lake that is not as joinedup
        wrote it: a table folder or manifest entry of a table joinedup does not know, a
        current version whose files are missing, or files whose columns differ from the
        manifest or (through `expected`) from the schema registry."""
        for folder in self._table_folders():
            if not folder.is_dir():
                raise LakeError(
                    f"{self.root}: {folder.name} is not a table folder; a lake holds only "
                    f"{MANIFEST} and one folder per table"
                )
            if folder.name not in manifest.tables and not known(folder.name):
                raise LakeError(
                    f"{self.root}: folder {folder.name!r} is not a table joinedup writes "
                    "(a foreign table); move it out of the lake"
                )
        for name, entry in manifest.tables.items():
            if not known(name):
                raise LakeError(
                    f"{self.manifest_path}: table {name!r} is not a table joinedup writes "
                    "(a foreign table)"
                )
            files = self.files(entry)
            if not files:
                raise LakeError(
                    f"{self.root}: table {name} is missing: its current version "
                    f"{name}/{entry.version}/ has no Parquet files"
                )
            schema = pq.read_schema(files[0])
            found = tuple((f.name, _type_text(f.type)) for f in schema)
            if found != entry.columns:
                theirs, ours = dict(found), dict(entry.columns)
                col = next(
                    (c for c in {**ours, **theirs} if theirs.get(c) != ours.get(c)),
                    "?",
                )
                raise LakeError(
                    f"{self.root}: table {name}, column {col}: the files hold "
                    f"{theirs.get(col, 'no such column')}, the manifest records "
                    f"{ours.get(col, 'no such column')}"
                )
            if expected is not None:
                differences = expected(name, schema)
                if differences:
                    raise LakeError(f"{self.root}: {differences[0]}")

    # ---- readers -------------------------------------------------------------------------

    @contextlib.contextmanager
    def pinned(self, manifest: Manifest) -> Iterator[None]:
        """Hold the versions `manifest` names for the block: a locked file in `_readers/`
        that cleanup reads, so no version a live reader uses is removed."""
        folder = self.root / _READERS
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(manifest.versions()), encoding="utf-8")
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)

    def _live_versions(self) -> set[tuple[str, str]]:
        """Versions named by readers still alive; stale reader files are removed."""
        live: set[tuple[str, str]] = set()
        folder = self.root / _READERS
        if not folder.is_dir():
            return live
        for path in folder.glob("*.json"):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # held: a live reader
                    with contextlib.suppress(ValueError, OSError):
                        versions = json.loads(path.read_text(encoding="utf-8"))
                        live.update((str(k), str(v)) for k, v in versions.items())
                    continue
                path.unlink(missing_ok=True)  # its reader is gone
            finally:
                os.close(fd)
        return live

    # ---- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self, run_id: str | None = None) -> Iterator[LakeWrite]:
        """One all-or-nothing write: exclusive among writers; committed by `LakeWrite.commit`
        (the manifest replaced in one rename); anything staged and not committed is removed
        when the block ends, and a killed writer's leftovers by the next writer."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.root / _WRITER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                raise LakeError(
                    f"lake {self.root} is being written by another run; let it finish and try again"
                ) from err
            write = LakeWrite(self, run_id or uuid.uuid4().hex[:12])
            try:
                yield write
            finally:
                write.discard()
            self.clean()
        finally:
            os.close(lock)

    def clean(self) -> list[Path]:
        """Remove version folders that neither the manifest nor a live reader names (old
        versions, and a killed writer's), and scratch folders of runs no longer alive. Call
        only while holding the writer lock."""
        current = {(n, t.version) for n, t in self.manifest().tables.items()}
        keep = current | self._live_versions()
        removed: list[Path] = []
        for folder in self._table_folders():
            if not folder.is_dir():
                continue
            for version in folder.iterdir():
                if (folder.name, version.name) not in keep:
                    shutil.rmtree(version, ignore_errors=True)
                    removed.append(version)
            if not any(folder.iterdir()):
                folder.rmdir()
        return removed


class LakeWrite:
    """The tables one run writes, staged in new version folders until `commit`."""

    def __init__(self, lake: Lake, run_id: str) -> None:
        self.lake = lake
        self.run_id = run_id
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self._version = f"v{stamp}-{run_id}"
        self._staged: dict[str, Path] = {}
        self._removed: set[str] = set()
        self._superseded: list[Path] = []
        self._committed = False

    def stage(self, name: str) -> Path:
        """A new, empty version folder for table `name` (replacing one staged earlier in this
        write). The caller writes Parquet files into it."""
        old = self._staged.pop(name, None)
        if old is not None:  # may still be read while the new version is written
            self._superseded.append(old)
        folder = self.lake.root / name / f"{self._version}-{uuid.uuid4().hex[:6]}"
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir()
        self._staged[name] = folder
        self._removed.discard(name)
        return folder

    def staged(self, name: str) -> Path | None:
        return self._staged.get(name)

    def remove(self, name: str) -> None:
        """Drop table `name` from the lake at commit."""
        old = self._staged.pop(name, None)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._removed.add(name)

    def commit(self) -> Manifest:
        """Make every staged table current and every removed one gone, in one rename."""
        before = self.lake.manifest()
        tables = {n: t for n, t in before.tables.items() if n not in self._removed}
        written_at = _now()
        for name, folder in self._staged.items():
            files = sorted(folder.glob("*.parquet"))
            if not files:
                raise LakeError(f"table {name}: the run wrote no Parquet files to {folder}")
            for f in files:
                _fsync(f)
            tables[name] = TableVersion(
                name=name,
                version=folder.name,
                columns=parquet_columns(files),
                rows=parquet_rows(files),
                run_id=self.run_id,
                written_at=written_at,
            )
        document = {
            "format": FORMAT,
            "run_id": self.run_id,
            "updated_at": written_at,
            "tables": {n: tables[n].to_json() for n in sorted(tables)},
        }
        path = self.lake.manifest_path
        tmp = path.with_name(f".{MANIFEST}.{self.run_id}.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
        _fsync(self.lake.root)
        self._committed = True
        for folder in self._superseded:
            shutil.rmtree(folder, ignore_errors=True)
        self._superseded.clear()
        self._staged.clear()
        self._removed.clear()
        return Manifest(tables, self.run_id, written_at)

    def discard(self) -> None:
        """Remove what was staged and not committed."""
        for folder in [*self._staged.values(), *self._superseded]:
            shutil.rmtree(folder, ignore_errors=True)
        self._staged.clear()
        for tmp in self.lake.root.glob(f".{MANIFEST}.*.tmp"):
            tmp.unlink(missing_ok=True)


def scratch_root(lake: Lake) -> Path:
    """Where a run over `lake` keeps intermediate tables (its own folder inside)."""
    return lake.root / _SCRATCH


__all__ = [
    "FORMAT",
    "MANIFEST",
    "Lake",
    "LakeError",
    "LakeWrite",
    "Manifest",
    "TableVersion",
    "is_lake",
    "loosen",
    "parquet_columns",
    "parquet_rows",
    "scratch_root",
]
