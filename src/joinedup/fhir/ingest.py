"""`joinedup ingest fhir`: bulk FHIR R4 into the warehouse, all or nothing.

One load:

1. **Read and check** every record (`reader.records`, `validate.problems`), streaming in
   batches into a scratch DuckDB file beside the warehouse, so memory stays within DuckDB's
   limit however large the input. A record that cannot be read or fails a check is bound for
   `fhir_quarantine` with its file, line and reason; the rest load.

Then, inside one warehouse transaction:

2. **Keep** every resource in the raw store `fhir_resource`, by type, id and version (the
   `meta.versionId`, or a hash of the content when there is none). A resource already stored
   with the same version and content is left alone, so a re-run changes nothing; the same
   version with other content is a conflict, quarantined, since a version never changes.
3. **Flatten** the latest version of every resource (by `meta.lastUpdated` as an instant, then
   `meta.versionId` as a number, then load order) with the shipped ViewDefinitions
   (`fhir/shipped/*.json`, compiled to SQL like any other view).
4. **Rebuild** the canonical population tables from those rows (`fhir/canonical.py`), keeping
   person ids stable through the `identity` table: a patient is the person already known by
   their NHS number, or else by source system and id, or a new person.
5. **Report** what happened in `fhir_load` and `fhir_load_quality`: resources in by type,
   stored, unchanged and quarantined; rows out by table; codes with no mapping; references
   that point nowhere.
6. **Record the build** (`build`): the history the warehouse now holds is the span of the
   events loaded (contacts, observations, referrals), so analytics that need years of history
   (`phm run`) see the data's years, not the day it was loaded.

An error or an interrupt anywhere rolls the whole load back: the warehouse is as it was, and
the scratch folder is removed; a load killed outright leaves its folder for the next load to
remove.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlglot import exp

from joinedup import __version__
from joinedup.errors import JoinedupError
from joinedup.fhir import canonical
from joinedup.fhir.reader import MAX_LINE_BYTES, Record, input_files, records
from joinedup.fhir.sqltree import (
    c,
    cast,
    concat,
    count_star,
    first_row,
    insert,
    lit,
    ordered,
    select_columns,
    t,
    try_cast,
    union_all,
)
from joinedup.fhir.validate import problems
from joinedup.fhir.views import compile_view
from joinedup.warehouse import JSON_DIALECTS, BuildInfo, Engine
from joinedup.warehouse.registry import RENAMED_COLUMNS
from joinedup.warehouse.report import period_of
from joinedup.warehouse.schema import BUILD
from joinedup.warehouse.scratch import scratch_folder

BATCH = 20_000
#: Working tables of a load. They are ordinary tables, not TEMP ones, so DuckDB can spill them
#: to disk within the memory limit; they are dropped before the load commits.
SCRATCH = (
    "fhir_arrived",
    "fhir_new",
    "fhir_current",
    "fhir_person_key",
    "fhir_encounter_activity",
    "fhir_out",
)
STORE = "fhir_resource"
QUARANTINE = "fhir_quarantine"
LOADS = "fhir_load"
QUALITY = "fhir_load_quality"

#: A column of a table FHIR ingest keeps: name, type, NOT NULL.
_Col = tuple[str, str, bool]

STORE_COLUMNS: tuple[_Col, ...] = (
    ("resource_type", "VARCHAR", True), ("id", "VARCHAR", True),
    ("version_id", "VARCHAR", True), ("last_updated", "VARCHAR", False),
    ("resource", "JSON", True), ("load_id", "VARCHAR", True), ("load_seq", "BIGINT", True),
    ("source_file", "VARCHAR", True), ("source_line", "BIGINT", True),
    ("load_order", "BIGINT", False),
)  # fmt: skip
QUARANTINE_COLUMNS: tuple[_Col, ...] = (
    ("load_id", "VARCHAR", True), ("source_file", "VARCHAR", True),
    ("source_line", "BIGINT", True), ("resource_type", "VARCHAR", False),
    ("resource_id", "VARCHAR", False), ("reason", "VARCHAR", True),
    ("content_hash", "VARCHAR", True), ("content", "VARCHAR", False),
)  # fmt: skip
LOAD_COLUMNS: tuple[_Col, ...] = (
    ("load_id", "VARCHAR", True), ("load_seq", "BIGINT", True),
    ("started_at", "VARCHAR", True), ("finished_at", "VARCHAR", True),
    ("inputs", "VARCHAR", True), ("resources_in_count", "BIGINT", True),
    ("stored_count", "BIGINT", True), ("unchanged_count", "BIGINT", True),
    ("quarantined_count", "BIGINT", True),
    ("joinedup_version", "VARCHAR", True),
)  # fmt: skip
QUALITY_COLUMNS: tuple[_Col, ...] = (
    ("load_id", "VARCHAR", True), ("section", "VARCHAR", True), ("item", "VARCHAR", True),
    ("detail", "VARCHAR", True), ("items_count", "BIGINT", True),
)  # fmt: skip
#: Each table ingest keeps, its columns and its key.
_KEPT: tuple[tuple[str, tuple[_Col, ...], tuple[str, ...]], ...] = (
    (STORE, STORE_COLUMNS, ("resource_type", "id", "version_id")),
    (QUARANTINE, QUARANTINE_COLUMNS, ()),
    (LOADS, LOAD_COLUMNS, ("load_id",)),
    (QUALITY, QUALITY_COLUMNS, ()),
)


def _names(columns: tuple[_Col, ...]) -> list[str]:
    return [name for name, _, _ in columns]


def _create(name: str, columns: tuple[_Col, ...], key: tuple[str, ...] = ()) -> exp.Create:
    """CREATE TABLE IF NOT EXISTS name (columns, PRIMARY KEY (key))."""
    defs: list[exp.Expr] = [
        exp.ColumnDef(
            this=exp.to_identifier(column),
            kind=exp.DataType.build(kind),
            constraints=[exp.ColumnConstraint(kind=exp.NotNullColumnConstraint())]
            if required
            else [],
        )
        for column, kind, required in columns
    ]
    if key:
        defs.append(exp.PrimaryKey(expressions=[exp.to_identifier(k) for k in key]))
    return exp.Create(
        this=exp.Schema(this=exp.to_table(name), expressions=defs), kind="TABLE", exists=True
    )


def _create_kept_tables(engine: Engine) -> None:
    """The tables ingest keeps, when missing; a store from before `load_order` gains it, and
    one from before the `_count` names has its load records' columns renamed in place (they
    are the history of every load, which no command could write again)."""
    for name, columns, key in _KEPT:
        engine.run(_create(name, columns, key))
    for name in (LOADS, QUALITY):
        have = set(engine.execute(exp.select("*").from_(name).limit(0)).column_names)
        for old, new in RENAMED_COLUMNS[name].items():
            if old in have and new not in have:
                rename = exp.RenameColumn(this=exp.column(old), to=exp.column(new))
                engine.run(exp.Alter(this=exp.to_table(name), kind="TABLE", actions=[rename]))
    load_order = exp.ColumnDef(
        this=exp.to_identifier("load_order"), kind=exp.DataType.build("BIGINT"), exists=True
    )
    engine.run(exp.Alter(this=exp.to_table(STORE), kind="TABLE", actions=[load_order]))


_INCOMING_SCHEMA = pa.schema(
    [
        ("resource_type", pa.string()),
        ("id", pa.string()),
        ("version_id", pa.string()),
        ("last_updated", pa.string()),
        ("resource", pa.string()),
        ("source_file", pa.string()),
        ("source_line", pa.int64()),
        ("load_order", pa.int64()),
    ]
)
_QUARANTINE_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("source_line", pa.int64()),
        ("resource_type", pa.string()),
        ("resource_id", pa.string()),
        ("reason", pa.string()),
        ("content_hash", pa.string()),
        ("content", pa.string()),
    ]
)


def shipped_views() -> dict[str, dict[str, Any]]:
    """The ViewDefinitions joinedup ships, by name."""
    folder = resources.files("joinedup.fhir") / "shipped"
    views: dict[str, dict[str, Any]] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            view = json.loads(entry.read_text(encoding="utf-8"))
            views[str(view["name"])] = view
    return views


@dataclass
class LoadReport:
    """What one load did; the same facts are stored in `fhir_load` and `fhir_load_quality`."""

    load_id: str
    files: int = 0
    resources_in: Counter[str] = field(default_factory=Counter)
    stored: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    rows_out: dict[str, int] = field(default_factory=dict)
    quality: list[tuple[str, str, str, int]] = field(default_factory=list)
    #: Records in the person index given to the load (None: no index given).
    person_index_records: int | None = None
    #: Patients the person index placed by their person_id.
    patients_indexed: int = 0
    seconds: float = 0.0

    def section(self, name: str) -> list[tuple[str, str, int]]:
        return [(item, detail, n) for s, item, detail, n in self.quality if s == name]

    def person_index(self) -> dict[str, int] | None:
        """What the person index did, as the report and build record give it."""
        if self.person_index_records is None:
            return None
        return {
            "records_count": self.person_index_records,
            "patients_mapped_count": self.patients_indexed,
        }

    def as_dict(self) -> dict[str, Any]:
        sections: dict[str, list[dict[str, Any]]] = {}
        for s, item, detail, n in self.quality:
            sections.setdefault(s, []).append({"item": item, "detail": detail, "items_count": n})
        return {
            "load_id": self.load_id,
            "files": self.files,
            "seconds": round(self.seconds, 2),
            "resources_in": dict(sorted(self.resources_in.items())),
            "stored": dict(sorted(self.stored.items())),
            "unchanged": dict(sorted(self.unchanged.items())),
            "quarantined": dict(sorted(self.quarantined.items())),
            "rows_out": self.rows_out,
            "person_index": self.person_index(),
            "quality": sections,
        }


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


def _type_and_id(resource: Any) -> tuple[str | None, str | None]:
    if not isinstance(resource, dict):
        return None, None
    kind, rid = resource.get("resourceType"), resource.get("id")
    return (
        kind if isinstance(kind, str) else None,
        rid if isinstance(rid, str) else None,
    )


def _batches(
    stream: Iterable[Record], report: LoadReport, on_record: Callable[[int], None] | None
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Good records as store rows and bad ones as quarantine rows, in batches of BATCH."""
    good: dict[str, list[Any]] = {name: [] for name in _INCOMING_SCHEMA.names}
    bad: dict[str, list[Any]] = {name: [] for name in _QUARANTINE_SCHEMA.names}
    seen = 0

    def flush() -> tuple[pa.Table, pa.Table]:
        tables = (
            pa.table(good, schema=_INCOMING_SCHEMA),
            pa.table(bad, schema=_QUARANTINE_SCHEMA),
        )
        for column in (*good.values(), *bad.values()):
            column.clear()
        return tables

    for record in stream:
        seen += 1
        resource = record.resource
        kind, rid = _type_and_id(resource)
        found = [record.problem] if record.problem else problems(resource)
        text = record.text if resource is None else json.dumps(resource, separators=(",", ":"))
        report.resources_in[kind or "(unreadable)"] += 1
        if found:
            reason = record.context + "; ".join(str(p) for p in found)
            report.quarantined[kind or "(unreadable)"] += 1
            report.reasons[_reason_kind(reason)] += 1
            bad["source_file"].append(record.file)
            bad["source_line"].append(record.line)
            bad["resource_type"].append(kind)
            bad["resource_id"].append(rid)
            bad["reason"].append(reason)
            bad["content_hash"].append(_hash(f"{text}|{reason}"))
            bad["content"].append(text)
        else:
            assert resource is not None and kind is not None and rid is not None and text
            meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
            version = meta.get("versionId") if isinstance(meta, dict) else None
            updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
            good["resource_type"].append(kind)
            good["id"].append(rid)
            good["version_id"].append(str(version) if version else "#" + _hash(text))
            good["last_updated"].append(updated if isinstance(updated, str) else None)
            good["resource"].append(text)
            good["source_file"].append(record.file)
            good["source_line"].append(record.line)
            good["load_order"].append(seen)
        if seen % BATCH == 0:
            if on_record is not None:
                on_record(BATCH)
            yield flush()
    if on_record is not None:
        on_record(seen % BATCH)
    yield flush()


