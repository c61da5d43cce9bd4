"""Run SQL-on-FHIR v2 test files (the official `tests.schema.json` format) and write the
official `test_report.json` shape: `{file: {"tests": [{"name", "result": {"passed"}}]}}`.

Each file's resources are loaded into an in-memory DuckDB table and each view compiled and run
there, so the suite exercises exactly the engine `joinedup views run` uses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlglot import exp

from joinedup.errors import InputError, JoinedupError
from joinedup.fhir.reader import input_files, leading_types, read_resources
from joinedup.fhir.typed import TYPE_COLUMN, TYPED_SOURCE
from joinedup.fhir.views import (
    _PRIMITIVE_TYPES,
    _TEXT_TYPES,
    RESOURCE_TABLE,
    CompiledView,
    compile_view,
)
from joinedup.warehouse import JSON_DIALECTS, Engine, open_empty_engine


@dataclass(frozen=True)
class Outcome:
    file: str
    name: str
    tags: tuple[str, ...]
    passed: bool
    reason: str = ""


def resource_table(resources: Iterable[dict[str, Any]]) -> pa.Table:
    """Resources as the (resource_type, resource) rows every view reads."""
    rows = list(resources)
    return pa.table(
        {
            "resource_type": pa.array([r.get("resourceType") for r in rows], pa.string()),
            "resource": pa.array([json.dumps(r) for r in rows], pa.string()),
        }
    )


def load_resources(engine: Engine, resources: pa.Table) -> None:
    """Make `resources` (a `resource_table`) the engine's resource table, JSON parsed."""
    dialect = JSON_DIALECTS[engine.dialect]
    engine.drop(_FILES)
    engine.drop(_HELD)
    engine.load_session("incoming_resources", resources)
    engine.materialise(
        RESOURCE_TABLE,
        exp.select(
            exp.column("resource_type"),
            dialect.parse(exp.column("resource")).as_("resource"),
        ).from_("incoming_resources"),
    )


_LINES = "fhir_lines"
_LINE_TYPES = "fhir_line_types"
#: NDJSON files given to `load_files` and the resource types in each, in the order given
#: (`file`, `position`, `resource_type`, `resource_count`); the resource table is built from
#: them only when a view needs it.
_FILES = "fhir_files"
#: The files whose resources the resource table holds, when `load_files` left them in files.
_HELD = "fhir_resource_files"


def load_files(engine: Engine, paths: Iterable[Path]) -> int:
    """Make the resources in `paths` what `execute_view` reads; returns how many.

    Plain or gzipped NDJSON stays in its files, inside DuckDB. Which types each file holds
    is read from the start of its lines where every line starts with the same type, as
    bulk exports write them (no line parsed), else by one pass reading each line's
    `resourceType`. Each view then reads only the files that hold its resource type,
    typed (`fhir.typed`), or, where that fails, the table of parsed resources
    (`read_ndjson_objects`), built from those files when first needed. NDJSON that the
    typed pass refuses (a key written twice) goes into that table at once. Anything else
    (Bundles, single resources, XML, other engines), or NDJSON DuckDB refuses, is read by
    `reader.read_resources`, which names the file and line of a bad record: at once, or
    when a view first reads the file of a line that starts as bulk NDJSON does.
    """
    files = input_files(list(paths))
    ndjson = all(".ndjson" in f.name or ".jsonl" in f.name for f in files)
    if ndjson:
        for load in (_list_files, _load_lines):
            try:
                loaded = load(engine, files)
            except NotImplementedError:  # engines that cannot read lines themselves
                break
            except Exception:  # the next way, or the careful reader below names the line
                continue
            if loaded is not None:
                return loaded
    resources = resource_table(read_resources(files))
    load_resources(engine, resources)
    return int(resources.num_rows)


