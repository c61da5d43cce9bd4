"""The finance report: one self-contained HTML page from the `joinedup finance` tables.

Charts are inline SVG with a table beside each (distance from target by place, the allocation
path over the years, the control total waterfall, what-if effects); counts of people pass
disclosure control before they are shown. Sections appear for the tables the warehouse has.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from matplotlib.ticker import FuncFormatter, PercentFormatter
from sqlglot import exp

from joinedup.disclosure import DisclosurePolicy, control_count, describe
from joinedup.errors import ConfigurationError
from joinedup.finance.calendar import start_year
from joinedup.reports.charts import NHS_BLUE, NHS_DARK_GREY, figure_svg, new_figure
from joinedup.reports.pages import page_style, template, write_page
from joinedup.warehouse import Engine

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
    if "finance_allocation" in have:
        context["allocation"] = _allocation(engine, settings)
    if "finance_what_if" in have:
        context["what_if"] = _what_if(engine)
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


def _gbp(value: Decimal | float | int | None, *, signed: bool = False) -> str:
    if value is None:
        return ""
    number = Decimal(value)
    sign = "-" if number < 0 else ("+" if signed and number > 0 else "")
    return f"{sign}£{abs(number):,.0f}"


def _millions(value: Decimal | float | int | None, *, signed: bool = False) -> str:
    """Pounds in millions to one decimal; no minus sign on a figure that rounds to zero."""
    if value is None:
        return ""
    number = Decimal(value)
    if round(abs(number) / 100_000) == 0:
        return "£0.0m"
    sign = "-" if number < 0 else ("+" if signed else "")
    return f"{sign}£{abs(number) / 1_000_000:,.1f}m"


def _short(value: Decimal | float | int | None, *, signed: bool = False) -> str:
    """Pounds in thousands below £10m (a surplus of £0.3m reads better as £312k), else in
    millions; no minus sign on a figure that rounds to zero."""
    if value is None:
        return ""
    number = Decimal(value)
    if abs(number) >= 10_000_000:
        return _millions(number, signed=signed)
    if round(abs(number) / 1000) == 0:
        return "£0k"
    sign = "-" if number < 0 else ("+" if signed else "")
    return f"{sign}£{abs(number) / 1000:,.0f}k"


def _percent(value: float | None, *, signed: bool = True) -> str:
    if value is None:
        return ""
    if round(abs(value) * 1000) == 0:
        return "0.0%"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _count(value: int | None, policy: DisclosurePolicy) -> str:
    published = control_count(int(value), policy) if value is not None else None
    return "*" if published is None else f"{published:,}"


# --- need ------------------------------------------------------------------------------------


def _need(engine: Engine, policy: DisclosurePolicy, settings: dict[str, Any]) -> dict[str, Any]:
    rows = _rows(engine, "finance_need_index")
    places = [r for r in rows if r["level"] == "place"]
    pcns = [r for r in rows if r["level"] == "pcn"]
    components = [c for c in COMPONENT_LABELS if f"{c}_index" in (places[0] if places else {})]
    table = [
        {
            "code": r["code"],
            "name": r["name"],
            "population": _count(round(r["registered_count"]), policy),
            "indices": [f"{r[f'{c}_index']:.3f}" for c in components],
        }
        for r in places
    ]
    pcn_table = [
        {
            "code": r["code"],
            "parent": r["parent_code"],
            "population": _count(round(r["registered_count"]), policy),
            "final": f"{r.get('final_index', float('nan')):.3f}",
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
        for component in by_component:
            for sex in ("female", "male"):
                found = cost.get((component, band, sex))
                value = None if found is None else found["cost_per_head_gbp"]
                cells.append("" if found is None else "*" if value is None else _gbp(value))
        curve_table.append({"band": band, "cells": cells})
    ratios = _rows(engine, "finance_need_adjustment")
    ratio_table: dict[tuple[int, str], dict[str, str]] = defaultdict(dict)
    for r in ratios:
        ratio_table[(r["imd_quintile"], r["ltc_band"])][r["component"]] = (
            "*" if r["ratio"] is None else f"{r['ratio']:.2f}"
        )
    hi = _rows(engine, "finance_health_inequalities")
    return {
        "svg": figure_svg(fig, "curves", "Cost curves by age and sex", description),
        "description": description,
        "curve_components": [COMPONENT_LABELS[c] for c in by_component],
        "curves": curve_table,
        "ratio_components": [COMPONENT_LABELS[c] for c in by_component],
        "ratio_keys": list(by_component),
        "ratios": [
            {
                "quintile": _quintile(q),
                "ltc": band,
                "cells": [values.get(c, "") for c in by_component],
            }
            for (q, band), values in sorted(ratio_table.items())
        ],
        "smr": [
            {
                "quintile": _quintile(r["imd_quintile"]),
                "people": _count(r["people_count"], policy)
                if r["people_count"] is not None
                else "*",
                "deaths": "*" if r["deaths_count"] is None else f"{r['deaths_count']:,}",
                "smr": "*" if r["smr"] is None else f"{r['smr']:.2f}",
            }
            for r in hi
        ],
    }


def _ratio(part: Decimal, whole: Decimal) -> float:
    return float(part / whole) if whole else 0.0


def _distance(allocation: Decimal, target: Decimal) -> float:
    return float((allocation - target) / target) if target else 0.0


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
            "baseline": _millions(r["baseline_gbp"]),
            "target": _millions(r["target_gbp"]),
            "allocation": _millions(r["allocation_gbp"]),
            "head_count": _millions(r["head_count_gbp"]),
            "distance": _percent(r["distance_from_target"]),
            "growth": _percent(r["growth"]),
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
                "target": _millions(r["target_gbp"]),
                "head_count": _millions(r["head_count_gbp"]),
                "difference": _millions(gap, signed=True),
                "share": _percent(float(gap / r["head_count_gbp"])),
                "gap": gap,
                "ratio": float(gap / r["head_count_gbp"]),
            }
        )
    ranked = sorted(head_count, key=lambda row: -row["gap"])
    parts = [
        f"{row['place']} {_millions(abs(row['gap']))} ({abs(row['ratio']):.1%}) "
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
        {"place": names.get(p, p), "cells": [_millions(sectors.get((p, s))) for s in sector_names]}
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
                "previous": _short(r["previous_gbp"]),
                "minimum": _short(r["minimum_gbp"]),
                "planned": _short(r["planned_gbp"]),
                "margin": _short(r["margin_gbp"], signed=True),
                "allocation_growth": _percent(r["allocation_growth"]),
                "spend_growth": _percent(r["spend_growth"]),
                "met": r["met"],
                "explanation": r["explanation"],
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
                "allocation": _millions(t["allocation_gbp"]),
                "delegated": _millions(t["delegated_gbp"]),
                "retained": _millions(t["retained_gbp"]),
                "share": _percent(
                    _distance(t["delegated_gbp"], t["allocation_gbp"]) + 1, signed=False
                ),
            }
            for p in places
            for t in [totals[p]]
        ]
    if "finance_pooled_budget" in have:
        rows = _rows(engine, "finance_pooled_budget")
        pools = list(dict.fromkeys(r["pool"] for r in rows))
        out["pools"] = [
            {
                "name": pool,
                "kind": "Better Care Fund" if mine[0]["kind"] == "bcf" else "Section 75",
                "total": _short(sum(r["contribution_gbp"] for r in mine)),
                "partners": [
                    {
                        "partner": "NHS" if r["partner"] == "nhs" else r["partner"],
                        "amount": _short(r["contribution_gbp"]),
                        "share": _percent(r["share_of_pool"], signed=False),
                    }
                    for r in mine
                ],
                "minimum": next(
                    (r["explanation"] for r in mine if r["nhs_minimum_gbp"] is not None), ""
                ),
            }
            for pool in pools
            for mine in [[r for r in rows if r["pool"] == pool]]
        ]
    return out


# --- payments -------------------------------------------------------------------------------


def _payments(engine: Engine) -> list[dict[str, Any]]:
    rows = _rows(engine, "finance_payment_line")
    names = {}
    if "organisation" in set(engine.table_names()):
        names = {
            r["organisation_code"]: r["organisation_name"] for r in _rows(engine, "organisation")
        }

    def key(r: dict[str, Any]) -> tuple[str, str, str]:
        return (r["provider_code"], r["financial_year"], r["rules"])

    keys = list(dict.fromkeys(key(r) for r in rows))
    return [
        {
            "provider": names.get(code, code),
            "code": code,
            "year": year,
            "rules": rules,
            "total": _gbp(sum(r["amount_gbp"] for r in mine)),
            "lines": [
                {"line": r["line"].replace("_", " "), "pod": r["point_of_delivery"] or "",
                 "amount": _gbp(r["amount_gbp"]), "explanation": r["explanation"]}
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
        ax.barh([i - 0.18 for i in y], [float(r["variance_gbp"]) / 1e6 for r in mine],
                height=0.35, color=NHS_LIGHT_BLUE, label="variance")  # fmt: skip
        ax.barh([i + 0.18 for i in y], [float(r["final_gbp"]) / 1e6 for r in mine],
                height=0.35, color=NHS_BLUE, label="after sharing")  # fmt: skip
        ax.axvline(0, color="black", linewidth=0.7)
        ax.set_title(scenario, fontsize=9)
        ax.set_xlabel("£ million (loss positive)", fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_yticks(range(len(parties)), parties, fontsize=7)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=7, frameon=False)
    description = (
        "Bar charts, one per scenario, of each party's variance (overspend positive) and its "
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
                "variance": _short(sum(r["variance_gbp"] for r in rows if r["scenario"] == s)),
                "rows": [
                    {
                        "party": r["party_name"],
                        "kind": r["party_kind"],
                        "variance": _short(r["variance_gbp"], signed=True),
                        "retained": _short(r["retained_gbp"], signed=True),
                        "pool_share": _short(r["pool_share_gbp"], signed=True),
                        "limit": _short(r["limit_adjustment_gbp"] + r["residual_gbp"], signed=True),
                        "final": _short(r["final_gbp"], signed=True),
                        "explanation": r["explanation"],
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
        f"surplus of {_short(steps[0]['running_total_gbp'])} through "
        + "; ".join(
            f"{s['label'].lower()} {_short(s['amount_gbp'], signed=True)}" for s in steps[1:-1]
        )
        + f" to a forecast outturn of {_short(steps[-1]['running_total_gbp'])}."
    )
    return {
        "year": system["financial_year"],
        "rule": system["rule"],
        "explanation": system["explanation"],
        "svg": figure_svg(fig, "waterfall", "Control total waterfall", description),
        "description": description,
        "rows": [
            {
                "name": r["organisation_name"],
                "months": r["months_reported_count"],
                "plan_ytd": _short(r["plan_ytd_gbp"]),
                "actual_ytd": _short(r["actual_ytd_gbp"]),
                "run_rate": _short(r["forecast_run_rate_gbp"]),
                "trend": _short(r["forecast_trend_gbp"]),
                "plan": _short(r["plan_full_year_gbp"]),
                "variance": _short(r["forecast_variance_gbp"], signed=True),
                "must": "yes" if r["must_break_even"] else "no",
                "meets": ""
                if r["meets_rule"] is None
                else ("met" if r["meets_rule"] else "not met"),
                "system": r["organisation_code"] == "SYSTEM",
            }
            for r in positions
        ],
        "method": system["forecast_method"],
        "steps": [
            {
                "label": r["label"],
                "amount": _short(r["amount_gbp"], signed=True),
                "running": _short(r["running_total_gbp"]),
            }
            for r in steps
        ],
        "causes": [
            {
                "category": r["category"].replace("_", " "),
                "variance": _short(r["variance_gbp"], signed=True),
                "favourable": r["favourable"],
            }
            for r in variances
            if r["organisation_code"] == "SYSTEM"
        ],
    }


# --- what-if ---------------------------------------------------------------------------------


def _what_if(engine: Engine) -> dict[str, Any]:
    rows = _rows(engine, "finance_what_if")
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    places = list(dict.fromkeys(r["place_name"] for r in rows))
    fig = new_figure(8.5, 0.8 + 0.6 * len(places))
    ax = fig.subplots()
    height = 0.8 / max(len(scenarios), 1)
    for i, s in enumerate(scenarios):
        values = [float(r["target_change_gbp"]) / 1e6 for r in rows if r["scenario"] == s]
        ax.barh([j + i * height for j in range(len(values))], values, height=height,
                color=PLACE_COLOURS[i % len(PLACE_COLOURS)], label=s)  # fmt: skip
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
                "description": next(r["description"] for r in rows if r["scenario"] == s),
                "year": next(r["financial_year"] for r in rows if r["scenario"] == s),
                "rows": [
                    {
                        "place": r["place_name"],
                        "cost": _short(r["cost_change_gbp"], signed=True),
                        "index": f"{r['baseline_index']:.3f} → {r['scenario_index']:.3f}",
                        "target": _short(r["target_change_gbp"], signed=True),
                        "allocation": _short(r["allocation_change_gbp"], signed=True),
                    }
                    for r in rows
                    if r["scenario"] == s
                ],
            }
            for s in scenarios
        ],
    }


__all__: Sequence[str] = ("write_report",)