def _reason_kind(reason: str) -> str:
    """A reason without its particulars, to count reasons by kind in the report."""
    for marker in (
        "not JSON",
        "not UTF-8",
        "not valid Unicode",
        "nested more than",
        "gzip stream is truncated",
        "line longer than",
        "not a FHIR resource",
        "is not a FHIR R4 resource type",
        "resourceType is missing",
        ".id is missing",
        "is not a valid id",
        "fails the Modulus 11 check",
        "not a real date",
        "not a real time of day",
        "not a FHIR element name",
        "not a finite number",
        "a control character",
        "reference: not a string",
        "not a reference (",
        "to a type that is not a FHIR R4",
        "to a type this element cannot point to",
        "negative (",
        "Bundle.entry is not a list",
        "a birth in the future",
        "before Patient.birthDate",
        "not readable XML",
        "not a valid FHIR resource",
    ):
        if marker in reason:
            return marker.strip(". ")
    return reason[:80]


#: Columns of a person index, as `joinedup link index` names them.
PERSON_INDEX_COLUMNS = ("source", "record_id", "person_id")


def _person_index_table(index: pa.Table | None, systems: Mapping[str, str]) -> pa.Table:
    """The person index as three text columns (empty when none is given), each source
    named in `systems` given as its identifier system; a table lacking a column is refused
    naming it."""
    schema = pa.schema([(name, pa.string()) for name in PERSON_INDEX_COLUMNS])
    if index is None:
        return schema.empty_table()
    missing = [name for name in PERSON_INDEX_COLUMNS if name not in index.column_names]
    if missing:
        raise JoinedupError(f"person index: no {', '.join(missing)} column")
    index = index.select(list(PERSON_INDEX_COLUMNS)).cast(schema)
    if systems:
        names = pa.array(list(systems), pa.string())
        position = pc.index_in(index.column("source"), value_set=names)
        system = pc.take(pa.array(list(systems.values()), pa.string()), position)
        index = index.set_column(0, "source", pc.coalesce(system, index.column("source")))
    return index


