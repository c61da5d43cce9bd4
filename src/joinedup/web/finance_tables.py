"""Every table of the finance page as a download: the page's rows with exact figures.

Each table reads the rows the finance report's context already holds
(`joinedup.reports.finance.report_context`): the same rows the page shows, carrying exact
values beside their display text (pounds to the penny, indices and rates unrounded, counts as
published after disclosure control). So a download never parses the page's text, and its
figures round to the page's. Money columns end `_gbp`, indices `_index`, ratios `_ratio`,
fractions `_share` or `_rate`, counts `_count`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from joinedup.errors import ConfigurationError, InputError
from joinedup.web.downloads import Column, Table

__all__ = ["DOWNLOADS", "SIGNS", "FinanceTable", "finance_download", "table_names"]

Context = dict[str, Any]
Rows = list[dict[str, Any]]

SIGNS = (
    "Positive is more money for whoever the row is about (above target, a surplus, an "
    "underspend, a favourable variance) or a rise against the baseline; negative is less."
)
#: The unit of a need index column.
INDEX = "index, 1 = the system's need per head"
#: The signs note of tables with no money or change in them.
UNSIGNED = "No signed figures: indices and ratios compare with 1 (the system's, or as expected)."
QUINTILE = Column("imd_quintile", "IMD quintile", "1 = most deprived, 5 = least, 0 = unknown")
SEXES = (("female", "women"), ("male", "men"))


@dataclass(frozen=True)
class FinanceTable:
    """One downloadable table of the finance page: what it is, where its rows are in the
    report's context, its columns (some depend on the run: components, sectors), the period
    it covers and what its signs mean."""

    title: str
    definition: str
    rows: Callable[[Context], Rows]
    columns: Callable[[Context], list[Column]]
    #: The period in words; by default the financial years of the rows.
    period: Callable[[Context, Rows], str] | None = None
    signs: str = SIGNS


def _section(r: Context, *path: str) -> Any:
    found: Any = r
    for key in path:
        found = (found or {}).get(key) if isinstance(found, dict) else None
    return found


def _list(*path: str) -> Callable[[Context], Rows]:
    def read(r: Context) -> Rows:
        return list(_section(r, *path) or [])

    return read


def _fixed(columns: list[Column]) -> Callable[[Context], list[Column]]:
    return lambda _: columns


def _years(years: list[str]) -> str:
    found = sorted(set(years) - {""})
    if not found:
        return "The finance run's years"
    return ("Financial year " if len(found) == 1 else "Financial years ") + ", ".join(found)


def _row_years(_: Context, rows: Rows) -> str:
    return _years([str(row.get("year") or "") for row in rows])


def _year_at(*path: str) -> Callable[[Context, Rows], str]:
    return lambda r, _: _years([str(_section(r, *path) or "")])


def _risk_share_period(r: Context, rows: Rows) -> str:
    agreement = str(_section(r, "risk_share", "name") or "")
    return f"Outturn scenarios under {agreement}" if agreement else _row_years(r, rows)


def _need_period(r: Context, _: Rows) -> str:
    return str(_section(r, "need", "period") or "As at the finance run")


# --- rows of the tables the page shows one of per pool, provider or scenario -----------------


def _scenario_rows(*path: str) -> Callable[[Context], Rows]:
    """One row per scenario and row, the scenario's words and year on each."""

    def read(r: Context) -> Rows:
        return [
            {**row, "description": s.get("description", s["name"]), "year": s.get("year", "")}
            for s in _section(r, *path) or []
            for row in s["rows"]
        ]

    return read


def _pool_rows(r: Context) -> Rows:
    return [
        {"pool": pool["name"], "kind": pool["kind"], "year": pool.get("year", ""),
         "partner_code": p["code"], **p}
        for pool in _section(r, "budgets", "pools") or []
        for p in pool["partners"]
    ]  # fmt: skip


def _payment_rows(r: Context) -> Rows:
    return [
        {"provider": c["provider"], "provider_code": c["code"], "year": c["year"],
         "rules": c["rules"], **line}
        for c in _section(r, "payments") or []
        for line in c["lines"]
    ]  # fmt: skip


# --- columns that depend on the run ----------------------------------------------------------


def _need_columns(r: Context) -> list[Column]:
    need = _section(r, "need") or {}
    return [
        Column("name", "Place"), Column("place_code", "Place code"),
        Column("population_count", "Population", "people, disclosure-controlled"),
        *(Column(f"{key}_index", label, INDEX)
          for key, label in zip(need.get("component_keys", []), need.get("components", []),
                                strict=True)),
    ]  # fmt: skip


