"""Spec: `joinedup phm run` stores the same tables on DuckDB and Spark — every phm_* table row
for row and column for column, types included, the model card too; only the run's id and the
time it ran differ."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from phm_run_world import load_run_world, random_world
from sqlglot import exp

from joinedup.population.codelists import load_codelists
from joinedup.population.config import load_config
from joinedup.population.pipeline import PHM_TABLES, PhmResult, run_phm
from joinedup.warehouse.engines import DuckDBEngine, Engine, SparkEngine

#: phm_run's wall-clock fields: the only values allowed to differ.
WALL_CLOCK = ("run_id", "run_at")


def _config() -> Any:
    """The shipped settings with the samples capped below the population, so both the
    training and the validation sample are draws, not everyone."""
    shipped = load_config()
    caps = {"max_train_people": 1_200, "max_validation_people": 1_500}
    return shipped.model_copy(update={"risk": shipped.risk.model_copy(update=caps)})


def _run(engine: Engine) -> tuple[PhmResult, dict[str, pa.Table]]:
    load_run_world(engine, random_world(2_000, seed=3))
    result = run_phm(engine, config=_config(), codes=load_codelists())
    stored = {
        name: engine.execute(exp.select("*").from_(name))
        for name in engine.table_names()
        if name.startswith("phm_")
    }
    return result, stored


def _first_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            cols = [k for k in x if x[k] != y.get(k)]
            return f"row {i}: {[(k, x[k], y.get(k)) for k in cols]}"
    return f"{len(a)} rows against {len(b)}"


@pytest.mark.spark
def test_phm_run_stores_identical_tables_on_duckdb_and_spark(spark_engine: SparkEngine) -> None:
    with DuckDBEngine() as duck:
        expected_result, expected = _run(duck)
    spark_engine.drop_all()
    try:
        result, got = _run(spark_engine)
    finally:
        spark_engine.drop_all()

    assert sorted(got) == sorted(expected) == sorted(PHM_TABLES)
    # The samples are draws from the population, and the model learnt something from them.
    assert "trained on a seeded sample of 1,200 of" in result.card.population
    assert "validated on a seeded sample of 1,500 of" in result.card.population
    assert result.card.validation.auroc > result.card.baseline_validation.auroc
    assert result.rows == expected_result.rows
    for name, stored in expected.items():
        want, have = stored, got[name]
        if name == "phm_run":
            want, have = want.drop_columns(list(WALL_CLOCK)), have.drop_columns(list(WALL_CLOCK))
            card = json.loads(have.column("model_card_json")[0].as_py())
            assert card == json.loads(want.column("model_card_json")[0].as_py())
        assert have.schema == want.schema, name
        assert want.num_rows > 0, name
        rows, want_rows = have.to_pylist(), want.to_pylist()
        assert rows == want_rows, f"{name}: {_first_difference(want_rows, rows)}"
