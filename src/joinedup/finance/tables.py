"""The tables `joinedup finance` writes, column by column, for docs/data-model.md.

A functional test runs the pipeline and checks each table's columns are exactly these (with
`<component>` expanded to the need components of the run), so the page cannot drift from what
is written. `_suppressed` flags beside published counts are listed once per table.
"""

from __future__ import annotations

from joinedup.warehouse.schema import table_docs_markdown

COMPONENT = "<component>"

_MONEY = "Pounds to the penny (exact; parts always sum to their whole)."

FINANCE_TABLE_DOCS: tuple[tuple[str, str, list[tuple[str, str]]], ...] = (
    (
        "finance_practice_need",
        "Weighted population of each practice per need component, from the population or from "
        "NHS England's published file.",
        [
            ("practice_code", "Practice."),
            ("practice_name", "Practice name."),
            ("pcn_code", "PCN of the practice."),
            ("place_code", "Place of the practice."),
            ("registered_count", "Registered list (head count; opt-outs counted)."),
            (
                f"{COMPONENT}_wp",
                "Weighted population of the component: general_and_acute, "
                "community_services, mental_health, maternity, health_inequalities, prescribing, "
                "final (overall) and primary_medical_care (and final_pmc from published weights).",
            ),
        ],
    ),
    (
        "finance_need_index",
        "Need index of every place, PCN and practice against the ICB, per component.",
        [
            ("level", "place, pcn or practice."),
            ("code", "Code of the area."),
            ("name", "Name of the area."),
            ("parent_code", "ICB the index is against."),
            ("registered_count", "Registered people."),
            ("population_share", "Share of the ICB's registered people."),
            (f"{COMPONENT}_wp", "Weighted population of the component."),
            (f"{COMPONENT}_index", "(WP / population) of the area over the same of the ICB."),
        ],
    ),
    (
        "finance_cost_curve",
        "Published: cost per head in the fitting year by component, five-year age band and sex "
        "(opt-outs left out).",
        [
            ("component", "Need component."),
            ("age_band", "Five-year age band a year before the index date."),
            ("sex", "Sex."),
            ("people_count", "People in the band (disclosure-controlled)."),
            ("cost_per_head_gbp", "Cost per head in the year (hidden with its count)."),
        ],
    ),
    (
        "finance_need_adjustment",
        "Published: additional need, observed over age-sex expected cost, by component, IMD "
        "quintile (0 = unknown) and long-term condition band.",
        [
            ("component", "Need component."),
            ("imd_quintile", "IMD 2019 quintile; 1 = most deprived; 0 = unknown LSOA."),
            ("ltc_band", "Cambridge conditions: 0, 1, 2 or 3+."),
            ("people_count", "People in the cell (disclosure-controlled)."),
            ("ratio", "Observed over expected cost (hidden with its count)."),
        ],
    ),
    (
        "finance_health_inequalities",
        "Published: deaths under 75 in the fitting year against the age-sex expected, by IMD "
        "quintile: the health inequalities weight.",
        [
            ("imd_quintile", "IMD 2019 quintile; 0 = unknown."),
            ("people_count", "People (disclosure-controlled)."),
            ("deaths_count", "Deaths under 75 (disclosure-controlled)."),
            ("expected_deaths_count", "Deaths expected at the system's age-sex rates."),
            ("smr", "Standardised mortality ratio (deaths / expected)."),
        ],
    ),
    (
        "finance_allocation",
        "The allocation path: each place in each year.",
        [
            ("financial_year", "Financial year (2026/27)."),
            ("place_code", "Place."),
            ("place_name", "Place name."),
            (
                "baseline_gbp",
                "The year before's allocation (the configured baseline first). " + _MONEY,
            ),
            ("target_gbp", "The year's pot shared by need. " + _MONEY),
            ("allocation_gbp", "Allocation under the pace-of-change policy. " + _MONEY),
            ("head_count_gbp", "The pot shared by head count alone, for comparison. " + _MONEY),
            ("distance_from_target", "(allocation - target) / target; negative is under target."),
            ("growth", "(allocation - baseline) / baseline."),
        ],
    ),
    (
        "finance_sector_allocation",
        "Each place's allocation split by sector, for the baseline and every year.",
        [
            ("financial_year", "Financial year."),
            ("place_code", "Place."),
            (
                "sector",
                "primary_care, community, mental_health, acute, continuing_healthcare or "
                "prescribing.",
            ),
            ("allocation_gbp", "The sector's share of the place's allocation. " + _MONEY),
        ],
    ),
    (
        "finance_guarantee",
        "The Mental Health Investment Standard and the community services guarantee.",
        [
            ("guarantee", "mental_health_investment_standard or community_services."),
            ("financial_year", "Year tested."),
            ("previous_gbp", "In-scope spend of the year before."),
            ("minimum_gbp", "Minimum required (rounded up to the penny)."),
            ("planned_gbp", "Planned in-scope spend."),
            ("margin_gbp", "Planned minus minimum."),
            ("met", "True when planned is at least the minimum."),
            ("allocation_growth", "ICB allocation growth (a fraction)."),
            ("spend_growth", "Spend growth (a fraction); null with no spend the year before."),
            ("explanation", "The test in words with its figures."),
        ],
    ),
    (
        "finance_place_budget",
        "Delegated place budgets: each place's sector allocation, delegated and held at system.",
        [
            ("financial_year", "Budget year."),
            ("place_code", "Place."),
            ("sector", "Sector."),
            ("allocation_gbp", "The place's allocation for the sector."),
            ("delegated_gbp", "Delegated to the place."),
            ("retained_gbp", "Held at system level; delegated + retained = allocation."),
            ("delegated_share", "Configured share delegated."),
        ],
    ),
    (
        "finance_pooled_budget",
        "Pooled budgets with councils (Better Care Fund, Section 75): one row per partner.",
        [
            ("financial_year", "Budget year."),
            ("pool", "Name of the pool."),
            ("kind", "bcf or section75."),
            ("place_code", "Place."),
            ("partner", "nhs, the council's code or another partner's name."),
            ("contribution_gbp", "The partner's contribution."),
            ("share_of_pool", "Contribution over the pool's total."),
            ("nhs_minimum_gbp", "NHS minimum contribution, on the NHS row when set."),
            ("meets_minimum", "Whether the NHS contribution meets it."),
            ("explanation", "The contribution in words."),
        ],
    ),
    (
        "finance_payment_line",
        "Blended payment: each contract's payment line by line. Counts are exact: contract "
        "monitoring between commissioner and provider, not a publication.",
        [
            ("provider_code", "Provider."),
            ("financial_year", "Contract year."),
            ("rules", "2022/23 or 2023/24 payment rules."),
            (
                "line",
                "fixed, cquin_deduction, variable, elective_activity, elective_plan or "
                "low_volume_block.",
            ),
            ("point_of_delivery", "EL, DC, OP ... for activity lines; null otherwise."),
            ("planned_count", "Planned activity."),
            ("actual_count", "Activity in the year from the warehouse."),
            ("unit_price_gbp", "Unit price before the market forces factor."),
            ("market_forces_factor", "Market forces factor applied."),
            ("amount_gbp", "Amount paid (the total is the sum of the lines)."),
            ("explanation", "The sum that makes the line."),
        ],
    ),
    (
        "finance_ledger",
        "Organisations' plans and actuals by month and category (imported or synthetic).",
        [
            ("organisation_code", "NHS organisation."),
            ("financial_year", "Financial year."),
            ("month", "1 (April) to 12 (March)."),
            ("month_start_date", "First day of the month."),
            ("category", "income, pay, non_pay, drugs or efficiency (savings, a negative cost)."),
            ("plan_gbp", "Plan."),
            ("actual_gbp", "Actual; null until the month is reported."),
        ],
    ),
    (
        "finance_control_total",
        "The system control total: each organisation and the system (SYSTEM).",
        [
            ("organisation_code", "Organisation, or SYSTEM."),
            ("organisation_name", "Name."),
            ("financial_year", "Year."),
            ("months_reported_count", "Months with actuals."),
            ("plan_ytd_gbp", "Planned surplus to date."),
            ("actual_ytd_gbp", "Actual surplus to date."),
            ("plan_full_year_gbp", "Planned surplus for the year."),
            ("forecast_run_rate_gbp", "Forecast outturn: to date / months x 12."),
            ("forecast_trend_gbp", "Forecast outturn: to date + least-squares trend."),
            ("forecast_gbp", "The chosen forecast."),
            ("forecast_method", "trend or run_rate."),
            ("forecast_variance_gbp", "Forecast minus plan (favourable positive)."),
            ("rule", "Break-even rule in force: none, system, system and each organisation."),
            ("must_break_even", "Whether the rule binds this row."),
            ("meets_rule", "Whether its forecast breaks even; null when not bound."),
            ("explanation", "The position in words."),
        ],
    ),
    (
        "finance_variance",
        "Variance to date by organisation and cause (category), favourable positive.",
        [
            ("organisation_code", "Organisation, or SYSTEM."),
            ("financial_year", "Year."),
            ("category", "Cause."),
            ("plan_ytd_gbp", "Plan to date as recorded."),
            ("actual_ytd_gbp", "Actual to date as recorded."),
            ("variance_gbp", "Variance in surplus terms."),
            ("favourable", "True when not adverse."),
        ],
    ),
    (
        "finance_control_total_waterfall",
        "Steps from the system's planned surplus to its forecast outturn, for the chart.",
        [
            ("financial_year", "Year."),
            ("step", "Order."),
            ("label", "What the step is."),
            ("amount_gbp", "Its amount."),
            ("running_total_gbp", "Running total after it."),
        ],
    ),
    (
        "finance_risk_share",
        "The risk-share agreement applied to each outturn scenario: one row per party. Losses "
        "(overspends) are positive, gains negative; final positions sum to the variances.",
        [
            ("scenario", "Scenario name."),
            ("party_code", "Party (a place partnership, collaborative or the ICB)."),
            ("party_name", "Name."),
            ("party_kind", "place, collaborative or system."),
            ("budget_gbp", "Budget the shares follow."),
            ("variance_gbp", "Outturn minus budget."),
            ("retained_gbp", "Kept by the party before pooling."),
            ("pooled_gbp", "Put into the pool."),
            ("pool_share_gbp", "Its share of the pool, by the tiers."),
            ("limit_adjustment_gbp", "Moved by caps and collars (its own and others')."),
            ("residual_gbp", "Taken as the residual party."),
            ("final_gbp", "Position after the risk share."),
            ("explanation", "The sums in words."),
        ],
    ),
    (
        "finance_what_if",
        "What-if scenarios: the effect on each place of a change in activity.",
        [
            ("scenario", "Scenario name."),
            ("description", "The driver in words."),
            ("financial_year", "Year of the targets and allocation compared."),
            ("place_code", "Place."),
            ("place_name", "Place name."),
            ("baseline_cost_gbp", "Modelled cost of the place's people in the fitting year."),
            ("scenario_cost_gbp", "The same with the driver applied."),
            ("cost_change_gbp", "Scenario minus baseline cost."),
            ("baseline_index", "Need index (the allocation's component) before."),
            ("scenario_index", "Need index after need is refitted."),
            ("baseline_target_gbp", "Target before."),
            ("scenario_target_gbp", "Target after."),
            ("target_change_gbp", "Change in target."),
            ("allocation_change_gbp", "Change in the year's allocation under pace of change."),
        ],
    ),
    (
        "finance_run",
        "The run: one row with the settings used.",
        [
            ("run_id", "Run id."),
            ("run_at", "UTC timestamp."),
            ("joinedup_version", "Package version."),
            ("need_source", "population or published."),
            ("steps", "Steps run (JSON)."),
            ("settings_yaml", "The settings, as YAML."),
        ],
    ),
)


def render_finance_markdown() -> str:
    """The data-model page's section on finance tables."""
    return table_docs_markdown(
        "Finance tables",
        "Written by `joinedup finance run` and its steps (see [finance.md](finance.md)). Money "
        "columns ending `_gbp` are DECIMAL(18,2) pounds, exact to the penny. Published tables "
        "have a boolean `<column>_suppressed` beside each count and rate, true where disclosure "
        "control hid the value.",
        FINANCE_TABLE_DOCS,
    )
