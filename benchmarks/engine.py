"""Benchmark: the same canonical analytic on DuckDB (in memory) and Spark (local[2]).

Both engines read the same Parquet export of a synthetic warehouse; each runs `activity_rates`
for the last year of history by five-year band (median of three after a warm-up), and the
results must be identical before any time is reported.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from joinedup.warehouse.analytics import FIVE_YEAR_BANDS, activity_rates
from joinedup.warehouse.engines import DuckDBEngine, Engine, SparkEngine, canonical_parquet_files


def _median_seconds(run: Callable[[], pa.Table], repeats: int = 3) -> tuple[float, pa.Table]:
    result = run()  # warm-up: caches, Spark's first-job start-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def bench_engine_duckdb_vs_spark(
    parquet_dir: Path, history_end: dt.date, activity_rows: int
) -> list[dict[str, Any]]:
    """Time `activity_rates` over the last year on DuckDB and Spark over the same Parquet."""
    start = history_end - dt.timedelta(days=364)
    query = activity_rates(start, history_end, FIVE_YEAR_BANDS)
    engines: list[Engine] = [DuckDBEngine()]
    for name, files in canonical_parquet_files(parquet_dir).items():
        engines[0].load_parquet(name, files)
    engines.append(SparkEngine.from_parquet_dir(parquet_dir, master="local[2]"))
    try:
        (t_duck, duck_rows), (t_spark, spark_rows) = (
            _median_seconds(lambda e=e: e.execute(query)) for e in engines
        )
    finally:
        for e in engines:
            e.close()
    if not duck_rows.equals(spark_rows):
        raise RuntimeError("DuckDB and Spark disagree on activity_rates")
    return [
        {"name": "engine_duckdb_activity_rates_s", "value": t_duck, "unit": "s"},
        {"name": "engine_spark_local2_activity_rates_s", "value": t_spark, "unit": "s"},
        {
            "name": "engine_duckdb_vs_spark",
            "value": t_duck,
            "unit": "s",
            "baseline_name": "spark_local2",
            "baseline_value": t_spark,
            "ratio": t_spark / t_duck,
        },
        {"name": "engine_bench_activity_rows", "value": activity_rows, "unit": "rows"},
    ]
