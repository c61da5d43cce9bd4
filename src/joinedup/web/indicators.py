"""Indicators (API): the definitions, and each indicator's published values by area and period
with 95% intervals and the comparison with England and with the parent area."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from joinedup.disclosure import describe
from joinedup.errors import InputError
from joinedup.indicators import Count, Indicator, shipped_definitions
from joinedup.indicators.query import read_values
from joinedup.reports.charts import NHS_BLUE, TrendSeries, trend_chart
from joinedup.web import profiles
from joinedup.web.access import User
from joinedup.web.dashboard import Dashboard
from joinedup.web.downloads import Column, Format, Table, cached_download
from joinedup.web.site import (
    allowed,
    api_user,
    cached_json,
    dashboard,
    figures,
    page_user,
    render,
)

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


# --- pages -----------------------------------------------------------------------------------

#: Levels a compare-areas table lists, in words.
COMPARE_LEVELS: dict[str, str] = {"place": "Places", "pcn": "PCNs", "practice": "Practices"}
#: Columns a compare-areas table sorts by, with their headings.
SORT_KEYS: dict[str, str] = {
    "area": "Area",
    "parent": "Part of",
    "numerator": "Numerator",
    "denominator": "Denominator",
    "value": "Value",
    "england": "Compared with England",
    "parent_comparison": "Compared with parent",
    "trend": "Recent trend",
}
#: Comparisons in sort order: furthest below first ("lower" and "better" rank alike).
_COMPARISON_RANK = {"worse": 0, "lower": 0, "similar": 1, "better": 2, "higher": 2}


def _sort_value(row: dict[str, Any], key: str) -> Any:
    """A row's value for sorting by `key` (None: sorted last whatever the order)."""
    match key:
        case "area":
            return (row["area_name"].lower(), row["area_code"])
        case "parent":
            return row["parent_name"].lower() or None
        case "numerator":
            return row["numerator_count"]
        case "denominator":
            return row["denominator_count"]
        case "value":
            return row["value"]
        case "england":
            return _COMPARISON_RANK.get(row["england_comparison"] or "")
        case "parent_comparison":
            return _COMPARISON_RANK.get(row["parent_comparison"] or "")
        case _:
            return row["trend"]


