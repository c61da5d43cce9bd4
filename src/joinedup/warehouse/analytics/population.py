"""Who is in the population: headcounts by place, the age-sex pyramid and a board summary."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from sqlglot import exp

from joinedup.warehouse.analytics.cohort import (
    FIVE_YEAR_BANDS,
    age_at,
    age_band,
    alive_at,
    band_order,
    bigint,
    col,
    count_if,
    count_rows,
    date_literal,
    opt_out_filter,
    rate,
    table,
)


def _person_place() -> exp.Select:
    """person p joined to its practice pr and place pl."""
    return (
        exp.select()
        .from_(table("person", "p"))
        .join(
            table("practice", "pr"),
            on=exp.EQ(this=col("practice_code"), expression=col("practice_code", "pr")),
        )
        .join(
            table("place", "pl"),
            on=exp.EQ(this=col("place_code", "pr"), expression=col("place_code", "pl")),
        )
    )


def population_by_place(ref_date: date, exclude_opted_out: bool = True) -> exp.Query:
    """People alive at `ref_date` by the place of their practice: place_code, place_name, people."""
    keys = [col("place_code", "pl"), col("place_name", "pl")]
    return (
        _person_place()
        .select(*keys, count_rows().as_("people"))
        .where(alive_at(ref_date), opt_out_filter(exclude_opted_out))
        .group_by(*keys)
        .order_by(*keys)
    )


def age_sex_pyramid(
    ref_date: date, bands: Sequence[int] = FIVE_YEAR_BANDS, exclude_opted_out: bool = True
) -> exp.Query:
    """People alive at `ref_date` by age band and sex: age_band, sex, people."""
    inner = (
        exp.select(age_band(age_at(ref_date), bands).as_("age_band"), col("sex").as_("sex"))
        .from_(table("person", "p"))
        .where(alive_at(ref_date), opt_out_filter(exclude_opted_out))
        .subquery("a")
    )
    band, sex = exp.column("age_band", "a"), exp.column("sex", "a")
    return (
        exp.select(band.as_("age_band"), sex.as_("sex"), count_rows().as_("people"))
        .from_(inner)
        .group_by(band, sex)
        .order_by(band_order(band, bands), sex)
    )


def _year_before(ref_date: date) -> date:
    try:
        return ref_date.replace(year=ref_date.year - 1)
    except ValueError:  # 29 February
        return ref_date - timedelta(days=365)


def system_summary(ref_date: date, exclude_opted_out: bool = True) -> exp.Query:
    """A board's one-page view by place.

    place_code, place_name, people (alive), aged_65_plus, deaths_last_year (the year up to
    `ref_date`), emergency_admissions_last_year, emergency_admissions_per_1000 and
    opted_out_share (of everyone alive, opted out or not). Every figure but the opt-out share
    leaves out people with a national data opt-out unless `exclude_opted_out` is False.
    """
    year_ago = date_literal(_year_before(ref_date))
    ref = date_literal(ref_date)
    death = col("death_date")
    died = exp.and_(exp.GT(this=death, expression=year_ago), exp.LTE(this=death, expression=ref))
    admissions = (
        exp.select(exp.column("person_id", "a").as_("person_id"), count_rows().as_("admissions"))
        .from_(table("activity", "a"))
        .where(
            exp.EQ(
                this=exp.column("activity_type", "a"),
                expression=exp.convert("emergency_admission"),
            ),
            exp.GT(this=exp.column("start_date", "a"), expression=year_ago),
            exp.LTE(this=exp.column("start_date", "a"), expression=ref),
        )
        .group_by(exp.column("person_id", "a"))
        .subquery("e")
    )
    everyone_alive = alive_at(ref_date)
    keep = opt_out_filter(exclude_opted_out)
    alive = exp.and_(everyone_alive, keep)
    kept_admissions = (
        exp.Case().when(keep, exp.column("admissions", "e")).else_(exp.Literal.number(0))
    )
    emergency = bigint(
        exp.Coalesce(this=exp.Sum(this=kept_admissions), expressions=[exp.Literal.number(0)])
    )
    keys = [col("place_code", "pl"), col("place_name", "pl")]
    per_place = (
        _person_place()
        .join(
            admissions,
            on=exp.EQ(this=col("person_id"), expression=exp.column("person_id", "e")),
            join_type="LEFT",
        )
        .select(
            *keys,
            count_if(alive).as_("people"),
            count_if(
                exp.and_(alive, exp.GTE(this=age_at(ref_date), expression=exp.Literal.number(65)))
            ).as_("aged_65_plus"),
            count_if(exp.and_(died, keep)).as_("deaths_last_year"),
            emergency.as_("emergency_admissions_last_year"),
            count_if(exp.and_(everyone_alive, col("national_data_opt_out"))).as_("opted_out"),
            count_if(everyone_alive).as_("everyone"),
        )
        .group_by(*keys)
        .subquery("s")
    )

    def s(name: str) -> exp.Column:
        return exp.column(name, "s")

    return (
        exp.select(
            s("place_code").as_("place_code"),
            s("place_name").as_("place_name"),
            s("people").as_("people"),
            s("aged_65_plus").as_("aged_65_plus"),
            s("deaths_last_year").as_("deaths_last_year"),
            s("emergency_admissions_last_year").as_("emergency_admissions_last_year"),
            rate(s("emergency_admissions_last_year"), s("people"), per=1000, places=4).as_(
                "emergency_admissions_per_1000"
            ),
            rate(s("opted_out"), s("everyone")).as_("opted_out_share"),
        )
        .from_(per_place)
        .order_by(s("place_code"), s("place_name"))
    )
