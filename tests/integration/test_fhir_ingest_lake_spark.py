"""`ingest fhir` into a lake gives the same rows on Spark as on DuckDB: tests/data/synthea is
loaded twice into two lakes, one per engine, and every table the lakes hold is compared row
for row, every column but the loads' own ids and times. The second load stores nothing and
changes no canonical row on either engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlglot import exp
from test_fhir_person_index import write_world
from typer.testing import CliRunner

from joinedup.cli import app
from joinedup.fhir.ingest import is_old_reason, without_values
from joinedup.warehouse import open_empty_engine, open_engine
from joinedup.warehouse.lake import Lake

pytestmark = pytest.mark.spark

SYNTHEA = Path(__file__).parents[1] / "data" / "synthea"
ENGINES = ("duckdb", "spark")
#: Columns that name or time a load, which differ between any two loads.
PER_LOAD = {
    "fhir_load": {"load_id", "started_at", "finished_at"},
    "fhir_load_quality": {"load_id"},
    "fhir_quarantine": {"load_id"},
    "fhir_resource": {"load_id"},
    "build": {"build_id", "built_at"},
}


def _ingest(lake: Path, engine: str, *more: str, source: Path = SYNTHEA) -> str:
    args = ["ingest", "fhir", str(source), "-w", f"{lake}/", "--engine", engine, *more]
    if engine == "spark":
        args += ["--spark-master", "local[2]"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"ingest fhir --engine {engine}: {result.output}"
    return result.output


def _rows(lake: Path) -> dict[str, list[str]]:
    """Every table of the lake as sorted JSON rows, read by DuckDB, per-load columns left
    out (and the load id inside the build record's parameters)."""
    tables: dict[str, list[str]] = {}
    with open_engine("duckdb", warehouse=lake) as duck:
        for name in sorted(Lake(lake).manifest().tables):
            rows = duck.execute(exp.select(exp.Star()).from_(name)).to_pylist()
            tables[name] = sorted(json.dumps(_kept(name, r), default=str) for r in rows)
    return tables


def _kept(name: str, row: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in row.items() if k not in PER_LOAD.get(name, set())}
    if name == "build" and kept.get("parameters"):
        parameters = json.loads(kept["parameters"])
        parameters.pop("load_id", None)
        kept["parameters"] = parameters
    return dict(sorted(kept.items()))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Each engine's lake after the first load and after the second, with the second load's
    output."""
    folder = tmp_path_factory.mktemp("fhir-lakes")
    out: dict[str, Any] = {}
    # One Spark session for both Spark loads: each command's engine reuses it, leaving it open.
    with open_empty_engine("spark", spark_master="local[2]"):
        for engine in ENGINES:
            lake = folder / f"{engine}-lake"
            _ingest(lake, engine)
            first = _rows(lake)
            second_output = _ingest(lake, engine)
            out[engine] = {"first": first, "second": _rows(lake), "output": second_output}
            # The person index's small world (tests/integration/test_fhir_person_index.py).
            small = folder / f"{engine}-indexed"
            small.mkdir()
            world, index = write_world(small)
            _ingest(small / "lake", engine, "--person-index", str(index), source=world)
            out[engine]["indexed"] = _rows(small / "lake")
    yield out


def test_both_engines_write_the_same_tables_row_for_row(loaded: dict[str, Any]) -> None:
    for when in ("first", "second"):
        duck, spark = loaded["duckdb"][when], loaded["spark"][when]
        assert sorted(spark) == sorted(duck), when
        for name in duck:
            assert spark[name] == duck[name], f"{name} after the {when} load"


def test_both_engines_place_patients_by_the_person_index_alike(loaded: dict[str, Any]) -> None:
    """One woman's Patients from two organisations, one NHS number mistyped, linked by the
    index: one person with both encounters, on Spark as on DuckDB."""
    kept = [n for n in loaded["duckdb"]["indexed"] if not n.startswith("fhir_")]  # not paths
    duck, spark = ({n: loaded[e]["indexed"][n] for n in kept} for e in ENGINES)
    assert spark == duck
    activity = [json.loads(r) for r in spark["activity"]]
    assert sorted(r["activity_type"] for r in activity) == ["ae_attendance", "gp_consultation"]
    assert len({r["person_id"] for r in activity}) == 1
    assert len(spark["person"]) == 1
    build = json.loads(spark["build"][0])["parameters"]
    assert build["person_index"] == {"records_count": 3, "patients_mapped_count": 2}
    # A fresh lake's first load on both engines, although Spark's session had loaded other
    # lakes before it: nothing of theirs is seen.
    for engine in ENGINES:
        loads = [json.loads(r) for r in loaded[engine]["indexed"]["fhir_load"]]
        assert [r["load_seq"] for r in loads] == [1], engine


def test_the_comparison_covers_the_load(loaded: dict[str, Any]) -> None:
    """The tables compared are not empty: the store, people, contacts with keys from foreign
    ids, observations and the quality report."""
    tables = loaded["spark"]["second"]
    counts = {n: len(tables[n]) for n in ("fhir_resource", "person", "activity", "observation")}
    assert counts == {"fhir_resource": 750, "person": 3, "activity": 59, "observation": 106}
    assert len(tables["fhir_load"]) == 2
    assert tables["fhir_load_quality"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_second_load_changes_nothing(loaded: dict[str, Any], engine: str) -> None:
    runs = loaded[engine]
    assert "0 stored, 750 unchanged, 0 quarantined" in runs["output"]
    kept = {n: rows for n, rows in runs["second"].items() if not n.startswith(("fhir_", "build"))}
    assert kept == {n: runs["first"][n] for n in kept}


#: Reasons as earlier versions stored them, quoting values, and as a load rewrites them.
OLD_REASONS = {
    "Patient.identifier[0]: NHS number '4010232138' fails the Modulus 11 check; "
    "Patient.birthDate: '1980-02-30' is not a real date or time (day is out of range for month)":
    "Patient.identifier[0]: NHS number fails the Modulus 11 check; "
    "Patient.birthDate: not a real date or time",
    "Observation.effectiveDateTime: \"2020-13\" has no month 13":
    "Observation.effectiveDateTime: not a real date (the month is not 01-12)",
    "resourceType 'Pateint' is not a FHIR R4 resource type":
    "resourceType is not a FHIR R4 resource type",
    "Patient.id 'a b' is not a valid id": "Patient.id is not a valid id",
    "Patient.active: 'yes' is not true or false; Encounter.length.value: 'x' is not a number":
    "Patient.active: value is not true or false; Encounter.length.value: value is not a number",
    "MedicationRequest.dispenseRequest.numberOfRepeatsAllowed: '1.5' is not an integer":
    "MedicationRequest.dispenseRequest.numberOfRepeatsAllowed: value is not an integer",
    "Patient.birthDate: not a real date (the month has no such day)":
    "Patient.birthDate: not a real date (the month has no such day)",
}  # fmt: skip


@pytest.mark.parametrize("engine", ENGINES)
def test_old_reasons_lose_their_values_alike_on_both_engines(engine: str) -> None:
    """The rewrite of reasons stored by earlier versions (run by every load before it stores
    anything) gives the same text on Spark's regular expressions as on DuckDB's."""
    reason = exp.column("reason")
    query = exp.select(
        reason.copy(),
        without_values(reason).as_("now"),
        is_old_reason(reason).as_("old"),
    ).from_("old_reasons")
    with open_empty_engine(engine) as session:
        session.load_session("old_reasons", pa.table({"reason": list(OLD_REASONS)}))
        rows = session.execute(query).to_pylist()
    assert {r["reason"]: r["now"] for r in rows} == OLD_REASONS
    assert [r["old"] for r in rows] == [r["reason"] != r["now"] for r in rows]
