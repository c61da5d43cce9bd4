"""The headline summary at the top of an area's page: which indicators are significantly worse
(and better) than England in the latest period, and which have changed significantly over the
recent periods, in plain sentences with the figures behind them.

Only published values are used (disclosure control has already been applied), and every claim
rests on a test already made when the values were written: the comparison with England is the
95% interval against England's value (`england.compare`), and a change is the tested recent
trend (`trends.with_trends`), never a difference eyeballed between two years.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from joinedup.errors import InputError
from joinedup.indicators.definitions import Definitions, Indicator, shipped_definitions
from joinedup.indicators.values import LEVELS, TABLE
from joinedup.warehouse import Engine
from joinedup.warehouse.analytics.cohort import col, table

V = "v"

#: Unit as written after a value ("12.3%" reads better than "12.3 per cent" in a sentence).
_SUFFIX = {"per cent": "%", "per 1,000": " per 1,000", "per 100,000": " per 100,000"}


def figure(value: float | None, unit: str) -> str:
    """A published value with its unit, to one decimal place as published."""
    if value is None:
        return "not published"
    return f"{value:,.1f}{_SUFFIX.get(unit, ' ' + unit)}"


@dataclass(frozen=True)
class Headline:
    """One sentence about one indicator, and what it rests on."""

    indicator_id: str
    title: str
    text: str
    #: worse | better (than England), or the trend in words ("increasing and getting worse").
    kind: str
    #: How far the area is from England, relative to England's value (for ordering).
    distance: float = 0.0


@dataclass(frozen=True)
class Headlines:
    level: str
    area_code: str
    area_name: str
    period: str | None
    worse: list[Headline] = field(default_factory=list)
    better: list[Headline] = field(default_factory=list)
    changes: list[Headline] = field(default_factory=list)
    #: Indicators with a published value in the latest period, and how many were compared.
    published: int = 0
    compared: int = 0
    #: Significantly higher or lower than England where the indicator has no better direction.
    differ: int = 0
    #: Periods loaded: trends need at least three.
    periods: int = 0

    def as_dict(self) -> dict[str, Any]:
        def rows(items: list[Headline]) -> list[dict[str, Any]]:
            return [
                {"indicator_id": h.indicator_id, "title": h.title, "text": h.text, "kind": h.kind}
                for h in items
            ]

        return {
            "level": self.level,
            "area_code": self.area_code,
            "area_name": self.area_name,
            "period": self.period,
            "worse": rows(self.worse),
            "better": rows(self.better),
            "changes": rows(self.changes),
            "published": self.published,
            "compared": self.compared,
            "differ": self.differ,
            "periods": self.periods,
            "summary": self.summary(),
        }

    def summary(self) -> str:
        """One sentence: how many indicators are worse and better than England."""
        if not self.published:
            return "No indicator is published for this area in the latest period."
        if not self.compared:
            return (
                f"{self.published} indicators are published for the latest period; none has an "
                "England value to compare with."
            )
        return (
            f"Of {self.compared} indicators compared with England, {len(self.worse)} "
            f"{'is' if len(self.worse) == 1 else 'are'} significantly worse and "
            f"{len(self.better)} significantly better (95% confidence)"
            + (
                f"; {self.differ} others are significantly higher or lower than England where "
                "neither is better, such as recorded prevalence."
                if self.differ
                else "."
            )
        )


def _area_rows(engine: Engine, level: str, area_code: str) -> list[dict[str, Any]]:
    query = (
        exp.select("*")
        .from_(table(TABLE, V))
        .where(
            exp.and_(
                exp.EQ(this=col("level", V), expression=exp.convert(level)),
                exp.EQ(this=col("area_code", V), expression=exp.convert(area_code)),
            )
        )
    )
    rows: list[dict[str, Any]] = engine.execute(query).to_pylist()
    return rows


def _against_england(i: Indicator, row: dict[str, Any]) -> Headline | None:
    verdict = row.get("england_comparison")
    england = row.get("england_value")
    if verdict not in ("better", "worse") or england is None:
        return None
    interval = f"{row['lower']:,.1f} to {row['upper']:,.1f}"
    text = (
        f"{i.title}: {figure(row['value'], i.unit)} (95% CI {interval}), {verdict} than "
        f"England's {figure(england, i.unit)}"
    )
    if row.get("england_period"):
        text += f" ({row['england_period']})"
    distance = abs(row["value"] - england) / abs(england) if england else 0.0
    return Headline(i.id, i.title, text, verdict, distance)


def _change(i: Indicator, series: list[dict[str, Any]]) -> Headline | None:
    latest = series[-1]
    trend = latest.get("trend")
    if not trend or trend == "no significant change":
        return None
    published = [r for r in series if r["value"] is not None]
    first = published[0]
    text = (
        f"{i.title}: {trend}, from {figure(first['value'], i.unit)} in the year to "
        f"{first['period_end_date']:%d %b %Y} to {figure(latest['value'], i.unit)} in the year "
        f"to {latest['period_end_date']:%d %b %Y}"
    )
    p = latest.get("trend_p")
    if p is not None:
        text += " (p < 0.001)" if p < 0.001 else f" (p = {p:.3f})"
    return Headline(i.id, i.title, text, trend)


def headlines(
    engine: Engine,
    level: str,
    area_code: str,
    *,
    definitions: Definitions | None = None,
) -> Headlines:
    """The headline summary for one area from `phm_indicator_values`: worse and better than
    England in the latest period (furthest from England first), and significant recent
    trends (getting worse first). InputError for an unknown level or an area with no values."""
    if level not in LEVELS:
        raise InputError("level", f"{level!r} is not one of {', '.join(LEVELS)}")
    if TABLE not in engine.table_names():
        return Headlines(level, area_code, "", None)
    defs = definitions or shipped_definitions()
    rows = _area_rows(engine, level, area_code)
    if not rows:
        raise InputError("area", f"no indicator values for {level} {area_code!r}")
    by_indicator: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_indicator.setdefault(r["indicator_id"], []).append(r)
    latest_period = max(r["period"] for r in rows)
    worse: list[Headline] = []
    better: list[Headline] = []
    changes: list[Headline] = []
    published = compared = differ = 0
    for i in defs:
        series = sorted(by_indicator.get(i.id, []), key=lambda r: r["period_end_date"])
        if not series or series[-1]["period"] != latest_period:
            continue
        latest = series[-1]
        if latest["value"] is None:
            continue
        published += 1
        if latest.get("england_comparison") is not None:
            compared += 1
            differ += latest["england_comparison"] in ("higher", "lower")
        verdict = _against_england(i, latest)
        if verdict is not None:
            (worse if verdict.kind == "worse" else better).append(verdict)
        change = _change(i, series)
        if change is not None:
            changes.append(change)
    worse.sort(key=lambda h: -h.distance)
    better.sort(key=lambda h: -h.distance)
    changes.sort(key=lambda h: (not h.kind.endswith("worse"), not h.kind.endswith("better")))
    return Headlines(
        level=level,
        area_code=area_code,
        area_name=str(rows[0].get("area_name") or area_code),
        period=latest_period,
        worse=worse,
        better=better,
        changes=changes,
        published=published,
        compared=compared,
        differ=differ,
        periods=len({r["period"] for r in rows}),
    )
