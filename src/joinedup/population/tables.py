"""The tables `joinedup phm run` writes, column by column, for docs/data-model.md.

A functional test runs the pipeline and checks each table's columns are exactly these, so the
page cannot drift from what is written. `_suppressed` flags beside published counts and rates
are listed once per table rather than column by column.
"""

from __future__ import annotations

from joinedup.population.codelists import MEDICINE_GROUPS
from joinedup.population.conditions import CMS_CONDITIONS, SEGMENTS
from joinedup.population.history import PRIOR_USE
from joinedup.warehouse.schema import table_docs_markdown

_PERSON: list[tuple[str, str]] = [
    ("person_id", "Pseudonymous person key."),
    ("age", "Age in whole years on the index date."),
    ("sex", "Administrative sex."),
    ("ethnic_category", "NHS ethnic category letter."),
    ("ethnic_group", "White, Mixed, Asian, Black, Other or Not stated."),
    ("lsoa_code", "LSOA of residence."),
    ("imd_decile", "IMD 2019 decile (1 = most deprived 10% in England)."),
    ("imd_quintile", "IMD 2019 quintile (1 = most deprived 20%)."),
    ("practice_code", "Practice registered with on the index date."),
    ("pcn_code", "PCN of that practice."),
    ("place_code", "Place of that practice."),
    ("national_data_opt_out", "True when opted out: left out of every published table."),
    *[(c.name, f"1 when {c.label.lower()}: {c.definition}.") for c in CMS_CONDITIONS],
    ("frailty_level", "Latest frailty code: 0 none, 1 mild, 2 moderate, 3 severe."),
    ("palliative_12m", "1 when a palliative care code was recorded in the last 12 months."),
    ("secondary_cancer_12m", "1 when a secondary cancer was coded in the last 12 months."),
    ("liver_failure", "1 when liver failure or cirrhosis was ever coded."),
    ("ckd_stage_4_5", "1 when the latest eGFR is under 30."),
    ("learning_disability", "1 when a learning disability was ever coded."),
    ("physical_disability", "1 when a physical disability was ever coded."),
    ("pregnant", "1 when pregnancy was coded in the last 280 days."),
    ("fall_6m", "1 when a fall was coded in the last 183 days."),
    *[
        (f"{g}_issues_count", f"Estimated issues of {g.replace('_', ' ')} in the last 12 months.")
        for g in MEDICINE_GROUPS
    ],
    ("medicines_count", "Different repeat medicines issued in the last 90 days."),
    ("egfr_latest", "Latest eGFR before the index date."),
    ("latest_systolic_bp", "Latest systolic blood pressure."),
    ("latest_diastolic_bp", "Latest diastolic blood pressure."),
    ("raised_bp_days_24m_count", "Days with systolic 140+ or diastolic 90+ in the last 2 years."),
    ("bp_recorded_12m", "1 when blood pressure was recorded in the last 12 months."),
    ("bmi_recorded_12m", "1 when BMI was recorded in the last 12 months."),
    ("smoking_recorded_12m", "1 when smoking status was recorded in the last 12 months."),
    *[
        (name, f"Contacts in the last 12 months: {', '.join(kinds)}.")
        for name, kinds in PRIOR_USE.items()
    ],
    ("prior_gp_6m_count", "GP consultations in the last 6 months."),
    ("last_gp_contact_date", "Date of the last GP consultation before the index date."),
    ("ltc_count", "Number of the 20 Cambridge conditions present."),
    ("cms_general", "Cambridge Multimorbidity Score, general-outcome weights."),
    ("cms_mortality", "Cambridge Multimorbidity Score, mortality weights."),
    ("segment", "Bridges to Health segment: " + ", ".join(s.key for s in SEGMENTS) + "."),
    ("segment_rule", "The rule that placed the person in the segment."),
    ("core20", "1 when in the configured Core20 IMD deciles (default 1-2)."),
    ("plus_group", "1 when in any configured PLUS group."),
    ("core20plus", "1 when Core20 or PLUS."),
]