def _patients_indexed(engine: Engine) -> int:
    found = (
        exp.select(count_star().as_("n"))
        .from_(canonical.PERSON_KEY)
        .where(exp.Not(this=exp.Is(this=c("index_person_id"), expression=exp.Null())))
    )
    return int(engine.execute(found).column("n")[0].as_py())


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def ingest_fhir(
    engine: Engine,
    paths: Iterable[Path],
    *,
    staging_dir: Path | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_record: Callable[[int], None] | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    person_index: pa.Table | None = None,
    index_systems: Mapping[str, str] | None = None,
) -> LoadReport:
    """Load FHIR files into the warehouse `engine` (a DuckDB file, or a lake on DuckDB or
    Spark) as one transaction.

    Records are first checked and staged, batch by batch, in a scratch DuckDB file in a
    folder of its own in `staging_dir` (default: the system's temporary folder), so memory
    stays within the engine's limit however large the input; the warehouse itself changes only
    in the final transaction. The folder is removed however the load ends, and one left by a
    load that was killed (`kill -9`) is removed by the next load (`warehouse.scratch`).
    Nothing in the files can stop a load: a line that cannot be read (not UTF-8, not JSON,
    nested too deep, longer than `max_line_bytes`, a broken gzip stream) is quarantined like
    one that fails a check.

    `person_index` is a master person index (`source`, `record_id`, `person_id`, as `joinedup
    link index` writes): each Patient it holds, by an identifier's system and value or by its
    source system and id, is placed with the other Patients of its person_id
    (`canonical.person_keys`); the count placed so is in the report and the build record.
    `index_systems` names the identifier system of each index source's record ids (index
    source names are short, `gp`; systems are URIs): a source it names is matched by that
    system, any other by its own name.
    """
    files = input_files(list(paths))
    index = _person_index_table(person_index, index_systems or {})
    stage = on_stage or (lambda _: None)
    began = time.perf_counter()
    started = _now()
    report = LoadReport(load_id=uuid.uuid4().hex[:12], files=len(files))
    try:
        _create_kept_tables(engine)
    except NotImplementedError as err:  # Spark's session views: nowhere to keep a load
        raise JoinedupError(
            "FHIR ingest writes a warehouse (a DuckDB file or a lake); open one with --warehouse"
        ) from err
    folder = staging_dir or Path(tempfile.gettempdir())
    with (
        scratch_folder(folder, STAGING_PURPOSE) as scratch,
        engine.staging(scratch / "staging.duckdb") as schema,
    ):
        stage("reading and checking resources")
        staged = _Staged(schema, scratch)
        _stage_records(engine, staged, files, report, on_record, max_line_bytes)
        engine.load_session(canonical.PERSON_INDEX, index)
        with engine.transaction():
            seq = _next_load_seq(engine)
            stage("storing resources")
            _store(engine, staged, report, seq)
            _withhold_old_values(engine)
            stage("flattening with the shipped views")
            _flatten(engine)
            stage("rebuilding the canonical tables")
            report.rows_out = canonical.rebuild(engine)
            report.quality = canonical.quality(engine)
            report.person_index_records = index.num_rows if person_index is not None else None
            report.patients_indexed = _patients_indexed(engine)
            report.seconds = time.perf_counter() - began
            _record_load(engine, report, seq, started, files)
            _record_build(engine, report)
            for name in (*SCRATCH, *(f"v_{v}" for v in shipped_views())):
                engine.drop(name)
        engine.drop(canonical.PERSON_INDEX)
        if schema is None:  # views over the scratch folder's Parquet, about to be removed
            for name in (staged.incoming, staged.bad):
                engine.drop(name)
    return report


