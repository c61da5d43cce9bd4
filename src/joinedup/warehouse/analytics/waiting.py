"""Elective waiting: the referral-to-treatment waiting list at a date."""

from __future__ import annotations

from datetime import date

from sqlglot import exp

from joinedup.warehouse.analytics.cohort import (
    col,
    count_rows,
    date_literal,
    opt_out_filter,
    rate,
    table,
)

#: Weeks-waited bands: lower edge in weeks and label. 'Within 18 weeks' is the first band.
WAIT_BANDS: tuple[tuple[int, str], ...] = ((0, "0-18"), (18, "18-52"), (52, "52+"))


def rtt_waiting_list(ref_date: date, exclude_opted_out: bool = True) -> exp.Query:
    """Pathways open at `ref_date` by weeks waited: weeks_band, pathways, share (6 dp).

    A pathway is open when its clock started on or before `ref_date` and had not stopped by
    then; the '0-18' row's share is the share waiting under 18 weeks (the constitutional
    standard is 92%).
    """
    ref = date_literal(ref_date)
    start, stop = col("clock_start_date", "r"), col("clock_stop_date", "r")
    days = exp.DateDiff(this=ref, expression=start, unit=exp.var("DAY"))
    band = exp.Case()
    for weeks, label in reversed(WAIT_BANDS[1:]):
        band = band.when(
            exp.GTE(this=days, expression=exp.Literal.number(weeks * 7)), exp.convert(label)
        )
    band = band.else_(exp.convert(WAIT_BANDS[0][1]))
    open_ = (
        exp.select(band.as_("weeks_band"))
        .from_(table("rtt_pathway", "r"))
        .join(
            table("person", "p"), on=exp.EQ(this=col("person_id", "r"), expression=col("person_id"))
        )
        .where(
            exp.LTE(this=start, expression=ref),
            exp.paren(exp.or_(stop.is_(exp.null()), exp.GT(this=stop, expression=ref))),
            opt_out_filter(exclude_opted_out),
        )
        .subquery("o")
    )
    counts = (
        exp.select(exp.column("weeks_band", "o").as_("weeks_band"), count_rows().as_("pathways"))
        .from_(open_)
        .group_by(exp.column("weeks_band", "o"))
        .subquery("c")
    )
    total = exp.Window(this=exp.Sum(this=exp.column("pathways", "c")))
    order = exp.Case()
    for i, (_, label) in enumerate(WAIT_BANDS):
        order = order.when(
            exp.EQ(this=exp.column("weeks_band", "c"), expression=exp.convert(label)),
            exp.Literal.number(i),
        )
    return (
        exp.select(
            exp.column("weeks_band", "c").as_("weeks_band"),
            exp.column("pathways", "c").as_("pathways"),
            rate(exp.column("pathways", "c"), total).as_("share"),
        )
        .from_(counts)
        .order_by(order)
    )
