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

from joinedup.errors import InputError, JoinedupError
from joinedup.fhir.views import RESOURCE_TABLE, CompiledView, compile_view
from joinedup.warehouse import open_engine


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


def run_view(view: Any, resources: pa.Table) -> tuple[CompiledView, list[dict[str, Any]]]:
    """Compile `view` and run it over `resources` (a `resource_table`) on DuckDB in memory;
    JSON-valued columns come back decoded."""
    compiled = compile_view(view)
    with open_engine("duckdb") as engine:
        engine.load_session("incoming_resources", resources)
        engine.materialise(RESOURCE_TABLE, _as_json("incoming_resources"))
        result = engine.execute(compiled.query)
    decoded = [c.name for c in compiled.columns if c.collection or _is_json_type(c.type)]
    rows = result.to_pylist()
    for row in rows:
        for name in decoded:
            if isinstance(row[name], str):
                row[name] = json.loads(row[name])
    return compiled, rows


def _is_json_type(type_name: str | None) -> bool:
    from joinedup.fhir.views import _PRIMITIVE_TYPES, _TEXT_TYPES  # noqa: PLC0415

    return type_name not in _PRIMITIVE_TYPES and type_name not in _TEXT_TYPES


def _as_json(source: str) -> Any:
    from sqlglot import exp  # noqa: PLC0415

    return exp.select(
        exp.column("resource_type"),
        exp.cast(exp.column("resource"), exp.DataType.build("JSON", dialect="duckdb")).as_(
            "resource"
        ),
    ).from_(source)


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


def run_test(test: dict[str, Any], resources: pa.Table) -> tuple[bool, str]:
    """Whether one test passes, and why not."""
    expects_error = bool(test.get("expectError"))
    try:
        compiled, rows = run_view(test.get("view"), resources)
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


def run_file(path: Path) -> list[Outcome]:
    """Every test in one file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(str(path), f"not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise InputError(str(path), "not a SQL-on-FHIR test file: no 'tests' list")
    resources = resource_table(data.get("resources") or [])
    out = []
    for test in data["tests"]:
        passed, reason = run_test(test, resources)
        out.append(
            Outcome(
                path.name, str(test.get("title", "")), tuple(test.get("tags") or ()), passed, reason
            )
        )
    return out


def run_suite(directory: Path) -> list[Outcome]:
    """Every test file (`*.json`) in `directory`, in name order."""
    if not directory.is_dir():
        raise InputError(str(directory), "not a directory of test files")
    files = sorted(p for p in directory.glob("*.json") if p.name != "tests.schema.json")
    if not files:
        raise InputError(str(directory), "no .json test files")
    return [outcome for path in files for outcome in run_file(path)]


def report(outcomes: Iterable[Outcome]) -> dict[str, Any]:
    """The official test_report.json shape."""
    out: dict[str, Any] = {}
    for o in outcomes:
        result: dict[str, Any] = {"passed": o.passed}
        if o.reason:
            result["reason"] = o.reason
        out.setdefault(o.file, {"tests": []})["tests"].append({"name": o.name, "result": result})
    return out
