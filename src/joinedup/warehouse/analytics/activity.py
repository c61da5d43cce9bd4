"""Service use: activity counts, costs and bed days, and activity rates per 1,000 people."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlglot import exp

from joinedup.errors import ConfigurationError
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


def _check_period(start_date: date, end_date: date) -> None:
    if end_date < start_date:
        raise ConfigurationError(f"period ends ({end_date}) before it starts ({start_date})")


def _activity_in_period(start_date: date, end_date: date, exclude_opted_out: bool) -> exp.Select:
    """activity a of people p in the person table, starting within the period (inclusive)."""
    _check_period(start_date, end_date)
    return (
        exp.select()
        .from_(table("activity", "a"))
        .join(
            table("person", "p"), on=exp.EQ(this=col("person_id", "a"), expression=col("person_id"))
        )
        .where(
            exp.Between(
                this=col("start_date", "a"),
                low=date_literal(start_date),
                high=date_literal(end_date),
            ),
            opt_out_filter(exclude_opted_out),
        )
    )


def activity_summary(start_date: date, end_date: date, exclude_opted_out: bool = True) -> exp.Query:
    """Contacts starting in the period: activity_type, point_of_delivery, events,
    cost_gbp (DECIMAL(18,2)) and bed_days."""
    keys = [col("activity_type", "a"), col("point_of_delivery", "a")]
    zero = exp.Literal.number(0)
    cost = exp.Coalesce(this=exp.Sum(this=col("cost_gbp", "a")), expressions=[zero])
    bed_days = exp.Coalesce(this=exp.Sum(this=col("length_of_stay_days", "a")), expressions=[zero])
    return (
        _activity_in_period(start_date, end_date, exclude_opted_out)
        .select(
            *[k.as_(k.name) for k in keys],
            count_rows().as_("events"),
            exp.cast(cost, exp.DataType.build("DECIMAL(18,2)")).as_("cost_gbp"),
            bigint(bed_days).as_("bed_days"),
        )
        .group_by(*keys)
        .order_by(*keys)
    )


def activity_rates(
    start_date: date,
    end_date: date,
    bands: Sequence[int] = FIVE_YEAR_BANDS,
    exclude_opted_out: bool = True,
) -> exp.Query:
    """Events per 1,000 people by activity type and age band.

    Events start within the period, banded by age at the event; people are those alive at the
    middle of the period, banded by age then (the mid-year population convention). Output:
    activity_type, age_band, events, people, rate_per_1000 (4 dp; NULL when people is 0).
    """
    _check_period(start_date, end_date)
    mid = start_date + (end_date - start_date) // 2
    events = (
        _activity_in_period(start_date, end_date, exclude_opted_out)
        .select(
            col("activity_type", "a").as_("activity_type"),
            age_band(age_at(col("start_date", "a")), bands).as_("age_band"),
        )
        .subquery("ea")
    )
    ev_keys = [exp.column("activity_type", "ea"), exp.column("age_band", "ea")]
    event_counts = (
        exp.select(*[k.as_(k.name) for k in ev_keys], count_rows().as_("events"))
        .from_(events)
        .group_by(*ev_keys)
    )
    people = (
        exp.select(age_band(age_at(mid), bands).as_("age_band"))
        .from_(table("person", "p"))
        .where(alive_at(mid), opt_out_filter(exclude_opted_out))
        .subquery("pa")
    )
    pop_band = exp.column("age_band", "pa")
    pop_counts = (
        exp.select(pop_band.as_("age_band"), count_rows().as_("people"))
        .from_(people)
        .group_by(pop_band)
    )
    types = exp.select(exp.column("activity_type")).distinct().from_(event_counts.subquery("t"))
    all_bands = exp.union(
        exp.select(exp.column("age_band")).from_(pop_counts.subquery("b1")),
        exp.select(exp.column("age_band")).from_(event_counts.subquery("b2")),
        distinct=True,
    )
    activity_type, band = exp.column("activity_type", "ty"), exp.column("age_band", "bd")
    n_events = bigint(
        exp.Coalesce(this=exp.column("events", "ev"), expressions=[exp.Literal.number(0)])
    )
    n_people = bigint(
        exp.Coalesce(this=exp.column("people", "po"), expressions=[exp.Literal.number(0)])
    )
    return (
        exp.select(
            activity_type.as_("activity_type"),
            band.as_("age_band"),
            n_events.as_("events"),
            n_people.as_("people"),
            rate(n_events, n_people, per=1000, places=4).as_("rate_per_1000"),
        )
        .from_(types.subquery("ty"))
        .join(all_bands.subquery("bd"), join_type="CROSS")
        .join(
            event_counts.subquery("ev"),
            on=exp.and_(
                exp.EQ(this=exp.column("activity_type", "ev"), expression=activity_type),
                exp.EQ(this=exp.column("age_band", "ev"), expression=band),
            ),
            join_type="LEFT",
        )
        .join(
            pop_counts.subquery("po"),
            on=exp.EQ(this=exp.column("age_band", "po"), expression=band),
            join_type="LEFT",
        )
        .order_by(activity_type, band_order(band, bands))
    )
