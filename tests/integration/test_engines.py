"""Integration: a real DuckDB warehouse file, exported to Parquet, read by Spark."""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from joinedup.errors import ConfigurationError, JoinedupError
from joinedup.warehouse.analytics import BROAD_BANDS, run
from joinedup.warehouse.engines import DuckDBEngine, Engine, canonical_parquet_files, open_engine
from joinedup.warehouse.schema import ALL_TABLES, TABLES, conform

REF = date(2023, 12, 31)


def _canonical(name: str, columns: dict[str, list[object]]) -> pa.Table:
    schema = TABLES[name].arrow_schema()
    return conform(TABLES[name], pa.table(columns, schema=schema))


def _build_warehouse(path: Path) -> None:
    n = 60
    engine = DuckDBEngine(path)
    for table in ALL_TABLES:
        engine.create(table)
    engine.append(
        "place",
        _canonical(
            "place", {"place_code": ["E1", "E2"], "place_name": ["N", "S"], "profile": [None, None]}
        ),
    )
    engine.append(
        "practice",
        _canonical(
            "practice",
            {
                "practice_code": ["P1", "P2"],
                "practice_name": ["One", "Two"],
                "place_code": ["E1", "E2"],
                "pcn_code": ["U1", "U2"],
                "postcode": [None, None],
                "latitude": [None, None],
                "longitude": [None, None],
                "registered_count": [30, 30],
            },
        ),
    )
    engine.append(
        "person",
        _canonical(
            "person",
            {
                "person_id": list(range(n)),
                "birth_year": [1925 + (i * 7) % 95 for i in range(n)],
                "birth_month": [1 + i % 12 for i in range(n)],
                "sex": ["female" if i % 2 else "male" for i in range(n)],
                "ethnic_category": ["A"] * n,
                "lsoa_code": ["E01000001"] * n,
                "imd_decile": [1 + i % 10 for i in range(n)],
                "practice_code": ["P1" if i % 3 else "P2" for i in range(n)],
                "death_date": [date(2023, 1 + i % 12, 1) if i % 9 == 0 else None for i in range(n)],
                "national_data_opt_out": [i % 13 == 0 for i in range(n)],
            },
        ),
    )
    m = 300
    kinds = ["emergency_admission", "gp_consultation", "outpatient_attendance"]
    pods = {"emergency_admission": "NEL", "gp_consultation": "GP", "outpatient_attendance": "OP"}
    kind = [kinds[i % 3] for i in range(m)]
    engine.append(
        "activity",
        _canonical(
            "activity",
            {
                "activity_id": list(range(m)),
                "person_id": [(i * 17) % n for i in range(m)],
                "activity_type": kind,
                "start_date": [date(2023, 1 + i % 12, 1 + i % 28) for i in range(m)],
                "end_date": [None] * m,
                "length_of_stay_days": [
                    i % 5 if k == kinds[0] else None for i, k in enumerate(kind)
                ],
                "provider_code": ["RXX"] * m,
                "specialty_code": [None] * m,
                "point_of_delivery": [pods[k] for k in kind],
                "cost_gbp": [Decimal(i * 37 % 100000) / 100 for i in range(m)],
            },
        ),
    )
    engine.checkpoint()
    engine.close()


def _spark_or_skip(parquet_dir: Path) -> Engine:
    try:
        return open_engine("spark", parquet_dir=parquet_dir)
    except JoinedupError as err:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Spark is required in CI: {err}")
        pytest.skip(f"Spark unavailable: {err}")


@pytest.mark.spark
def test_duckdb_file_to_parquet_to_spark_gives_the_same_answers(tmp_path: Path) -> None:
    warehouse, parquet = tmp_path / "joinedup.duckdb", tmp_path / "parquet"
    _build_warehouse(warehouse)
    duck = open_engine("duckdb", warehouse=warehouse)
    assert isinstance(duck, DuckDBEngine)
    for table in ALL_TABLES:
        duck.export_parquet(table.name, parquet / f"{table.name}.parquet")
    # Spark-style folders of part files are read too.
    folder = parquet / "person"
    folder.mkdir()
    (parquet / "person.parquet").rename(folder / "part-00000.parquet")
    assert canonical_parquet_files(parquet)["person"] == [folder / "part-00000.parquet"]

    checks = [
        ("population_by_place", {"ref_date": REF}),
        ("activity_summary", {"start_date": date(2023, 1, 1), "end_date": REF}),
        ("activity_rates", {"start_date": date(2023, 1, 1), "end_date": REF, "bands": BROAD_BANDS}),
        ("mortality_rates", {}),
    ]
    expected = {name: run(duck, name, **params) for name, params in checks}
    duck.close()
    assert expected["activity_summary"].num_rows == 3
    with _spark_or_skip(parquet) as spark:
        assert {"person", "activity", "place", "practice"} <= set(spark.table_names())
        for name, params in checks:
            got = run(spark, name, **params)
            assert got.schema == expected[name].schema, name
            assert got.to_pylist() == expected[name].to_pylist(), name
    # The same Parquet also opens in an in-memory DuckDB.
    with open_engine("duckdb", parquet_dir=parquet) as again:
        assert run(again, "activity_summary", **checks[1][1]).equals(expected["activity_summary"])
    assert pq.read_table(folder / "part-00000.parquet").num_rows == 60


def test_open_engine_names_a_missing_warehouse(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.duckdb"
    with pytest.raises(JoinedupError, match=r"nowhere\.duckdb does not exist"):
        open_engine("duckdb", warehouse=missing)
    assert not missing.exists()


def test_open_engine_rejects_unknown_engines_and_spark_without_a_lake(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown engine 'oracle'"):
        open_engine("oracle")
    with pytest.raises(ConfigurationError, match="the Spark engine reads a lake"):
        open_engine("spark")
    with pytest.raises(ConfigurationError, match=r"warehouse copy .*ics\.duckdb lake/"):
        open_engine("spark", warehouse=tmp_path / "ics.duckdb")
    with pytest.raises(JoinedupError, match="does not exist"):
        open_engine("duckdb", parquet_dir=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(JoinedupError, match="no canonical tables"):
        open_engine("duckdb", parquet_dir=tmp_path / "empty")
