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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlglot import exp

from joinedup import __version__
from joinedup.errors import JoinedupError
from joinedup.fhir import canonical
from joinedup.fhir.reader import MAX_LINE_BYTES, Record, input_files, records
from joinedup.fhir.sqltext import quote
from joinedup.fhir.validate import problems
from joinedup.fhir.views import compile_view
from joinedup.warehouse import BuildInfo, Engine
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

_STORE_DDL = f"""
CREATE TABLE IF NOT EXISTS {STORE} (
  resource_type VARCHAR NOT NULL, id VARCHAR NOT NULL, version_id VARCHAR NOT NULL,
  last_updated VARCHAR, resource JSON NOT NULL, load_id VARCHAR NOT NULL,
  load_seq BIGINT NOT NULL, source_file VARCHAR NOT NULL, source_line BIGINT NOT NULL,
  load_order BIGINT, PRIMARY KEY (resource_type, id, version_id));
ALTER TABLE {STORE} ADD COLUMN IF NOT EXISTS load_order BIGINT;
CREATE TABLE IF NOT EXISTS {QUARANTINE} (
  load_id VARCHAR NOT NULL, source_file VARCHAR NOT NULL, source_line BIGINT NOT NULL,
  resource_type VARCHAR, resource_id VARCHAR, reason VARCHAR NOT NULL, content_hash VARCHAR
  NOT NULL, content VARCHAR);
CREATE TABLE IF NOT EXISTS {LOADS} (
  load_id VARCHAR PRIMARY KEY, load_seq BIGINT NOT NULL, started_at VARCHAR NOT NULL,
  finished_at VARCHAR NOT NULL, inputs VARCHAR NOT NULL, resources_in BIGINT NOT NULL,
  stored BIGINT NOT NULL, unchanged BIGINT NOT NULL, quarantined BIGINT NOT NULL,
  joinedup_version VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS {QUALITY} (
  load_id VARCHAR NOT NULL, section VARCHAR NOT NULL, item VARCHAR NOT NULL,
  detail VARCHAR NOT NULL, count BIGINT NOT NULL);
"""

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
    seconds: float = 0.0

    def section(self, name: str) -> list[tuple[str, str, int]]:
        return [(item, detail, n) for s, item, detail, n in self.quality if s == name]

    def as_dict(self) -> dict[str, Any]:
        sections: dict[str, list[dict[str, Any]]] = {}
        for s, item, detail, n in self.quality:
            sections.setdefault(s, []).append({"item": item, "detail": detail, "count": n})
        return {
            "load_id": self.load_id,
            "files": self.files,
            "seconds": round(self.seconds, 2),
            "resources_in": dict(sorted(self.resources_in.items())),
            "stored": dict(sorted(self.stored.items())),
            "unchanged": dict(sorted(self.unchanged.items())),
            "quarantined": dict(sorted(self.quarantined.items())),
            "rows_out": self.rows_out,
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
) -> LoadReport:
    """Load FHIR files into the warehouse `engine` (DuckDB) as one transaction.

    Records are first checked and staged, batch by batch, in a scratch DuckDB file in a
    folder of its own in `staging_dir` (default: the system's temporary folder), so memory
    stays within the engine's limit however large the input; the warehouse itself changes only
    in the final transaction. The folder is removed however the load ends, and one left by a
    load that was killed (`kill -9`) is removed by the next load (`warehouse.scratch`).
    Nothing in the files can stop a load: a line that cannot be read (not UTF-8, not JSON,
    nested too deep, longer than `max_line_bytes`, a broken gzip stream) is quarantined like
    one that fails a check.
    """
    if engine.name != "duckdb":
        raise JoinedupError("FHIR ingest writes a DuckDB warehouse; open one with --warehouse")
    files = input_files(list(paths))
    stage = on_stage or (lambda _: None)
    began = time.perf_counter()
    started = _now()
    report = LoadReport(load_id=uuid.uuid4().hex[:12], files=len(files))
    for statement in _STORE_DDL.split(";"):
        if statement.strip():
            engine.run(statement)
    folder = staging_dir or Path(tempfile.gettempdir())
    with scratch_folder(folder, STAGING_PURPOSE) as scratch:
        engine.run(f"ATTACH '{_sql_path(scratch / 'staging.duckdb')}' AS {_STAGE}")
        try:
            stage("reading and checking resources")
            _stage_records(engine, files, report, on_record, max_line_bytes)
            with engine.transaction():
                seq = int(engine.fetch(f"SELECT coalesce(max(load_seq), 0) + 1 FROM {LOADS}")[0][0])
                stage("storing resources")
                _store(engine, report, seq)
                _withhold_old_values(engine)
                stage("flattening with the shipped views")
                _flatten(engine)
                stage("rebuilding the canonical tables")
                report.rows_out = canonical.rebuild(engine)
                report.quality = canonical.quality(engine)
                report.seconds = time.perf_counter() - began
                _record_load(engine, report, seq, started, files)
                _record_build(engine, report)
                for name in (*SCRATCH, *(f"v_{v}" for v in shipped_views())):
                    engine.drop(name)
        finally:
            engine.run(f"DETACH {_STAGE}")
    return report


