"""The finance report: one self-contained HTML page from the `joinedup finance` tables.

Charts are inline SVG with a table beside each (distance from target by place, the allocation
path over the years, the control total waterfall, what-if effects); counts of people pass
disclosure control before they are shown. Sections appear for the tables the warehouse has.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from matplotlib.ticker import FuncFormatter, PercentFormatter
from pydantic import TypeAdapter, ValidationError
from sqlglot import exp

from joinedup.disclosure import DisclosurePolicy, control_count, describe
from joinedup.errors import ConfigurationError
from joinedup.finance.calendar import start_year
from joinedup.finance.capitation import index_dates
from joinedup.finance.money import money_text
from joinedup.finance.whatif import ACTIVITY_LABELS, Driver
from joinedup.finance.whatif import describe as describe_driver
from joinedup.reports.charts import NHS_BLUE, NHS_DARK_GREY, figure_svg, new_figure
from joinedup.reports.pages import page_style, template, write_page
from joinedup.warehouse import Engine
from joinedup.warehouse.schema import ACTIVITY_TYPES

TEMPLATE = "finance_report.html.j2"
NHS_LIGHT_BLUE = "#41b6e6"
NHS_WARM_YELLOW = "#ffb81c"
NHS_GREEN = "#007f3b"
NHS_RED = "#d5281b"
PLACE_COLOURS = ("#005eb8", "#41b6e6", "#ffb81c", "#007f3b", "#330072", "#ae2573", "#00a499")

COMPONENT_LABELS: dict[str, str] = {
    "general_and_acute": "General and acute",
    "community_services": "Community services",
    "mental_health": "Mental health",
    "maternity": "Maternity",
    "health_inequalities": "Health inequalities",
    "prescribing": "Prescribing",
    "final": "Overall",
    "primary_medical_care": "Primary medical care",
    "final_pmc": "Primary medical care (final)",
}
#: Points of delivery in words (the activity type each code stands for).
POD_LABELS: dict[str, str] = {
    code: ACTIVITY_LABELS[kind].capitalize().replace("A&e", "A&E").replace("Gp", "GP")
    for kind, code in ACTIVITY_TYPES.items()
}
LINE_LABELS: dict[str, str] = {
    "fixed": "Fixed element",
    "cquin_deduction": "CQUIN deduction",
    "elective_activity": "Elective activity",
    "elective_plan": "Elective plan (not paid)",
    "variable": "Variable element",
    "low_volume_block": "Low-volume block payment",
}
SECTOR_LABELS: dict[str, str] = {
    "primary_care": "Primary care",
    "community": "Community",
    "mental_health": "Mental health",
    "acute": "Acute",
    "continuing_healthcare": "Continuing healthcare",
    "prescribing": "Prescribing",
}


def write_report(engine: Engine, output: Path, policy: DisclosurePolicy | None = None) -> Path:
    """Write the finance report from the warehouse's finance tables to `output`."""
    context = report_context(engine, policy)
    context["style"] = page_style()
    return write_page(template(TEMPLATE).render(r=context), output)


def report_context(engine: Engine, policy: DisclosurePolicy | None = None) -> dict[str, Any]:
    """Everything the finance report shows; sections appear for the tables the warehouse has."""
    have = set(engine.table_names())
    if "finance_run" not in have:
        raise ConfigurationError("no finance run in this warehouse: run joinedup finance run first")
    sdc = policy or DisclosurePolicy()
    run = _rows(engine, "finance_run")[-1]
    ics = _rows(engine, "ics")[0] if "ics" in have else {}
    settings = yaml.safe_load(run.get("settings_yaml") or "") or {}
    context: dict[str, Any] = {
        "title": f"{ics.get('ics_name', 'Integrated Care System')}: the single pot",
        "ics_name": ics.get("ics_name", ""),
        "ics_code": ics.get("ics_code", ""),
        "synthetic": ics.get("is_real") is False,
        "run": run,
        "steps": json.loads(run.get("steps") or "[]"),
        "need_source": run.get("need_source", ""),
        "version": _version(),
        "disclosure_rule": describe(sdc),
    }
    if "finance_need_index" in have:
        context["need"] = _need(engine, sdc, settings)
        context["need"]["period"] = _need_period(engine, str(context["need_source"]))
    if "finance_allocation" in have:
        context["allocation"] = _allocation(engine, settings)
    if "finance_what_if" in have:
        context["what_if"] = _what_if(engine, settings)
    if "finance_control_total" in have:
        context["control_total"] = _control_total(engine)
    if {"finance_guarantee", "finance_place_budget", "finance_pooled_budget"} & have:
        context["budgets"] = _budgets(engine, have)
    if "finance_payment_line" in have:
        context["payments"] = _payments(engine)
    if "finance_risk_share" in have:
        context["risk_share"] = _risk_share(engine, settings)
    return context