def sorted_rows(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    """`rows` by `key` (ties by name), rows without a value for it last."""
    present = [r for r in rows if _sort_value(r, key) is not None]
    missing = [r for r in rows if _sort_value(r, key) is None]
    present.sort(key=lambda r: (r["area_name"].lower(), r["area_code"]))
    present.sort(key=lambda r: _sort_value(r, key), reverse=descending)
    return present + sorted(missing, key=lambda r: (r["area_name"].lower(), r["area_code"]))


def _definition(i: Indicator) -> dict[str, Any]:
    return IndicatorOut.of(i).model_dump()


def indicators_list(board: Dashboard) -> list[dict[str, Any]]:
    """Every indicator with its definition and the system's latest value against England."""
    idx = profiles.index(board)
    system = str(board.ics().get("ics_code", ""))
    out = []
    for i in shipped_definitions():
        period = idx.latest.get(i.id)
        row = idx.rows.get((i.id, period, "system", system)) if period else None
        out.append(
            {
                "definition": _definition(i),
                "system": profiles.shown(row, i, board) if row else None,
                "period_words": profiles.period_words(period) if period else "",
            }
        )
    return out


def period_label(period: str) -> str:
    """`2025-04-01/2026-03-31` as the financial year "2025-26" (other periods as they are)."""
    start, _, end = period.partition("/")
    if start[5:] == "04-01" and end[5:] == "03-31" and int(end[:4]) == int(start[:4]) + 1:
        return f"{start[:4]}-{end[2:4]}"
    return period


def chosen_period(periods: list[str], wanted: str | None) -> str | None:
    """The period the `period=` parameter names (the period, its end date or its financial
    year label; the latest when empty); InputError naming the choices otherwise."""
    if not wanted or wanted == "latest":
        return periods[-1] if periods else None
    for p in periods:
        if wanted in (p, p.split("/")[-1], period_label(p)):
            return p
    choices = ", ".join(period_label(p) for p in reversed(periods)) or "none"
    raise InputError("period", f"no values for {wanted[:40]!r}; periods: {choices}")


def indicator_page_context(
    board: Dashboard, indicator_id: str, level: str, area: str | None, period: str | None = None
) -> dict[str, Any]:
    """The compare-areas rows of `indicator_id` at `level` in `period` (the latest when None),
    and the trend of the system (and of `area`, when one of that level is chosen) over every
    period."""
    definition = shipped_definitions().get(indicator_id)
    if level not in COMPARE_LEVELS:
        raise InputError("level", f"{level!r} is not one of {', '.join(COMPARE_LEVELS)}")
    idx = profiles.index(board)
    latest = idx.latest.get(indicator_id)
    period = chosen_period(idx.periods.get(indicator_id, []), period)
    system_code = str(board.ics().get("ics_code", ""))
    names = _area_names(board)
    rows = []
    for r in idx.by_level.get((indicator_id, period or "", level), []):
        shown = profiles.shown(r, definition, board)
        parent = r["parent_code"] or ""
        shown["parent_name"] = names.get(parent, parent)
        shown["href"] = profiles.href(level, r["area_code"])
        rows.append(shown)
    codes = {r["area_code"] for r in rows}
    chosen = area if area in codes else None
    periods = idx.periods.get(indicator_id, [])

    def series(lv: str, code: str) -> list[dict[str, Any] | None]:
        found = [idx.rows.get((indicator_id, p, lv, code)) for p in periods]
        return [profiles.shown(r, definition, board) if r else None for r in found]

    system = series("system", system_code)
    picked = series(level, chosen) if chosen else None
    system_row = system[-1] if system else None
    at_period = idx.rows.get((indicator_id, period or "", "system", system_code))
    return {
        "definition": _definition(definition),
        "level": level,
        "level_words": COMPARE_LEVELS[level],
        "period": period,
        "period_words": profiles.period_words(period) if period else "",
        "period_label": period_label(period) if period else "",
        "latest": latest,
        "latest_words": profiles.period_words(latest) if latest else "",
        "period_end": period.split("/")[-1] if period else "",
        # (period, the value the form sends: its end date, words shown)
        "period_choices": [
            (p, p.split("/")[-1], profiles.period_words(p)) for p in reversed(periods)
        ],
        "worse": worse_areas(board, indicator_id),
        "system_at_period": (profiles.shown(at_period, definition, board) if at_period else None),
        "rows": rows,
        "system": system_row,
        "system_name": str(board.ics().get("ics_name", "System")),
        "area": chosen,
        "area_name": names.get(chosen or "", ""),
        "periods": periods,
        "trend": _trend(definition, periods, system, picked, names.get(chosen or "", "")),
        "series_system": system,
        "series_area": picked,
        "disclosure": describe(board.policy()),
    }


#: Levels whose areas significantly worse than England are named on the overview.
WORST_LEVELS = ("place", "pcn")


def worse_areas(board: Dashboard, indicator_id: str, levels: tuple[str, ...] = WORST_LEVELS
                ) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """The areas of each level significantly worse than England for `indicator_id` in its
    latest period (the interval wholly on the worse side, as published), furthest from
    England first, each with its profile page and its spine chart download."""
    definition = shipped_definitions().get(indicator_id)
    idx = profiles.index(board)
    period = idx.latest.get(indicator_id) or ""
    names = _area_names(board)
    out: dict[str, list[dict[str, Any]]] = {}
    for level in levels:
        found = []
        for r in idx.by_level.get((indicator_id, period, level), []):
            if r.get("england_comparison") != "worse" or r.get("value_suppressed"):
                continue
            row = profiles.shown(r, definition, board)
            england = row["england_value"] or 0.0
            row["distance"] = abs(row["value"] - england) / england if england else 0.0
            row["parent_name"] = names.get(r["parent_code"] or "", r["parent_code"] or "")
            row["href"] = profiles.href(level, r["area_code"])
            row["spine_csv"] = f"/api/v1/profiles/{level}/{r['area_code']}?format=csv"
            row["level_words"] = profiles.LEVEL_WORDS[level]
            found.append(row)
        out[level] = sorted(found, key=lambda x: (-x["distance"], x["area_name"]))
    return out


def worst_summary(board: Dashboard) -> list[dict[str, Any]]:
    """For the overview's "In brief": each indicator with places or PCNs significantly worse
    than England in its latest period, how many, and a link to them (made once)."""

    def build() -> list[dict[str, Any]]:
        out = []
        for i in shipped_definitions():
            found = worse_areas(board, i.id)
            counts = {lv: len(found.get(lv, [])) for lv in WORST_LEVELS}
            if not any(counts.values()):
                continue
            parts = [
                f"{n} {profiles.LEVEL_WORDS[lv] if n == 1 else profiles.LEVEL_PLURAL[lv]}"
                for lv, n in counts.items()
                if n
            ]
            out.append(
                {
                    "indicator_id": i.id,
                    "title": i.title,
                    "counts": counts,
                    "text": f"{i.title}: {' and '.join(parts)} significantly worse than England",
                    "href": f"/indicators/{i.id}#worse-areas",
                }
            )
        return out

    return profiles.kept(board, ("worst-summary",), build)


def _area_names(board: Dashboard) -> dict[str, str]:
    names = {str(board.ics().get("ics_code", "")): str(board.ics().get("ics_name", "System"))}
    names |= board.place_names()
    names |= {p["pcn_code"]: p["pcn_name"] for p in board.pcns()}
    names |= {c: str(r["practice_name"]) for c, r in board.practices().items()}
    return names


def _trend(
    definition: Indicator,
    periods: list[str],
    system: list[dict[str, Any] | None],
    area: list[dict[str, Any] | None] | None,
    area_name: str,
) -> dict[str, Any]:
    """The trend chart over `periods`, with its text alternative and the tested direction."""
    labels = [p[:4] + "-" + p[13:15] if "/" in p else p for p in periods]

    def line(name: str, shown: list[dict[str, Any] | None], colour: str) -> TrendSeries:
        return TrendSeries(
            label=name,
            values=[s["value"] if s else None for s in shown],
            lower=[s["lower"] if s else None for s in shown],
            upper=[s["upper"] if s else None for s in shown],
            colour=colour,
        )

    lines = [line("System", system, NHS_BLUE)]
    if area is not None:
        lines.append(line(area_name, area, "#ae2573"))
    england = [s["england_value"] if s else None for s in system]

    def words(name: str, shown: list[dict[str, Any] | None]) -> str:
        values = ", ".join(
            f"{label} {s['value_text'] if s else 'not published'}"
            for label, s in zip(labels, shown, strict=True)
        )
        latest = shown[-1] if shown else None
        return f"{name}: {values}; recent trend: {(latest or {}).get('trend_text', 'none')}"

    description = (
        f"Line chart of {definition.title} ({definition.unit}) by year with 95% confidence "
        "intervals, England's value dashed. "
        + "; ".join(
            [words("System", system)]
            + ([words(area_name, area)] if area is not None else [])
            + (
                [f"England: {', '.join(f'{x:,.1f}' for x in england if x is not None)}"]
                if any(x is not None for x in england)
                else []
            )
        )
        + "."
    )
    svg = trend_chart(
        labels,
        lines,
        england,
        definition.unit,
        f"trend-{definition.id}",
        f"{definition.title} over time",
        description,
    )
    return {"svg": svg, "description": description, "labels": labels}


@router.get("/indicators", response_class=HTMLResponse, include_in_schema=False)
def indicators_page(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
    allowed(user, AREA)
    board = dashboard(request)
    items = figures(lambda: indicators_list(board))
    return render(
        request, "indicators.html.j2", user, items=items, disclosure=describe(board.policy())
    )


@router.get("/indicators/{indicator_id}", response_class=HTMLResponse, include_in_schema=False)
def indicator_page(
    request: Request,
    indicator_id: str,
    user: Annotated[User, Depends(page_user)],
    level: str = "place",
    sort: str = "area",
    order: str | None = None,
    area: str | None = None,
    period: str | None = None,
) -> Response:
    allowed(user, AREA)
    if sort not in SORT_KEYS:
        raise HTTPException(422, f"sort must be one of {', '.join(SORT_KEYS)}")
    if order not in (None, "asc", "desc"):
        raise HTTPException(422, "order must be asc or desc")
    board = dashboard(request)
    c = figures(
        lambda: (
            profiles.kept(
                board,
                ("indicator", indicator_id, level, area or "", period or ""),
                lambda: indicator_page_context(board, indicator_id, level, area, period),
            )
            if area is None
            else indicator_page_context(board, indicator_id, level, area, period)
        )
    )
    c = {**c}  # sorted per request below; the kept context stays as made
    descending = order == "desc"
    c["rows"] = sorted_rows(c["rows"], sort, descending)
    keep = {
        "level": level,
        **({"period": c["period_end"]} if c["period"] != c["latest"] else {}),
        **({"area": c["area"]} if c["area"] else {}),
    }
    return render(
        request, "indicator.html.j2", user, c=c, sort=sort, descending=descending,
        sort_keys=SORT_KEYS, unsorted=urlencode(keep), levels=COMPARE_LEVELS,
    )  # fmt: skip
