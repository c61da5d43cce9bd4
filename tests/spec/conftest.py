"""Every spec test runs on every engine: DuckDB in memory and one local Spark session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from joinedup.errors import JoinedupError
from joinedup.warehouse.engines import DuckDBEngine, Engine, SparkEngine


def _spark_or_skip() -> SparkEngine:
    try:
        return SparkEngine("local[2]", app_name="joinedup-spec")
    except JoinedupError as err:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Spark is required in CI: {err}")
        pytest.skip(f"Spark unavailable: {err}")


@pytest.fixture(scope="session")
def spark_engine() -> Iterator[SparkEngine]:
    """One JVM for the whole run; tests share it and clear their views."""
    engine = _spark_or_skip()
    yield engine
    engine.close()


@pytest.fixture(
    params=["duckdb", pytest.param("spark", marks=pytest.mark.spark)],
)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    if request.param == "duckdb":
        with DuckDBEngine() as duck:
            yield duck
        return
    spark: SparkEngine = request.getfixturevalue("spark_engine")
    spark.drop_all()
    yield spark
    spark.drop_all()
