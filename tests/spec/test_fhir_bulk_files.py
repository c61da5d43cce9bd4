"""Spec: views over bulk NDJSON as exports write it (one type a file, `resourceType` first,
compact) give the rows of the general query over the same resources, on every engine, and
a line that is not JSON is named with its file and line wherever it is found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from joinedup.errors import InputError
from joinedup.fhir.ingest import shipped_views
from joinedup.fhir.testsuite import execute_view, load_files, resource_table
from joinedup.fhir.views import compile_view
from joinedup.warehouse.engines import Engine

_ENCOUNTERS: list[dict[str, Any]] = [
    {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
     "subject": {"reference": "Patient/p1"}, "period": {"start": "2024-01-02"},
     "identifier": [{"system": "https://fhir.joinedup.org/Id/activity", "value": "a1"}]},
    {"resourceType": "Encounter", "id": "e2", "status": "planned",
     "subject": [{"reference": "Patient/p2"}], "period": {"start": "2024-02-03"}},
    {"resourceType": "Encounter", "id": "e3", "class": [{"code": "IMP"}],
     "identifier": [{"system": "x", "value": "1"},
                    {"system": "https://fhir.joinedup.org/Id/activity", "value": "a3"}]},
]  # fmt: skip
_PATIENTS: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1", "gender": "female"},
    {"resourceType": "Patient", "id": "p2", "gender": "male"},
]


def _compact(resource: dict[str, Any]) -> str:
    return json.dumps(resource, separators=(",", ":"))


def _bulk(folder: Path, by_type: dict[str, list[dict[str, Any]]]) -> list[Path]:
    files = []
    for kind, resources in by_type.items():
        path = folder / f"{kind}.ndjson"
        path.write_text("".join(_compact(r) + "\n" for r in resources), encoding="utf-8")
        files.append(path)
    return files


def test_bulk_files_give_the_general_rows(engine: Engine, tmp_path: Path) -> None:
    files = _bulk(tmp_path, {"Patient": _PATIENTS, "Encounter": _ENCOUNTERS})
    every = [*_PATIENTS, *_ENCOUNTERS]
    for name in ("patient", "encounter"):
        compiled = compile_view(shipped_views()[name], dialect=engine.dialect)
        expected = execute_view(compiled, resource_table(every), engine).to_pylist()
        assert load_files(engine, files) == len(every)
        got = execute_view(compiled, None, engine).to_pylist()
        assert got == expected
        assert len(got) == (2 if name == "patient" else 3)


def test_a_line_broken_past_its_start_is_named(engine: Engine, tmp_path: Path) -> None:
    """The line starts as bulk NDJSON does, so no pass before the view parses it: the view
    that reads its file finds it and names the file and line."""
    files = _bulk(tmp_path, {"Encounter": _ENCOUNTERS[:1]})
    with files[0].open("a", encoding="utf-8") as handle:
        handle.write('{"resourceType":"Encounter","id":"cut","status":"fin\n')
    compiled = compile_view(shipped_views()["encounter"], dialect=engine.dialect)
    with pytest.raises(InputError, match=r"Encounter\.ndjson, line 2"):
        load_files(engine, files)
        execute_view(compiled, None, engine)


def test_only_empty_files_give_no_rows(engine: Engine, tmp_path: Path) -> None:
    """An export with nothing of a type (its files empty) is no error: the view has its
    columns and no rows."""
    files = _bulk(tmp_path, {"Patient": [], "Encounter": []})
    compiled = compile_view(shipped_views()["encounter"], dialect=engine.dialect)
    assert load_files(engine, files) == 0
    got = execute_view(compiled, None, engine)
    assert got.num_rows == 0
    assert got.column_names == [c.name for c in compiled.columns]
