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
from joinedup.fhir.reader import input_files, read_resources
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
    engine.load_session("incoming_resources", resources)
    engine.materialise(
        RESOURCE_TABLE,
        exp.select(
            exp.column("resource_type"),
            dialect.parse(exp.column("resource")).as_("resource"),
        ).from_("incoming_resources"),
    )


_LINES = "fhir_lines"


def load_files(engine: Engine, paths: Iterable[Path]) -> int:
    """Make the resources in `paths` the engine's resource table; returns how many.

    Plain or gzipped NDJSON goes straight into DuckDB (`read_ndjson_objects`, no Python per
    resource). Anything else (Bundles, single resources, XML, other engines), or NDJSON DuckDB
    refuses, is read by `reader.read_resources`, which names the file and line of a bad record.
    """
    files = input_files(list(paths))
    ndjson = all(".ndjson" in f.name or ".jsonl" in f.name for f in files)
    if ndjson:
        try:
            engine.load_json_lines(_LINES, files)
            dialect = JSON_DIALECTS[engine.dialect]
            engine.materialise(
                RESOURCE_TABLE,
                exp.select(
                    dialect.resource_type(exp.column("json")).as_("resource_type"),
                    exp.column("json").as_("resource"),
                ).from_(_LINES),
            )
            kind = exp.column("resource_type")
            bundles = (
                exp.select(exp.Count(this=exp.Star()).as_("n"))
                .from_(RESOURCE_TABLE)
                .where(exp.or_(kind.eq(exp.Literal.string("Bundle")), kind.copy().is_(exp.null())))
            )
            if engine.execute(bundles).column("n")[0].as_py() == 0:
                return engine.count(RESOURCE_TABLE)
        except NotImplementedError:  # engines that cannot read lines themselves
            pass
        except Exception:  # the careful reader below names the file and line DuckDB refused
            pass
    resources = resource_table(read_resources(files))
    load_resources(engine, resources)
    return int(resources.num_rows)


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
    table = engine.execute(compiled.query).select([c.name for c in compiled.columns])
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
