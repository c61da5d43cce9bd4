"""The population health report: one self-contained HTML page from the `joinedup phm run` tables.

Charts are inline SVG and the styles inline CSS, so the file can be emailed or put on an intranet
with nothing else to fetch. Every count comes from a published (disclosure-controlled) table or
passes through `apply` here, and every chart has a table and a text description beside it.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
from markupsafe import Markup
from matplotlib.ticker import FuncFormatter
from sqlglot import exp

from joinedup.disclosure import (
    SUPPRESSED_MARK,
    DisclosurePolicy,
    Nesting,
    apply,
    control_count,
    describe,
)
from joinedup.errors import ConfigurationError, InputError
from joinedup.population.conditions import SEGMENTS
from joinedup.reports.charts import NHS_BLUE, NHS_DARK_GREY, figure_svg, new_figure
from joinedup.reports.pages import page_style, template, write_page
from joinedup.warehouse import Engine

TEMPLATE = "phm_report.html.j2"

#: Risk tiers, highest first: `joinedup.population.risk.TIERS`, not imported here because that
#: module loads scikit-learn, which a report does not need.
TIERS: tuple[str, ...] = ("very_high", "high", "moderate", "low")

NHS_LIGHT_BLUE = "#41b6e6"
NHS_WARM_YELLOW = "#ffb81c"
BAND_WIDTH = 5
TOP_BAND = 90  # the last band is open: 90 and over
QUINTILE_LABELS = {"1": "1 (most deprived)", "5": "5 (least deprived)"}


def write_report(engine: Engine, output: Path, place: str | None = None) -> Path:
    """Write the population health report for the system, or one `place` in it, to `output`.

    Reads the tables `joinedup phm run` leaves in the warehouse; raises ConfigurationError when
    there are none and InputError for a place code the footprint does not have.
    """
    context = report_context(engine, place)
    context["style"] = page_style()
    return write_page(template(TEMPLATE).render(r=context), output)


def report_context(engine: Engine, place: str | None = None) -> dict[str, Any]:
    """Everything the report shows, for the system or one `place`: charts as SVG, tables as
    rows of display text, every count already through disclosure control."""
    run = _latest_run(engine)
    ics = _first_row(engine, "ics")
    places = {r["place_code"]: r["place_name"] for r in _rows(engine, _select("place"))}
    if place is not None and place not in places:
        choices = ", ".join(f"{code} ({name})" for code, name in sorted(places.items()))
        raise InputError(place, f"no such place; choose from {choices}")
    policy = _policy(run.get("disclosure_policy"))
    card = _card_json(run.get("model_card_json"))
    ics_name = str(ics.get("ics_name") or "Integrated Care System")
    place_name = places[place] if place is not None else None
    area = place_name or ics_name
    synthetic = bool(card.get("synthetic", card.get("synthetic_data", False))) or (
        ics.get("is_real") is False
    )
    registered = _registered(engine, policy, place)
    context: dict[str, Any] = {
        "title": f"{place_name}, {ics_name}" if place_name else ics_name,
        "version": _version(),
        "ics_name": ics_name,
        "ics_code": ics.get("ics_code", ""),
        "place_code": place,
        "place_name": place_name,
        "area": area,
        "run_id": run.get("run_id", ""),
        "run_at": run.get("run_at", ""),
        "run_date": str(run.get("run_at") or "")[:10],
        "index_date": run.get("index_date"),
        "extract_date": run.get("extract_date"),
        "synthetic": synthetic,
        "disclosure_rule": describe(policy),
        "registered": _count(registered),
        "pyramid": _pyramid(engine, policy, place, area),
        "segments": _segments(engine, policy, place, area),
        "tiers": _tiers(engine, policy, place, area),
        "measures": _measures(engine, place, place_name),
        "sii": _slope_indices(engine),
        "core20": _core20plus5(engine),
        "transitions": _transitions(engine),
        "model_card": markdown_to_html(str(run.get("model_card_markdown") or ""), shift=2),
        "passes_acceptance": bool(run.get("passes_acceptance")),
    }
    for section, what in (("pyramid", "age bands"), ("segments", "segments"), ("tiers", "tiers")):
        context[section]["note"] = _why_total_differs(
            what, context[section]["total_value"], registered, policy
        )
    return context


def _registered(engine: Engine, policy: DisclosurePolicy, place: str | None) -> int | None:
    """The area's one population figure: people registered on the index date, opt-outs
    excluded, published as a single count (the figure every other total is explained by)."""
    query = exp.select(_people()).from_(exp.to_table("phm_person").as_("p"))
    rows = _rows(engine, query.where(_opted_in_people(place)))
    return control_count(int(rows[0]["people_count"]) if rows else 0, policy)


def _why_total_differs(
    what: str, total: int, registered: int | None, policy: DisclosurePolicy
) -> str:
    """Why a table's published cells add to other than the registered population, or "" when
    they add to it."""
    if registered is None or total == registered:
        return ""
    return (
        f"The {what} add to {total:,}, not the {registered:,} registered, because each is "
        f"published on its own ({describe(policy)})."
    )


# --- reading the warehouse -------------------------------------------------------------------


def _select(name: str) -> exp.Select:
    return exp.select("*").from_(name)


def _rows(engine: Engine, query: exp.Query) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = engine.execute(query).to_pylist()
    return rows


def _first_row(engine: Engine, name: str) -> dict[str, Any]:
    rows = _rows(engine, _select(name).limit(1))
    return rows[0] if rows else {}


def _eq(column: str, value: str) -> exp.EQ:
    return exp.EQ(this=exp.column(column), expression=exp.convert(value))


def _latest_run(engine: Engine) -> dict[str, Any]:
    """The latest row of `phm_run`: without one there is nothing to report."""
    message = "this warehouse has no population health results: run `joinedup phm run` first"
    if "phm_run" not in engine.table_names():
        raise ConfigurationError(message)
    rows = _rows(engine, _select("phm_run").order_by(exp.column("run_at").desc()).limit(1))
    if not rows:
        raise ConfigurationError(message)
    return rows[0]


def _policy(raw: object) -> DisclosurePolicy:
    """The disclosure policy the run published under, so figures made here match its tables."""
    if not raw:
        return DisclosurePolicy()
    return DisclosurePolicy.parse(json.loads(str(raw)), source="phm_run.disclosure_policy")


def _card_json(raw: object) -> dict[str, Any]:
    try:
        card = json.loads(str(raw)) if raw else {}
    except json.JSONDecodeError:
        return {}
    return card if isinstance(card, dict) else {}


def _version() -> str:
    try:
        return metadata.version("joinedup")
    except metadata.PackageNotFoundError:
        return "dev"


def _opted_in_people(place: str | None) -> exp.Condition:
    """People who may be counted for planning (not opted out), in `place` when given."""
    condition: exp.Condition = exp.Not(this=exp.column("national_data_opt_out", "p"))
    if place is not None:
        condition = exp.and_(
            condition,
            exp.EQ(this=exp.column("place_code", "p"), expression=exp.convert(place)),
        )
    return condition


def _people() -> exp.Expr:
    return exp.cast(exp.Count(this=exp.Star()), exp.DataType.Type.BIGINT).as_("people_count")


# --- formatting ------------------------------------------------------------------------------


def _count(value: int | None, suppressed: bool = False) -> str:
    if suppressed:
        return SUPPRESSED_MARK
    return "" if value is None else f"{value:,}"


def _rate(value: float | None, suppressed: bool = False) -> str:
    if suppressed:
        return SUPPRESSED_MARK
    if value is None or math.isnan(value):  # NaN: no value, not a suppressed one
        return ""
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _interval(lower: float | None, upper: float | None, suppressed: bool = False) -> str:
    if suppressed:
        return SUPPRESSED_MARK
    if lower is None or upper is None:
        return ""
    return f"{_rate(lower)} to {_rate(upper)}"


def _share(value: int | None, total: int) -> str:
    return "" if value is None or total <= 0 else f"{100 * value / total:.1f}%"


def _tier_label(tier: str) -> str:
    return tier.replace("_", " ").capitalize()


# --- charts ----------------------------------------------------------------------------------


def _thousands(value: float, _: object) -> str:
    return f"{abs(value):,.0f}"


# --- sections --------------------------------------------------------------------------------


def _band_label(start: int) -> str:
    return f"{start}+" if start >= TOP_BAND else f"{start}–{start + BAND_WIDTH - 1}"


def _pyramid(
    engine: Engine, policy: DisclosurePolicy, place: str | None, area: str
) -> dict[str, Any]:
    """People by five-year age band and sex, opt-outs left out, counts controlled here: the
    system's and every place's together, so no place's pyramid and the system's give a hidden
    cell away by subtraction."""
    query = (
        exp.select(
            exp.column("place_code", "p").as_("place_code"),
            exp.column("sex", "p").as_("sex"),
            exp.column("age", "p").as_("age"),
            _people(),
        )
        .from_(exp.to_table("phm_person").as_("p"))
        .where(_opted_in_people(None))
        .group_by(exp.column("place_code", "p"), exp.column("sex", "p"), exp.column("age", "p"))
    )
    raw: dict[tuple[str, str, int], int] = {}
    for row in _rows(engine, query):
        if row["age"] is None:
            continue
        band = min(int(row["age"]) // BAND_WIDTH * BAND_WIDTH, TOP_BAND)
        sex = str(row["sex"] or "unknown")
        for level, code in (("system", "all"), ("place", str(row["place_code"]))):
            key = (f"{level}:{code}", sex, band)
            raw[key] = raw.get(key, 0) + int(row["people_count"])
    area_key = "system:all" if place is None else f"place:{place}"
    found = {sex for _, sex, _ in raw}
    sexes = [s for s in ("male", "female") if s in found] + sorted(found - {"male", "female"})
    bands = list(range(0, TOP_BAND + 1, BAND_WIDTH))
    areas = sorted({a for a, _, _ in raw} | {area_key})
    cells = [(a, sex, b, raw.get((a, sex, b), 0)) for a in areas for sex in sexes for b in bands]
    table = pa.table(
        {
            "level": pa.array([c[0].split(":", 1)[0] for c in cells], pa.string()),
            "area": pa.array([c[0].split(":", 1)[1] for c in cells], pa.string()),
            "sex": pa.array([c[1] for c in cells], pa.string()),
            "band": pa.array([c[2] for c in cells], pa.int64()),
            "people_count": pa.array([c[3] for c in cells], pa.int64()),
        }
    )
    every = apply(
        table,
        policy,
        counts=["people_count"],
        group_by=["level", "area", "sex"],
        nested=[Nesting("level", "area", "place", "system", "all", within=("sex", "band"))],
    ).to_pylist()
    published = [r for r in every if f"{r['level']}:{r['area']}" == area_key]
    value = {(r["sex"], r["band"]): r for r in published}
    total = sum(r["people_count"] or 0 for r in published)

    fig = new_figure(7.5, 5.2)
    ax = fig.subplots()
    y = list(range(len(bands)))
    for sex, sign, colour in (("male", -1, NHS_LIGHT_BLUE), ("female", 1, NHS_BLUE)):
        if sex in sexes:
            widths = [sign * (value[(sex, b)]["people_count"] or 0) for b in bands]
            ax.barh(y, widths, color=colour, label=f"{sex.capitalize()}s", height=0.85)
    ax.set_yticks(y, [_band_label(b) for b in bands], fontsize=8)
    ax.axvline(0, color="black", linewidth=0.5)
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_xlabel("people")
    ax.set_ylabel("age band")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    share_old = sum(r["people_count"] or 0 for r in published if r["band"] >= 65)
    description = (
        f"Population pyramid for {area}, opt-outs excluded: males to the left and females to "
        f"the right, by five-year age band from 0–4 to {TOP_BAND}+, the bars adding to "
        f"{total:,}. "
        f"{_share(share_old, total)} are aged 65 or over. The table below gives the figures."
    )
    svg = figure_svg(fig, "pyramid", f"Population pyramid, {area}", description)
    rows = [
        {
            "band": _band_label(b),
            "cells": [
                _count(value[(s, b)]["people_count"], value[(s, b)]["people_count_suppressed"])
                for s in sexes
            ],
        }
        for b in reversed(bands)
    ]
    return {
        "svg": svg,
        "description": description,
        "sexes": sexes,
        "rows": rows,
        "total": f"{total:,}",
        "total_value": total,
    }


def _segments(
    engine: Engine, policy: DisclosurePolicy, place: str | None, area: str
) -> dict[str, Any]:
    """The Bridges to Health segment mix from the published segment counts."""
    dimension, group = ("place_code", place) if place is not None else ("system", "all")
    query = _select("phm_segment_counts").where(
        exp.and_(_eq("dimension", dimension), _eq("group_value", group))
    )
    found = {r["segment"]: r for r in _rows(engine, query)}
    ordered = sorted(SEGMENTS, key=lambda s: s.lynn_number)
    rows: list[dict[str, Any]] = []
    for segment in ordered:
        row = found.get(segment.key)
        # The counts are a GROUP BY: a segment with no row has no one in it.
        people = row["people_count"] if row else control_count(0, policy)
        suppressed = bool(row["people_count_suppressed"]) if row else people is None
        rows.append(
            {
                "key": segment.key,
                "lynn": segment.lynn_number,
                "label": segment.label,
                "value": people,
                "people": _count(people, suppressed),
            }
        )
    total = sum(r["value"] or 0 for r in rows)
    for r in rows:
        r["share"] = _share(r["value"], total)

    fig = new_figure(8.5, 3.8)
    ax = fig.subplots()
    y = list(range(len(rows)))
    ax.barh(y, [r["value"] or 0 for r in rows], color=NHS_BLUE, height=0.7)
    ax.set_yticks(y, [f"{r['lynn']}. {r['label']}" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_xlabel("people")
    ax.spines[["top", "right"]].set_visible(False)
    for i, r in enumerate(rows):
        ax.annotate(
            r["share"] or r["people"], (r["value"] or 0, i), xytext=(3, 0),
            textcoords="offset points", va="center", fontsize=7, color=NHS_DARK_GREY,
        )  # fmt: skip
    biggest = max(rows, key=lambda r: r["value"] or 0)
    description = (
        f"Bar chart of people in each Bridges to Health segment in {area}, {total:,} in all. "
        f"The largest segment is {biggest['label'].lower()} ({biggest['share']}); "
        + "; ".join(
            f"{r['label'].lower()} {r['share'] or r['people']}" for r in rows if r != biggest
        )
        + "."
    )
    svg = figure_svg(fig, "segments", f"People by Bridges to Health segment, {area}", description)
    return {"svg": svg, "description": description, "rows": rows, "total_value": total}


def _tiers(
    engine: Engine, policy: DisclosurePolicy, place: str | None, area: str
) -> dict[str, Any]:
    """People by risk tier: the published system table, or the place's counts controlled here
    with every place's, nested in the system's, so places and system give no hidden tier away."""
    if place is None:
        published = _rows(engine, _select("phm_risk_tiers"))
    else:
        query = (
            exp.select(
                exp.column("place_code", "p").as_("area"),
                exp.column("risk_tier", "r").as_("risk_tier"),
                _people(),
            )
            .from_(exp.to_table("phm_risk").as_("r"))
            .join(
                exp.to_table("phm_person").as_("p"),
                on=exp.EQ(
                    this=exp.column("person_id", "r"), expression=exp.column("person_id", "p")
                ),
            )
            .where(_opted_in_people(None))
            .group_by(exp.column("place_code", "p"), exp.column("risk_tier", "r"))
        )
        counts = _rows(engine, query)
        system: dict[str, int] = {}
        for r in counts:
            system[r["risk_tier"]] = system.get(r["risk_tier"], 0) + int(r["people_count"])
        rows = [{"level": "place", **r, "area": str(r["area"])} for r in counts] + [
            {"level": "system", "area": "all", "risk_tier": t, "people_count": n}
            for t, n in system.items()
        ]
        every = (
            apply(
                pa.Table.from_pylist(rows),
                policy,
                counts=["people_count"],
                group_by=["level", "area"],
                nested=[Nesting("level", "area", "place", "system", "all", within=("risk_tier",))],
            ).to_pylist()
            if rows
            else []
        )
        published = [r for r in every if r["level"] == "place" and r["area"] == place]
    order = {t: i for i, t in enumerate(TIERS)}
    published.sort(key=lambda r: (order.get(r["risk_tier"], len(TIERS)), str(r["risk_tier"])))
    total = sum(r["people_count"] or 0 for r in published)
    rows = [
        {
            "label": _tier_label(str(r["risk_tier"])),
            "value": r["people_count"],
            "people": _count(r["people_count"], bool(r["people_count_suppressed"])),
            "share": _share(r["people_count"], total),
        }
        for r in published
    ]

    fig = new_figure(6.5, 3.2)
    ax = fig.subplots()
    x = list(range(len(rows)))
    colours = ["#d5281b", "#ed8b00", NHS_WARM_YELLOW, NHS_BLUE][: len(rows)]
    colours += [NHS_BLUE] * (len(rows) - len(colours))
    ax.bar(x, [r["value"] or 0 for r in rows], color=colours, width=0.6)
    ax.set_xticks(x, [r["label"] for r in rows], fontsize=9)
    ax.set_yscale("log")
    smallest = min((r["value"] for r in rows if r["value"]), default=1)
    ax.set_ylim(bottom=max(1, smallest / 4))
    ax.set_ylabel("people (log scale)")
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.spines[["top", "right"]].set_visible(False)
    for i, r in enumerate(rows):
        ax.annotate(
            r["people"], (i, max(r["value"] or 1, 1)), xytext=(0, 3), textcoords="offset points",
            ha="center", fontsize=8, color=NHS_DARK_GREY,
        )  # fmt: skip
    description = (
        f"Bar chart, on a logarithmic scale, of people in each emergency admission risk tier in "
        f"{area}: "
        + "; ".join(f"{r['label'].lower()} {r['people']} ({r['share']})" for r in rows)
        + "."
    )
    svg = figure_svg(fig, "tiers", f"People by emergency admission risk tier, {area}", description)
    return {"svg": svg, "description": description, "rows": rows, "total_value": total}


def rate_row(row: dict[str, Any], group: str) -> dict[str, Any]:
    """One area's age-standardised rate as the tables show it: counts, rate and 95% CI as
    text, "*" where suppressed."""
    return {
        "group": group,
        "events": _count(row["events_count"], bool(row["events_count_suppressed"])),
        "people": _count(row["people_count"], bool(row["people_count_suppressed"])),
        "dsr": _rate(row["dsr"], bool(row["dsr_suppressed"])),
        "ci": _interval(
            row["dsr_lower"],
            row["dsr_upper"],
            bool(row["dsr_lower_suppressed"] or row["dsr_upper_suppressed"]),
        ),
    }


def _measures(engine: Engine, place: str | None, place_name: str | None) -> list[dict[str, Any]]:
    """For each measure: age-standardised rates by IMD quintile, a chart, and place vs system."""
    rows = _rows(engine, _select("phm_inequalities"))
    out = []
    for measure in dict.fromkeys(r["measure"] for r in rows):
        mine = [r for r in rows if r["measure"] == measure]
        label, unit = str(mine[0]["measure_label"]), str(mine[0]["unit"])
        quintiles = sorted(
            (r for r in mine if r["dimension"] == "imd_quintile"),
            key=lambda r: str(r["group_value"]),
        )
        system = next((r for r in mine if r["dimension"] == "system"), None)
        local = next(
            (r for r in mine if r["dimension"] == "place_code" and r["group_value"] == place),
            None,
        )
        key = re.sub(r"[^a-z0-9]+", "-", str(measure).lower()).strip("-")
        svg, description = _inequality_chart(key, label, unit, quintiles, system, local, place_name)
        comparison = []
        if place is not None:
            if local is not None:
                comparison.append(rate_row(local, place_name or place))
            if system is not None:
                comparison.append(rate_row(system, "System"))
        out.append(
            {
                "key": key,
                "label": label,
                "unit": unit,
                "svg": svg,
                "description": description,
                "rows": [
                    rate_row(r, QUINTILE_LABELS.get(str(r["group_value"]), str(r["group_value"])))
                    for r in quintiles
                ],
                "comparison": comparison,
            }
        )
    return out


def _shown(row: dict[str, Any] | None) -> bool:
    return row is not None and row["dsr"] is not None and not row["dsr_suppressed"]


def _inequality_chart(
    key: str,
    label: str,
    unit: str,
    quintiles: Sequence[dict[str, Any]],
    system: dict[str, Any] | None,
    local: dict[str, Any] | None,
    place_name: str | None,
) -> tuple[Markup, str]:
    """Dots and 95% whiskers by IMD quintile, with the system (and place) rate as lines."""
    fig = new_figure(6.5, 3.0)
    ax = fig.subplots()
    shown = [(i, r) for i, r in enumerate(quintiles) if _shown(r)]
    if shown:
        ax.errorbar(
            [i for i, _ in shown],
            [r["dsr"] for _, r in shown],
            yerr=[
                [max(r["dsr"] - (r["dsr_lower"] or r["dsr"]), 0) for _, r in shown],
                [max((r["dsr_upper"] or r["dsr"]) - r["dsr"], 0) for _, r in shown],
            ],
            fmt="o", color=NHS_BLUE, ecolor=NHS_BLUE, capsize=4, markersize=6,
            label="IMD quintile (95% CI)",
        )  # fmt: skip
    if system is not None and _shown(system):
        ax.axhline(system["dsr"], color=NHS_DARK_GREY, linestyle="--", linewidth=1, label="System")
    if local is not None and _shown(local):
        ax.axhline(
            local["dsr"], color=NHS_WARM_YELLOW, linestyle="-", linewidth=1.5, label=place_name
        )
    ax.set_xticks(
        list(range(len(quintiles))),
        [QUINTILE_LABELS.get(str(r["group_value"]), str(r["group_value"])) for r in quintiles],
        fontsize=8,
    )
    ax.set_xlim(-0.5, max(len(quintiles), 1) - 0.5)
    ax.set_ylabel(f"age-standardised rate\n({unit})", fontsize=8)
    ax.set_xlabel("IMD quintile", fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="best")
    ax.spines[["top", "right"]].set_visible(False)

    parts = [
        f"quintile {QUINTILE_LABELS.get(str(r['group_value']), str(r['group_value']))} "
        f"{_rate(r['dsr'], bool(r['dsr_suppressed'])) or 'not available'}"
        for r in quintiles
    ]
    description = (
        f"Dot-and-whisker chart of the age-standardised rate for {label} ({unit}) with 95% "
        f"confidence intervals by IMD quintile across the system: " + "; ".join(parts) + "."
    )
    if system is not None and _shown(system):
        description += f" System rate {_rate(system['dsr'])}."
    if local is not None and place_name:
        description += f" {place_name} rate {_rate(local['dsr'], bool(local['dsr_suppressed']))}."
    if len(shown) < len(quintiles):
        description += " Suppressed rates (*) are not plotted."
    return figure_svg(fig, f"ineq-{key}", f"{label} by IMD quintile", description), description


def _slope_indices(engine: Engine) -> list[dict[str, Any]]:
    return [
        {
            "label": r["measure_label"],
            "unit": r["unit"],
            "sii": _rate(r["sii"]),
            "sii_ci": _interval(r["sii_lower"], r["sii_upper"]),
            "rii": _rate(r["rii"]),
            "rii_ci": _interval(r["rii_lower"], r["rii_upper"]),
        }
        for r in _rows(engine, _select("phm_inequality_index"))
    ]


def _percent_cell(row: dict[str, Any], prefix: str) -> str:
    """`49.4% (48.97 to 49.85), 24,875 of 50,340`, with "*" for anything suppressed."""

    def hidden(name: str) -> bool:
        return bool(row.get(f"{prefix}_{name}_suppressed"))

    percent = row[f"{prefix}_percent"]
    if percent is None and not hidden("percent"):
        return ""
    numerator = _count(row[f"{prefix}_numerator_count"], hidden("numerator_count"))
    denominator = _count(row[f"{prefix}_denominator_count"], hidden("denominator_count"))
    ci = _interval(row[f"{prefix}_lower"], row[f"{prefix}_upper"], hidden("lower"))
    return f"{_rate(percent, hidden('percent'))}% ({ci}), {numerator} of {denominator}"


def _core20plus5(engine: Engine) -> list[dict[str, Any]]:
    out = []
    for r in _rows(engine, _select("phm_core20plus5")):
        gap = r["gap_points"]
        out.append(
            {
                "area": r["area"],
                "indicator": r["indicator"],
                "note": r["note"],
                "core20": _percent_cell(r, "core20plus"),
                "rest": _percent_cell(r, "rest"),
                "gap": "" if gap is None and not r["gap_points_suppressed"]
                else _rate(gap, bool(r["gap_points_suppressed"])),
            }
        )  # fmt: skip
    return out


def _transitions(engine: Engine) -> dict[str, Any]:
    """Segment a year ago (rows) against segment now (columns), as published: a matrix of
    people, the diagonal being those who stayed, and the stayed/moved totals in words (a
    floor, "at least", when a cell is suppressed, since a suppressed count is not added)."""
    order = sorted(SEGMENTS, key=lambda s: s.lynn_number)
    labels = [f"{s.lynn_number}. {s.label}" for s in order]
    cells: dict[tuple[str, str], tuple[int | None, bool]] = {}
    for r in _rows(engine, _select("phm_segment_transitions")):
        cells[(r["from_segment"], r["to_segment"])] = (
            r["people_count"],
            bool(r["people_count_suppressed"]),
        )
    stayed = moved = 0
    hidden = False
    rows = []
    for s, label in zip(order, labels, strict=True):
        row = []
        for t in order:
            value, suppressed = cells.get((s.key, t.key), (None, False))
            hidden = hidden or suppressed
            if value is not None and not suppressed:
                if s.key == t.key:
                    stayed += value
                else:
                    moved += value
            row.append({"text": _count(value, suppressed) or "0", "stayed": s.key == t.key})
        rows.append({"label": label, "cells": row})
    floor = "at least " if hidden else ""
    summary = (
        f"{floor}{stayed:,} people stayed in the same segment and {floor}{moved:,} moved to "
        "another over the year"
    )
    return {"labels": labels, "rows": rows, "summary": summary, "any": bool(cells)}


# --- the model card --------------------------------------------------------------------------

_HEADING = re.compile(r"(#{1,6})\s+(.*)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]*)`")
_RULE_CELL = re.compile(r":?-{3,}:?")


def _inline(text: str) -> str:
    """Escaped text with `code` spans and **bold**; nothing else is interpreted."""
    parts = _CODE.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
        else:
            out.append(_BOLD.sub(r"<strong>\1</strong>", html.escape(part)))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(lines: Sequence[str]) -> str:
    rows = [_cells(line) for line in lines]
    header, body = rows[0], rows[1:]
    numeric = [False] * len(header)
    if body and all(_RULE_CELL.fullmatch(c) for c in body[0]):
        numeric = [c.endswith(":") for c in body[0]] + numeric[len(body[0]) :]
        body = body[1:]

    def cls(i: int) -> str:
        return ' class="num"' if i < len(numeric) and numeric[i] else ""

    head = "".join(f'<th scope="col"{cls(i)}>{_inline(c)}</th>' for i, c in enumerate(header))
    trs = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{_inline(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in body
    )
    # A wide table scrolls in its own box (focusable, named), not the page, on a phone.
    label = html.escape("Model card table: " + ", ".join(header), quote=True)
    return (
        f'<div class="scroll jd-scroll" tabindex="0" role="region" aria-label="{label}">'
        f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table></div>"
    )


def _blocks(lines: Iterable[str]) -> Iterable[tuple[str, list[str]]]:
    """Group lines into (kind, lines) blocks: heading, table, list or paragraph."""
    kind, block = "", list[str]()
    for raw in lines:
        line = raw.strip()
        if not line:
            new = ""
        elif _HEADING.fullmatch(line):
            new = "heading"
        elif line.startswith("|"):
            new = "table"
        elif line.startswith("- "):
            new = "list"
        else:
            new = "paragraph"
        if block and (new != kind or new == "heading"):
            yield kind, block
            block = []
        kind = new
        if line:
            block.append(line)
    if block:
        yield kind, block


def markdown_to_html(text: str, *, shift: int = 0) -> Markup:
    """The small Markdown subset model cards use (headings, paragraphs, `- ` lists, pipe
    tables, **bold**, `code`) as HTML; headings move down `shift` levels to fit the page."""
    out = []
    for kind, lines in _blocks(text.splitlines()):
        if kind == "heading":
            match = _HEADING.fullmatch(lines[0])
            assert match is not None
            level = min(len(match.group(1)) + shift, 6)
            out.append(f"<h{level}>{_inline(match.group(2))}</h{level}>")
        elif kind == "table":
            out.append(_table(lines))
        elif kind == "list":
            items = "".join(f"<li>{_inline(line[2:])}</li>" for line in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return Markup("\n".join(out))  # all text escaped in _inline
