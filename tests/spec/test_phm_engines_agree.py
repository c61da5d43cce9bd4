"""Property: on any small population with records, DuckDB and Spark compute the same
`phm_person` rows (conditions, scores, segments, service use) to the last value."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phm_world import EXTRACT, INDEX, World

from joinedup.population.codelists import load_codelists
from joinedup.population.conditions import phm_person
from joinedup.warehouse.engines import DuckDBEngine, SparkEngine

CODES = load_codelists()
DX = [
    ("snomed", "38341003"), ("snomed", "13645005"), ("snomed", "52448006"),
    ("snomed", "925861000000102"), ("snomed", "103735009"), ("snomed", "35489007"),
    ("icd10", "C50"), ("icd10", "I50"), ("icd10", "N184"), ("snomed", "110359009"),
    ("snomed", "77386006"), ("snomed", "1912002"), ("icd10", "R69"),
]  # fmt: skip
MEDICINES = ["0106040M0", "0403030Q0", "0301011R0", "0407010F0", "0408010AE", "0402030K0"]
ACTIVITY = ["emergency_admission", "ae_attendance", "gp_consultation", "outpatient_attendance"]

days = st.integers(-1500, 30)  # days from the index date; some after it
records = st.lists(
    st.one_of(
        st.tuples(st.just("dx"), st.integers(1, 8), days, st.sampled_from(DX)),
        st.tuples(
            st.just("rx"),
            st.integers(1, 8),
            days,
            st.tuples(
                st.sampled_from(MEDICINES), st.none() | st.integers(0, 400), st.integers(1, 14)
            ),
        ),
        st.tuples(
            st.just("obs"),
            st.integers(1, 8),
            days,
            st.tuples(
                st.sampled_from(["egfr", "systolic_bp", "diastolic_bp", "bmi"]),
                st.integers(20, 180),
            ),
        ),
        st.tuples(st.just("act"), st.integers(1, 8), days, st.sampled_from(ACTIVITY)),
    ),
    max_size=40,
)
people = st.lists(
    st.tuples(st.integers(1930, 2025), st.sampled_from(["female", "male"]), st.booleans()),
    min_size=8,
    max_size=8,
)


def _world(persons: list[Any], rows: list[Any]) -> World:
    world = World()
    for pid, (year, sex, opted_out) in enumerate(persons, start=1):
        world.person(pid, birth_year=year, sex=sex, national_data_opt_out=opted_out)
    for kind, pid, offset, what in rows:
        when = INDEX + timedelta(days=offset)
        if kind == "dx":
            world.dx(pid, when, what[1], what[0])
        elif kind == "rx":
            code, length, issues = what
            end = None if length is None else when + timedelta(days=length)
            world.rx(pid, code, when, end, issues)
        elif kind == "obs":
            world.obs(pid, when, what[0], float(what[1]))
        else:
            world.act(pid, what, when)
    return world


@pytest.mark.spark
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(persons=people, rows=records)
def test_phm_person_is_identical_on_duckdb_and_spark(
    spark_engine: SparkEngine, persons: list[Any], rows: list[Any]
) -> None:
    world = _world(persons, rows)
    query = phm_person(INDEX, CODES, EXTRACT)
    with DuckDBEngine() as duck:
        world.load(duck)
        expected = duck.execute(query)
    spark_engine.drop_all()
    world.load(spark_engine)
    got = spark_engine.execute(query)
    assert got.column_names == expected.column_names
    assert got.to_pylist() == expected.to_pylist()