_STAGE = "fhir_stage"
#: Scratch folders are `.fhir-staging-XXXXXXXX` in the staging folder.
STAGING_PURPOSE = "fhir-staging"


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _stage_records(
    engine: Engine,
    files: list[Path],
    report: LoadReport,
    on_record: Callable[[int], None] | None,
    max_line_bytes: int,
) -> None:
    """Check every record; good ones to the scratch `incoming` table, bad ones to `bad`."""
    engine.run(
        f"CREATE TABLE {_STAGE}.incoming (resource_type VARCHAR, id VARCHAR, version_id VARCHAR, "
        "last_updated VARCHAR, resource VARCHAR, source_file VARCHAR, source_line BIGINT, "
        "load_order BIGINT)"
    )
    engine.run(
        f"CREATE TABLE {_STAGE}.bad (source_file VARCHAR, source_line BIGINT, resource_type "
        "VARCHAR, resource_id VARCHAR, reason VARCHAR, content_hash VARCHAR, content VARCHAR)"
    )
    stream = records(files, max_line_bytes=max_line_bytes)
    for good, bad in _batches(stream, report, on_record):
        if good.num_rows:
            engine.append(f"{_STAGE}.incoming", good)
        if bad.num_rows:
            engine.append(f"{_STAGE}.bad", bad)


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
    (f": {_QUOTED} is not (true or false|an integer|a number)", ": value is not \\1"),
)


def _withhold_old_values(engine: Engine) -> None:
    """Rewrite quarantine reasons stored by earlier versions, which quoted the value
    (`NHS number '…' fails the Modulus 11 check`), to name only the element and the rule."""
    for pattern, now in _OLD_REASONS:
        engine.run(
            f"UPDATE {QUARANTINE} SET reason = regexp_replace(reason, {quote(pattern)}, "
            f"{quote(now)}, 'g') WHERE regexp_matches(reason, {quote(pattern)})"
        )


