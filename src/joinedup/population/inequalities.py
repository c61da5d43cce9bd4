"""Health inequalities: directly age-standardised rates (European Standard Population 2013)
with 95% confidence intervals by deprivation, ethnic group, place and PCN; the slope index of
inequality across deprivation quintiles; and the Core20PLUS5 gap table.

Counts per five-year age band are computed in the engine (the same on every engine); the
standardisation and intervals are then plain arithmetic in `stats`. People with a national data
opt-out are left out of everything here. `publish_rates` and `publish_gaps` give the tables as
published: counts disclosure-controlled (across place and PCN too), and every rate and interval
restated on the published counts, so none gives back a count more exactly than it is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
from sqlglot import exp

from joinedup.disclosure import DisclosurePolicy, Nesting, apply
from joinedup.population.stats import ESP2013, ESP2013_BANDS, dsr, proportion, sii
from joinedup.warehouse.analytics.cohort import (
    age_band,
    band_labels,
    bigint,
    col,
    count_rows,
    date_literal,
    opt_out_filter,
    table,
)

S = "s"


@dataclass(frozen=True)
class Measure:
    """An outcome to standardise: events per person, from the current or year-ago table."""

    name: str
    label: str
    per: int
    unit: str
    #: "current": people on the index date; "previous": people a year earlier (for deaths).
    population: str
    events: Callable[[], exp.Expr]


def _flag(name: str) -> Callable[[], exp.Expr]:
    return lambda: exp.cast(col(name, S), exp.DataType.Type.BIGINT)


def _died_within_year(index_date: date) -> Callable[[], exp.Expr]:
    def events() -> exp.Expr:
        death = col("death_date", "dp")
        died = exp.and_(
            exp.Not(this=death.is_(exp.null())),
            exp.LT(this=death.copy(), expression=date_literal(index_date)),
        )
        return exp.cast(
            exp.Case().when(died, exp.Literal.number(1)).else_(exp.Literal.number(0)),
            exp.DataType.Type.BIGINT,
        )

    return events


def measures(index_date: date) -> tuple[Measure, ...]:
    """The standardised measures: prevalence of multimorbidity and four conditions, emergency
    admissions in the last year, and deaths in the last year."""
    multimorbid = exp.cast(
        exp.Case()
        .when(exp.GTE(this=col("ltc_count", S), expression=exp.Literal.number(2)), exp.convert(1))
        .else_(exp.convert(0)),
        exp.DataType.Type.BIGINT,
    )
    return (
        Measure(
            "multimorbidity",
            "Multimorbidity (2+ Cambridge conditions)",
            100,
            "%",
            "current",
            multimorbid.copy,
        ),
        Measure("diabetes", "Diabetes", 100, "%", "current", _flag("diabetes")),
        Measure("hypertension", "Hypertension", 100, "%", "current", _flag("hypertension")),
        Measure("copd", "COPD", 100, "%", "current", _flag("copd")),
        Measure(
            "severe_mental_illness",
            "Schizophrenia, bipolar disorder or psychosis",
            100,
            "%",
            "current",
            _flag("psychosis_bipolar"),
        ),
        Measure(
            "emergency_admissions",
            "Emergency admissions in the last year",
            1000,
            "per 1,000",
            "current",
            lambda: bigint(col("prior_emergency_12m_count", S)),
        ),
        Measure(
            "mortality",
            "Deaths in the year",
            100_000,
            "per 100,000",
            "previous",
            _died_within_year(index_date),
        ),
    )


#: Dimensions rates are broken down by.
DIMENSIONS: tuple[str, ...] = ("system", "imd_quintile", "ethnic_group", "place_code", "pcn_code")


def _group(dimension: str) -> exp.Expr:
    if dimension == "system":
        return exp.convert("all")
    value = exp.cast(col(dimension, S), exp.DataType.Type.VARCHAR)
    return exp.Coalesce(this=value, expressions=[exp.convert("unknown")])


def band_counts(
    index_date: date, current: str = "phm_person", previous: str = "phm_person_previous"
) -> exp.Query:
    """Events and people per measure, dimension, group and five-year age band (ESP2013 bands),
    without people who have opted out. Output: measure, dimension, group_value, age_band,
    events, people."""
    bands = ESP2013_BANDS
    parts: list[exp.Select] = []
    for m in measures(index_date):
        source = table(current if m.population == "current" else previous, S)
        for dimension in DIMENSIONS:
            group = _group(dimension)
            band = age_band(col("age", S), bands)
            query = (
                exp.select(
                    exp.convert(m.name).as_("measure"),
                    exp.convert(dimension).as_("dimension"),
                    group.as_("group_value"),
                    band.as_("age_band"),
                    bigint(exp.Sum(this=m.events())).as_("events"),
                    count_rows().as_("people"),
                )
                .from_(source)
                .where(opt_out_filter(True, S))
                .group_by(*([] if dimension == "system" else [group.copy()]), band.copy())
            )
            if m.population == "previous":
                query = query.join(
                    table("person", "dp"),
                    on=exp.EQ(this=col("person_id", S), expression=col("person_id", "dp")),
                )
            parts.append(query)
    union: exp.Query = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    return union


#: Standardised rates are not shown from fewer events than this (OHID practice for DSRs).
MIN_EVENTS_FOR_DSR = 10


Cells = dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]]


def _cells(counts: pa.Table) -> Cells:
    """Events and people per age band for each (measure, dimension, group)."""
    labels = band_labels(ESP2013_BANDS)
    position = {label: i for i, label in enumerate(labels)}
    cells: Cells = {}
    for row in counts.to_pylist():
        key = (row["measure"], row["dimension"], row["group_value"])
        events, people = cells.setdefault(
            key, (np.zeros(len(labels), np.int64), np.zeros(len(labels), np.int64))
        )
        i = position[row["age_band"]]
        events[i] += row["events"] or 0
        people[i] += row["people"]
    return cells


def standardise(counts: pa.Table, index_date: date) -> pa.Table:
    """Directly standardised rates with 95% CIs (Dobson method) from `band_counts` output: one
    row per measure, dimension and group, with crude and standardised rates per the measure's
    unit. Groups with fewer than 10 events get no standardised rate."""
    cells = _cells(counts)
    by_name = {m.name: m for m in measures(index_date)}
    order = {m.name: i for i, m in enumerate(measures(index_date))}
    dim_order = {d: i for i, d in enumerate(DIMENSIONS)}
    out: dict[str, list[object]] = {
        k: []
        for k in (
            "measure",
            "measure_label",
            "unit",
            "dimension",
            "group_value",
            "events_count",
            "people_count",
            "crude_rate",
            "dsr",
            "dsr_lower",
            "dsr_upper",
        )
    }
    for key in sorted(cells, key=lambda k: (order[k[0]], dim_order[k[1]], k[2])):
        events, people = cells[key]
        m = by_name[key[0]]
        total_events, total_people = int(events.sum()), int(people.sum())
        crude = total_events / total_people * m.per if total_people else None
        value = lower = upper = None
        if total_events >= MIN_EVENTS_FOR_DSR:
            rate = dsr(events, people, ESP2013, per=m.per)
            value, lower, upper = rate.value, rate.lower, rate.upper
        for name, item in (
            ("measure", m.name),
            ("measure_label", m.label),
            ("unit", m.unit),
            ("dimension", key[1]),
            ("group_value", key[2]),
            ("events_count", total_events),
            ("people_count", total_people),
            ("crude_rate", crude),
            ("dsr", value),
            ("dsr_lower", lower),
            ("dsr_upper", upper),
        ):
            out[name].append(item)
    schema = pa.schema(
        [
            ("measure", pa.string()),
            ("measure_label", pa.string()),
            ("unit", pa.string()),
            ("dimension", pa.string()),
            ("group_value", pa.string()),
            ("events_count", pa.int64()),
            ("people_count", pa.int64()),
            ("crude_rate", pa.float64()),
            ("dsr", pa.float64()),
            ("dsr_lower", pa.float64()),
            ("dsr_upper", pa.float64()),
        ]
    )
    return pa.table(out, schema=schema)


#: Decimal places of published rates and limits (as OHID Fingertips publishes them).
RATE_DIGITS = 1


def pcn_nesting(pcn_places: dict[str, str], within: str) -> Nesting:
    """PCN rows (dimension "pcn_code") add up to their place's row, within each `within`."""
    return Nesting(
        level="dimension",
        key="group_value",
        child="pcn_code",
        parent="place_code",
        parent_of=pcn_places,
        within=(within,),
    )