#: Scratch folders are `.fhir-staging-XXXXXXXX` in the staging folder.
STAGING_PURPOSE = "fhir-staging"


@dataclass(frozen=True)
class _Staged:
    """Where a load's checked records wait: tables `incoming` and `bad` in the engine's
    staging schema (a scratch file), or, when it has none (Spark), the session's views over
    Parquet parts written in the load's scratch `folder`."""

    schema: str | None
    folder: Path

    def table(self, name: str) -> str:
        return f"{self.schema}.{name}" if self.schema else f"fhir_stage_{name}"

    @property
    def incoming(self) -> str:
        return self.table("incoming")

    @property
    def bad(self) -> str:
        return self.table("bad")


def _next_load_seq(engine: Engine) -> int:
    highest = exp.Max(this=c("load_seq"))
    query = exp.select(
        exp.Add(this=exp.Coalesce(this=highest, expressions=[lit(0)]), expression=lit(1)).as_("seq")
    ).from_(LOADS)
    return int(engine.execute(query).column("seq")[0].as_py())


def _stage_records(
    engine: Engine,
    staged: _Staged,
    files: list[Path],
    report: LoadReport,
    on_record: Callable[[int], None] | None,
    max_line_bytes: int,
) -> None:
    """Check every record; good ones to the scratch `incoming` table, bad ones to `bad`.
    With a staging schema (DuckDB) each batch is inserted into its table; without one (Spark,
    whose session views cannot take an INSERT) each batch is a Parquet part in the scratch
    folder, and the tables are views over the parts."""
    tables = ((staged.incoming, _INCOMING_SCHEMA), (staged.bad, _QUARANTINE_SCHEMA))
    stream = records(files, max_line_bytes=max_line_bytes)
    if staged.schema is None:
        parts: dict[str, list[Path]] = {name: [] for name, _ in tables}
        for number, batch in enumerate(_batches(stream, report, on_record)):
            for (name, schema), rows in zip(tables, batch, strict=True):
                if rows.num_rows or not parts[name]:  # an empty first part gives the columns
                    part = staged.folder / f"{name}-{number:06d}.parquet"
                    pq.write_table(rows.cast(schema), part)
                    parts[name].append(part)
        for name, files_of in parts.items():
            engine.load_parquet(name, files_of)
        return
    for name, schema in tables:
        engine.load(name, schema.empty_table())
    for good, bad in _batches(stream, report, on_record):
        for name, rows in ((staged.incoming, good), (staged.bad, bad)):
            if rows.num_rows:
                _append(engine, name, rows)
    engine.drop(_BATCH)


