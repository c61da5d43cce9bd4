"""Deaths: counts by year, age band and sex, and death rates per 100,000 people."""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from joinedup.warehouse.analytics.cohort import (
    FIVE_YEAR_BANDS,
    age_at,
    age_band,
    band_order,
    col,
    count_rows,
    opt_out_filter,
    rate,
    table,
)


def _year(value: exp.Expr) -> exp.Expr:
    return exp.cast(value, exp.DataType.Type.INT)


def deaths_by_year_age_sex(
    bands: Sequence[int] = FIVE_YEAR_BANDS, exclude_opted_out: bool = True
) -> exp.Query:
    """Deaths by calendar year, age band at death and sex: year, age_band, sex, deaths."""
    death = col("death_date")
    inner = (
        exp.select(
            _year(exp.Year(this=death)).as_("year"),
            age_band(age_at(death), bands).as_("age_band"),
            col("sex").as_("sex"),
        )
        .from_(table("person", "p"))
        .where(death.is_(exp.null()).not_(), opt_out_filter(exclude_opted_out))
        .subquery("d")
    )
    keys = [exp.column(k, "d") for k in ("year", "age_band", "sex")]
    return (
        exp.select(*[k.as_(k.name) for k in keys], count_rows().as_("deaths"))
        .from_(inner)
        .group_by(*keys)
        .order_by(keys[0], band_order(keys[1], bands), keys[2])
    )


def mortality_rates(
    bands: Sequence[int] = FIVE_YEAR_BANDS, exclude_opted_out: bool = True
) -> exp.Query:
    """Deaths in a year per 100,000 people alive at its start, by age band and sex.

    For each year with a death, the population at risk is everyone born before the year and
    alive on 1 January; deaths and people are banded by age on 31 December of the year before.
    Output: year, age_band, sex, deaths, people, rate_per_100000 (2 dp).
    """
    years = (
        exp.select(_year(exp.Year(this=col("death_date"))).as_("year"))
        .distinct()
        .from_(table("person", "p"))
        .where(col("death_date").is_(exp.null()).not_(), opt_out_filter(exclude_opted_out))
        .subquery("y")
    )
    year = exp.column("year", "y")
    prior = exp.Sub(this=year, expression=exp.Literal.number(1))
    # Age on 31 December of the year before: birth month never lies after December.
    age = exp.cast(exp.Sub(this=prior, expression=col("birth_year")), exp.DataType.Type.INT)
    death_year = exp.Year(this=col("death_date"))
    at_risk = exp.and_(
        exp.LT(this=col("birth_year"), expression=year),
        exp.paren(
            exp.or_(
                col("death_date").is_(exp.null()),
                exp.GTE(this=death_year, expression=year),
            )
        ),
        opt_out_filter(exclude_opted_out),
    )
    died = exp.EQ(this=death_year, expression=year)
    inner = (
        exp.select(
            year.as_("year"),
            age_band(age, bands).as_("age_band"),
            col("sex").as_("sex"),
            exp.Case().when(died, exp.Literal.number(1)).else_(exp.Literal.number(0)).as_("died"),
        )
        .from_(table("person", "p"))
        .join(years, on=at_risk)
        .subquery("r")
    )
    keys = [exp.column(k, "r") for k in ("year", "age_band", "sex")]
    deaths = exp.cast(exp.Sum(this=exp.column("died", "r")), exp.DataType.Type.BIGINT)
    counts = (
        exp.select(*[k.as_(k.name) for k in keys], deaths.as_("deaths"), count_rows().as_("people"))
        .from_(inner)
        .group_by(*keys)
        .subquery("c")
    )
    out = [exp.column(k, "c") for k in ("year", "age_band", "sex", "deaths", "people")]
    return (
        exp.select(
            *[k.as_(k.name) for k in out],
            rate(out[3], out[4], per=100_000, places=2).as_("rate_per_100000"),
        )
        .from_(counts)
        .order_by(out[0], band_order(out[1], bands), out[2])
    )
