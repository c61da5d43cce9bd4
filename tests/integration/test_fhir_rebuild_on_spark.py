"""The rules of a FHIR load run on Spark and agree with DuckDB: on tests/data/synthea, the
latest versions, the shipped views, every canonical table and the quality report that Spark
computes from the raw store equal those `ingest fhir` wrote to a DuckDB warehouse.

Spark cannot yet write a warehouse (its tables are session views), so the store a DuckDB
load kept is handed to Spark, which then does the rest of the load's work: choose the latest
versions, flatten, rebuild and count. Keys hashed from foreign ids (`activity_id`,
`pathway_id` of non-numeric ids) use each engine's own hash and are left out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlglot import exp

from joinedup.fhir import canonical
from joinedup.fhir.ingest import QUALITY, STORE, ingest_fhir, latest_versions, shipped_views
from joinedup.fhir.views import compile_view
from joinedup.warehouse import ALL_TABLES, JSON_DIALECTS, Engine, open_empty_engine, open_engine
from joinedup.warehouse.engines.duckdb import DuckDBEngine

pytestmark = pytest.mark.spark

SYNTHEA = Path(__file__).parents[1] / "data" / "synthea"
HASHED = {"activity_id", "pathway_id"}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fhir-spark")
    path = folder / "w.duckdb"
    with DuckDBEngine(path) as duck:
        for table in ALL_TABLES:
            duck.create(table)
        ingest_fhir(duck, [SYNTHEA], staging_dir=folder)
    return path


@pytest.fixture(scope="module")
def spark(warehouse: Path) -> Iterator[Engine]:
    """A Spark session holding what the DuckDB load read (its raw store, as text) and the
    footprint tables, with the load's work redone on Spark."""
    columns = ["resource_type", "id", "version_id", "last_updated", "load_seq", "load_order"]
    text = exp.cast(exp.column("resource"), "VARCHAR").as_("resource")
    with open_engine("duckdb", warehouse=warehouse) as duck:
        tables = {table.name: _all(duck, table.name) for table in ALL_TABLES}
        store = duck.execute(exp.select(*columns, text).from_(STORE))
    with open_empty_engine("spark") as spark:
        for name, rows in tables.items():
            spark.load(name, rows)
        spark.load(STORE, store)
        parse = JSON_DIALECTS["spark"].parse
        latest = exp.select(
            exp.column("resource_type"),
            exp.column("id"),
            parse(exp.column("resource")).as_("resource"),
        ).from_(latest_versions().subquery("l"))
        spark.materialise("fhir_current", latest)
        for name, view in shipped_views().items():
            compiled = compile_view(view, table="fhir_current", dialect=spark.dialect)
            spark.materialise(f"v_{name}", compiled.query)
        spark.materialise(canonical.PERSON_KEY, canonical.person_keys())
        spark.materialise(canonical.ENCOUNTER_ACTIVITY, canonical.encounter_activity())
        yield spark


def _all(engine: Engine, name: str) -> pa.Table:
    return engine.execute(exp.select(exp.Star()).from_(name))


def _rows(table: pa.Table) -> list[str]:
    kept = [c for c in table.column_names if c not in HASHED]
    return sorted(
        json.dumps(r, default=str, sort_keys=True) for r in table.select(kept).to_pylist()
    )


@pytest.mark.parametrize(
    "name", [*canonical.canonical_queries(), *canonical.FHIR_ONLY_TABLES], ids=str
)
def test_every_canonical_table_is_the_same_on_spark(
    warehouse: Path, spark: Engine, name: str
) -> None:
    queries: dict[str, Any] = {**canonical.canonical_queries(), **canonical.FHIR_ONLY_TABLES}
    with open_engine("duckdb", warehouse=warehouse) as duck:
        written = _all(duck, name)
    rebuilt = spark.execute(queries[name])
    assert rebuilt.column_names == written.column_names
    assert _rows(rebuilt) == _rows(written)


def test_synthea_fills_the_tables_compared(warehouse: Path) -> None:
    """The comparison means something: people, diagnoses, contacts and observations load."""
    with open_engine("duckdb", warehouse=warehouse) as duck:
        counts = {n: duck.count(n) for n in ("person", "diagnosis", "activity", "observation")}
    assert counts == {"person": 3, "diagnosis": 49, "activity": 59, "observation": 106}


def test_the_quality_report_is_the_same_on_spark(warehouse: Path, spark: Engine) -> None:
    with open_engine("duckdb", warehouse=warehouse) as duck:
        stored = duck.execute(
            exp.select("section", "item", "detail", "count").from_(QUALITY)
        ).to_pylist()
    sections = {"unmapped codes", "dangling references", "people"}
    written = sorted(
        (r["section"], r["item"], r["detail"], r["count"])
        for r in stored
        if r["section"] in sections
    )
    assert written
    assert sorted(canonical.quality(spark)) == written