def _list_files(engine: Engine, files: list[Path]) -> int | None:
    """List the resource types in each file (`_FILES`); the number of resources, or None
    when a line is a Bundle or has no type. A file whose every line starts with the same
    type, as bulk exports write them, is listed from that start with no line parsed
    (`reader.leading_type`); the others are read for `resourceType` alone. A line that is
    not JSON is then found by the view that reads its file (`_loaded_rows`)."""
    for name in (_FILES, _HELD, RESOURCE_TABLE):
        engine.drop(name)
    varchar = exp.DataType.build("VARCHAR")
    # an engine that cannot read lines itself says so here, before any file is scanned
    engine.read_json_columns(_LINE_TYPES, files, {TYPE_COLUMN: varchar}, filename=True)
    leading = leading_types(files)
    rest = [f for f in files if leading[f] is None]
    if rest and len(rest) < len(files):
        engine.read_json_columns(_LINE_TYPES, rest, {TYPE_COLUMN: varchar}, filename=True)
    counted: list[dict[str, Any]] = [
        {"file": str(f), "resource_type": found[0], "resource_count": found[1]}
        for f, found in leading.items()
        if found is not None
    ]
    if rest:
        kind = exp.column(TYPE_COLUMN, quoted=True)
        counted += engine.execute(
            exp.select(
                exp.column("filename").as_("file"),
                kind.as_("resource_type"),
                exp.Count(this=exp.Star()).as_("resource_count"),
            )
            .from_(_LINE_TYPES)
            .group_by(exp.column("filename"), kind.copy())
        ).to_pylist()
    if any(c["resource_type"] in (None, "Bundle") for c in counted):
        return None
    order = {str(f): i for i, f in enumerate(files)}
    counted.sort(key=lambda c: (order.get(c["file"], len(order)), c["resource_type"]))
    for c in counted:
        c["position"] = order.get(c["file"], len(order))
    _keep_listing(engine, counted)
    return sum(int(c["resource_count"]) for c in counted)


#: The most files whose listing is written as VALUES: beyond it, loading Arrow (and DuckDB's
#: import of pandas, once) costs less than writing and parsing the VALUES (1,000 files: 0.78
#: s against 0.54 s).
_LISTED_AS_VALUES = 256


def _keep_listing(engine: Engine, listed: list[dict[str, Any]]) -> None:
    """Keep the listing (`_FILES`) in the engine, for the views that read it. Up to
    `_LISTED_AS_VALUES` files it is written as VALUES, not loaded from Arrow: DuckDB's
    Python module imports pandas the first time it is given a Python object to read,
    0.3-0.5 s of every `views run` for a table of a few rows."""
    if not listed or len(listed) > _LISTED_AS_VALUES:  # VALUES grow 0.4 ms a row to write
        engine.load(
            _FILES,
            pa.table({name: pa.array([c[name] for c in listed], kind) for name, kind in _LISTING}),
        )
        return
    rows = [exp.Tuple(expressions=[exp.convert(c[name]) for name, _ in _LISTING]) for c in listed]
    names = [name for name, _ in _LISTING]
    typed = [
        exp.cast(exp.column(name), "VARCHAR" if kind == pa.string() else "BIGINT").as_(name)
        for name, kind in _LISTING
    ]
    engine.materialise(
        _FILES, exp.select(*typed).from_(exp.values(rows, alias="listed", columns=names))
    )


#: The listing's columns, in order.
_LISTING = (
    ("file", pa.string()),
    ("position", pa.int64()),
    ("resource_type", pa.string()),
    ("resource_count", pa.int64()),
)


def _load_lines(engine: Engine, files: list[Path]) -> int | None:
    """The table of parsed resources from every file at once; the number of resources, or
    None when a line is a Bundle or has no type."""
    for name in (_FILES, _HELD):
        engine.drop(name)
    _parse_lines(engine, files)
    kind = exp.column("resource_type")
    bundles = (
        exp.select(exp.Count(this=exp.Star()).as_("n"))
        .from_(RESOURCE_TABLE)
        .where(exp.or_(kind.eq(exp.Literal.string("Bundle")), kind.copy().is_(exp.null())))
    )
    if engine.execute(bundles).column("n")[0].as_py() != 0:
        return None
    return engine.count(RESOURCE_TABLE)


