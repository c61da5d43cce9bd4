"""Condition prevalence from coded diagnoses and a codelist table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlglot import exp

from joinedup.warehouse.analytics.cohort import (
    FIVE_YEAR_BANDS,
    age_at,
    age_band,
    alive_at,
    band_order,
    bigint,
    col,
    count_rows,
    date_literal,
    opt_out_filter,
    rate,
    table,
)


def _population(ref_date: date, exclude_opted_out: bool, bands: Sequence[int]) -> exp.Select:
    return (
        exp.select(
            col("person_id").as_("person_id"),
            age_band(age_at(ref_date), bands).as_("age_band"),
            col("sex").as_("sex"),
        )
        .from_(table("person", "p"))
        .where(alive_at(ref_date), opt_out_filter(exclude_opted_out))
    )


def _cases(codelist: str, ref_date: date) -> exp.Select:
    """Distinct (condition, person_id) with a listed code recorded on or before `ref_date`."""
    d, c = "d", "c"
    return (
        exp.select(
            exp.column("condition", c).as_("condition"), col("person_id", d).as_("person_id")
        )
        .distinct()
        .from_(table("diagnosis", d))
        .join(
            table(codelist, c),
            on=exp.and_(
                exp.EQ(this=col("code_system", d), expression=exp.column("code_system", c)),
                exp.EQ(this=col("code", d), expression=exp.column("code", c)),
            ),
        )
        .where(exp.LTE(this=col("diagnosis_date", d), expression=date_literal(ref_date)))
    )


def _prevalence(
    codelist: str,
    ref_date: date,
    exclude_opted_out: bool,
    bands: Sequence[int],
    by: Sequence[str],
) -> exp.Query:
    """Shared shape: people with the condition over people alive, grouped by `by`."""
    pop = _population(ref_date, exclude_opted_out, bands)
    keys = [exp.column(k, "pop") for k in by]
    denominators = exp.select(
        *[k.as_(k.name) for k in keys], count_rows().as_("denominator")
    ).from_(pop.subquery("pop"))
    if keys:
        denominators = denominators.group_by(*keys)
    cases = (
        exp.select(
            exp.column("condition", "k").as_("condition"),
            *[k.as_(k.name) for k in keys],
            count_rows().as_("people"),
        )
        .from_(_cases(codelist, ref_date).subquery("k"))
        .join(
            pop.subquery("pop"),
            on=exp.EQ(this=exp.column("person_id", "k"), expression=exp.column("person_id", "pop")),
        )
        .group_by(exp.column("condition", "k"), *keys)
    )
    conditions = exp.select(exp.column("condition")).distinct().from_(table(codelist))
    grid_keys = [exp.column(k, "den") for k in by]
    joined = exp.and_(
        exp.EQ(this=exp.column("condition", "n"), expression=exp.column("condition", "cl")),
        *[exp.EQ(this=exp.column(k, "n"), expression=exp.column(k, "den")) for k in by],
    )
    people = bigint(
        exp.Coalesce(this=exp.column("people", "n"), expressions=[exp.Literal.number(0)])
    )
    denominator = exp.column("denominator", "den")
    order: list[exp.Expr] = [exp.column("condition", "cl")]
    for k in grid_keys:
        order.append(band_order(k, bands) if k.name == "age_band" else k)
    query = (
        exp.select(
            exp.column("condition", "cl").as_("condition"),
            *[k.as_(k.name) for k in grid_keys],
            people.as_("people"),
            denominator.as_("denominator"),
            rate(people, denominator).as_("prevalence"),
        )
        .from_(conditions.subquery("cl"))
        .join(denominators.subquery("den"), join_type="CROSS")
        .join(cases.subquery("n"), on=joined, join_type="LEFT")
        .where(exp.GT(this=denominator, expression=exp.Literal.number(0)))
        .order_by(*order)
    )
    return query


def condition_prevalence(
    codelist: str, ref_date: date, exclude_opted_out: bool = True
) -> exp.Query:
    """Share of people alive at `ref_date` ever diagnosed with each condition in `codelist`.

    `codelist` names a table (condition, code_system, code). Output: condition, people,
    denominator, prevalence (6 dp). No rows when nobody is alive at `ref_date`.
    """
    return _prevalence(codelist, ref_date, exclude_opted_out, FIVE_YEAR_BANDS, by=())


def condition_prevalence_by_age_sex(
    codelist: str,
    ref_date: date,
    bands: Sequence[int] = FIVE_YEAR_BANDS,
    exclude_opted_out: bool = True,
) -> exp.Query:
    """As `condition_prevalence`, by age band and sex: condition, age_band, sex, people,
    denominator, prevalence."""
    return _prevalence(codelist, ref_date, exclude_opted_out, bands, by=("age_band", "sex"))