def _curve_columns(r: Context) -> list[Column]:
    model = _section(r, "need", "model") or {}
    keys, labels = model.get("curve_keys", []), model.get("curve_components", [])
    return [
        Column("age_band", "Age band"),
        *(Column(f"{key}_{sex}_gbp", f"{label}, {who}", "£ a head")
          for key, label in zip(keys, labels, strict=True) for sex, who in SEXES),
    ]  # fmt: skip


def _ratio_columns(r: Context) -> list[Column]:
    model = _section(r, "need", "model") or {}
    keys, labels = model.get("ratio_keys", []), model.get("ratio_components", [])
    return [
        QUINTILE, Column("ltc_band", "Long-term conditions"),
        *(Column(f"{key}_ratio", label, "observed over expected cost")
          for key, label in zip(keys, labels, strict=True)),
    ]  # fmt: skip


def _sector_columns(r: Context) -> list[Column]:
    allocation = _section(r, "allocation") or {}
    keys, labels = allocation.get("sector_keys", []), allocation.get("sectors", [])
    return [
        Column("place", "Place"), Column("place_code", "Place code"),
        *(Column(f"{key}_gbp", label, "£") for key, label in zip(keys, labels, strict=True)),
    ]  # fmt: skip


#: Each finance table that can be downloaded, by the name the API takes, in page order.
DOWNLOADS: dict[str, FinanceTable] = {
    "need": FinanceTable(
        title="Need index by place and component",
        definition="Each place's need index by component: its weighted population per head "
        "over the system's (1 = the system's need per head; 1.10 is 10% more need per head), "
        "with its registered population (opt-outs excluded).",
        rows=_list("need", "rows"),
        columns=_need_columns,
        period=_need_period,
        signs=UNSIGNED,
    ),
    "pcn-need": FinanceTable(
        title="Overall need index by PCN",
        definition="Each primary care network's overall need index against the system (1 = "
        "the system's need per head), with its registered population (opt-outs excluded).",
        rows=_list("need", "pcns"),
        columns=_fixed([
            Column("name", "PCN"), Column("pcn_code", "PCN code"),
            Column("population_count", "Population", "people, disclosure-controlled"),
            Column("final_index", "Overall index", INDEX),
        ]),
        period=_need_period,
        signs=UNSIGNED,
    ),
    "cost-curves": FinanceTable(
        title="Cost per head by age band and sex, every component",
        definition="The need model's age-sex cost curves: each component's cost per head in "
        "the year by five-year age band, women and men (a cell of too few people is hidden "
        "with its count).",
        rows=_list("need", "model", "curves"),
        columns=_curve_columns,
        period=_need_period,
        signs=UNSIGNED,
    ),
    "need-adjustment": FinanceTable(
        title="Additional need by IMD quintile and long-term conditions",
        definition="Observed over age-sex expected cost by IMD quintile and number of "
        "long-term conditions, per component: the need that age and sex miss (1 = as "
        "expected).",
        rows=_list("need", "model", "ratios"),
        columns=_ratio_columns,
        period=_need_period,
        signs=UNSIGNED,
    ),
    "health-inequalities": FinanceTable(
        title="Deaths under 75 against the age-sex expected, by IMD quintile",
        definition="People, deaths under 75 and the standardised mortality ratio (deaths over "
        "those expected at the system's age-sex rates) by IMD quintile: the health "
        "inequalities weight of need. The ratio is restated on the published deaths.",
        rows=_list("need", "model", "smr"),
        columns=_fixed([
            QUINTILE,
            Column("people_count", "People", "disclosure-controlled"),
            Column("deaths_count", "Deaths under 75", "disclosure-controlled"),
            Column("standardised_mortality_ratio", "SMR", "observed over expected deaths"),
        ]),
        period=_need_period,
        signs=UNSIGNED,
    ),
    "head-count": FinanceTable(
        title="Target by need against a head-count split",
        definition="Each place's first-year target, sharing the pot by need, against an equal "
        "amount per person; the difference is positive where need gives the place more.",
        rows=_list("allocation", "head_count"),
        columns=_fixed([
            Column("place", "Place"), Column("place_code", "Place code"),
            Column("target_gbp", "Target (need)", "£"),
            Column("head_count_gbp", "Head-count split", "£"),
            Column("difference_gbp", "Difference", "£"),
            Column("difference_ratio", "Difference", "fraction of the head-count split"),
        ]),
        period=_year_at("allocation", "first_year"),
    ),
    "allocation": FinanceTable(
        title="Allocation by place and year",
        definition="Each place's baseline, target and allocation by year under the "
        "pace-of-change policy, its growth and distance from target (positive = above "
        "target), and a head-count split for comparison: the figures of the distance and "
        "pace-of-change charts.",
        rows=_list("allocation", "rows"),
        columns=_fixed([
            Column("year", "Financial year"), Column("place", "Place"),
            Column("place_code", "Place code"), Column("baseline_gbp", "Baseline", "£"),
            Column("target_gbp", "Target", "£"), Column("allocation_gbp", "Allocation", "£"),
            Column("growth_rate", "Growth", "fraction"),
            Column("distance_from_target", "Distance from target", "fraction"),
            Column("head_count_gbp", "Head-count split", "£"),
        ]),
    ),
    "sectors": FinanceTable(
        title="Each place's allocation by sector",
        definition="Each place's first-year allocation split by sector.",
        rows=_list("allocation", "sector_rows"),
        columns=_sector_columns,
        period=_year_at("allocation", "first_year"),
    ),
    "guarantees": FinanceTable(
        title="Guarantees: minimum required against planned spend",
        definition="The Mental Health Investment Standard and the community services "
        "guarantee: the year before's spend, the minimum the rule requires, planned spend and "
        "the margin (positive = planned spend above the minimum), allocation and spend growth.",
        rows=_list("budgets", "guarantees"),
        columns=_fixed([
            Column("name", "Guarantee"), Column("guarantee", "Guarantee code"),
            Column("year", "Financial year"), Column("previous_gbp", "Year before", "£"),
            Column("minimum_gbp", "Minimum", "£"), Column("planned_gbp", "Planned", "£"),
            Column("margin_gbp", "Margin", "£"),
            Column("allocation_growth_rate", "Allocation growth", "fraction"),
            Column("spend_growth_rate", "Spend growth", "fraction"),
            Column("met", "Met"), Column("explanation", "How"),
        ]),
    ),
    "delegation": FinanceTable(
        title="Delegated place budgets",
        definition="Each place's allocation: delegated to the place and held at system level, "
        "every sector summed, and the delegated share.",
        rows=_list("budgets", "delegation"),
        columns=_fixed([
            Column("place", "Place"), Column("place_code", "Place code"),
            Column("allocation_gbp", "Allocation", "£"),
            Column("delegated_gbp", "Delegated", "£"),
            Column("retained_gbp", "Held at system", "£"),
            Column("delegated_share", "Delegated share", "fraction"),
        ]),
        period=_year_at("budgets", "delegation_year"),
    ),
    "pools": FinanceTable(
        title="Pooled budgets with councils",
        definition="Each pooled budget (Better Care Fund or Section 75) by partner: its "
        "contribution and share of the pool; one row per pool and partner.",
        rows=_pool_rows,
        columns=_fixed([
            Column("pool", "Pool"), Column("kind", "Kind"), Column("year", "Financial year"),
            Column("partner", "Partner"), Column("partner_code", "Partner code"),
            Column("contribution_gbp", "Contribution", "£"),
            Column("contribution_share", "Share of the pool", "fraction"),
        ]),
    ),
    "payments": FinanceTable(
        title="Blended payment lines by provider",
        definition="What each provider is paid for the year's activity under the blended "
        "payment rules, line by line (positive = paid to the provider, a deduction "
        "negative); one row per provider, year, rules and line.",
        rows=_payment_rows,
        columns=_fixed([
            Column("provider", "Provider"), Column("provider_code", "Provider code"),
            Column("year", "Financial year"), Column("rules", "Rules"),
            Column("line", "Line"), Column("line_code", "Line code"),
            Column("pod", "Point of delivery"), Column("pod_code", "Point of delivery code"),
            Column("amount_gbp", "Amount", "£"), Column("explanation", "How"),
        ]),
    ),
    "waterfall": FinanceTable(
        title="From planned surplus to forecast outturn, system",
        definition="The system control total's waterfall: the planned surplus, each step to "
        "the forecast outturn (positive = adds to the surplus) and the running total.",
        rows=_list("control_total", "steps"),
        columns=_fixed([
            Column("step", "Step"), Column("label", "What"),
            Column("amount_gbp", "Amount", "£"),
            Column("running_total_gbp", "Running total", "£"),
        ]),
        period=_year_at("control_total", "year"),
    ),
    "control-total": FinanceTable(
        title="Position and forecast outturn by organisation",
        definition="Each organisation's plan and actual to date, forecast outturn by run rate "
        "and trend, full-year plan and forecast against plan (positive = a surplus, or better "
        "than plan), and whether it meets the break-even rule.",
        rows=_list("control_total", "rows"),
        columns=_fixed([
            Column("name", "Organisation"), Column("organisation_code", "Organisation code"),
            Column("months", "Months reported"), Column("plan_ytd_gbp", "Plan to date", "£"),
            Column("actual_ytd_gbp", "Actual to date", "£"),
            Column("forecast_run_rate_gbp", "Forecast (run rate)", "£"),
            Column("forecast_trend_gbp", "Forecast (trend)", "£"),
            Column("plan_full_year_gbp", "Full-year plan", "£"),
            Column("forecast_variance_gbp", "Forecast against plan", "£"),
            Column("must", "Must break even"), Column("meets", "Rule"),
        ]),
        period=_year_at("control_total", "year"),
    ),
    "variance": FinanceTable(
        title="System variance to date by cause",
        definition="The system's variance to date by cause (positive = favourable).",
        rows=_list("control_total", "causes"),
        columns=_fixed([
            Column("category", "Cause"), Column("category_code", "Cause code"),
            Column("variance_gbp", "Variance", "£"), Column("favourable", "Favourable"),
        ]),
        period=_year_at("control_total", "year"),
    ),
    "risk-share": FinanceTable(
        title="Risk share by scenario and party",
        definition="Each party's variance, what it keeps, its share of the pool, caps, "
        "collars and the residual, and its position after sharing, per scenario (positive = "
        "underspend or gain, negative = overspend or loss).",
        rows=_scenario_rows("risk_share", "scenarios"),
        columns=_fixed([
            Column("scenario", "Scenario"), Column("party", "Party"),
            Column("party_code", "Party code"), Column("kind", "Kind"),
            Column("variance_gbp", "Variance", "£"), Column("kept_gbp", "Kept", "£"),
            Column("pool_share_gbp", "Share of pool", "£"),
            Column("limits_gbp", "Caps, collars, residual", "£"),
            Column("final_gbp", "After sharing", "£"),
        ]),
        period=_risk_share_period,
    ),
    "what-if": FinanceTable(
        title="Stored what-if scenarios by place",
        definition="Each stored scenario's change in each place's modelled cost, overall need "
        "index, target and allocation against the baseline (positive = a rise).",
        rows=_scenario_rows("what_if", "scenarios"),
        columns=_fixed([
            Column("description", "Scenario"), Column("scenario", "Scenario name"),
            Column("year", "Financial year"),
            Column("place", "Place"), Column("place_code", "Place code"),
            Column("cost_change_gbp", "Modelled cost change", "£"),
            Column("baseline_index", "Overall need index, baseline"),
            Column("scenario_index", "Overall need index, scenario"),
            Column("target_change_gbp", "Target change", "£"),
            Column("allocation_change_gbp", "Allocation change", "£"),
        ]),
    ),
}  # fmt: skip


