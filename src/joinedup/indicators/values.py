"""Every indicator's value, with its 95% interval, at system, place, PCN and practice level for
each period, as published: counts disclosure-controlled, values restated on published counts,
and each area compared with England and with its parent area.

The engine counts numerators and denominators per practice and five-year age band (one query
per snapshot of `phm_person`, the same sqlglot tree on every engine, opt-outs left out); the
roll-up to PCN, place and system, the statistics (`population.stats`) and disclosure control
are then arithmetic on that small table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
from sqlglot import exp

from joinedup.disclosure import DisclosurePolicy, Nesting, apply
from joinedup.indicators.definitions import (
    Condition,
    Definitions,
    Indicator,
    shipped_definitions,
)
from joinedup.indicators.england import EnglandValue, compare, england_for, shipped_england
from joinedup.indicators.trends import with_trends
from joinedup.population.stats import (
    BYAR_MIN_EVENTS,
    ESP2013_BANDS,
    Rate,
    byars_limits,
    dsr,
    poisson_limits,
    proportion,
)
from joinedup.warehouse import Engine
from joinedup.warehouse.analytics.cohort import (
    age_band,
    band_labels,
    bigint,
    col,
    date_literal,
    opt_out_filter,
    table,
)
from joinedup.warehouse.registry import conform

#: The published table.
TABLE = "phm_indicator_values"
#: Levels from the largest area to the smallest; each area's parent is one level up.
LEVELS: tuple[str, ...] = ("system", "place", "pcn", "practice")
#: Decimal places of published values and limits (as OHID Fingertips publishes them).
DIGITS = 1

S = "s"
_BANDS = len(ESP2013_BANDS)


@dataclass(frozen=True)
class Period:
    """Twelve months, `start_date` to `end_date` inclusive, with the `phm_person` snapshots
    taken the day after it ends (`end_table`) and on its first day (`start_table`, for
    indicators of people registered at the start; None when there is no such snapshot)."""

    start_date: date
    end_date: date
    end_table: str
    start_table: str | None = None

    @property
    def label(self) -> str:
        """ISO 8601 interval, e.g. 2025-12-01/2026-11-30."""
        return f"{self.start_date.isoformat()}/{self.end_date.isoformat()}"


def annual_periods(index_date: date, tables: Sequence[str]) -> list[Period]:
    """Periods of a year ending the day before `index_date`, then a year earlier, and so on:
    one per snapshot in `tables` (taken on `index_date`, a year before, ...), each period's
    start snapshot being the next one."""
    periods = []
    end = index_date
    for i, name in enumerate(tables):
        start = end - timedelta(days=365)
        following = tables[i + 1] if i + 1 < len(tables) else None
        periods.append(Period(start, end - timedelta(days=1), name, following))
        end = start
    return periods


# --- counting in the engine ---------------------------------------------------------------------


def _test(c: Condition) -> exp.Expr:
    value = int(c.value) if c.value == int(c.value) else c.value
    ops: dict[str, type[exp.Binary]] = {
        "=": exp.EQ, "!=": exp.NEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE,
    }  # fmt: skip
    return ops[c.op](this=col(c.column, S), expression=exp.convert(value))


def _ages(indicator: Indicator) -> list[exp.Expr]:
    tests: list[exp.Expr] = []
    if indicator.min_age is not None:
        tests.append(exp.GTE(this=col("age", S), expression=exp.convert(indicator.min_age)))
    if indicator.max_age is not None:
        tests.append(exp.LTE(this=col("age", S), expression=exp.convert(indicator.max_age)))
    return tests


def _sum_when(test: exp.Expr | None, amount: exp.Expr) -> exp.Expr:
    zero = exp.Literal.number(0)
    value = amount if test is None else exp.Case().when(test, amount).else_(zero)
    return bigint(exp.Coalesce(this=exp.Sum(this=value), expressions=[zero.copy()]))


def _all(tests: list[exp.Expr]) -> exp.Expr | None:
    return exp.and_(*tests) if tests else None


def counts_query(indicators: Sequence[Indicator], source: str, period: Period) -> exp.Select:
    """Numerator (`n_<id>`) and denominator (`d_<id>`) of each indicator per practice (with its
    PCN and place) and ESP 2013 age band (`age_band`) from snapshot table `source`, people who
    have opted out left out. Deaths are those in `person` dated within `period`."""
    band = age_band(col("age", S), ESP2013_BANDS)
    columns: list[exp.Expr] = [
        col("practice_code", S).as_("practice_code"),
        col("pcn_code", S).as_("pcn_code"),
        col("place_code", S).as_("place_code"),
        band.as_("age_band"),
    ]
    deaths = False
    for indicator in indicators:
        denominator = [*_ages(indicator), *(_test(c) for c in indicator.denominator.where)]
        numerator = [*denominator, *(_test(c) for c in indicator.numerator.where)]
        one = exp.Literal.number(1)
        if indicator.numerator.counts == "events":
            amount: exp.Expr = bigint(col(str(indicator.numerator.sum_of), S))
        elif indicator.numerator.counts == "deaths":
            deaths = True
            death = col("death_date", "dp")
            numerator.append(
                exp.and_(
                    exp.Not(this=death.is_(exp.null())),
                    exp.GTE(this=death.copy(), expression=date_literal(period.start_date)),
                    exp.LTE(this=death.copy(), expression=date_literal(period.end_date)),
                )
            )
            amount = one
        else:
            amount = one
        columns.append(_sum_when(_all(numerator), amount).as_(f"n_{indicator.id}"))
        columns.append(_sum_when(_all(denominator), one.copy()).as_(f"d_{indicator.id}"))
    query = exp.select(*columns).from_(table(source, S)).where(opt_out_filter(True, S))
    if deaths:
        query = query.join(
            table("person", "dp"),
            on=exp.EQ(this=col("person_id", S), expression=col("person_id", "dp")),
            join_type="LEFT",
        )
    return query.group_by(
        col("practice_code", S), col("pcn_code", S), col("place_code", S), band.copy()
    )


@dataclass
class _Cells:
    """Numerator and denominator by age band for one indicator, period and area."""

    numerator: np.ndarray = field(default_factory=lambda: np.zeros(_BANDS, np.int64))
    denominator: np.ndarray = field(default_factory=lambda: np.zeros(_BANDS, np.int64))


#: (indicator id, period label, level, area code) to its cells.
Cells = dict[tuple[str, str, str, str], _Cells]


@dataclass(frozen=True)
class Areas:
    """Names of the areas and the system's code, for the published table."""

    system_code: str
    system_name: str
    names: dict[str, dict[str, str]]

    def name(self, level: str, code: str) -> str:
        if level == "system":
            return self.system_name
        return self.names.get(level, {}).get(code, code)