def _store(engine: Engine, report: LoadReport, seq: int) -> None:
    """New versions into the raw store, new problems into the quarantine. A version already
    stored (or arriving twice) with the same content is counted as unchanged, not added again;
    with other content it is a conflict, quarantined: the version first stored stays."""
    conflict = f"{{kind}}.{VERSION_CONFLICT}"
    engine.run(
        "CREATE OR REPLACE TABLE fhir_arrived AS SELECT i.*, coalesce(CAST(s.resource AS "
        "VARCHAR), first_value(i.resource) OVER (PARTITION BY i.resource_type, i.id, "
        "i.version_id ORDER BY i.load_order)) AS kept, s.id IS NOT NULL AS known, "
        "row_number() OVER (PARTITION BY i.resource_type, i.id, i.version_id ORDER BY "
        f"i.load_order) AS nth FROM {_STAGE}.incoming i LEFT JOIN {STORE} s USING "
        "(resource_type, id, version_id)"
    )
    engine.run(
        "CREATE OR REPLACE TABLE fhir_new AS SELECT * FROM fhir_arrived WHERE NOT known AND nth = 1"
    )
    engine.run(
        f"INSERT INTO {STORE} (resource_type, id, version_id, last_updated, resource, load_id, "
        "load_seq, source_file, source_line, load_order) SELECT resource_type, id, version_id, "
        f"last_updated, CAST(resource AS JSON), '{report.load_id}', {seq}, source_file, "
        "source_line, load_order FROM fhir_new"
    )
    conflicts = (
        "SELECT source_file, source_line, resource_type, id AS resource_id, "
        f"replace({quote(conflict)}, '{{kind}}', resource_type) AS reason, "
        f"md5(resource || {quote(VERSION_CONFLICT)}) AS content_hash, resource AS content "
        "FROM fhir_arrived WHERE resource <> kept"
    )
    engine.run(
        f"INSERT INTO {QUARANTINE} (load_id, source_file, source_line, resource_type, "
        "resource_id, reason, content_hash, content) SELECT DISTINCT ON (content_hash, "
        f"source_file, source_line) '{report.load_id}', source_file, source_line, "
        "resource_type, resource_id, reason, content_hash, content FROM (SELECT source_file, "
        "source_line, resource_type, resource_id, reason, content_hash, content FROM "
        f"{_STAGE}.bad UNION ALL {conflicts}) b WHERE NOT EXISTS (SELECT 1 FROM "
        f"{QUARANTINE} q WHERE q.content_hash = b.content_hash AND q.source_file = "
        "b.source_file AND q.source_line = b.source_line)"
    )
    new = engine.fetch("SELECT resource_type, count(*) FROM fhir_new GROUP BY 1")
    report.stored = Counter({str(k): int(n) for k, n in new})
    clashes = engine.fetch(
        "SELECT resource_type, count(*) FROM fhir_arrived WHERE resource <> kept GROUP BY 1"
    )
    clashed = Counter({str(k): int(n) for k, n in clashes})
    report.quarantined += clashed
    if clashed:
        report.reasons["version conflict"] += clashed.total()
    arrived = engine.fetch("SELECT resource_type, count(*) FROM fhir_arrived GROUP BY 1")
    report.unchanged = Counter({str(k): int(n) for k, n in arrived}) - report.stored - clashed


def _flatten(engine: Engine) -> None:
    """The latest version of each resource, then each shipped view over it as `v_<name>`.
    Latest is by `meta.lastUpdated` as an instant, then `meta.versionId` as a number, then
    load order (later loads, and later records in a load, win)."""
    engine.run(
        "CREATE OR REPLACE TABLE fhir_current AS SELECT resource_type, id, resource "
        f"FROM {STORE} QUALIFY row_number() OVER (PARTITION BY resource_type, id "
        "ORDER BY TRY_CAST(last_updated AS TIMESTAMPTZ) DESC NULLS LAST, "
        "TRY_CAST(version_id AS BIGINT) DESC NULLS LAST, load_seq DESC, "
        "load_order DESC NULLS LAST) = 1"
    )
    for name, view in shipped_views().items():
        compiled = compile_view(view, table="fhir_current", dialect=engine.dialect)
        engine.run(f"CREATE OR REPLACE TABLE v_{name} AS {engine.render(compiled.query)}")


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
                "count": pa.array([r[3] for r in rows], pa.int64()),
            }
        ),
    )
    engine.run(f"INSERT INTO {QUALITY} SELECT * FROM fhir_quality_rows")
    engine.load_session(
        "fhir_load_row",
        pa.table(
            {
                "load_id": [report.load_id],
                "load_seq": pa.array([seq], pa.int64()),
                "started_at": [started],
                "finished_at": [_now()],
                "inputs": [json.dumps([str(f) for f in files])],
                "resources_in": pa.array([sum(report.resources_in.values())], pa.int64()),
                "stored": pa.array([sum(report.stored.values())], pa.int64()),
                "unchanged": pa.array([sum(report.unchanged.values())], pa.int64()),
                "quarantined": pa.array([sum(report.quarantined.values())], pa.int64()),
                "joinedup_version": [__version__],
            }
        ),
    )
    engine.run(f"INSERT INTO {LOADS} SELECT * FROM fhir_load_row")


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
        parameters={"load_id": report.load_id, "history_from": [n for n, _ in HISTORY_EVENTS]},
    )
    engine.run(exp.delete(BUILD.name, where=exp.column("source").eq(exp.Literal.string("fhir"))))
    engine.append(BUILD.name, info.table())
