"""Indicators (API): the definitions, and each indicator's published values by area and period
with 95% intervals and the comparison with England and with the parent area."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from joinedup.indicators import Count, Indicator, shipped_definitions
from joinedup.indicators.query import read_values
from joinedup.web.access import User
from joinedup.web.downloads import Column, Format, Table, cached_download
from joinedup.web.site import allowed, api_user, cached_json, dashboard

router = APIRouter()

#: Published aggregates: open to every role, as the overview is.
AREA = "overview"


class CountOut(BaseModel):
    words: str
    counts: str
    where: list[str] = Field(description="Conditions on phm_person columns, all of which hold.")
    sum_of: str | None = None


class IndicatorOut(BaseModel):
    id: str
    title: str
    numerator: CountOut
    denominator: CountOut
    population: str = Field(description="People registered at the period's end or start.")
    ages: str
    unit: str
    method: str
    method_words: str
    ci_method: str
    ci_words: str
    polarity: str
    period_type: str
    source: str
    disclosure: str

    @classmethod
    def of(cls, i: Indicator) -> IndicatorOut:
        def count(c: Count) -> CountOut:
            return CountOut(
                words=c.words,
                counts=c.counts,
                where=[w.words() for w in c.where],
                sum_of=c.sum_of,
            )

        return cls(
            id=i.id,
            title=i.title,
            numerator=count(i.numerator),
            denominator=count(i.denominator),
            population=i.population,
            ages=i.ages_in_words(),
            unit=i.unit,
            method=i.method,
            method_words=i.method_words(),
            ci_method=i.ci_method,
            ci_words=i.ci_words(),
            polarity=i.polarity,
            period_type=i.period_type,
            source=i.source,
            disclosure=i.disclosure_words(),
        )


class ValueOut(BaseModel):
    period: str
    period_start_date: date
    period_end_date: date
    level: str
    area_code: str
    area_name: str
    parent_code: str | None
    numerator_count: int | None = Field(description="Null when suppressed.")
    denominator_count: int | None = Field(description="Null when suppressed.")
    value: float | None = Field(description="Null when suppressed or not computable.")
    lower: float | None
    upper: float | None
    suppressed: bool = Field(description="True where disclosure control hid the value.")
    england_value: float | None
    england_period: str | None
    england_source: str | None
    england_comparison: str | None
    parent_value: float | None
    parent_comparison: str | None
    trend: str | None = Field(
        description="Recent trend to this period: increasing or decreasing (getting better or "
        "worse), or no significant change; null under three published periods."
    )
    trend_p: float | None


class IndicatorValuesOut(BaseModel):
    indicator: IndicatorOut
    periods: list[str] = Field(description="The periods returned, latest first.")
    level: str | None
    values: list[ValueOut]


@router.get("/api/v1/indicators", response_model=list[IndicatorOut], tags=["indicators"])
async def api_indicators(
    request: Request,
    user: Annotated[User, Depends(api_user)],
    format: Annotated[Format, Query(description="json, csv or xlsx (Excel).")] = "json",
) -> Response:
    """Every indicator's definition: numerator and denominator in words and as what they
    count, unit, method, confidence interval, polarity, source, period and disclosure rule."""
    allowed(user, AREA)

    def build() -> list[dict[str, Any]]:
        return [IndicatorOut.of(i).model_dump() for i in shipped_definitions()]

    if format != "json":
        return await cached_download(
            request, ("indicators",), lambda: definitions_table(build()), format
        )
    return await cached_json(request, ("indicators",), build)


@router.get(
    "/api/v1/indicators/{indicator_id}",
    response_model=IndicatorValuesOut,
    tags=["indicators"],
    responses={404: {"description": "No such indicator, level or period"}},
)
async def api_indicator(
    request: Request,
    indicator_id: str,
    user: Annotated[User, Depends(api_user)],
    level: Annotated[
        Literal["system", "place", "pcn", "practice"] | None,
        Query(description="Areas of this level only (every level when omitted)."),
    ] = None,
    period: Annotated[
        str,
        Query(description="latest, all, or a period (2025-04-01/2026-03-31) or its end date."),
    ] = "latest",
    format: Annotated[Format, Query(description="json, csv or xlsx (Excel).")] = "json",
) -> Response:
    """One indicator's published values with 95% intervals, compared with England and with
    the parent area (better / similar / worse, or higher / lower where polarity is unknown);
    as JSON, or one row per area and period as a CSV or Excel download."""
    allowed(user, AREA)
    board = dashboard(request)

    def build() -> dict[str, object]:
        definition = shipped_definitions().get(indicator_id)
        with board._lock:  # the dashboard's engine serves one query at a time
            periods, rows = read_values(board.engine, indicator_id, level=level, period=period)
        fields = [k for k in ValueOut.model_fields if k != "suppressed"]
        values = [
            ValueOut(**{k: r[k] for k in fields}, suppressed=bool(r["value_suppressed"]))
            for r in rows
        ]
        out = IndicatorValuesOut(
            indicator=IndicatorOut.of(definition), periods=periods, level=level, values=values
        )
        return out.model_dump(mode="json")

    key = ("indicator", indicator_id, level or "", period)
    if format != "json":
        return await cached_download(request, key, lambda: values_table(build()), format)
    return await cached_json(request, key, build)


# --- downloads of the indicators API (CSV and Excel) ------------------------------------------

#: The columns of an indicator's values download: one row per area and period.
VALUE_COLUMNS = [
    Column("period", "Period"), Column("period_start_date", "Period start"),
    Column("period_end_date", "Period end"), Column("level", "Level"),
    Column("area_code", "Area code"), Column("area_name", "Area"),
    Column("parent_code", "Parent area code"),
    Column("numerator_count", "Numerator"), Column("denominator_count", "Denominator"),
    Column("value", "Value"), Column("lower", "Lower 95% limit"),
    Column("upper", "Upper 95% limit"), Column("suppressed", "Suppressed"),
    Column("england_value", "England value"), Column("england_period", "England period"),
    Column("england_source", "England source"),
    Column("england_comparison", "Compared with England"),
    Column("parent_value", "Parent area value"),
    Column("parent_comparison", "Compared with parent area"),
    Column("trend", "Recent trend"), Column("trend_p", "Trend p-value"),
]  # fmt: skip


def definitions_table(definitions: list[dict[str, Any]]) -> Table:
    """Every indicator's definition, one row each, as `/api/v1/indicators` gives it."""
    rows = []
    for d in definitions:
        row = {k: v for k, v in d.items() if k not in ("numerator", "denominator")}
        for part in ("numerator", "denominator"):
            row[f"{part}_words"] = d[part]["words"]
            row[f"{part}_counts"] = d[part]["counts"]
            row[f"{part}_where"] = "; ".join(d[part]["where"])
        rows.append(row)
    columns = [
        Column("id", "Indicator id"), Column("title", "Title"),
        Column("numerator_words", "Numerator"), Column("numerator_counts", "Numerator counts"),
        Column("numerator_where", "Numerator conditions"),
        Column("denominator_words", "Denominator"),
        Column("denominator_counts", "Denominator counts"),
        Column("denominator_where", "Denominator conditions"),
        Column("population", "Population"), Column("ages", "Ages"), Column("unit", "Unit"),
        Column("method", "Method"), Column("method_words", "Method in words"),
        Column("ci_method", "Confidence interval method"),
        Column("ci_words", "Confidence interval in words"), Column("polarity", "Polarity"),
        Column("period_type", "Period type"), Column("source", "Data source"),
        Column("disclosure", "Disclosure rule"),
    ]  # fmt: skip
    notes = [
        ("Definition", "The indicators joinedup publishes: what each counts, over whom, and how "
         "its value and 95% confidence interval are computed."),
        ("Period", "Each indicator's period type is in its row; values are published per period."),
        ("Disclosure", "Each indicator's disclosure rule is in its row."),
        ("Source", "joinedup's shipped indicator definitions"),
    ]  # fmt: skip
    return Table("indicator-definitions", "Indicator definitions", columns, rows, notes)