def _append(engine: Engine, name: str, rows: pa.Table) -> None:
    """Add Arrow rows to table `name`, placed by column name."""
    engine.load_session(_BATCH, rows)
    engine.run(insert(name, rows.column_names, select_columns(_BATCH, rows.column_names)))


_BATCH = "fhir_batch"


#: Why a record is set aside when its version is already known with other content.
VERSION_CONFLICT = (
    "meta.versionId: this version is already stored (or earlier in this load) with other "
    "content; a version never changes, so changed content needs a new versionId"
)


_QUOTED = "(?:'[^']*'|\"[^\"]*\")"
#: Reasons written before reasons left values out, and what each says now. Applied to the
#: quarantine at every load, so a warehouse from then shows analysts no values.
_OLD_REASONS = (
    (f"NHS number {_QUOTED} fails", "NHS number fails"),
    (f": {_QUOTED} is not a real date or time \\([^)]*\\)", ": not a real date or time"),
    (f": {_QUOTED} has no month [0-9]+", ": not a real date (the month is not 01-12)"),
    (f"resourceType {_QUOTED} is not", "resourceType is not"),
    (f"\\.id {_QUOTED} is not a valid id", ".id is not a valid id"),
    # One rule per wording rather than a `\1` back-reference, which Spark spells `$1`.
    (f": {_QUOTED} is not true or false", ": value is not true or false"),
    (f": {_QUOTED} is not an integer", ": value is not an integer"),
    (f": {_QUOTED} is not a number", ": value is not a number"),
)