#: (table, description, columns); `_suppressed` companions are described in the text.
PHM_TABLE_DOCS: tuple[tuple[str, str, list[tuple[str, str]]], ...] = (
    (
        "phm_person",
        "One row per person alive and registered on the index date (the day after the extract), "
        "from records dated before it. Pseudonymous; includes people who opted out, flagged.",
        _PERSON,
    ),
    (
        "phm_person_previous",
        "The same columns a year before the index date: the model's validation population, "
        "segment transitions and the mortality denominator.",
        [("(as phm_person)", "Same columns as `phm_person`.")],
    ),
    (
        "phm_risk",
        "Emergency admission risk per person in `phm_person` (pseudonymous).",
        [
            ("person_id", "Pseudonymous person key."),
            ("risk_score", "Predicted probability of an emergency admission in 12 months."),
            ("risk_tier", "very_high, high, moderate or low (configurable shares)."),
        ],
    ),
    (
        "phm_segment_counts",
        "Published: people by Bridges to Health segment, system-wide and by place, PCN, broad "
        "age band and IMD quintile; opt-outs left out; counts disclosure-controlled.",
        [
            ("dimension", "system, place_code, pcn_code, age_band or imd_quintile."),
            ("group_value", "The group within the dimension."),
            ("segment", "Segment key."),
            ("people_count", "People (suppressed 1-7, rounded to 5)."),
        ],
    ),
    (
        "phm_segment_transitions",
        "Published: people by segment a year ago and now, among those registered on both dates.",
        [
            ("from_segment", "Segment a year before the index date."),
            ("to_segment", "Segment on the index date."),
            ("people_count", "People (disclosure-controlled)."),
        ],
    ),
    (
        "phm_risk_tiers",
        "Published: people in each risk tier (opt-outs left out).",
        [("risk_tier", "Tier."), ("people_count", "People (disclosure-controlled).")],
    ),
    (
        "phm_inequalities",
        "Published: crude and directly age-standardised rates (ESP 2013, Dobson 95% CI) for "
        "each measure, system-wide and by IMD quintile, ethnic group, place and PCN.",
        [
            (
                "measure",
                "Measure key (multimorbidity, diabetes, ..., emergency_admissions, mortality).",
            ),
            ("measure_label", "Measure in words."),
            ("unit", "%, per 1,000 or per 100,000."),
            ("dimension", "system, imd_quintile, ethnic_group, place_code or pcn_code."),
            ("group_value", "The group."),
            ("events_count", "People with the condition, admissions, or deaths."),
            ("people_count", "Population."),
            ("crude_rate", "Events per population, in the unit."),
            ("dsr", "Directly standardised rate (none under 10 events)."),
            ("dsr_lower", "Lower 95% confidence limit."),
            ("dsr_upper", "Upper 95% confidence limit."),
        ],
    ),
    (
        "phm_inequality_index",
        "Published: slope and relative index of inequality across IMD quintiles per measure "
        "(positive: higher in the more deprived); 95% CIs by simulation.",
        [
            ("measure", "Measure key."),
            ("measure_label", "Measure in words."),
            ("unit", "Unit of the rates."),
            ("sii", "Slope index of inequality."),
            ("sii_lower", "Lower 95% limit."),
            ("sii_upper", "Upper 95% limit."),
            ("rii", "Relative index: SII over the mean rate."),
            ("rii_lower", "Lower 95% limit."),
            ("rii_upper", "Upper 95% limit."),
        ],
    ),
    (
        "phm_core20plus5",
        "Published: the Core20PLUS5 gap table, one row per clinical-area indicator.",
        [
            ("area", "Clinical area."),
            ("indicator", "What is measured."),
            *[
                (
                    f"{who}_{part}",
                    f"{label}: {part.removesuffix('_count')} (counts disclosure-controlled).",
                )
                for who, label in (("core20plus", "Core20PLUS"), ("rest", "Everyone else"))
                for part in ("numerator_count", "denominator_count", "percent", "lower", "upper")
            ],
            ("gap_points", "Core20PLUS percent minus everyone else's, in points."),
            ("note", "Why an indicator cannot be measured, when it cannot."),
        ],
    ),
    (
        "phm_indicator_values",
        "Published: every indicator of `joinedup.indicators` (docs/indicators.md) at system, "
        "place, PCN and practice level for each year of the history, with its 95% CI, compared "
        "with England and with the parent area; opt-outs left out.",
        [
            ("indicator_id", "Indicator id (`joinedup indicators list`)."),
            ("period", "The 12 months, as an ISO 8601 interval (start/end)."),
            ("period_start_date", "First day of the period."),
            ("period_end_date", "Last day of the period."),
            ("level", "system, place, pcn or practice."),
            ("area_code", "Code of the area (the ICB's code for the system)."),
            ("area_name", "Name of the area."),
            ("parent_code", "The area one level up (none for the system)."),
            ("numerator_count", "Numerator (disclosure-controlled)."),
            ("denominator_count", "Denominator (disclosure-controlled)."),
            ("value", "Value in the indicator's unit, from the published counts."),
            ("lower", "Lower 95% confidence limit."),
            ("upper", "Upper 95% confidence limit."),
            ("england_value", "England's value (same period if known, else the latest)."),
            ("england_lower", "England's lower limit, when given."),
            ("england_upper", "England's upper limit, when given."),
            ("england_period", "The period of England's value."),
            ("england_source", "Where England's value comes from."),
            (
                "england_comparison",
                "better, similar or worse than England (higher or lower where polarity is "
                "unknown), by whether the 95% CI excludes England's value.",
            ),
            ("parent_value", "The parent area's value."),
            ("parent_lower", "The parent area's lower limit."),
            ("parent_upper", "The parent area's upper limit."),
            ("parent_comparison", "The area against its parent's value, as for England."),
            (
                "trend",
                "Recent trend to this period, tested and stated (docs/indicators.md): "
                "increasing or decreasing (getting better or worse) or no significant change.",
            ),
            ("trend_p", "Two-sided p-value of the trend test."),
        ],
    ),
    (
        "phm_worklist",
        "IDENTIFIABLE, for direct care: people each worklist finds, with the reasons. "
        "Includes people who opted out (the opt-out does not apply to their own care).",
        [
            ("worklist_id", "Worklist id from the settings file."),
            ("pcn_code", "PCN responsible."),
            ("practice_code", "Practice."),
            ("person_id", "Pseudonymous person key."),
            ("nhs_number", "NHS number."),
            ("age", "Age."),
            ("sex", "Sex."),
            ("risk_tier", "Risk tier."),
            ("risk_score", "Risk score."),
            (
                "reasons",
                "Each criterion in plain English with the person's value and, where known, "
                "the date behind it, separated by '; '.",
            ),
            ("fall_date", "Date of the latest fall code before the index date."),
            ("frailty_date", "Date of the latest frailty code (the one setting the level)."),
        ],
    ),
    (
        "phm_run",
        "The run: one row with its dates, settings, code list versions, disclosure policy "
        "and the model card.",
        [
            ("run_id", "Run id."),
            ("run_at", "UTC timestamp."),
            ("index_date", "Index date (the day after the extract)."),
            ("validation_index_date", "Index date the model was validated on."),
            ("train_index_date", "Index date the model was trained on."),
            ("extract_date", "Last day of the data."),
            ("settings_yaml", "The settings used, as YAML."),
            ("codelist_versions", "Code list names and versions (JSON)."),
            ("disclosure_policy", "Disclosure policy (JSON)."),
            ("model_card_json", "Model card (JSON)."),
            ("model_card_markdown", "Model card (Markdown)."),
            ("passes_acceptance", "Model beats age-sex on AUROC and Brier, calibrated ±20%."),
        ],
    ),
)


def render_phm_markdown() -> str:
    """The data-model page's section on population health output tables."""
    return table_docs_markdown(
        "Population health output tables",
        "Written by `joinedup phm run` (see [population.md](population.md)). Published tables "
        "have a boolean `<column>_suppressed` beside each count and rate, true where disclosure "
        "control hid the value.",
        PHM_TABLE_DOCS,
    )