def publish_rates(
    counts: pa.Table, index_date: date, policy: DisclosurePolicy, pcn_places: dict[str, str]
) -> pa.Table:
    """`standardise` as published: events and people disclosure-controlled within each
    measure's breakdown and across PCNs within their place (`pcn_places`: PCN code to place
    code), and every surviving rate restated on the published counts, to `RATE_DIGITS` places.

    The crude rate is published events / published people. The standardised rate is that of
    the group's age profile scaled to the published events (each band's events × published /
    exact), so it moves by the same factor as the count, and its Dobson limits are those of the
    published count: (rate − lower) / (upper − rate) depends only on the count, so it gives back
    the published count and nothing finer. No standardised rate is published under
    `MIN_EVENTS_FOR_DSR` published events."""
    rates = standardise(counts, index_date)
    controlled = apply(
        rates,
        policy,
        counts=["events_count", "people_count"],
        rates=dict.fromkeys(
            ("crude_rate", "dsr", "dsr_lower", "dsr_upper"), ("events_count", "people_count")
        ),
        group_by=["measure", "dimension"],
        nested=[pcn_nesting(pcn_places, "measure")],
    )
    cells = _cells(counts)
    per = {m.name: m.per for m in measures(index_date)}
    out = {
        c: controlled.column(c).to_pylist() for c in ("crude_rate", "dsr", "dsr_lower", "dsr_upper")
    }
    for i, row in enumerate(controlled.to_pylist()):
        if row["events_count_suppressed"] or row["people_count_suppressed"]:
            continue  # hidden under the policy, or left exact where it lets them through
        events, people, scale = row["events_count"], row["people_count"], per[row["measure"]]
        out["crude_rate"][i] = round(events / people * scale, RATE_DIGITS) if people else None
        value = lower = upper = None
        if events >= MIN_EVENTS_FOR_DSR:
            band_events, band_people = cells[(row["measure"], row["dimension"], row["group_value"])]
            restated = band_events * (events / band_events.sum())
            rate = dsr(restated, band_people, ESP2013, per=scale)
            value, lower, upper = (
                round(v, RATE_DIGITS) for v in (rate.value, rate.lower, rate.upper)
            )
        out["dsr"][i], out["dsr_lower"][i], out["dsr_upper"][i] = value, lower, upper
    for name, values in out.items():
        index = controlled.column_names.index(name)
        controlled = controlled.set_column(index, name, pa.array(values, pa.float64()))
    return controlled