def _withhold_old_values(engine: Engine) -> None:
    """Rewrite quarantine reasons stored by earlier versions, which quoted the value
    (`NHS number '…' fails the Modulus 11 check`), to name only the element and the rule."""
    old = is_old_reason(c("reason"))
    # Only when there is one: on a lake an UPDATE rewrites the whole table.
    found = exp.select(count_star().as_("n")).from_(QUARANTINE).where(old.copy())
    if engine.execute(found).column("n")[0].as_py():
        engine.run(exp.update(QUARANTINE, {"reason": without_values(c("reason"))}, where=old))


def is_old_reason(reason: exp.Expr) -> exp.Expr:
    """Whether a stored `reason` quotes a value, as reasons of earlier versions did."""
    return exp.or_(
        *(exp.RegexpLike(this=reason.copy(), expression=lit(p)) for p, _ in _OLD_REASONS)
    )


def without_values(reason: exp.Expr) -> exp.Expr:
    """A stored `reason` with the values earlier versions quoted taken out, rule by rule in
    order (regular expressions DuckDB's RE2 and Spark's Java engine read alike)."""
    rewritten = reason.copy()
    for pattern, now in _OLD_REASONS:
        rewritten = exp.RegexpReplace(
            this=rewritten, expression=lit(pattern), replacement=lit(now), modifiers=lit("g")
        )
    return rewritten


def _store(engine: Engine, staged: _Staged, report: LoadReport, seq: int) -> None:
    """New versions into the raw store, new problems into the quarantine. A version already
    stored (or arriving twice) with the same content is counted as unchanged, not added again;
    with other content it is a conflict, quarantined: the version first stored stays."""
    engine.materialise("fhir_arrived", _arrived(staged))
    engine.materialise(
        "fhir_new",
        select_columns("fhir_arrived", _INCOMING_SCHEMA.names).where(
            exp.Not(this=c("known")), exp.EQ(this=c("nth"), expression=lit(1))
        ),
    )
    # The raw store's resource is JSON in a DuckDB file and text in a lake (whose INSERT casts
    # it to text itself); Spark's CAST to JSON would be `to_json`, which refuses text.
    as_json = engine.dialect == "duckdb"
    stored = [
        lit(report.load_id) if name == "load_id" else lit(seq) if name == "load_seq"
        else cast(c(name), "JSON") if name == "resource" and as_json else c(name)
        for name in _names(STORE_COLUMNS)
    ]  # fmt: skip
    engine.run(insert(STORE, _names(STORE_COLUMNS), exp.select(*stored).from_("fhir_new")))
    engine.run(_quarantine(staged, report.load_id))
    report.stored = _count_by_type(engine, "fhir_new")
    clashed = _count_by_type(engine, "fhir_arrived", _changed())
    report.quarantined += clashed
    if clashed:
        report.reasons["version conflict"] += clashed.total()
    arrived = _count_by_type(engine, "fhir_arrived")
    report.unchanged = arrived - report.stored - clashed