# --- reading ---------------------------------------------------------------------------------


def _rows(engine: Engine, name: str, where: exp.Expr | None = None) -> list[dict[str, Any]]:
    query = exp.select("*").from_(name)
    if where is not None:
        query = query.where(where)
    rows: list[dict[str, Any]] = engine.execute(query).to_pylist()
    return rows


def _version() -> str:
    try:
        return metadata.version("joinedup")
    except metadata.PackageNotFoundError:
        return "unknown"


def _percent(value: float | None, *, signed: bool = True) -> str:
    if value is None:
        return ""
    if round(abs(value) * 1000) == 0:
        return "0.0%"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _published(value: int | None, policy: DisclosurePolicy) -> int | None:
    """A count as published: disclosure-controlled, None when suppressed or missing."""
    return control_count(int(value), policy) if value is not None else None


def _count(value: int | None, policy: DisclosurePolicy) -> str:
    published = _published(value, policy)
    return "*" if published is None else f"{published:,}"


def _need_period(engine: Engine, need_source: str) -> str:
    """The period need describes, in words: the population health run's index date when need
    was estimated from the population, the settings' weights otherwise."""
    if need_source != "population" or "phm_run" not in set(engine.table_names()):
        return f"Need from {need_source or 'the settings'}, as at the finance run"
    index_date, _ = index_dates(engine)
    return (
        f"Practice lists at the index date {index_date.isoformat()}; the need model from cost "
        f"and deaths in the year before it ({(index_date - timedelta(days=365)).isoformat()} "
        f"to {(index_date - timedelta(days=1)).isoformat()})"
    )


# --- need ------------------------------------------------------------------------------------