def slope_index(rates: pa.Table) -> pa.Table:
    """Slope index of inequality (and the relative index) across IMD quintiles for each measure
    with a standardised rate in all five: positive means higher in the more deprived. Given
    published rates (`publish_rates`), it is computed from published figures only."""
    rows = [r for r in rates.to_pylist() if r["dimension"] == "imd_quintile"]
    out: list[dict[str, object]] = []
    for measure in dict.fromkeys(r["measure"] for r in rows):
        quintiles = sorted(
            (r for r in rows if r["measure"] == measure and r["group_value"] in "12345"),
            key=lambda r: int(r["group_value"]),
        )
        if len(quintiles) != 5 or any(r["dsr"] is None for r in quintiles):
            continue
        if any(r["dsr_upper"] <= r["dsr_lower"] for r in quintiles):
            continue
        result = sii(
            [r["dsr"] for r in quintiles],
            [r["dsr_lower"] for r in quintiles],
            [r["dsr_upper"] for r in quintiles],
            [r["people_count"] for r in quintiles],
        )
        out.append(
            {
                "measure": measure,
                "measure_label": quintiles[0]["measure_label"],
                "unit": quintiles[0]["unit"],
                "sii": result.sii,
                "sii_lower": result.sii_lower,
                "sii_upper": result.sii_upper,
                "rii": result.rii,
                "rii_lower": result.rii_lower,
                "rii_upper": result.rii_upper,
            }
        )
    schema = pa.schema(
        [
            ("measure", pa.string()),
            ("measure_label", pa.string()),
            ("unit", pa.string()),
            *[(c, pa.float64()) for c in ("sii", "sii_lower", "sii_upper")],
            *[(c, pa.float64()) for c in ("rii", "rii_lower", "rii_upper")],
        ]
    )
    return pa.Table.from_pylist(out, schema=schema)