def _arrived(staged: _Staged) -> exp.Query:
    """Each staged record with the content kept for its version (the stored one, else the
    first in this load), whether the version is stored already, and its order among records
    of its version in this load."""
    version = [c("i.resource_type"), c("i.id"), c("i.version_id")]
    in_order = exp.Order(expressions=[ordered(c("i.load_order"))])
    first = exp.Window(
        this=exp.FirstValue(this=c("i.resource")),
        partition_by=[v.copy() for v in version],
        order=in_order.copy(),
    )
    nth = exp.Window(this=exp.RowNumber(), partition_by=version, order=in_order)
    return (
        exp.select(
            *(c(f"i.{name}") for name in _INCOMING_SCHEMA.names),
            exp.Coalesce(this=cast(c("s.resource"), "VARCHAR"), expressions=[first]).as_("kept"),
            exp.Not(this=c("s.id").is_(exp.null())).as_("known"),
            nth.as_("nth"),
        )
        .from_(t(staged.incoming, "i"))
        .join(t(STORE, "s"), using=["resource_type", "id", "version_id"], join_type="left")
    )


def _changed() -> exp.Expr:
    """A record whose version is kept with other content."""
    return exp.NEQ(this=c("resource"), expression=c("kept"))


def _quarantine(staged: _Staged, load_id: str) -> exp.Insert:
    """New problems into the quarantine: bad records and version conflicts, each (content,
    file, line) once, and none already there."""
    columns = _QUARANTINE_SCHEMA.names
    conflicts = (
        exp.select(
            c("source_file"),
            c("source_line"),
            c("resource_type"),
            c("id").as_("resource_id"),
            concat(c("resource_type"), lit(f".{VERSION_CONFLICT}")).as_("reason"),
            exp.MD5(this=concat(c("resource"), lit(VERSION_CONFLICT))).as_("content_hash"),
            c("resource").as_("content"),
        )
        .from_("fhir_arrived")
        .where(_changed())
    )
    problems = union_all(select_columns(staged.bad, columns), conflicts)
    seen = (
        exp.select(lit(1))
        .from_(t(QUARANTINE, "q"))
        .where(
            *(
                exp.EQ(this=c(f"q.{name}"), expression=c(f"b.{name}"))
                for name in ("content_hash", "source_file", "source_line")
            )
        )
    )
    once = first_row(
        [c("b.content_hash"), c("b.source_file"), c("b.source_line")], [ordered(c("b.reason"))]
    )
    new = (
        exp.select(lit(load_id).as_("load_id"), *(c(f"b.{name}") for name in columns))
        .from_(problems.subquery("b"))
        .where(exp.Not(this=exp.Exists(this=seen)))
        .qualify(once)
    )
    return insert(QUARANTINE, _names(QUARANTINE_COLUMNS), new)


def _count_by_type(engine: Engine, table: str, where: exp.Expr | None = None) -> Counter[str]:
    """Rows of `table` by resource type."""
    query = (
        exp.select(c("resource_type"), count_star().as_("n"))
        .from_(table)
        .group_by(c("resource_type"))
    )
    if where is not None:
        query = query.where(where)
    return Counter(
        {str(r["resource_type"]): int(r["n"]) for r in engine.execute(query).to_pylist()}
    )


def _flatten(engine: Engine) -> None:
    """The latest version of each resource, then each shipped view over it as `v_<name>`.
    Latest is by `meta.lastUpdated` as an instant, then `meta.versionId` as a number, then
    load order (later loads, and later records in a load, win)."""
    latest = latest_versions()
    if engine.dialect != "duckdb":  # DuckDB reads JSON and text alike; Spark parses text
        parse = JSON_DIALECTS[engine.dialect].parse
        latest = exp.select(
            c("resource_type"), c("id"), parse(c("resource")).as_("resource")
        ).from_(latest.subquery("l"))
    engine.materialise("fhir_current", latest)
    for name, view in shipped_views().items():
        compiled = compile_view(view, table="fhir_current", dialect=engine.dialect)
        engine.materialise(f"v_{name}", compiled.query)


def latest_versions() -> exp.Query:
    """The latest stored version of each resource: by `meta.lastUpdated` as an instant (a
    timestamp with time zone, so `10:00+01:00` is before `09:30Z`), then `meta.versionId` as a
    number (`10` after `9`), then load order."""
    return select_columns(STORE, ("resource_type", "id", "resource")).qualify(
        first_row(
            [c("resource_type"), c("id")],
            [
                ordered(try_cast(c("last_updated"), "TIMESTAMPTZ"), desc=True),
                ordered(try_cast(c("version_id"), "BIGINT"), desc=True),
                ordered(c("load_seq"), desc=True),
                ordered(c("load_order"), desc=True),
            ],
        )
    )