def _parse_lines(engine: Engine, files: list[Path]) -> None:
    """The table of parsed resources from `files`: `read_ndjson_objects`, each line's type
    read from its start where it is written first."""
    engine.load_json_lines(_LINES, files)
    dialect = JSON_DIALECTS[engine.dialect]
    engine.materialise(
        RESOURCE_TABLE,
        exp.select(
            dialect.resource_type(exp.column("json")).as_("resource_type"),
            exp.column("json").as_("resource"),
        ).from_(_LINES),
    )


def _listed_files(engine: Engine) -> list[tuple[str, str]] | None:
    """The (file, resource type) pairs `load_files` left in their files, in order (none when
    every file was empty); None when the resources were loaded into the resource table."""
    if _FILES not in engine.table_names():
        return None
    listed = engine.execute(
        exp.select("file", "resource_type").from_(_FILES).order_by("position", "resource_type")
    )
    return [(r["file"], r["resource_type"]) for r in listed.to_pylist()]


def _resource_table(engine: Engine, files: list[Path]) -> None:
    """Make the table of parsed resources hold (at least) the resources in `files`, which
    `load_files` listed: `read_ndjson_objects`, each line's type read from its start where it
    is written first. Files already in it are not read again unless it must be rebuilt."""
    tables = engine.table_names()
    held: list[Path] = []
    if RESOURCE_TABLE in tables and _HELD in tables:
        held = [
            Path(f)
            for f in engine.execute(exp.select("file").from_(_HELD)).column("file").to_pylist()
        ]
        if set(files) <= set(held):
            return
    wanted = list(dict.fromkeys([*held, *files]))
    dialect = JSON_DIALECTS[engine.dialect]
    if not wanted:  # no file holds the view's resource type
        nothing = exp.select(
            exp.cast(exp.null(), "VARCHAR").as_("resource_type"),
            dialect.parse(exp.cast(exp.null(), "VARCHAR")).as_("resource"),
        ).where(exp.false())
        engine.materialise(RESOURCE_TABLE, nothing)
        return
    _parse_lines(engine, wanted)
    engine.load(_HELD, pa.table({"file": pa.array([str(f) for f in wanted], pa.string())}))


def _loaded_rows(compiled: CompiledView, engine: Engine) -> pa.Table:
    """The rows of `compiled` over what `load_files` loaded: typed from the files that hold
    its resource type where it can, else over the table of parsed resources."""
    listed = _listed_files(engine)
    mine = list(dict.fromkeys(Path(f) for f, kind in listed or () if kind == compiled.resource))
    if compiled.typed is not None and mine:
        try:
            engine.read_json_columns(TYPED_SOURCE, mine, compiled.typed.columns)
            return engine.execute(compiled.typed.query)
        except Exception:  # a shape the typed read does not take: the general query below
            pass
    if listed is not None:  # in files: only those holding the view's type are parsed
        try:
            _resource_table(engine, mine)
        except JoinedupError:
            raise
        except Exception:  # DuckDB refuses a line: read every file as `load_files` would
            # have, so a line that is not JSON is named with its file and line
            everything = list(dict.fromkeys(Path(f) for f, _ in listed))
            load_resources(engine, resource_table(read_resources(everything)))
    return engine.execute(compiled.query)


def execute_view(
    compiled: CompiledView,
    resources: pa.Table | None,
    engine: Engine,
    *,
    plain_strings: bool = False,
) -> pa.Table:
    """The rows of a compiled view over `resources` (or, when None, the resources already
    loaded by `load_files`) as Arrow, columns in view order; JSON values (collections, untyped
    columns) as JSON text. With `plain_strings`, an untyped column's string values come out as
    the text itself rather than quoted JSON (for CSV)."""
    if resources is not None:
        load_resources(engine, resources)
        table = engine.execute(compiled.query)
    else:
        table = _loaded_rows(compiled, engine)
    table = table.select([c.name for c in compiled.columns])
    if not plain_strings:
        return table
    for i, col in enumerate(compiled.columns):
        if col.collection or not _is_json_type(col.type):
            continue
        values = [_plain(v) for v in table.column(i).to_pylist()]
        table = table.set_column(i, col.name, pa.array(values, pa.string()))
    return table


