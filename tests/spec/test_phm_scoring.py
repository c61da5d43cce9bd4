"""Spec, on every engine: the risk model's sample, scoring and tiers happen in the engine and
give what the Python reference gives — sample keys as `sample_key_of` computes them, a capped
sample of the lowest keys, every row scored batch by batch, tiers as `risk.assign_tiers`."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
from sqlglot import exp

from joinedup.population import risk, scoring
from joinedup.warehouse.engines import DuckDBEngine, Engine
from joinedup.warehouse.engines import duckdb as duckdb_engine

IDS = [-(2**62), -2_147_483_648, -1, 0, 1, 2, 3, 2_147_483_646, 2_147_483_647, 2**62 + 7]


def test_sample_keys_are_the_python_reference_on_every_engine(engine: Engine) -> None:
    ids = IDS + list(range(10, 400))
    engine.load("people", pa.table({"person_id": pa.array(ids, pa.int64())}))
    for seed in (0, 20260401, -5, 2**40 + 3):
        query = exp.select(
            exp.column("person_id"),
            scoring.sample_key(exp.column("person_id"), seed).as_("k"),
        ).from_("people")
        got = {r["person_id"]: r["k"] for r in engine.execute(query).to_pylist()}
        assert got == {i: scoring.sample_key_of(i, seed) for i in ids}, seed
        assert all(0 <= k < scoring.PRIME for k in got.values())


def test_the_sample_is_the_lowest_keys_up_to_the_cap_in_person_id_order(
    engine: Engine,
) -> None:
    ids = list(range(1, 301))
    engine.load("people", pa.table({"person_id": ids, "age": [i % 90 for i in ids]}))
    source = exp.select(exp.column("person_id"), exp.column("age")).from_("people")
    for seed, cap in ((7, 50), (8, 50), (7, 1000)):
        got = engine.execute(scoring.sampled(source.copy(), seed, cap))
        expected = sorted(sorted(ids, key=lambda i: (scoring.sample_key_of(i, seed), i))[:cap])
        assert got.column_names == ["person_id", "age"]
        assert got.column("person_id").to_pylist() == expected
        assert got.column("age").to_pylist() == [i % 90 for i in expected]


def _population(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {
        "person_id": rng.permutation(np.arange(1, n + 1)),
        "age": rng.integers(0, 100, n),
        "sex_male": rng.integers(0, 2, n),
        "imd_decile": rng.integers(1, 11, n),
    }
    for f in risk.FEATURES:
        columns.setdefault(f, rng.poisson(1.0, n))
    columns["diabetes"] = rng.integers(0, 2, n)
    odds = np.exp(-4 + columns["age"] / 25 + columns["diabetes"] + columns["ltc_count"] / 2)
    columns[risk.OUTCOME_COUNT] = rng.binomial(1, odds / (1 + odds))
    return pa.table(columns)


@pytest.fixture
def small_batches(engine: Engine) -> Iterator[None]:
    """DuckDB passes 97 rows at a time (Spark splits by partition), so many batches run."""
    if isinstance(engine, DuckDBEngine):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(duckdb_engine, "_MAP_ROWS", 97)
            yield
    else:
        yield


@pytest.mark.usefixtures("small_batches")
def test_map_batches_scores_every_row_as_the_model_does(engine: Engine) -> None:
    people = _population(3_000, seed=4)
    model = risk.fit_model(people, ["diabetes"], seed=1)
    engine.load("features", people.drop_columns([risk.OUTCOME_COUNT]))
    query = exp.select(*[exp.column(c) for c in people.column_names[:-1]]).from_("features")
    with engine.transaction():
        engine.map_batches("scores", query, scoring.scorer(model), scoring.SCORES_SCHEMA)
    got = engine.execute(exp.select("*").from_("scores").order_by("person_id"))
    assert got.schema == pa.schema(
        [pa.field("person_id", pa.int64()), pa.field("risk_score", pa.float64())]
    )
    order = np.argsort(people.column("person_id").to_numpy())
    expected = np.round(model.predict(people), scoring.SCORE_PLACES)[order]
    assert got.column("person_id").to_pylist() == list(range(1, 3_001))
    assert got.column("risk_score").to_pylist() == expected.tolist()
    assert len(set(expected.tolist())) > 100  # the model ranks people, not one score for all
    assert "_joinedup_map_scratch" not in engine.table_names()


@pytest.mark.parametrize("n", [1, 19, 200, 1_003])
def test_tiers_in_sql_are_risk_assign_tiers(engine: Engine, n: int) -> None:
    rng = np.random.default_rng(n)
    ids = rng.permutation(np.arange(1, n + 1)) * 3
    scores = np.round(rng.random(n), 2)  # ties, broken by person_id
    engine.load("scores", pa.table({"person_id": ids, "risk_score": scores}))
    shares = (0.01, 0.04, 0.15)
    got = engine.execute(scoring.tiered("scores", shares, n)).to_pylist()
    tiers = risk.assign_tiers(scores, ids, shares)
    expected = sorted(zip(ids.tolist(), scores.tolist(), tiers.tolist(), strict=True))
    assert [(r["person_id"], r["risk_score"], r["risk_tier"]) for r in got] == expected
