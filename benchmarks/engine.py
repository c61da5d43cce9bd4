"""Benchmark: the same canonical analytic on DuckDB (in memory) and Spark (local[2]).

Builds a seeded synthetic person/practice/place/activity set with numpy, writes it as Parquet,
loads it into both engines and times `activity_rates` (median of three after a warm-up).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from joinedup.warehouse.analytics import FIVE_YEAR_BANDS, activity_rates
from joinedup.warehouse.engines import DuckDBEngine, Engine, SparkEngine, canonical_parquet_files
from joinedup.warehouse.schema import ACTIVITY_TYPES, TABLES, conform

SEED = 20240401
EPOCH = date(1970, 1, 1)


def _days(d: date) -> int:
    return (d - EPOCH).days


def _write(directory: Path, name: str, columns: dict[str, Any], parts: int = 1) -> None:
    """Write a canonical table as `<name>.parquet`, or `<name>/part-*.parquet` when split."""
    table = conform(TABLES[name], pa.table(columns))
    if parts == 1:
        pq.write_table(table, directory / f"{name}.parquet")
        return
    (directory / name).mkdir()
    step = -(-table.num_rows // parts)
    for i in range(parts):
        pq.write_table(table.slice(i * step, step), directory / name / f"part-{i:05d}.parquet")


def build_dataset(directory: Path, people: int = 200_000, seed: int = SEED) -> int:
    """Write place, practice, person and activity Parquet (about 10 contacts a person)."""
    rng = np.random.default_rng(seed)
    places, practices = 5, 40
    _write(
        directory,
        "place",
        {
            "place_code": [f"E0900000{i}" for i in range(places)],
            "place_name": [f"Place {i}" for i in range(places)],
            "profile": [None] * places,
        },
    )
    codes = [f"P{i:05d}" for i in range(practices)]
    _write(
        directory,
        "practice",
        {
            "practice_code": codes,
            "practice_name": codes,
            "place_code": [f"E0900000{i % places}" for i in range(practices)],
            "pcn_code": [f"U{i // 4:05d}" for i in range(practices)],
            "postcode": [None] * practices,
            "latitude": [None] * practices,
            "longitude": [None] * practices,
            "list_size": [people // practices] * practices,
        },
    )
    dies = rng.random(people) < 0.03
    death_days = rng.integers(_days(date(2020, 1, 1)), _days(date(2024, 12, 31)), people)
    death = pa.array(np.where(dies, death_days, 0).astype(np.int32), mask=~dies).cast(pa.date32())
    _write(
        directory,
        "person",
        {
            "person_id": np.arange(people, dtype=np.int64),
            "birth_year": rng.integers(1915, 2024, people).astype(np.int16),
            "birth_month": rng.integers(1, 13, people).astype(np.int16),
            "sex": rng.choice(np.array(["female", "male"]), people),
            "ethnic_category": rng.choice(np.array(list("ABCHJKMNZ")), people),
            "lsoa_code": np.array([f"E0100{i:04d}" for i in rng.integers(0, 500, people)]),
            "imd_decile": rng.integers(1, 11, people).astype(np.int16),
            "practice_code": np.array(codes)[rng.integers(0, practices, people)],
            "death_date": death,
            "national_data_opt_out": rng.random(people) < 0.05,
        },
    )
    n = people * 10
    kinds, pods = np.array(list(ACTIVITY_TYPES)), np.array(list(ACTIVITY_TYPES.values()))
    weights = np.array([0.45, 0.05, 0.02, 0.01, 0.02, 0.15, 0.15, 0.1, 0.05])
    which = rng.choice(len(kinds), n, p=weights / weights.sum())
    kind = kinds[which]
    admitted = np.isin(kind, ["emergency_admission", "elective_admission"])
    stay = rng.integers(0, 15, n).astype(np.int32)
    start = rng.integers(_days(date(2022, 1, 1)), _days(date(2024, 12, 31)), n).astype(np.int32)
    pence = rng.integers(1_000, 500_000, n)
    _write(
        directory,
        "activity",
        {
            "activity_id": np.arange(n, dtype=np.int64),
            "person_id": rng.integers(0, people, n, dtype=np.int64),
            "activity_type": kind,
            "start_date": pa.array(start).cast(pa.date32()),
            "end_date": pa.nulls(n, pa.date32()),
            "length_of_stay_days": pa.array(stay, mask=~admitted),
            "provider_code": np.full(n, "RXX"),
            "specialty_code": pa.nulls(n, pa.string()),
            "point_of_delivery": pods[which],
            "cost_gbp": pa.array(pence / 100).cast(pa.decimal128(12, 2)),
        },
        parts=4,
    )
    return n


def _median_seconds(run: Callable[[], pa.Table], repeats: int = 3) -> tuple[float, pa.Table]:
    result = run()  # warm-up: JIT, caches, Spark's first-job start-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def bench_engine_duckdb_vs_spark(people: int = 200_000) -> list[dict[str, Any]]:
    """Time `activity_rates` for 2023 by 5-year band on DuckDB and Spark over the same data."""
    query = activity_rates(date(2023, 1, 1), date(2023, 12, 31), FIVE_YEAR_BANDS)
    with tempfile.TemporaryDirectory(prefix="joinedup-bench-") as tmp:
        directory = Path(tmp)
        rows = build_dataset(directory, people)
        engines: list[Engine] = [DuckDBEngine()]
        for name, files in canonical_parquet_files(directory).items():
            engines[0].load_parquet(name, files)
        engines.append(SparkEngine.from_parquet_dir(directory, master="local[2]"))
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
        {"name": "engine_bench_activity_rows", "value": rows, "unit": "rows"},
    ]


if __name__ == "__main__":
    import json
    import sys

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    print(json.dumps(bench_engine_duckdb_vs_spark(size), indent=2))