def table_names() -> str:
    """Every table name with its title, for the API's documentation."""
    return "; ".join(f"`{name}`: {t.title.lower()}" for name, t in DOWNLOADS.items())


def finance_download(r: Context, name: str) -> Table:
    """One of the finance page's tables, its rows as the API gives them, exact figures."""
    if name not in DOWNLOADS:
        raise InputError("name", f"no finance table {name!r}; choose from {', '.join(DOWNLOADS)}")
    spec = DOWNLOADS[name]
    rows = spec.rows(r)
    if not rows:
        raise ConfigurationError(f"this warehouse's finance run has no {spec.title.lower()}")
    columns = spec.columns(r)
    run = r.get("run", {})
    period = (spec.period or _row_years)(r, rows)
    return Table(
        name=f"finance-{name}",
        title=f"{r.get('ics_name', '')}: {spec.title}",
        columns=columns,
        rows=[{c.key: row.get(c.key) for c in columns} for row in rows],
        notes=[
            ("Definition", f"{spec.definition} "
             + ("Money in pounds to the penny, other figures unrounded"
                if any(c.key.endswith("_gbp") for c in columns) else "Figures unrounded")
             + ": the finance page rounds them."),
            ("Signs", spec.signs),
            ("Period", period),
            ("Disclosure", f"{r.get('disclosure_rule', '')}; a suppressed count, and a figure "
             "that would reveal it, is an empty cell".lstrip("; ")),
            ("Source", f"joinedup finance run {run.get('run_id', '')} ({run.get('run_at', '')}), "
             f"need from {r.get('need_source', '')}"),
        ],
    )  # fmt: skip