def _plain(value: str | None) -> str | None:
    if value is None:
        return None
    decoded = json.loads(value)
    return decoded if isinstance(decoded, str) else value


def run_view(
    view: Any, resources: pa.Table, engine: Engine | None = None
) -> tuple[CompiledView, list[dict[str, Any]]]:
    """Compile `view` and run it over `resources` (a `resource_table`) on `engine` (DuckDB in
    memory by default); JSON-valued columns come back decoded."""
    if engine is None:
        with open_empty_engine("duckdb") as duck:
            return run_view(view, resources, duck)
    compiled = compile_view(view, dialect=engine.dialect)
    result = execute_view(compiled, resources, engine)
    decoded = [c.name for c in compiled.columns if c.collection or _is_json_type(c.type)]
    rows = result.to_pylist()
    for row in rows:
        for name in decoded:
            if isinstance(row[name], str):
                row[name] = json.loads(row[name])
    return compiled, rows


def _is_json_type(type_name: str | None) -> bool:
    return type_name not in _PRIMITIVE_TYPES and type_name not in _TEXT_TYPES


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (a == b and type(a) is type(b))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _rows_match(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> str:
    """Empty when the rows are the same multiset (order is not part of a view's contract),
    else why not."""
    if len(got) != len(expected):
        return f"expected {len(expected)} rows, got {len(got)}"
    left = list(got)
    for row in expected:
        match = next((i for i, g in enumerate(left) if _same(g, row)), None)
        if match is None:
            return f"no row matches {json.dumps(row)}; got {json.dumps(left[:3])}"
        left.pop(match)
    return ""


def run_test(
    test: dict[str, Any], resources: pa.Table, engine: Engine | None = None
) -> tuple[bool, str]:
    """Whether one test passes, and why not."""
    expects_error = bool(test.get("expectError"))
    try:
        compiled, rows = run_view(test.get("view"), resources, engine)
    except (JoinedupError, Exception) as err:
        if expects_error:
            return True, ""
        return False, f"{type(err).__name__}: {err}"
    if expects_error:
        return False, "expected an error, got rows"
    if "expectColumns" in test:
        names = [c.name for c in compiled.columns]
        if names != test["expectColumns"]:
            return False, f"expected columns {test['expectColumns']}, got {names}"
    expected = test.get("expect")
    if expected is None:
        return True, ""
    reason = _rows_match(rows, expected)
    return (not reason), reason


def run_file(path: Path, engine: Engine | None = None) -> list[Outcome]:
    """Every test in one file, on `engine` (DuckDB in memory by default)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(str(path), f"not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise InputError(str(path), "not a SQL-on-FHIR test file: no 'tests' list")
    resources = resource_table(data.get("resources") or [])
    out = []
    for test in data["tests"]:
        passed, reason = run_test(test, resources, engine)
        out.append(
            Outcome(
                path.name, str(test.get("title", "")), tuple(test.get("tags") or ()), passed, reason
            )
        )
    return out


def run_suite(directory: Path, engine: Engine | None = None) -> list[Outcome]:
    """Every test file (`*.json`) in `directory`, in name order, on `engine`."""
    if not directory.is_dir():
        raise InputError(str(directory), "not a directory of test files")
    files = sorted(p for p in directory.glob("*.json") if p.name != "tests.schema.json")
    if not files:
        raise InputError(str(directory), "no .json test files")
    return [outcome for path in files for outcome in run_file(path, engine)]


def report(outcomes: Iterable[Outcome]) -> dict[str, Any]:
    """The official test_report.json shape."""
    out: dict[str, Any] = {}
    for o in outcomes:
        result: dict[str, Any] = {"passed": o.passed}
        if o.reason:
            result["reason"] = o.reason
        out.setdefault(o.file, {"tests": []})["tests"].append({"name": o.name, "result": result})
    return out