def values_table(values: dict[str, Any]) -> Table:
    """An indicator's values, as `/api/v1/indicators/{id}` gives them (`values` is its JSON),
    one row per area and period, with the definition, periods and disclosure rule as notes."""
    d = values["indicator"]
    periods = values["periods"]
    unit = d["unit"]
    columns = [
        Column(c.key, c.heading, unit)
        if c.key in ("value", "lower", "upper", "england_value", "parent_value")
        else c
        for c in VALUE_COLUMNS
    ]
    notes = [
        ("Definition", f"{d['title']}. Numerator: {d['numerator']['words']}. Denominator: "
         f"{d['denominator']['words']} ({d['ages']}, registered at the period's "
         f"{d['population']}). Value in {unit}: {d['method_words']}; {d['ci_words']}. "
         f"Polarity: {d['polarity']}."),
        ("Period", ", ".join(periods) if periods else "no published period"),
        ("Disclosure", f"{d['disclosure'].rstrip('.')}. A suppressed cell is left empty."),
        ("Source", d["source"]),
    ]  # fmt: skip
    name = f"indicator-{d['id']}-{values['level'] or 'all-levels'}"
    if len(periods) == 1:
        name += f"-{periods[0]}"
    return Table(name, d["title"], columns, values["values"], notes)