def _record_load(
    engine: Engine, report: LoadReport, seq: int, started: str, files: list[Path]
) -> None:
    rows: list[tuple[str, str, str, int]] = []
    for section, counts in (
        ("resources in", report.resources_in),
        ("stored", report.stored),
        ("unchanged", report.unchanged),
        ("quarantined", report.quarantined),
    ):
        rows += [(section, kind, "", n) for kind, n in sorted(counts.items())]
    rows += [("quarantine reasons", kind, "", n) for kind, n in report.reasons.most_common()]
    rows += [("rows out", table, "", n) for table, n in report.rows_out.items()]
    rows += report.quality
    report.quality = [r for r in rows if r[0] not in ("resources in", "stored", "unchanged")]
    engine.load_session(
        "fhir_quality_rows",
        pa.table(
            {
                "load_id": [report.load_id] * len(rows),
                "section": [r[0] for r in rows],
                "item": [r[1] for r in rows],
                "detail": [r[2] for r in rows],
                "items_count": pa.array([r[3] for r in rows], pa.int64()),
            }
        ),
    )
    names = _names(QUALITY_COLUMNS)
    engine.run(insert(QUALITY, names, select_columns("fhir_quality_rows", names)))
    engine.load_session(
        "fhir_load_row",
        pa.table(
            {
                "load_id": [report.load_id],
                "load_seq": pa.array([seq], pa.int64()),
                "started_at": [started],
                "finished_at": [_now()],
                "inputs": [json.dumps([str(f) for f in files])],
                "resources_in_count": pa.array([sum(report.resources_in.values())], pa.int64()),
                "stored_count": pa.array([sum(report.stored.values())], pa.int64()),
                "unchanged_count": pa.array([sum(report.unchanged.values())], pa.int64()),
                "quarantined_count": pa.array([sum(report.quarantined.values())], pa.int64()),
                "joinedup_version": [__version__],
            }
        ),
    )
    names = _names(LOAD_COLUMNS)
    engine.run(insert(LOADS, names, select_columns("fhir_load_row", names)))


#: The canonical event dates whose span is the history a FHIR warehouse holds: contacts and
#: admissions, observations and referrals. Diagnoses and medicines are left out, as they carry
#: dates from long before the extract began (a condition diagnosed in 1990).
HISTORY_EVENTS = (
    ("activity", "start_date"),
    ("observation", "observation_date"),
    ("rtt_pathway", "clock_start_date"),
)


def history_span(engine: Engine, today: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last event dates in the canonical tables, the last no later than `today`
    (a future-dated event is not history); `today` to `today` when there are none."""
    events = [
        exp.select(exp.column(column).as_("event_date")).from_(name)
        for name, column in HISTORY_EVENTS
    ]
    union: exp.Query = events[0]
    for event in events[1:]:
        union = exp.union(union, event, distinct=False)
    event_date = exp.column("event_date", "e")
    query = (
        exp.select(exp.Min(this=event_date).as_("first"), exp.Max(this=event_date).as_("last"))
        .from_(union.subquery("e"))
        .where(event_date <= exp.cast(exp.Literal.string(today.isoformat()), "DATE"))
    )
    row = engine.execute(query).to_pylist()[0]
    if row["first"] is None:
        return today, today
    return row["first"], row["last"]


def _record_build(engine: Engine, report: LoadReport) -> None:
    """Replace the FHIR build record with one for this load: people loaded, and the history
    as the span of the events loaded (`history_span`), not the load date."""
    try:
        footprint = period_of(engine).footprint
    except JoinedupError:  # a warehouse made without a build record
        footprint = ""
    start, end = history_span(engine, dt.datetime.now(dt.UTC).date())
    info = BuildInfo(
        source="fhir",
        people=engine.count("person"),
        footprint=footprint,
        history_start=start,
        history_end=end,
        parameters={
            "load_id": report.load_id,
            "history_from": [n for n, _ in HISTORY_EVENTS],
            "person_index": report.person_index(),
        },
    )
    engine.run(exp.delete(BUILD.name, where=exp.column("source").eq(exp.Literal.string("fhir"))))
    engine.append(BUILD.name, info.table())
