"""Property: on any small population, DuckDB and Spark give identical rows and types."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_tables import activity, footprint, p, person

from joinedup.warehouse.analytics import BROAD_BANDS, run
from joinedup.warehouse.engines import DuckDBEngine, Engine, SparkEngine

DAY0 = date(2021, 1, 1)
TYPES = ["emergency_admission", "ae_attendance", "gp_consultation"]

people = st.lists(
    st.tuples(
        st.integers(1920, 2024),
        st.integers(1, 12),
        st.sampled_from(["female", "male", "unknown"]),
        st.none() | st.integers(0, 4 * 365),
        st.booleans(),
        st.sampled_from(["P1", "P2", "P3"]),
    ),
    max_size=40,
)
events = st.lists(
    st.tuples(
        st.integers(0, 39),
        st.sampled_from(TYPES),
        st.integers(0, 3 * 365),
        st.integers(0, 500_000),
        st.none() | st.integers(0, 30),
    ),
    max_size=80,
)

QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("activity_rates", {"start_date": date(2022, 1, 1), "end_date": date(2022, 12, 31)}),
    ("age_sex_pyramid", {"ref_date": date(2023, 3, 31), "bands": BROAD_BANDS}),
    ("mortality_rates", {}),
    ("system_summary", {"ref_date": date(2023, 3, 31)}),
]


def _load(engine: Engine, persons: list[Any], contacts: list[Any]) -> None:
    footprint(engine)
    engine.load(
        "person",
        person(
            *(
                p(
                    i,
                    (year, month),
                    sex,
                    died=None if died is None else DAY0 + timedelta(days=died),
                    opted_out=opted_out,
                    practice=practice,
                )
                for i, (year, month, sex, died, opted_out, practice) in enumerate(persons)
            )
        ),
    )
    engine.load(
        "activity",
        activity(
            *(
                (i, who, kind, DAY0 + timedelta(days=day), Decimal(pence) / 100, los)
                for i, (who, kind, day, pence, los) in enumerate(contacts)
                if who < len(persons)
            )
        ),
    )


@pytest.mark.spark
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(persons=people, contacts=events)
def test_duckdb_and_spark_agree(
    spark_engine: SparkEngine, persons: list[Any], contacts: list[Any]
) -> None:
    spark_engine.drop_all()
    with DuckDBEngine() as duck:
        _load(duck, persons, contacts)
        _load(spark_engine, persons, contacts)
        for name, params in QUERIES:
            expected: pa.Table = run(duck, name, **params)
            got: pa.Table = run(spark_engine, name, **params)
            assert got.schema == expected.schema, name
            assert got.to_pylist() == expected.to_pylist(), name