def read_areas(engine: Engine) -> Areas:
    """The system's code and name (table `ics`) and every place, PCN and practice name."""

    def pairs(name: str, code: str, label: str) -> dict[str, str]:
        query = exp.select(col(code, "t").as_("code"), col(label, "t").as_("name")).from_(
            table(name, "t")
        )
        return {r["code"]: r["name"] for r in engine.execute(query).to_pylist()}

    system = pairs("ics", "ics_code", "ics_name")
    code, name = next(iter(sorted(system.items())), ("system", "The system"))
    names = {
        "place": pairs("place", "place_code", "place_name"),
        "pcn": pairs("pcn", "pcn_code", "pcn_name"),
        "practice": pairs("practice", "practice_code", "practice_name"),
    }
    return Areas(code, name, names)


def count_cells(
    engine: Engine, definitions: Definitions, periods: Sequence[Period], areas: Areas
) -> tuple[Cells, dict[str, str]]:
    """Every indicator's cells at every level for each period, counted in `engine`, and each
    area's parent (practice to PCN, PCN to place, place to system)."""
    position = {label: i for i, label in enumerate(band_labels(ESP2013_BANDS))}
    cells: Cells = {}
    parents: dict[str, str] = {}
    for period in periods:
        label = period.label
        for population in ("end", "start"):
            wanted = [i for i in definitions if i.population == population]
            source = period.end_table if population == "end" else period.start_table
            if not wanted or source is None:
                continue
            counts = engine.execute(counts_query(wanted, source, period))
            bands = np.array([position[b] for b in counts.column("age_band").to_pylist()], int)
            codes = {
                "system": [areas.system_code] * counts.num_rows,
                **{
                    level: counts.column(f"{level}_code").to_pylist()
                    for level in ("place", "pcn", "practice")
                },
            }
            for child, parent in (("practice", "pcn"), ("pcn", "place"), ("place", "system")):
                for a, b in zip(codes[child], codes[parent], strict=True):
                    parents[f"{child}:{a}"] = b
            for level in LEVELS:
                keys, inverse = np.unique(np.array(codes[level], dtype=object), return_inverse=True)
                for indicator in wanted:
                    sums = []
                    for part in ("n", "d"):
                        values = counts.column(f"{part}_{indicator.id}").to_numpy()
                        total = np.zeros((len(keys), _BANDS), np.int64)
                        np.add.at(total, (inverse, bands), values)
                        sums.append(total)
                    for k, code in enumerate(keys):
                        key = (indicator.id, label, level, str(code))
                        cells[key] = _Cells(sums[0][k], sums[1][k])
    return cells, parents


# --- statistics --------------------------------------------------------------------------------


