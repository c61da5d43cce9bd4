"""The emergency admission model in the engine: seeded samples to fit and validate on, scoring
batch by batch, and risk tiers by rank in SQL, so no population-sized table reaches Python and
DuckDB and Spark store the same rows.

The sample is chosen by a key computed from `person_id` and a seed with integer arithmetic
modulo the prime 2^31 - 1, which every engine computes alike (the engines' own hash functions
differ). People with the lowest keys (ties by person_id) are taken, up to the cap.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
from sqlglot import exp

from joinedup.population.risk import PERSON_ID, TIERS, RiskModel, tier_bounds
from joinedup.warehouse.analytics.cohort import col, table

#: The Mersenne prime 2^31 - 1: keys lie in [0, PRIME), and every product of two keys (or a key
#: and a multiplier below it) plus a key fits in a signed 64-bit integer.
PRIME = 2_147_483_647
_MULTIPLIER = 1_103_515_245
_INCREMENT = 12_345
_SCRAMBLE = 48_271
SAMPLE_KEY = "sample_key"
_RANK = "risk_rank"
SCORES_SCHEMA = pa.schema([(PERSON_ID, pa.int64()), ("risk_score", pa.float64())])
#: Scores are stored to this many decimal places (the same on every engine).
SCORE_PLACES = 6


def sample_key_of(person_id: int, seed: int) -> int:
    """The reference for `sample_key`: the same arithmetic on Python integers."""
    salt = seed % PRIME
    base = person_id % PRIME  # Python's % is already non-negative for a positive modulus
    mixed = (base * _MULTIPLIER + salt) % PRIME
    squared = (mixed * mixed + _INCREMENT) % PRIME
    return (squared * _SCRAMBLE + base) % PRIME


def sample_key(person_id: exp.Expr, seed: int) -> exp.Expr:
    """A pseudo-random key in [0, 2^31 - 1) for each person and seed, in SQL: a linear step
    mixing in the seed, a square (so neighbouring ids do not stay in order) and a second
    linear step mixing the id back in (so the square's pairs part)."""

    def mod(value: exp.Expr) -> exp.Expr:
        return exp.Mod(this=exp.Paren(this=value), expression=exp.Literal.number(PRIME))

    def num(value: int) -> exp.Expr:
        return exp.cast(exp.Literal.number(value), exp.DataType.Type.BIGINT)

    def step(value: exp.Expr, times: exp.Expr, plus: exp.Expr) -> exp.Expr:
        return mod(exp.Add(this=exp.Mul(this=value, expression=times), expression=plus))

    ident = exp.cast(person_id, exp.DataType.Type.BIGINT)
    # SQL's % keeps the sign of the dividend; adding the prime once makes it non-negative.
    base = mod(exp.Add(this=mod(ident), expression=num(PRIME)))
    mixed = step(base, num(_MULTIPLIER), num(seed % PRIME))
    squared = step(mixed, mixed.copy(), num(_INCREMENT))
    return step(squared, num(_SCRAMBLE), base.copy())


def sampled(query: exp.Select, seed: int, cap: int) -> exp.Select:
    """At most `cap` rows of `query` (which has a person_id column), chosen by `sample_key`
    with `seed`, ordered by person_id: the same rows in the same order on every engine."""
    s, keyed = "s", "k"
    names = [e.alias_or_name for e in query.expressions]
    with_key = exp.select(
        *[col(n, keyed).as_(n) for n in names],
        sample_key(col(PERSON_ID, keyed), seed).as_(SAMPLE_KEY),
    ).from_(query.subquery(keyed))
    chosen = with_key.order_by(exp.column(SAMPLE_KEY), exp.column(PERSON_ID)).limit(cap)
    return (
        exp.select(*[col(n, s).as_(n) for n in names])
        .from_(chosen.subquery(s))
        .order_by(col(PERSON_ID, s))
    )


def score_batch(model: RiskModel, batch: pa.RecordBatch) -> pa.RecordBatch:
    """person_id and the model's risk score (to `SCORE_PLACES` places) for one batch."""
    if batch.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=SCORES_SCHEMA)
    scores = np.round(model.predict(pa.Table.from_batches([batch])), SCORE_PLACES)
    return pa.RecordBatch.from_arrays(
        [batch.column(PERSON_ID).cast(pa.int64()), pa.array(scores, pa.float64())],
        schema=SCORES_SCHEMA,
    )


def scorer(model: RiskModel) -> Callable[[pa.RecordBatch], pa.RecordBatch]:
    """`score_batch` for `model`, as a function that pickles (for Spark's executors)."""
    return functools.partial(score_batch, model)


def tiered(scores: str, shares: Sequence[float], people: int) -> exp.Select:
    """person_id, risk_score and risk_tier for every row of table `scores`, as
    `risk.assign_tiers` gives them: ranked by score descending, ties by person_id, with tier
    boundaries at floor(cumulative share × `people`), `people` being the table's row count."""
    r, ranked = "r", "ranked"
    rank = exp.Window(
        this=exp.RowNumber(),
        order=exp.Order(
            expressions=[
                exp.Ordered(this=col("risk_score", r), desc=True),
                exp.Ordered(this=col(PERSON_ID, r), desc=False),
            ]
        ),
    )
    inner = exp.select(
        col(PERSON_ID, r).as_(PERSON_ID), col("risk_score", r).as_("risk_score"), rank.as_(_RANK)
    ).from_(table(scores, r))
    tier = exp.Case()
    for name, bound in zip(TIERS, tier_bounds(shares, people), strict=False):
        within = exp.LTE(this=col(_RANK, ranked), expression=exp.Literal.number(bound))
        tier = tier.when(within, exp.convert(name))
    return (
        exp.select(
            col(PERSON_ID, ranked).as_(PERSON_ID),
            col("risk_score", ranked).as_("risk_score"),
            tier.else_(exp.convert(TIERS[-1])).as_("risk_tier"),
        )
        .from_(inner.subquery(ranked))
        .order_by(col(PERSON_ID, ranked))
    )