def _need(engine: Engine, policy: DisclosurePolicy, settings: dict[str, Any]) -> dict[str, Any]:
    rows = _rows(engine, "finance_need_index")
    places = [r for r in rows if r["level"] == "place"]
    pcns = [r for r in rows if r["level"] == "pcn"]
    pcn_names: dict[str, str] = {}
    if "pcn" in set(engine.table_names()):
        pcn_names = {r["pcn_code"]: r["pcn_name"] for r in _rows(engine, "pcn")}
    components = [c for c in COMPONENT_LABELS if f"{c}_index" in (places[0] if places else {})]
    table = [
        {
            "code": r["code"],
            "name": r["name"],
            "population": _count(round(r["registered_count"]), policy),
            "indices": [f"{r[f'{c}_index']:.3f}" for c in components],
            # Exact figures, for downloads and the API (the population as published).
            "place_code": r["code"],
            "population_count": _published(round(r["registered_count"]), policy),
            **{f"{c}_index": r[f"{c}_index"] for c in components},
        }
        for r in places
    ]
    pcn_table = [
        {
            "code": r["code"],
            "name": pcn_names.get(r["code"]) or r["name"],
            "parent": r["parent_code"],
            "population": _count(round(r["registered_count"]), policy),
            "final": f"{r.get('final_index', float('nan')):.3f}",
            "pcn_code": r["code"],
            "population_count": _published(round(r["registered_count"]), policy),
            "final_index": r.get("final_index"),
        }
        for r in pcns
    ]
    fig = new_figure(8.5, 0.6 + 0.55 * len(places))
    ax = fig.subplots()
    y = list(range(len(places)))
    overall = [r.get("final_index", 1.0) for r in places]
    ax.barh(y, [v - 1 for v in overall], left=1, color=NHS_BLUE, height=0.55, label="overall")
    markers = {"general_and_acute": "o", "mental_health": "s", "health_inequalities": "^"}
    for component, marker in markers.items():
        if component in components:
            ax.scatter([r[f"{component}_index"] for r in places], y, marker=marker, zorder=3,
                       color=NHS_WARM_YELLOW if marker == "o" else NHS_DARK_GREY, s=28,
                       label=COMPONENT_LABELS[component].lower())  # fmt: skip
    ax.axvline(1, color="black", linewidth=0.7)
    ax.set_yticks(y, [r["name"] for r in places], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("need index (1 = the system's need per head)")
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    ranked = sorted(places, key=lambda r: -r.get("final_index", 1.0))
    description = (
        "Bar chart of each place's overall need index against the system average of 1, with "
        "markers for general and acute, mental health and health inequalities. Highest: "
        + ", ".join(f"{r['name']} {r.get('final_index', 1.0):.3f}" for r in ranked)
        + ". The table below gives every component."
    )
    model = _model(engine, policy) if "finance_cost_curve" in set(engine.table_names()) else None
    return {
        "components": [COMPONENT_LABELS[c] for c in components],
        "component_keys": components,
        "rows": table,
        "pcns": pcn_table,
        "svg": figure_svg(fig, "need", "Need index by place", description),
        "description": description,
        "model": model,
        "capitation": settings.get("capitation", {}),
    }


def _model(engine: Engine, policy: DisclosurePolicy) -> dict[str, Any]:
    curves = _rows(engine, "finance_cost_curve")
    by_component: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in curves:
        by_component[r["component"]].append(r)
    fig = new_figure(8.5, 3.6)
    axes = fig.subplots(1, 2, sharey=False)
    shown = [("general_and_acute", axes[0]), ("community_services", axes[1])]
    for component, ax in shown:
        for sex, colour in (("female", NHS_BLUE), ("male", NHS_LIGHT_BLUE)):
            points = [r for r in by_component.get(component, []) if r["sex"] == sex]
            ax.plot(
                [r["age_band"] for r in points],
                [float(r["cost_per_head_gbp"] or 0) for r in points],
                color=colour, marker="o", markersize=3, label=f"{sex}s",
            )  # fmt: skip
        ax.set_title(COMPONENT_LABELS[component], fontsize=9)
        ax.tick_params(axis="x", labelrotation=90, labelsize=6)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"£{v:,.0f}"))
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("cost per head in the year")
    axes[0].legend(fontsize=7, frameon=False)
    description = (
        "Line charts of the cost per head by five-year age band, women and men, for general "
        "and acute and community services: the age-sex cost curves of the need model. The "
        "table below gives every component's curve."
    )
    bands = list(dict.fromkeys(r["age_band"] for r in curves))
    cost = {(r["component"], r["age_band"], r["sex"]): r for r in curves}
    curve_table = []
    for band in bands:
        cells = []
        exact: dict[str, Decimal | None] = {}
        for component in by_component:
            for sex in ("female", "male"):
                found = cost.get((component, band, sex))
                value = None if found is None else found["cost_per_head_gbp"]
                cells.append(
                    "" if found is None else "*" if value is None else money_text(value, "£")
                )
                exact[f"{component}_{sex}_gbp"] = value
        curve_table.append({"band": band, "cells": cells, "age_band": band, **exact})
    ratios = _rows(engine, "finance_need_adjustment")
    ratio_table: dict[tuple[int, str], dict[str, float | None]] = defaultdict(dict)
    for r in ratios:
        ratio_table[(r["imd_quintile"], r["ltc_band"])][r["component"]] = r["ratio"]
    hi = _rows(engine, "finance_health_inequalities")
    return {
        "svg": figure_svg(fig, "curves", "Cost curves by age and sex", description),
        "description": description,
        "curve_components": [COMPONENT_LABELS[c] for c in by_component],
        "curve_keys": list(by_component),
        "curves": curve_table,
        "ratio_components": [COMPONENT_LABELS[c] for c in by_component],
        "ratio_keys": list(by_component),
        "ratios": [
            {
                "quintile": _quintile(q),
                "ltc": band,
                "cells": [_ratio_text(values, c) for c in by_component],
                "imd_quintile": q,
                "ltc_band": band,
                **{f"{c}_ratio": values.get(c) for c in by_component},
            }
            for (q, band), values in sorted(ratio_table.items())
        ],
        "smr": [
            {
                "quintile": _quintile(r["imd_quintile"]),
                "people": _count(r["people_count"], policy),
                "deaths": "*" if r["deaths_count"] is None else f"{r['deaths_count']:,}",
                "smr": "*" if r["smr"] is None else f"{r['smr']:.2f}",
                # Exact figures as published (already disclosure-controlled when stored).
                "imd_quintile": r["imd_quintile"],
                "people_count": _published(r["people_count"], policy),
                "deaths_count": r["deaths_count"],
                "standardised_mortality_ratio": r["smr"],
            }
            for r in hi
        ],
    }


