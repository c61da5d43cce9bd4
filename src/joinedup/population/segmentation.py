"""Bridges to Health segment counts and year-on-year transitions, from `phm_person` tables.

People with a national data opt-out are left out: these are planning outputs. Counts come out
raw; they pass disclosure control (`publish`) before anyone sees them.
"""

from __future__ import annotations

from sqlglot import exp

from joinedup.population.conditions import SEGMENT_KEYS
from joinedup.warehouse.analytics.cohort import (
    BROAD_BANDS,
    age_band,
    col,
    count_rows,
    opt_out_filter,
    table,
)

#: Dimensions segment counts are broken down by, and the expression giving each group.
DIMENSIONS: tuple[str, ...] = ("system", "place_code", "pcn_code", "age_band", "imd_quintile")


def _group(dimension: str, alias: str) -> exp.Expr:
    if dimension == "system":
        return exp.convert("all")
    if dimension == "age_band":
        return age_band(col("age", alias), BROAD_BANDS)
    return exp.cast(
        exp.Coalesce(this=col(dimension, alias), expressions=[exp.convert("unknown")])
        if dimension != "imd_quintile"
        else col(dimension, alias),
        exp.DataType.Type.VARCHAR,
    )


def _dimension_order(dimension: exp.Expr) -> exp.Expr:
    case = exp.Case()
    for i, name in enumerate(DIMENSIONS):
        case = case.when(
            exp.EQ(this=dimension, expression=exp.convert(name)), exp.Literal.number(i)
        )
    return case.else_(exp.Literal.number(len(DIMENSIONS)))


def _segment_order(segment: exp.Expr) -> exp.Expr:
    case = exp.Case()
    for i, key in enumerate(SEGMENT_KEYS):
        case = case.when(exp.EQ(this=segment, expression=exp.convert(key)), exp.Literal.number(i))
    return case.else_(exp.Literal.number(len(SEGMENT_KEYS)))


def segment_counts(source: str = "phm_person") -> exp.Query:
    """People in each Bridges to Health segment, for the whole system and by place, PCN,
    broad age band and IMD quintile (1 = most deprived). Output: dimension, group_value,
    segment, people_count, ordered by dimension, group and segment priority."""
    parts: list[exp.Select] = []
    for dimension in DIMENSIONS:
        group = _group(dimension, "s")
        parts.append(
            exp.select(
                exp.convert(dimension).as_("dimension"),
                group.as_("group_value"),
                col("segment", "s").as_("segment"),
                count_rows().as_("people_count"),
            )
            .from_(table(source, "s"))
            .where(opt_out_filter(True, "s"))
            .group_by(*([] if dimension == "system" else [group.copy()]), col("segment", "s"))
        )
    union: exp.Query = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    u = "u"
    return (
        exp.select(
            col("dimension", u).as_("dimension"),
            col("group_value", u).as_("group_value"),
            col("segment", u).as_("segment"),
            col("people_count", u).as_("people_count"),
        )
        .from_(union.subquery(u))
        .order_by(
            _dimension_order(col("dimension", u)),
            col("group_value", u),
            _segment_order(col("segment", u)),
        )
    )


def segment_transitions(
    previous: str = "phm_person_previous", current: str = "phm_person"
) -> exp.Query:
    """People by their segment a year ago and now, among those in both tables (alive and
    registered on both dates). Output: from_segment, to_segment, people_count."""
    before, now = "b", "n"
    return (
        exp.select(
            col("segment", before).as_("from_segment"),
            col("segment", now).as_("to_segment"),
            count_rows().as_("people_count"),
        )
        .from_(table(previous, before))
        .join(
            table(current, now),
            on=exp.EQ(this=col("person_id", before), expression=col("person_id", now)),
        )
        .where(opt_out_filter(True, now))
        .group_by(col("segment", before), col("segment", now))
        .order_by(_segment_order(col("segment", before)), _segment_order(col("segment", now)))
    )
