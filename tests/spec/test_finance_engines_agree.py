"""Spec: `joinedup finance run` gives the same tables on DuckDB and Spark — every finance_*
table, row for row and column for column (only the run's id and wall-clock time aside), on a
fixed small ICS and on random small populations, with Spark reading every input table's rows
in reverse order (as it may read Parquet files in any order); a second run, which reads the
ledger the first one stored, agrees too."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from finance_world import (
    HISTORY_START,
    PROVIDERS,
    add_activity,
    kinds,
    load_finance_world,
    phm_tables,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phm_world import EXTRACT, INDEX, World
from sqlglot import exp

from joinedup.finance import pipeline as fp
from joinedup.finance.defaults import default_config
from joinedup.warehouse.engines import DuckDBEngine, Engine, SparkEngine

#: Fields that record when the run happened rather than what it computed.
WALL_CLOCK = {"finance_run": ("run_id", "run_at")}
DX = [
    ("snomed", "38341003"),  # hypertension
    ("snomed", "52448006"),  # dementia
    ("snomed", "13645005"),  # COPD
    ("snomed", "169560008"),  # pregnancy
    ("snomed", "35489007"),  # depression
    ("icd10", "C50"),  # cancer
    ("icd10", "N184"),  # chronic kidney disease
]
MEDICINES = ["0106040M0", "0403030Q0", "0301011R0", "0407010F0"]
DAYS = (EXTRACT - HISTORY_START).days


def finance_run(engine: Engine) -> dict[str, pa.Table]:
    """What `joinedup finance run` does with the illustrative settings, then every finance
    table it left, read back from the engine."""
    places, orgs = fp.footprint_names(engine)
    config = default_config(fp.warehouse_profile(engine))
    config.check_footprint(places, orgs, "illustrative defaults")
    written = fp.run_all(engine, config)
    out = {}
    for name in sorted(n for n in engine.table_names() if n.startswith("finance_")):
        data = engine.execute(exp.select("*").from_(name))
        out[name] = data.drop_columns(list(WALL_CLOCK.get(name, ())))
    assert set(out) == set(written)
    return out


def assert_same(
    expected: dict[str, pa.Table], got: dict[str, pa.Table], label: str = "spark"
) -> None:
    """The same tables, column names and types, and rows in the same order."""
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        have = got[name]
        assert [(f.name, f.type) for f in have.schema] == [(f.name, f.type) for f in want.schema], (
            name
        )
        assert have.num_rows == want.num_rows, name
        for i, (a, b) in enumerate(zip(have.to_pylist(), want.to_pylist(), strict=True)):
            assert a == b, f"{name} row {i}: {label} {a} != {b}"


def both_engines(spark: SparkEngine, world: World, runs: int = 2) -> list[dict[str, pa.Table]]:
    """Run finance `runs` times on each engine over `world` (its rows in reverse order on
    Spark) and check every run agrees."""
    results = []
    phm = phm_tables(world)
    with DuckDBEngine() as duck:
        load_finance_world(duck, world, phm)
        expected = [finance_run(duck) for _ in range(runs)]
    spark.drop_all()
    load_finance_world(spark, world, phm, reverse=True)
    for want in expected:
        got = finance_run(spark)
        assert_same(want, got)
        results.append(got)
    spark.drop_all()
    return results


def backbone() -> World:
    """Six people across the three practices, with activity at every provider in every
    financial year, so that contracts, the control total and risk share all have figures."""
    world = World()
    people: list[dict[str, Any]] = [
        {"birth_year": 1940, "sex": "female", "practice_code": "P1", "imd_decile": 1},
        {"birth_year": 1955, "sex": "male", "practice_code": "P1", "imd_decile": 3},
        {"birth_year": 1990, "sex": "female", "practice_code": "P2", "imd_decile": 6},
        {"birth_year": 2010, "sex": "male", "practice_code": "P2", "imd_decile": 9},
        {"birth_year": 1975, "sex": "female", "practice_code": "P3", "imd_decile": 2},
        {"birth_year": 1948, "sex": "male", "practice_code": "P3", "imd_decile": 10},
    ]
    for pid, fields in enumerate(people, start=1):
        world.person(pid, **fields)
    world.dx(1, date(2019, 5, 1), "52448006").dx(2, date(2020, 1, 1), "38341003")
    world.dx(2, date(2020, 3, 1), "13645005").dx(5, date(2024, 9, 1), "169560008")
    world.rx(2, "0106040M0", date(2023, 1, 1), None, 24)
    prices = {
        "emergency_admission": "1650.00", "ae_attendance": "250.00",
        "elective_admission": "3800.00", "day_case": "950.00",
        "outpatient_attendance": "160.00", "community_contact": "85.50",
        "mental_health_contact": "120.25", "gp_consultation": "42.00",
    }  # fmt: skip
    providers = {"community_contact": "RC1", "mental_health_contact": "RM1"}
    for year in range(4):
        for n, (kind, price) in enumerate(prices.items()):
            pid = 1 + (n + year) % len(people)
            acute = "RA1" if people[pid - 1]["practice_code"] != "P3" else "RA2"
            provider = None if kind == "gp_consultation" else providers.get(kind, acute)
            when = HISTORY_START + timedelta(days=365 * year + 17 * n + 3)
            add_activity(world, pid, kind, when, provider, Decimal(price))
    return world


@pytest.mark.spark
def test_finance_run_is_identical_on_duckdb_and_spark(spark_engine: SparkEngine) -> None:
    first, second = both_engines(spark_engine, backbone())
    # Every step ran and wrote rows: the comparison is not of empty tables.
    for name in (
        "finance_practice_need", "finance_need_index", "finance_cost_curve",
        "finance_need_adjustment", "finance_health_inequalities", "finance_allocation",
        "finance_sector_allocation", "finance_guarantee", "finance_place_budget",
        "finance_pooled_budget", "finance_payment_line", "finance_risk_share", "finance_ledger",
        "finance_control_total", "finance_variance", "finance_control_total_waterfall",
        "finance_what_if", "finance_run",
    ):  # fmt: skip
        assert first[name].num_rows > 0, name
    # The second run used the ledger the first one stored, on both engines alike.
    assert second["finance_ledger"].equals(first["finance_ledger"])


def random_world(extra: list[Any], rows: list[Any]) -> World:
    """The backbone with more people (some opted out, some dead) and random activity at any
    provider and price, diagnoses and prescriptions anywhere in the history."""
    world = backbone()
    first = len(world.rows["person"]) + 1
    for pid, (year, sex, practice, decile, opted_out, died) in enumerate(extra, start=first):
        death = None if died is None else INDEX + timedelta(days=died)
        world.person(
            pid, birth_year=year, sex=sex, practice_code=practice, imd_decile=decile,
            national_data_opt_out=opted_out, death_date=death,
        )  # fmt: skip
    everyone = first - 1 + len(extra)
    for kind, who, day, what in rows:
        pid = 1 + who % everyone
        when = HISTORY_START + timedelta(days=day)
        if kind == "act":
            add_activity(world, pid, what[0], when, what[1], what[2])
        elif kind == "dx":
            world.dx(pid, when, what[1], what[0])
        else:
            world.rx(pid, what[0], when, when + timedelta(days=28 * what[1]), what[1])
    return world


people = st.lists(
    st.tuples(
        st.integers(1925, 2024),
        st.sampled_from(["female", "male"]),
        st.sampled_from(["P1", "P2", "P3"]),
        st.none() | st.integers(1, 10),
        st.booleans(),
        st.none() | st.integers(-900, 300),  # death, days from the index date
    ),
    max_size=10,
)
records = st.lists(
    st.one_of(
        st.tuples(
            st.just("act"),
            st.integers(0, 15),
            st.integers(0, DAYS),
            st.tuples(
                st.sampled_from(kinds()),
                st.sampled_from(PROVIDERS),
                st.integers(0, 900_000).map(lambda p: Decimal(p) / 100),
            ),
        ),
        st.tuples(st.just("dx"), st.integers(0, 15), st.integers(0, DAYS), st.sampled_from(DX)),
        st.tuples(
            st.just("rx"),
            st.integers(0, 15),
            st.integers(0, DAYS),
            st.tuples(st.sampled_from(MEDICINES), st.integers(1, 30)),
        ),
    ),
    max_size=40,
)


@pytest.mark.spark
@settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(extra=people, rows=records)
def test_finance_agrees_on_random_populations(
    spark_engine: SparkEngine, extra: list[Any], rows: list[Any]
) -> None:
    both_engines(spark_engine, random_world(extra, rows), runs=1)


@settings(max_examples=5, deadline=None)
@given(extra=people, rows=records)
def test_finance_does_not_depend_on_the_order_rows_are_read_in(
    extra: list[Any], rows: list[Any]
) -> None:
    # The cheap half of engine agreement, on DuckDB alone: the same warehouse with every
    # table's rows reversed gives the same finance tables (settings made from the footprint
    # once followed the order places were read in).
    world = random_world(extra, rows)
    phm = phm_tables(world)
    with DuckDBEngine() as forward, DuckDBEngine() as backward:
        load_finance_world(forward, world, phm)
        load_finance_world(backward, world, phm, reverse=True)
        assert_same(finance_run(forward), finance_run(backward), "reversed")