def _ratio_text(values: dict[str, float | None], component: str) -> str:
    """A need adjustment ratio as shown: two places, * when suppressed, empty when none."""
    if component not in values:
        return ""
    value = values[component]
    return "*" if value is None else f"{value:.2f}"


def _ratio(part: Decimal, whole: Decimal) -> float:
    return float(part / whole) if whole else 0.0


def _quintile(q: int) -> str:
    return {0: "unknown", 1: "1 (most deprived)", 5: "5 (least deprived)"}.get(q, str(q))


# --- allocation ------------------------------------------------------------------------------


def _allocation(engine: Engine, settings: dict[str, Any]) -> dict[str, Any]:
    rows = _rows(engine, "finance_allocation")
    years = sorted({r["financial_year"] for r in rows}, key=start_year)
    places = list(dict.fromkeys(r["place_code"] for r in rows))
    names = {r["place_code"]: r["place_name"] for r in rows}
    by = {(r["financial_year"], r["place_code"]): r for r in rows}
    first = years[0]

    # Distance from target: the baseline against the first year's target, then each year.
    fig = new_figure(8.5, 0.8 + 0.7 * len(places))
    ax = fig.subplots()
    height = 0.8 / (len(years) + 1)
    series: list[tuple[str, list[float]]] = [
        (
            f"baseline ({settings.get('allocation', {}).get('baseline_year', 'baseline')})",
            [
                float(
                    (by[(first, p)]["baseline_gbp"] - by[(first, p)]["target_gbp"])
                    / by[(first, p)]["target_gbp"]
                )
                for p in places
            ],
        ),
        *[(y, [by[(y, p)]["distance_from_target"] for p in places]) for y in years],
    ]
    colours = [NHS_DARK_GREY, *PLACE_COLOURS]
    for i, (label, values) in enumerate(series):
        ax.barh([j + i * height for j in range(len(places))], values, height=height,
                color=colours[i % len(colours)], label=label)  # fmt: skip
    ax.axvline(0, color="black", linewidth=0.7)
    ax.set_yticks([j + height * len(years) / 2 for j in range(len(places))],
                  [names[p] for p in places], fontsize=8)  # fmt: skip
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("distance from target (negative: under target)")
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    last = years[-1]
    distance_text = "; ".join(
        f"{names[p]} {_percent(start)} to {_percent(by[(last, p)]['distance_from_target'])}"
        for p, start in zip(places, series[0][1], strict=True)
    )
    distance_description = (
        f"Grouped bar chart of each place's distance from target, from its baseline to {last}: "
        + distance_text
        + "."
    )

    # The path: allocation and target per place over the years.
    fig2 = new_figure(8.5, 3.8)
    ax2 = fig2.subplots()
    labels = [settings.get("allocation", {}).get("baseline_year", "baseline"), *years]
    for i, p in enumerate(places):
        colour = PLACE_COLOURS[i % len(PLACE_COLOURS)]
        values = [float(by[(first, p)]["baseline_gbp"]) / 1e6] + [
            float(by[(y, p)]["allocation_gbp"]) / 1e6 for y in years
        ]
        target = [float(by[(y, p)]["target_gbp"]) / 1e6 for y in years]
        ax2.plot(labels, values, color=colour, marker="o", markersize=3, label=names[p])
        ax2.plot(labels[1:], target, color=colour, linestyle="--", linewidth=0.9)
    ax2.set_ylabel("£ million (dashed: target)")
    ax2.legend(fontsize=7, frameon=False, ncol=2)
    ax2.spines[["top", "right"]].set_visible(False)
    path_description = (
        "Line chart of each place's allocation in £ million from the baseline year through "
        f"{last}, with its target dashed. The table below gives every figure."
    )

    table = [
        {
            "year": r["financial_year"],
            "place": names[r["place_code"]],
            "baseline": money_text(r["baseline_gbp"], "£m"),
            "target": money_text(r["target_gbp"], "£m"),
            "allocation": money_text(r["allocation_gbp"], "£m"),
            "head_count": money_text(r["head_count_gbp"], "£m"),
            "distance": _percent(r["distance_from_target"]),
            "growth": _percent(r["growth"]),
            # Exact figures, for downloads and the API.
            "place_code": r["place_code"],
            "baseline_gbp": r["baseline_gbp"],
            "target_gbp": r["target_gbp"],
            "allocation_gbp": r["allocation_gbp"],
            "head_count_gbp": r["head_count_gbp"],
            "distance_from_target": r["distance_from_target"],
            "growth_rate": r["growth"],
        }
        for y in years
        for r in (by[(y, p)] for p in places)
    ]
    head_count = []
    for p in places:
        r = by[(first, p)]
        gap = r["target_gbp"] - r["head_count_gbp"]
        head_count.append(
            {
                "place": names[p],
                "target": money_text(r["target_gbp"], "£m"),
                "head_count": money_text(r["head_count_gbp"], "£m"),
                "difference": money_text(gap, "£m", signed=True),
                "share": _percent(float(gap / r["head_count_gbp"])),
                "gap": gap,
                "ratio": float(gap / r["head_count_gbp"]),
                "difference_gbp": gap,
                "difference_ratio": float(gap / r["head_count_gbp"]),
                "place_code": p,
                "target_gbp": r["target_gbp"],
                "head_count_gbp": r["head_count_gbp"],
            }
        )
    ranked = sorted(head_count, key=lambda row: -row["gap"])
    parts = [
        f"{row['place']} {money_text(abs(row['gap']), '£m')} ({abs(row['ratio']):.1%}) "
        + ("more" if row["gap"] > 0 else "less")
        for row in ranked
    ]
    head_count_summary = (
        f"Sharing the {first} pot by need rather than by head count gives "
        + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])
        + " than an equal amount per person would."
    )
    sectors = {
        (r["place_code"], r["sector"]): r["allocation_gbp"]
        for r in _rows(engine, "finance_sector_allocation")
        if r["financial_year"] == first
    }
    sector_names = list(dict.fromkeys(s for _, s in sectors))
    sector_table = [
        {
            "place": names.get(p, p),
            "cells": [money_text(sectors.get((p, s)), "£m") for s in sector_names],
            "place_code": p,
            **{f"{s}_gbp": sectors.get((p, s)) for s in sector_names},
        }
        for p in places
    ]
    return {
        "first_year": first,
        "last_year": last,
        "distance_svg": figure_svg(
            fig, "distance", "Distance from target by place", distance_description
        ),
        "distance_description": distance_description,
        "path_svg": figure_svg(fig2, "path", "Allocation path over the years", path_description),
        "path_description": path_description,
        "rows": table,
        "head_count": head_count,
        "head_count_summary": head_count_summary,
        "sectors": [SECTOR_LABELS.get(s, s) for s in sector_names],
        "sector_keys": sector_names,
        "sector_rows": sector_table,
        "pace": settings.get("allocation", {}).get("pace", {}),
    }