def statistic(indicator: Indicator, numerator: np.ndarray, denominator: np.ndarray) -> Rate:
    """The indicator's value and 95% interval from numerator and denominator by age band
    (`population.stats`: Wilson, Byar's or Dobson by its CI method)."""
    if indicator.ci_method == "wilson":
        return proportion(int(numerator.sum()), int(denominator.sum()), per=indicator.per)
    if indicator.ci_method == "byars":
        return crude_rate(int(numerator.sum()), int(denominator.sum()), indicator.per)
    bands = indicator.bands()
    return dsr(numerator[bands], denominator[bands], indicator.standard(), per=indicator.per)


def crude_rate(events: float, people: float, per: int) -> Rate:
    """A crude rate per `per` with Byar's limits from 10 events and exact Poisson limits below,
    as PHEindicatormethods `calculate_rate`; NaN without people."""
    if people == 0:
        return Rate(math.nan, math.nan, math.nan, events, 0.0)
    limits = byars_limits if events >= BYAR_MIN_EVENTS else poisson_limits
    low, high = limits(events)
    return Rate(events / people * per, low / people * per, high / people * per, events, people)


# --- the published table --------------------------------------------------------------------------

_SCHEMA = pa.schema(
    [
        ("indicator_id", pa.string()),
        ("period", pa.string()),
        ("period_start_date", pa.date32()),
        ("period_end_date", pa.date32()),
        ("level", pa.string()),
        ("area_code", pa.string()),
        ("area_name", pa.string()),
        ("parent_code", pa.string()),
        ("numerator_count", pa.int64()),
        ("denominator_count", pa.int64()),
        ("value", pa.float64()),
        ("lower", pa.float64()),
        ("upper", pa.float64()),
    ]
)


def _level_order(
    key: tuple[str, str, str, str], order: dict[str, int]
) -> tuple[int, str, int, str]:
    return (order[key[0]], key[1], LEVELS.index(key[2]), key[3])


def exact_values(
    definitions: Definitions,
    periods: Sequence[Period],
    cells: Cells,
    parents: dict[str, str],
    areas: Areas,
) -> pa.Table:
    """One row per indicator, period, level and area with exact counts; value and interval
    are left empty, since only those computed from the published counts are published."""
    order = {i.id: n for n, i in enumerate(definitions)}
    dates = {p.label: (p.start_date, p.end_date) for p in periods}
    rows: dict[str, list[object]] = {f.name: [] for f in _SCHEMA}
    for key in sorted(cells, key=lambda k: _level_order(k, order)):
        indicator_id, label, level, code = key
        cell = cells[key]
        for name, item in (
            ("indicator_id", indicator_id),
            ("period", label),
            ("period_start_date", dates[label][0]),
            ("period_end_date", dates[label][1]),
            ("level", level),
            ("area_code", code),
            ("area_name", areas.name(level, code)),
            ("parent_code", parents.get(f"{level}:{code}")),
            ("numerator_count", int(cell.numerator.sum())),
            ("denominator_count", int(cell.denominator.sum())),
            *((n, None) for n in ("value", "lower", "upper")),
        ):
            rows[name].append(item)
    return pa.table(rows, schema=_SCHEMA)


def nesting(parents: dict[str, str], system_code: str) -> list[Nesting]:
    """Practices add up to their PCN, PCNs to their place, places to the system, within each
    indicator and period."""
    within = ("indicator_id", "period")

    def up(level: str) -> dict[str, str]:
        prefix = f"{level}:"
        return {k[len(prefix) :]: v for k, v in parents.items() if k.startswith(prefix)}

    return [
        Nesting("level", "area_code", "practice", "pcn", up("practice"), within),
        Nesting("level", "area_code", "pcn", "place", up("pcn"), within),
        Nesting("level", "area_code", "place", "system", system_code, within),
    ]