# --- Core20PLUS5 --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GapIndicator:
    """One Core20PLUS5 clinical area's indicator: who counts (denominator) and who meets it."""

    area: str
    indicator: str
    denominator: Callable[[], exp.Expr] | None
    numerator: Callable[[], exp.Expr] | None
    note: str = ""


def _is(name: str, value: int = 1) -> Callable[[], exp.Expr]:
    return lambda: exp.EQ(this=col(name, S), expression=exp.Literal.number(value))


def _gt0(name: str) -> exp.Expr:
    return exp.GT(this=col(name, S), expression=exp.Literal.number(0))


GAP_INDICATORS: tuple[GapIndicator, ...] = (
    GapIndicator(
        "Maternity",
        "Pregnant women with an A&E attendance or emergency admission in the last year (%)",
        _is("pregnant"),
        lambda: exp.or_(_gt0("prior_ae_12m_count"), _gt0("prior_emergency_12m_count")),
    ),
    GapIndicator(
        "Severe mental illness",
        "People with SMI with blood pressure, BMI and smoking status all recorded in the last "
        "year (%)",
        _is("psychosis_bipolar"),
        lambda: exp.and_(
            _is("bp_recorded_12m")(), _is("bmi_recorded_12m")(), _is("smoking_recorded_12m")()
        ),
    ),
    GapIndicator(
        "Chronic respiratory disease",
        "People with COPD admitted as an emergency in the last year (%)",
        _is("copd"),
        lambda: _gt0("prior_emergency_12m_count"),
    ),
    GapIndicator(
        "Early cancer diagnosis",
        "Cancers diagnosed at stage 1 or 2 (%)",
        None,
        None,
        "Not measurable here: the canonical tables hold no stage at diagnosis.",
    ),
    GapIndicator(
        "Hypertension",
        "People with hypertension whose latest blood pressure is under 140/90 (%)",
        _is("hypertension"),
        lambda: exp.and_(
            exp.LT(this=col("latest_systolic_bp", S), expression=exp.Literal.number(140)),
            exp.LT(this=col("latest_diastolic_bp", S), expression=exp.Literal.number(90)),
        ),
    ),
    GapIndicator(
        "Hypertension",
        "Adults 40+ with no hypertension diagnosis and raised readings on 2+ days in 2 years (%)",
        lambda: exp.and_(
            exp.GTE(this=col("age", S), expression=exp.Literal.number(40)),
            _is("hypertension", 0)(),
        ),
        lambda: exp.GTE(this=col("raised_bp_days_24m_count", S), expression=exp.Literal.number(2)),
    ),
)


def gap_counts(source: str = "phm_person") -> exp.Query:
    """For each measurable Core20PLUS5 indicator: numerator and denominator among people in
    Core20PLUS (column `core20plus` = 1) and everyone else. Output: indicator_order,
    core20plus, numerator, denominator."""
    parts: list[exp.Select] = []
    for i, ind in enumerate(GAP_INDICATORS):
        if ind.denominator is None or ind.numerator is None:
            continue
        meets = exp.Case().when(ind.numerator(), exp.Literal.number(1)).else_(exp.Literal.number(0))
        parts.append(
            exp.select(
                exp.Literal.number(i).as_("indicator_order"),
                col("core20plus", S).as_("core20plus"),
                bigint(
                    exp.Coalesce(this=exp.Sum(this=meets), expressions=[exp.Literal.number(0)])
                ).as_("numerator"),
                count_rows().as_("denominator"),
            )
            .from_(table(source, S))
            .where(opt_out_filter(True, S), ind.denominator())
            .group_by(col("core20plus", S))
        )
    union: exp.Query = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    return union