# --- guarantees and budgets -----------------------------------------------------------------


def _budgets(engine: Engine, have: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "finance_guarantee" in have:
        out["guarantees"] = [
            {
                "name": "Mental Health Investment Standard"
                if r["guarantee"] == "mental_health_investment_standard"
                else "Community services guarantee",
                "year": r["financial_year"],
                "previous": money_text(r["previous_gbp"], "£"),
                "minimum": money_text(r["minimum_gbp"], "£"),
                "planned": money_text(r["planned_gbp"], "£"),
                "margin": money_text(r["margin_gbp"], "£", signed=True),
                "allocation_growth": _percent(r["allocation_growth"]),
                "spend_growth": _percent(r["spend_growth"]),
                "met": r["met"],
                "explanation": r["explanation"],
                # Exact figures, for downloads and the API.
                "guarantee": r["guarantee"],
                **{k: r[k] for k in ("previous_gbp", "minimum_gbp", "planned_gbp", "margin_gbp")},
                "allocation_growth_rate": r["allocation_growth"],
                "spend_growth_rate": r["spend_growth"],
            }
            for r in _rows(engine, "finance_guarantee")
        ]
    if "finance_place_budget" in have:
        rows = _rows(engine, "finance_place_budget")
        places = list(dict.fromkeys(r["place_code"] for r in rows))
        names = {}
        if "place" in have:
            names = {r["place_code"]: r["place_name"] for r in _rows(engine, "place")}
        out["delegation_year"] = rows[0]["financial_year"] if rows else ""
        totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for r in rows:
            for key in ("allocation_gbp", "delegated_gbp", "retained_gbp"):
                totals[r["place_code"]][key] += r[key]
        out["delegation"] = [
            {
                "place": names.get(p, p),
                "allocation": money_text(t["allocation_gbp"], "£m"),
                "delegated": money_text(t["delegated_gbp"], "£m"),
                "retained": money_text(t["retained_gbp"], "£m"),
                "share": _percent(share, signed=False),
                "place_code": p,
                **t,
                "delegated_share": share,
            }
            for p in places
            for t in [dict(totals[p])]
            for share in [_ratio(t["delegated_gbp"], t["allocation_gbp"])]
        ]
    if "finance_pooled_budget" in have:
        rows = _rows(engine, "finance_pooled_budget")
        organisations = _organisation_names(engine, have)
        partners = organisations | {"nhs": "NHS"}
        pools = list(dict.fromkeys(r["pool"] for r in rows))
        out["pools"] = [
            {
                "name": pool,
                "kind": "Better Care Fund" if mine[0]["kind"] == "bcf" else "Section 75",
                "total": money_text(sum(r["contribution_gbp"] for r in mine), "£"),
                "year": mine[0]["financial_year"],
                "partners": [
                    {
                        "partner": partners.get(r["partner"], r["partner"]),
                        "code": r["partner"] if r["partner"] in organisations else "",
                        "amount": money_text(r["contribution_gbp"], "£"),
                        "share": _percent(r["share_of_pool"], signed=False),
                        "contribution_gbp": r["contribution_gbp"],
                        "contribution_share": r["share_of_pool"],
                    }
                    for r in mine
                ],
                "minimum": next(
                    (
                        _named(r["explanation"], r["partner"], partners)
                        for r in mine
                        if r["nhs_minimum_gbp"] is not None
                    ),
                    "",
                ),
            }
            for pool in pools
            for mine in [[r for r in rows if r["pool"] == pool]]
        ]
    return out


# --- payments -------------------------------------------------------------------------------


def _organisation_names(engine: Engine, have: set[str]) -> dict[str, str]:
    if "organisation" not in have:
        return {}
    return {r["organisation_code"]: r["organisation_name"] for r in _rows(engine, "organisation")}


def _named(explanation: str, code: str, names: dict[str, str]) -> str:
    """An explanation that opens with a code ("ZZL01: ...") opened with the name instead."""
    if code in names and explanation.startswith(code + ":"):
        return names[code] + explanation[len(code) :]
    return explanation


def _payments(engine: Engine) -> list[dict[str, Any]]:
    rows = _rows(engine, "finance_payment_line")
    names = _organisation_names(engine, set(engine.table_names()))

    def key(r: dict[str, Any]) -> tuple[str, str, str]:
        return (r["provider_code"], r["financial_year"], r["rules"])

    keys = list(dict.fromkeys(key(r) for r in rows))
    return [
        {
            "provider": names.get(code, code),
            "code": code,
            "year": year,
            "rules": rules,
            "total": money_text(sum(r["amount_gbp"] for r in mine), "£"),
            "lines": [
                {"line": LINE_LABELS.get(r["line"], r["line"].replace("_", " ")),
                 "pod": POD_LABELS.get(r["point_of_delivery"] or "", r["point_of_delivery"] or ""),
                 "pod_code": r["point_of_delivery"] or "",
                 "amount": money_text(r["amount_gbp"], "£"), "explanation": r["explanation"],
                 "line_code": r["line"], "amount_gbp": r["amount_gbp"]}
                for r in mine
            ],
        }
        for code, year, rules in keys
        for mine in [[r for r in rows if key(r) == (code, year, rules)]]
    ]  # fmt: skip


# --- risk share -----------------------------------------------------------------------------


def _risk_share(engine: Engine, settings: dict[str, Any]) -> dict[str, Any]:
    rows = _rows(engine, "finance_risk_share")
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    parties = list(dict.fromkeys(r["party_name"] for r in rows))
    fig = new_figure(8.5, 0.8 + 0.55 * len(parties))
    axes = fig.subplots(1, len(scenarios), sharey=True, squeeze=False)[0]
    for ax, scenario in zip(axes, scenarios, strict=True):
        mine = [r for r in rows if r["scenario"] == scenario]
        y = list(range(len(mine)))
        ax.barh([i - 0.18 for i in y], [-float(r["variance_gbp"]) / 1e6 for r in mine],
                height=0.35, color=NHS_LIGHT_BLUE, label="variance")  # fmt: skip
        ax.barh([i + 0.18 for i in y], [-float(r["final_gbp"]) / 1e6 for r in mine],
                height=0.35, color=NHS_BLUE, label="after sharing")  # fmt: skip
        ax.axvline(0, color="black", linewidth=0.7)
        ax.set_title(scenario, fontsize=9)
        ax.set_xlabel("£ million (underspend positive)", fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_yticks(range(len(parties)), parties, fontsize=7)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=7, frameon=False)
    description = (
        "Bar charts, one per scenario, of each party's variance (underspend positive, "
        "overspend negative) and its "
        "position after the risk share; the tables below give every figure and the sums."
    )
    agreement = settings.get("risk_share", {}).get("agreement", {})
    return {
        "name": agreement.get("name", ""),
        "retained": f"{float(agreement.get('retained_share') or 0):.0%}",
        "svg": figure_svg(fig, "risk-share", "Risk share by scenario", description),
        "description": description,
        "scenarios": [
            {
                "name": s,
                "variance": money_text(
                    -sum(r["variance_gbp"] for r in rows if r["scenario"] == s), "£", signed=True
                ),
                "rows": [
                    {
                        "party": r["party_name"],
                        "kind": r["party_kind"],
                        "variance": money_text(-r["variance_gbp"], "£", signed=True),
                        "retained": money_text(-r["retained_gbp"], "£", signed=True),
                        "pool_share": money_text(-r["pool_share_gbp"], "£", signed=True),
                        "limit": money_text(
                            -(r["limit_adjustment_gbp"] + r["residual_gbp"]), "£", signed=True
                        ),
                        "final": money_text(-r["final_gbp"], "£", signed=True),
                        "explanation": r["explanation"],
                        # Exact, with the page's sign: an underspend or gain is positive.
                        "scenario": s,
                        "party_code": r["party_code"],
                        "variance_gbp": -r["variance_gbp"],
                        "kept_gbp": -r["retained_gbp"],
                        "pool_share_gbp": -r["pool_share_gbp"],
                        "limits_gbp": -(r["limit_adjustment_gbp"] + r["residual_gbp"]),
                        "final_gbp": -r["final_gbp"],
                    }
                    for r in rows
                    if r["scenario"] == s
                ],
            }
            for s in scenarios
        ],
    }


# --- control total --------------------------------------------------------------------------


def _control_total(engine: Engine) -> dict[str, Any]:
    positions = _rows(engine, "finance_control_total")
    steps = sorted(_rows(engine, "finance_control_total_waterfall"), key=lambda r: r["step"])
    variances = _rows(engine, "finance_variance")
    system = next(r for r in positions if r["organisation_code"] == "SYSTEM")
    fig = new_figure(8.5, 3.8)
    ax = fig.subplots()
    labels, bottoms, heights, colours = [], [], [], []
    previous = Decimal(0)
    for i, step in enumerate(steps):
        amount, running = step["amount_gbp"], step["running_total_gbp"]
        first_or_last = i in (0, len(steps) - 1)
        labels.append(step["label"])
        if first_or_last:
            bottoms.append(0.0)
            heights.append(float(running) / 1e6)
            colours.append(NHS_BLUE)
        else:
            bottoms.append(float(previous) / 1e6)
            heights.append(float(amount) / 1e6)
            colours.append(NHS_GREEN if amount >= 0 else NHS_RED)
        previous = running
    x = list(range(len(steps)))
    ax.bar(x, heights, bottom=bottoms, color=colours, width=0.6)
    ax.axhline(0, color="black", linewidth=0.7)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("£ million (surplus above zero)")
    ax.spines[["top", "right"]].set_visible(False)
    description = (
        f"Waterfall chart of the system's {system['financial_year']} position: from the planned "
        f"surplus of {money_text(steps[0]['running_total_gbp'], '£')} through "
        + "; ".join(
            f"{s['label'].lower()} {money_text(s['amount_gbp'], '£', signed=True)}"
            for s in steps[1:-1]
        )
        + f" to a forecast outturn of {money_text(steps[-1]['running_total_gbp'], '£')}."
    )
    return {
        "year": system["financial_year"],
        "rule": system["rule"],
        "explanation": str(system["explanation"]).replace(" (SYSTEM)", "", 1),
        "svg": figure_svg(fig, "waterfall", "Control total waterfall", description),
        "description": description,
        "rows": [
            {
                "name": r["organisation_name"],
                "months": r["months_reported_count"],
                "plan_ytd": money_text(r["plan_ytd_gbp"], "£"),
                "actual_ytd": money_text(r["actual_ytd_gbp"], "£"),
                "run_rate": money_text(r["forecast_run_rate_gbp"], "£"),
                "trend": money_text(r["forecast_trend_gbp"], "£"),
                "plan": money_text(r["plan_full_year_gbp"], "£"),
                "variance": money_text(r["forecast_variance_gbp"], "£", signed=True),
                "must": "yes" if r["must_break_even"] else "no",
                "meets": ""
                if r["meets_rule"] is None
                else ("met" if r["meets_rule"] else "not met"),
                "system": r["organisation_code"] == "SYSTEM",
                "organisation_code": r["organisation_code"],
                **{
                    k: r[k]
                    for k in (
                        "plan_ytd_gbp",
                        "actual_ytd_gbp",
                        "forecast_run_rate_gbp",
                        "forecast_trend_gbp",
                        "plan_full_year_gbp",
                        "forecast_variance_gbp",
                    )
                },
            }
            for r in positions
        ],
        "method": system["forecast_method"],
        "steps": [
            {
                "label": r["label"],
                "amount": money_text(r["amount_gbp"], "£", signed=True),
                "running": money_text(r["running_total_gbp"], "£"),
                "step": r["step"],
                "amount_gbp": r["amount_gbp"],
                "running_total_gbp": r["running_total_gbp"],
            }
            for r in steps
        ],
        "causes": [
            {
                "category": r["category"].replace("_", " ").capitalize(),
                "variance": money_text(r["variance_gbp"], "£", signed=True),
                "favourable": r["favourable"],
                "category_code": r["category"],
                "variance_gbp": r["variance_gbp"],
            }
            for r in variances
            if r["organisation_code"] == "SYSTEM"
        ],
    }


# --- what-if ---------------------------------------------------------------------------------


def _scenario_words(rows: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, str]:
    """Each stored scenario in words with places named, from the settings that made it (the
    description stored with it otherwise)."""
    words = {r["scenario"]: str(r["description"] or r["scenario"]) for r in rows}
    names = {r["place_code"]: r["place_name"] for r in rows}
    adapter: TypeAdapter[Any] = TypeAdapter(Driver)
    for raw in settings.get("what_if") or []:
        try:
            driver = adapter.validate_python(raw)
        except ValidationError:
            continue  # settings of an older version: keep the stored description
        if driver.name in words:
            words[driver.name] = describe_driver(driver, names)
    return words


def _what_if(engine: Engine, settings: dict[str, Any]) -> dict[str, Any]:
    rows = _rows(engine, "finance_what_if")
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    places = list(dict.fromkeys(r["place_name"] for r in rows))
    words = _scenario_words(rows, settings)
    fig = new_figure(8.5, 0.8 + 0.6 * len(places))
    ax = fig.subplots()
    height = 0.8 / max(len(scenarios), 1)
    for i, s in enumerate(scenarios):
        values = [float(r["target_change_gbp"]) / 1e6 for r in rows if r["scenario"] == s]
        ax.barh([j + i * height for j in range(len(values))], values, height=height,
                color=PLACE_COLOURS[i % len(PLACE_COLOURS)], label=words[s])  # fmt: skip
    ax.axvline(0, color="black", linewidth=0.7)
    ax.set_yticks(
        [j + height * (len(scenarios) - 1) / 2 for j in range(len(places))], places, fontsize=8
    )
    ax.invert_yaxis()
    ax.set_xlabel("change in target, £ million")
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    description = (
        "Grouped bar chart of the change in each place's target under each what-if scenario. "
        "The table below gives the cost, need index, target and allocation effects."
    )
    return {
        "svg": figure_svg(fig, "what-if", "What-if: change in target by place", description),
        "description": description,
        "scenarios": [
            {
                "name": s,
                "description": words[s],
                "year": next(r["financial_year"] for r in rows if r["scenario"] == s),
                "rows": [
                    {
                        "place": r["place_name"],
                        "cost": money_text(r["cost_change_gbp"], "£", signed=True),
                        "index": f"{r['baseline_index']:.3f} → {r['scenario_index']:.3f}",
                        "target": money_text(r["target_change_gbp"], "£", signed=True),
                        "allocation": money_text(r["allocation_change_gbp"], "£", signed=True),
                        "scenario": s,
                        "place_code": r["place_code"],
                        **{
                            k: r[k]
                            for k in (
                                "cost_change_gbp",
                                "baseline_index",
                                "scenario_index",
                                "target_change_gbp",
                                "allocation_change_gbp",
                            )
                        },
                    }
                    for r in rows
                    if r["scenario"] == s
                ],
            }
            for s in scenarios
        ],
    }


__all__: Sequence[str] = ("write_report",)