def publish(
    exact: pa.Table,
    definitions: Definitions,
    cells: Cells,
    parents: dict[str, str],
    system_code: str,
    policy: DisclosurePolicy,
) -> pa.Table:
    """`exact` as published: counts disclosure-controlled (secondary suppression across
    practice, PCN, place and system), each surviving value and interval restated on the
    published counts to `DIGITS` places, and hidden under the indicator's `min_numerator`."""
    rates = dict.fromkeys(("value", "lower", "upper"), ("numerator_count", "denominator_count"))
    controlled = apply(
        exact,
        policy,
        counts=["numerator_count", "denominator_count"],
        rates=rates,
        group_by=["indicator_id", "period", "level", "area_code"],
        nested=nesting(parents, system_code),
    )
    out = {c: controlled.column(c).to_pylist() for c in ("value", "lower", "upper")}
    hidden = {c: controlled.column(f"{c}_suppressed").to_pylist() for c in out}
    for i, row in enumerate(controlled.to_pylist()):
        if row["numerator_count_suppressed"] or row["denominator_count_suppressed"]:
            continue
        indicator = definitions.get(row["indicator_id"])
        events, people = row["numerator_count"], row["denominator_count"]
        if events < indicator.disclosure.min_numerator:
            for c, values in out.items():
                values[i], hidden[c][i] = None, True
            continue
        cell = cells[(row["indicator_id"], row["period"], row["level"], row["area_code"])]
        exact_events = int(cell.numerator.sum())
        if indicator.method == "dsr":
            scale = events / exact_events if exact_events else 0.0
            rate = statistic(indicator, cell.numerator * scale, cell.denominator)
        elif people:
            rate = statistic(indicator, np.array([events]), np.array([people]))
        else:
            rate = Rate(math.nan, math.nan, math.nan, events, 0.0)
        for c, v in zip(out, (rate.value, rate.lower, rate.upper), strict=True):
            out[c][i] = None if math.isnan(v) else round(v, DIGITS)
    for name, values in out.items():
        position = controlled.column_names.index(name)
        controlled = controlled.set_column(position, name, pa.array(values, pa.float64()))
        flag = f"{name}_suppressed"
        controlled = controlled.set_column(
            controlled.column_names.index(flag), flag, pa.array(hidden[name], pa.bool_())
        )
    return controlled


def with_comparisons(
    published: pa.Table, definitions: Definitions, england: Sequence[EnglandValue]
) -> pa.Table:
    """`published` with England's value (for the same period, else its latest), its period and
    source, and the parent area's value, each with the Fingertips-style comparison of the
    area's 95% interval with it (better / similar / worse, or higher / lower)."""
    base = published.drop_columns(
        [
            c
            for c in published.column_names
            if c.startswith(
                ("england_", "parent_value", "parent_lower", "parent_upper", "parent_comparison")
            )
        ]
    )
    rows = base.to_pylist()
    by_key = {(r["indicator_id"], r["period"], r["level"], r["area_code"]): r for r in rows}
    extra: dict[str, list[object]] = {
        c: []
        for c in (
            "england_value",
            "england_lower",
            "england_upper",
            "england_period",
            "england_source",
            "england_comparison",
            "parent_value",
            "parent_lower",
            "parent_upper",
            "parent_comparison",
        )
    }
    for r in rows:
        indicator = definitions.get(r["indicator_id"])
        eng = england_for(england, indicator.id, r["period"])
        extra["england_value"].append(eng.value if eng else None)
        extra["england_lower"].append(eng.lower if eng else None)
        extra["england_upper"].append(eng.upper if eng else None)
        extra["england_period"].append(eng.period if eng else None)
        extra["england_source"].append(eng.source if eng else None)
        extra["england_comparison"].append(
            compare(
                r["value"], r["lower"], r["upper"], eng.value if eng else None, indicator.polarity
            )
        )
        parent = None
        if r["level"] != "system":
            up = LEVELS[LEVELS.index(r["level"]) - 1]
            parent = by_key.get((r["indicator_id"], r["period"], up, r["parent_code"]))
        for part in ("value", "lower", "upper"):
            extra[f"parent_{part}"].append(parent[part] if parent else None)
        extra["parent_comparison"].append(
            compare(
                r["value"],
                r["lower"],
                r["upper"],
                parent["value"] if parent else None,
                indicator.polarity,
            )
        )
    for name, values in extra.items():
        kind = pa.float64() if name.endswith(("_value", "_lower", "_upper")) else pa.string()
        base = base.append_column(name, pa.array(values, kind))
    return base


def indicator_values(
    engine: Engine,
    periods: Sequence[Period],
    *,
    definitions: Definitions,
    england: Sequence[EnglandValue],
    policy: DisclosurePolicy,
) -> pa.Table:
    """The published `phm_indicator_values` table for `periods` (see the module docstring)."""
    areas = read_areas(engine)
    cells, parents = count_cells(engine, definitions, periods, areas)
    exact = exact_values(definitions, periods, cells, parents, areas)
    published = publish(exact, definitions, cells, parents, areas.system_code, policy)
    compared = with_comparisons(published, definitions, england)
    return conform(TABLE, with_trends(compared, definitions))


def published_values(
    engine: Engine,
    index_date: date,
    snapshots: Sequence[str],
    policy: DisclosurePolicy,
    *,
    definitions: Definitions | None = None,
    england: Sequence[EnglandValue] | None = None,
) -> pa.Table:
    """`indicator_values` for the years ending the day before `index_date`, one per snapshot
    of `phm_person` in `snapshots` (taken on `index_date`, a year before, ...), with the shipped
    definitions and England values unless others are given: what `phm run` stores."""
    return indicator_values(
        engine,
        annual_periods(index_date, snapshots),
        definitions=definitions or shipped_definitions(),
        england=shipped_england() if england is None else england,
        policy=policy,
    )