GAP_COUNTS: tuple[str, ...] = tuple(
    f"{who}_{part}_count" for who in ("core20plus", "rest") for part in ("numerator", "denominator")
)


def publish_gaps(counts: pa.Table, policy: DisclosurePolicy) -> pa.Table:
    """`gap_table` as published: numerators and denominators disclosure-controlled, and each
    percentage, its Wilson interval and the gap computed from the published counts (to
    `RATE_DIGITS` places), so none gives back a count more exactly than it is shown."""
    raw = gap_table(counts)
    shares = {
        f"{who}_{part}": (f"{who}_numerator_count", f"{who}_denominator_count")
        for who in ("core20plus", "rest")
        for part in ("percent", "lower", "upper")
    }
    controlled = apply(
        raw,
        policy,
        counts=list(GAP_COUNTS),
        rates={**shares, "gap_points": GAP_COUNTS},
    )
    rows = controlled.to_pylist()
    for row in rows:
        percents: dict[str, float | None] = {}
        for who in ("core20plus", "rest"):
            num, den = row[f"{who}_numerator_count"], row[f"{who}_denominator_count"]
            hidden = (
                row[f"{who}_numerator_count_suppressed"]
                or row[f"{who}_denominator_count_suppressed"]
            )
            if hidden or num is None or den is None:
                percents[who] = row[f"{who}_percent"]
                continue
            share = proportion(num, den) if den > 0 else None
            values = (share.value, share.lower, share.upper) if share else (None, None, None)
            for part, value in zip(("percent", "lower", "upper"), values, strict=True):
                row[f"{who}_{part}"] = None if value is None else round(value, RATE_DIGITS)
            percents[who] = row[f"{who}_percent"]
        if not row["gap_points_suppressed"]:
            a, b = percents["core20plus"], percents["rest"]
            row["gap_points"] = (
                round(a - b, RATE_DIGITS) if a is not None and b is not None else None
            )
    return pa.Table.from_pylist(rows, schema=controlled.schema)


def gap_table(counts: pa.Table) -> pa.Table:
    """The Core20PLUS5 gap table: per indicator, the percentage in Core20PLUS and in everyone
    else (with 95% Wilson intervals) and the gap in percentage points (Core20PLUS minus rest)."""
    got = {(r["indicator_order"], r["core20plus"]): r for r in counts.to_pylist()}
    rows: list[dict[str, object]] = []
    for i, ind in enumerate(GAP_INDICATORS):
        row: dict[str, object] = {"area": ind.area, "indicator": ind.indicator, "note": ind.note}
        values: dict[int, float | None] = {}
        for flag, prefix in ((1, "core20plus"), (0, "rest")):
            cell = got.get((i, flag))
            num = int(cell["numerator"]) if cell else 0
            den = int(cell["denominator"]) if cell else 0
            measurable = ind.numerator is not None
            row[f"{prefix}_numerator_count"] = num if measurable else None
            row[f"{prefix}_denominator_count"] = den if measurable else None
            if measurable and den > 0:
                share = proportion(num, den)
                values[flag] = share.value
                row[f"{prefix}_percent"] = share.value
                row[f"{prefix}_lower"] = share.lower
                row[f"{prefix}_upper"] = share.upper
            else:
                values[flag] = None
                for suffix in ("percent", "lower", "upper"):
                    row[f"{prefix}_{suffix}"] = None
        a, b = values.get(1), values.get(0)
        row["gap_points"] = a - b if a is not None and b is not None else None
        rows.append(row)
    columns: Sequence[tuple[str, pa.DataType]] = [
        ("area", pa.string()),
        ("indicator", pa.string()),
        *[
            (f"{p}_{s}", pa.int64() if s.endswith("_count") else pa.float64())
            for p in ("core20plus", "rest")
            for s in ("numerator_count", "denominator_count", "percent", "lower", "upper")
        ],
        ("gap_points", pa.float64()),
        ("note", pa.string()),
    ]
    return pa.Table.from_pylist(rows, schema=pa.schema(list(columns)))
