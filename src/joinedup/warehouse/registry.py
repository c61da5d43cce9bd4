"""One typed registry of every table joinedup writes, and the checks that keep writers to it.

`schema.py` defines the canonical tables; the jobs write many more (`phm run`, `finance run`
and its steps, `ingest fhir`, the dashboard's access store), whose columns used to be whatever
their query yielded. Here each is declared once: columns with type, nullability and meaning,
what kind of table it is, which commands write it, and whether it is published (passed
disclosure control) or identifiable. `check` compares what a job wrote with the declaration,
`conform` casts a table to it by column name, and `render_markdown` is the section of
`docs/warehouse.md` that lists them. Columns were read from real runs (DESCRIBE of a synthetic
world after `phm run` and `finance run`, and of a FHIR load); a test repeats those runs and
fails when a writer and its declaration part.

Names follow the house conventions: dates end `_date`, counts of people or events `_count`,
money in pounds `_gbp`, with no exceptions. Columns renamed to keep them are listed in
`RENAMED_COLUMNS`, so a store written by an older version is refused with the command that
rebuilds it (`outdated`) instead of failing on a missing column.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

import pyarrow as pa

from joinedup.errors import JoinedupError
from joinedup.warehouse import schema

#: Types a registered column may have (DuckDB's names). JSON is text to Arrow.
ColumnType = Literal[
    "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "VARCHAR", "JSON", "DATE", "BOOLEAN", "DOUBLE",
    "DECIMAL(12,2)", "DECIMAL(18,2)",
]  # fmt: skip
ARROW_TYPES: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "SMALLINT": pa.int16(),
    "TINYINT": pa.int8(),
    "VARCHAR": pa.string(),
    "JSON": pa.string(),
    "DATE": pa.date32(),
    "BOOLEAN": pa.bool_(),
    "DOUBLE": pa.float64(),
    "DECIMAL(12,2)": pa.decimal128(12, 2),
    "DECIMAL(18,2)": pa.decimal128(18, 2),
}
INTEGER_TYPES: frozenset[str] = frozenset({"BIGINT", "INTEGER", "SMALLINT", "TINYINT"})
MONEY_TYPES: frozenset[str] = frozenset({"DECIMAL(12,2)", "DECIMAL(18,2)"})

#: canonical: the analytic contract (schema.py); phm, finance: outputs of those commands;
#: ingest: FHIR's raw store, quarantine, load records and FHIR-only tables; access: the
#: dashboard's users, sessions and audit log (a SQLite file beside the warehouse).
Kind = Literal["canonical", "phm", "finance", "ingest", "access"]
KINDS: tuple[Kind, ...] = get_args(Kind)
#: What a number is. Every whole-number column says which, so a new count cannot slip in
#: without the `_count` its convention asks for: `count` of people, events or items;
#: `flag` 1 or 0 (true or false); `key` an identifier or position (ids, sequence numbers,
#: line numbers, steps); `number` any other quantity or level (years, months, ages, deciles).
Measure = Literal["count", "flag", "key", "number"]


class RegistryError(JoinedupError, ValueError):
    """A table does not fit its registered schema; the message names the table and column."""


@dataclass(frozen=True)
class Column:
    """One column of a registered table."""

    name: str
    type: ColumnType
    #: The canonical tables' and the access store's meanings are here; the meanings of the
    #: jobs' output columns are in the tables pages of their modules (`population.tables`,
    #: `finance.tables`, `fhir.tables`), which a test holds to the same column names.
    description: str = ""
    nullable: bool = True
    measure: Measure | None = None
    #: Written by some runs only (e.g. `final_pmc_wp`, with NHS England's published weights).
    optional: bool = False

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]


@dataclass(frozen=True)
class Table:
    """A table some job writes: what it holds, who writes it, and how far it may travel."""

    name: str
    kind: Kind
    description: str
    #: The commands that write it (`phm run`, `finance control-total`, `users add` ...).
    written_by: tuple[str, ...]
    columns: tuple[Column, ...]
    #: Passed statistical disclosure control: counts and rates fit to publish.
    published: bool = False
    #: Holds details that identify a person (patient or member of staff): direct care or
    #: restricted use only, never an analytic output.
    identifiable: bool = False
    #: A working table, dropped before its job ends; its columns are not part of the contract.
    scratch: bool = False
    #: `warehouse` (the DuckDB file) or `access` (the dashboard's SQLite file).
    store: Literal["warehouse", "access"] = "warehouse"

    @property
    def is_pattern(self) -> bool:
        """True for a family of tables named by a pattern, `v_<view>`: one per shipped view."""
        return "<" in self.name

    def matches(self, name: str) -> bool:
        if not self.is_pattern:
            return name == self.name
        prefix = self.name.split("<", 1)[0]
        return name.startswith(prefix) and len(name) > len(prefix)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def arrow_schema(self, names: Iterable[str] | None = None) -> pa.Schema:
        """The Arrow schema of the table (of `names` only, in this table's order, if given)."""
        wanted = None if names is None else set(names)
        return pa.schema(
            [
                pa.field(c.name, c.arrow_type, nullable=c.nullable)
                for c in self.columns
                if wanted is None or c.name in wanted
            ]
        )


def _c(
    name: str,
    type_: ColumnType,
    description: str = "",
    *,
    null: bool = True,
    measure: Measure | None = None,
    optional: bool = False,
) -> Column:
    return Column(name, type_, description, null, measure, optional)


def _controlled(column: Column) -> tuple[Column, Column]:
    """A published count or rate (null where hidden) and its `_suppressed` flag."""
    flag = Column(
        f"{column.name}_suppressed",
        "BOOLEAN",
        f"True where disclosure control hid `{column.name}`.",
        nullable=False,
    )
    return column, flag


# --- canonical ------------------------------------------------------------------------------

#: What each whole-number column of the canonical tables is (keys end `_id` and need no entry).
_CANONICAL_MEASURES: dict[tuple[str, str], Measure] = {
    ("person", "birth_year"): "number",
    ("person", "birth_month"): "number",
    ("person", "imd_decile"): "number",
    ("area", "imd_decile"): "number",
    ("activity", "length_of_stay_days"): "number",
    ("medication", "issue_count"): "count",
    ("practice", "registered_count"): "count",
    ("build", "seed"): "number",
    ("build", "people_count"): "count",
}


def _canonical(table: schema.Table) -> Table:
    def measure(column: schema.Column) -> Measure | None:
        if column.type not in INTEGER_TYPES:
            return None
        if column.name.endswith("_id"):
            return "key"
        return _CANONICAL_MEASURES[(table.name, column.name)]

    return Table(
        table.name,
        "canonical",
        table.description,
        ("synth", "ingest fhir"),
        tuple(Column(c.name, c.type, c.description, c.nullable, measure(c)) for c in table.columns),
        identifiable=table.name == "identity",
    )


_CANONICAL_TABLES: tuple[Table, ...] = tuple(_canonical(t) for t in schema.ALL_TABLES)

# --- population health (`phm run`) ------------------------------------------------------------

_PHM_RUN = ("phm run",)

_PHM_PERSON_COLUMNS: tuple[Column, ...] = (
    _c("person_id", "BIGINT", null=False, measure="key"),
    _c("age", "INTEGER", null=False, measure="number"),
    _c("sex", "VARCHAR", null=False),
    _c("ethnic_category", "VARCHAR", null=False),
    _c("ethnic_group", "VARCHAR", null=False),
    _c("lsoa_code", "VARCHAR"),
    _c("imd_decile", "INTEGER", measure="number"),
    _c("imd_quintile", "INTEGER", measure="number"),
    _c("practice_code", "VARCHAR", null=False),
    _c("pcn_code", "VARCHAR", null=False),
    _c("place_code", "VARCHAR", null=False),
    _c("national_data_opt_out", "BOOLEAN", null=False),
    _c("alcohol_problems", "INTEGER", null=False, measure="flag"),
    _c("anxiety_depression", "INTEGER", null=False, measure="flag"),
    _c("asthma", "INTEGER", null=False, measure="flag"),
    _c("atrial_fibrillation", "INTEGER", null=False, measure="flag"),
    _c("cancer", "INTEGER", null=False, measure="flag"),
    _c("chronic_kidney_disease", "INTEGER", null=False, measure="flag"),
    _c("connective_tissue_disorder", "INTEGER", null=False, measure="flag"),
    _c("constipation", "INTEGER", null=False, measure="flag"),
    _c("copd", "INTEGER", null=False, measure="flag"),
    _c("coronary_heart_disease", "INTEGER", null=False, measure="flag"),
    _c("dementia", "INTEGER", null=False, measure="flag"),
    _c("diabetes", "INTEGER", null=False, measure="flag"),
    _c("epilepsy", "INTEGER", null=False, measure="flag"),
    _c("hearing_loss", "INTEGER", null=False, measure="flag"),
    _c("heart_failure", "INTEGER", null=False, measure="flag"),
    _c("hypertension", "INTEGER", null=False, measure="flag"),
    _c("irritable_bowel", "INTEGER", null=False, measure="flag"),
    _c("painful_condition", "INTEGER", null=False, measure="flag"),
    _c("psychosis_bipolar", "INTEGER", null=False, measure="flag"),
    _c("stroke_tia", "INTEGER", null=False, measure="flag"),
    _c("frailty_level", "INTEGER", null=False, measure="number"),
    _c("palliative_12m", "INTEGER", null=False, measure="flag"),
    _c("secondary_cancer_12m", "INTEGER", null=False, measure="flag"),
    _c("liver_failure", "INTEGER", null=False, measure="flag"),
    _c("ckd_stage_4_5", "INTEGER", null=False, measure="flag"),
    _c("learning_disability", "INTEGER", null=False, measure="flag"),
    _c("physical_disability", "INTEGER", null=False, measure="flag"),
    _c("pregnant", "INTEGER", null=False, measure="flag"),
    _c("fall_6m", "INTEGER", null=False, measure="flag"),
    _c("laxatives_issues_count", "BIGINT", null=False, measure="count"),
    _c("antispasmodics_issues_count", "BIGINT", null=False, measure="count"),
    _c("analgesics_issues_count", "BIGINT", null=False, measure="count"),
    _c("antiepileptics_issues_count", "BIGINT", null=False, measure="count"),
    _c("antidepressants_issues_count", "BIGINT", null=False, measure="count"),
    _c("anxiolytics_hypnotics_issues_count", "BIGINT", null=False, measure="count"),
    _c("asthma_medicines_issues_count", "BIGINT", null=False, measure="count"),
    _c("lithium_issues_count", "BIGINT", null=False, measure="count"),
    _c("medicines_count", "BIGINT", null=False, measure="count"),
    _c("egfr_latest", "DOUBLE"),
    _c("latest_systolic_bp", "DOUBLE"),
    _c("latest_diastolic_bp", "DOUBLE"),
    _c("raised_bp_days_24m_count", "BIGINT", null=False, measure="count"),
    _c("bp_recorded_12m", "BIGINT", null=False, measure="flag"),
    _c("bmi_recorded_12m", "BIGINT", null=False, measure="flag"),
    _c("smoking_recorded_12m", "BIGINT", null=False, measure="flag"),
    _c("prior_ae_12m_count", "BIGINT", null=False, measure="count"),
    _c("prior_emergency_12m_count", "BIGINT", null=False, measure="count"),
    _c("prior_elective_12m_count", "BIGINT", null=False, measure="count"),
    _c("prior_outpatient_12m_count", "BIGINT", null=False, measure="count"),
    _c("prior_gp_12m_count", "BIGINT", null=False, measure="count"),
    _c("prior_community_12m_count", "BIGINT", null=False, measure="count"),
    _c("prior_mental_health_12m_count", "BIGINT", null=False, measure="count"),
    _c("prior_gp_6m_count", "BIGINT", null=False, measure="count"),
    _c("last_gp_contact_date", "DATE"),
    _c("ltc_count", "INTEGER", null=False, measure="count"),
    _c("cms_general", "DOUBLE", null=False),
    _c("cms_mortality", "DOUBLE", null=False),
    _c("segment", "VARCHAR", null=False),
    _c("segment_rule", "VARCHAR", null=False),
    _c("core20", "INTEGER", null=False, measure="flag"),
    _c("plus_group", "INTEGER", null=False, measure="flag"),
    _c("core20plus", "INTEGER", null=False, measure="flag"),
)


_PHM_TABLES: tuple[Table, ...] = (
    Table(
        "phm_person",
        "phm",
        "One row per person alive and registered on the index date (the day after the extract), "
        "from records dated before it. Pseudonymous; includes people who opted out, flagged.",
        _PHM_RUN,
        _PHM_PERSON_COLUMNS,
    ),
    Table(
        "phm_person_previous",
        "phm",
        "The same columns a year before the index date: the model's validation population, segment"
        " transitions and the mortality denominator.",
        _PHM_RUN,
        _PHM_PERSON_COLUMNS,
    ),
    Table(
        "phm_risk",
        "phm",
        "Emergency admission risk per person in `phm_person` (pseudonymous).",
        _PHM_RUN,
        (
            _c("person_id", "BIGINT", null=False, measure="key"),
            _c("risk_score", "DOUBLE", null=False),
            _c("risk_tier", "VARCHAR", null=False),
        ),
    ),
    Table(
        "phm_segment_counts",
        "phm",
        "Published: people by Bridges to Health segment, system-wide and by place, PCN, broad age "
        "band and IMD quintile; opt-outs left out; counts disclosure-controlled.",
        _PHM_RUN,
        (
            _c("dimension", "VARCHAR", null=False),
            _c("group_value", "VARCHAR", null=False),
            _c("segment", "VARCHAR", null=False),
            *_controlled(_c("people_count", "BIGINT", measure="count")),
        ),
        published=True,
    ),
    Table(
        "phm_segment_transitions",
        "phm",
        "Published: people by segment a year ago and now, among those registered on both dates.",
        _PHM_RUN,
        (
            _c("from_segment", "VARCHAR", null=False),
            _c("to_segment", "VARCHAR", null=False),
            *_controlled(_c("people_count", "BIGINT", measure="count")),
        ),
        published=True,
    ),
    Table(
        "phm_risk_tiers",
        "phm",
        "Published: people in each risk tier (opt-outs left out).",
        _PHM_RUN,
        (
            _c("risk_tier", "VARCHAR", null=False),
            *_controlled(_c("people_count", "BIGINT", measure="count")),
        ),
        published=True,
    ),
    Table(
        "phm_inequalities",
        "phm",
        "Published: crude and directly age-standardised rates (ESP 2013, Dobson 95% CI) for each "
        "measure, system-wide and by IMD quintile, ethnic group, place and PCN.",
        _PHM_RUN,
        (
            _c("measure", "VARCHAR", null=False),
            _c("measure_label", "VARCHAR", null=False),
            _c("unit", "VARCHAR", null=False),
            _c("dimension", "VARCHAR", null=False),
            _c("group_value", "VARCHAR", null=False),
            *_controlled(_c("events_count", "BIGINT", measure="count")),
            *_controlled(_c("people_count", "BIGINT", measure="count")),
            *_controlled(_c("crude_rate", "DOUBLE")),
            *_controlled(_c("dsr", "DOUBLE")),
            *_controlled(_c("dsr_lower", "DOUBLE")),
            *_controlled(_c("dsr_upper", "DOUBLE")),
        ),
        published=True,
    ),
    Table(
        "phm_inequality_index",
        "phm",
        "Published: slope and relative index of inequality across IMD quintiles per measure "
        "(positive: higher in the more deprived); 95% CIs by simulation.",
        _PHM_RUN,
        (
            _c("measure", "VARCHAR", null=False),
            _c("measure_label", "VARCHAR", null=False),
            _c("unit", "VARCHAR", null=False),
            _c("sii", "DOUBLE"),
            _c("sii_lower", "DOUBLE"),
            _c("sii_upper", "DOUBLE"),
            _c("rii", "DOUBLE"),
            _c("rii_lower", "DOUBLE"),
            _c("rii_upper", "DOUBLE"),
        ),
        published=True,
    ),
    Table(
        "phm_core20plus5",
        "phm",
        "Published: the Core20PLUS5 gap table, one row per clinical-area indicator.",
        _PHM_RUN,
        (
            _c("area", "VARCHAR", null=False),
            _c("indicator", "VARCHAR", null=False),
            *_controlled(_c("core20plus_numerator_count", "BIGINT", measure="count")),
            *_controlled(_c("core20plus_denominator_count", "BIGINT", measure="count")),
            *_controlled(_c("core20plus_percent", "DOUBLE")),
            *_controlled(_c("core20plus_lower", "DOUBLE")),
            *_controlled(_c("core20plus_upper", "DOUBLE")),
            *_controlled(_c("rest_numerator_count", "BIGINT", measure="count")),
            *_controlled(_c("rest_denominator_count", "BIGINT", measure="count")),
            *_controlled(_c("rest_percent", "DOUBLE")),
            *_controlled(_c("rest_lower", "DOUBLE")),
            *_controlled(_c("rest_upper", "DOUBLE")),
            *_controlled(_c("gap_points", "DOUBLE")),
            _c("note", "VARCHAR"),
        ),
        published=True,
    ),
    Table(
        "phm_worklist",
        "phm",
        "IDENTIFIABLE, for direct care: people each worklist finds, with the reasons. Includes "
        "people who opted out (the opt-out does not apply to their own care).",
        _PHM_RUN,
        (
            _c("worklist_id", "VARCHAR", null=False),
            _c("pcn_code", "VARCHAR", null=False),
            _c("practice_code", "VARCHAR", null=False),
            _c("person_id", "BIGINT", null=False, measure="key"),
            _c("nhs_number", "VARCHAR"),
            _c("age", "INTEGER", null=False, measure="number"),
            _c("sex", "VARCHAR", null=False),
            _c("risk_tier", "VARCHAR", null=False),
            _c("risk_score", "DOUBLE", null=False),
            _c("reasons", "VARCHAR", null=False),
            _c("fall_date", "DATE"),
            _c("frailty_date", "DATE"),
        ),
        identifiable=True,
    ),
    Table(
        "phm_indicator_values",
        "phm",
        "Published: every indicator (joinedup.indicators) at system, place, PCN and practice "
        "level for each year of the history, with its 95% CI, compared with England and with the "
        "parent area; opt-outs left out; counts disclosure-controlled across the levels.",
        _PHM_RUN,
        (
            _c("indicator_id", "VARCHAR", null=False),
            _c("period", "VARCHAR", null=False),
            _c("period_start_date", "DATE", null=False),
            _c("period_end_date", "DATE", null=False),
            _c("level", "VARCHAR", null=False),
            _c("area_code", "VARCHAR", null=False),
            _c("area_name", "VARCHAR", null=False),
            _c("parent_code", "VARCHAR"),
            *_controlled(_c("numerator_count", "BIGINT", measure="count")),
            *_controlled(_c("denominator_count", "BIGINT", measure="count")),
            *_controlled(_c("value", "DOUBLE")),
            *_controlled(_c("lower", "DOUBLE")),
            *_controlled(_c("upper", "DOUBLE")),
            _c("england_value", "DOUBLE"),
            _c("england_lower", "DOUBLE"),
            _c("england_upper", "DOUBLE"),
            _c("england_period", "VARCHAR"),
            _c("england_source", "VARCHAR"),
            _c("england_comparison", "VARCHAR"),
            _c("parent_value", "DOUBLE"),
            _c("parent_lower", "DOUBLE"),
            _c("parent_upper", "DOUBLE"),
            _c("parent_comparison", "VARCHAR"),
            _c("trend", "VARCHAR"),
            _c("trend_p", "DOUBLE"),
        ),
        published=True,
    ),
    Table(
        "phm_run",
        "phm",
        "The run: one row with its dates, settings, code list versions, disclosure policy and the "
        "model card.",
        _PHM_RUN,
        (
            _c("run_id", "VARCHAR", null=False),
            _c("run_at", "VARCHAR", null=False),
            _c("index_date", "DATE", null=False),
            _c("validation_index_date", "DATE", null=False),
            _c("train_index_date", "DATE", null=False),
            _c("extract_date", "DATE", null=False),
            _c("settings_yaml", "VARCHAR", null=False),
            _c("codelist_versions", "VARCHAR", null=False),
            _c("disclosure_policy", "VARCHAR", null=False),
            _c("model_card_json", "VARCHAR", null=False),
            _c("model_card_markdown", "VARCHAR", null=False),
            _c("passes_acceptance", "BOOLEAN", null=False),
        ),
    ),
)


# --- finance (`finance run` and its steps) ---------------------------------------------------

_FINANCE_RUN = ("finance run",)
_NEED = ("finance run", "finance need-index")
_ALLOCATE = ("finance run", "finance allocate")
_WHAT_IF = ("finance run", "finance what-if")
_GUARANTEES = ("finance run", "finance guarantees")
_PAYMENTS = ("finance run", "finance payments")
_RISK_SHARE = ("finance run", "finance risk-share")
_CONTROL_TOTAL = ("finance run", "finance control-total")
#: Need components with a weighted population and an index, in the order tables show them.
NEED_COMPONENTS: tuple[str, ...] = (
    "general_and_acute", "community_services", "mental_health", "maternity",
    "health_inequalities", "prescribing", "final", "primary_medical_care",
)  # fmt: skip
#: Only NHS England's published weights give it; need from the population does not.
PUBLISHED_ONLY_COMPONENT = "final_pmc"


def _components(suffix: Literal["wp", "index"]) -> tuple[Column, ...]:
    meaning = (
        "Weighted population of {}."
        if suffix == "wp"
        else "Need index of {}: (WP / population) of the area over the same of the ICB."
    )
    return tuple(
        _c(
            f"{c}_{suffix}",
            "DOUBLE",
            meaning.format(c.replace("_", " ")),
            null=False,
            optional=c == PUBLISHED_ONLY_COMPONENT,
        )
        for c in (*NEED_COMPONENTS, PUBLISHED_ONLY_COMPONENT)
    )


_FINANCE_TABLES: tuple[Table, ...] = (
    Table(
        "finance_practice_need",
        "finance",
        "Weighted population of each practice per need component, from the population or from NHS "
        "England's published file.",
        _NEED,
        (
            _c("practice_code", "VARCHAR", null=False),
            _c("practice_name", "VARCHAR", null=False),
            _c("pcn_code", "VARCHAR", null=False),
            _c("place_code", "VARCHAR", null=False),
            _c("registered_count", "DOUBLE", null=False, measure="count"),
            *_components("wp"),
        ),
    ),
    Table(
        "finance_need_index",
        "finance",
        "Need index of every place, PCN and practice against the ICB, per component.",
        _NEED,
        (
            _c("level", "VARCHAR", null=False),
            _c("code", "VARCHAR", null=False),
            _c("name", "VARCHAR", null=False),
            _c("parent_code", "VARCHAR", null=False),
            _c("registered_count", "DOUBLE", null=False, measure="count"),
            _c("population_share", "DOUBLE", null=False),
            *_components("wp"),
            *_components("index"),
        ),
    ),
    Table(
        "finance_cost_curve",
        "finance",
        "Published: cost per head in the fitting year by component, five-year age band and sex "
        "(opt-outs left out).",
        _NEED,
        (
            _c("component", "VARCHAR", null=False),
            _c("age_band", "VARCHAR", null=False),
            _c("sex", "VARCHAR", null=False),
            *_controlled(_c("people_count", "BIGINT", measure="count")),
            *_controlled(_c("cost_per_head_gbp", "DECIMAL(18,2)")),
        ),
        published=True,
    ),
    Table(
        "finance_need_adjustment",
        "finance",
        "Published: additional need, observed over age-sex expected cost, by component, IMD "
        "quintile (0 = unknown) and long-term condition band.",
        _NEED,
        (
            _c("component", "VARCHAR", null=False),
            _c("imd_quintile", "INTEGER", null=False, measure="number"),
            _c("ltc_band", "VARCHAR", null=False),
            *_controlled(_c("people_count", "BIGINT", measure="count")),
            *_controlled(_c("ratio", "DOUBLE")),
        ),
        published=True,
    ),
    Table(
        "finance_health_inequalities",
        "finance",
        "Published: deaths under 75 in the fitting year against the age-sex expected, by IMD "
        "quintile: the health inequalities weight.",
        _NEED,
        (
            _c("imd_quintile", "INTEGER", null=False, measure="number"),
            *_controlled(_c("people_count", "BIGINT", measure="count")),
            *_controlled(_c("deaths_count", "BIGINT", measure="count")),
            *_controlled(_c("expected_deaths_count", "DOUBLE", measure="count")),
            *_controlled(_c("smr", "DOUBLE")),
        ),
        published=True,
    ),
    Table(
        "finance_allocation",
        "finance",
        "The allocation path: each place in each year.",
        _ALLOCATE,
        (
            _c("financial_year", "VARCHAR", null=False),
            _c("place_code", "VARCHAR", null=False),
            _c("place_name", "VARCHAR", null=False),
            _c("baseline_gbp", "DECIMAL(18,2)", null=False),
            _c("target_gbp", "DECIMAL(18,2)", null=False),
            _c("allocation_gbp", "DECIMAL(18,2)", null=False),
            _c("head_count_gbp", "DECIMAL(18,2)", null=False),
            _c("distance_from_target", "DOUBLE", null=False),
            _c("growth", "DOUBLE", null=False),
        ),
    ),
    Table(
        "finance_sector_allocation",
        "finance",
        "Each place's allocation split by sector, for the baseline and every year.",
        _ALLOCATE,
        (
            _c("financial_year", "VARCHAR", null=False),
            _c("place_code", "VARCHAR", null=False),
            _c("sector", "VARCHAR", null=False),
            _c("allocation_gbp", "DECIMAL(18,2)", null=False),
        ),
    ),
    Table(
        "finance_guarantee",
        "finance",
        "The Mental Health Investment Standard and the community services guarantee.",
        _GUARANTEES,
        (
            _c("guarantee", "VARCHAR", null=False),
            _c("financial_year", "VARCHAR", null=False),
            _c("previous_gbp", "DECIMAL(18,2)", null=False),
            _c("minimum_gbp", "DECIMAL(18,2)", null=False),
            _c("planned_gbp", "DECIMAL(18,2)", null=False),
            _c("margin_gbp", "DECIMAL(18,2)", null=False),
            _c("met", "BOOLEAN", null=False),
            _c("allocation_growth", "DOUBLE", null=False),
            _c("spend_growth", "DOUBLE"),
            _c("explanation", "VARCHAR", null=False),
        ),
    ),
    Table(
        "finance_place_budget",
        "finance",
        "Delegated place budgets: each place's sector allocation, delegated and held at system.",
        _GUARANTEES,
        (
            _c("financial_year", "VARCHAR", null=False),
            _c("place_code", "VARCHAR", null=False),
            _c("sector", "VARCHAR", null=False),
            _c("allocation_gbp", "DECIMAL(18,2)", null=False),
            _c("delegated_gbp", "DECIMAL(18,2)", null=False),
            _c("retained_gbp", "DECIMAL(18,2)", null=False),
            _c("delegated_share", "DOUBLE", null=False),
        ),
    ),
    Table(
        "finance_pooled_budget",
        "finance",
        "Pooled budgets with councils (Better Care Fund, Section 75): one row per partner.",
        _GUARANTEES,
        (
            _c("financial_year", "VARCHAR", null=False),
            _c("pool", "VARCHAR", null=False),
            _c("kind", "VARCHAR", null=False),
            _c("place_code", "VARCHAR", null=False),
            _c("partner", "VARCHAR", null=False),
            _c("contribution_gbp", "DECIMAL(18,2)", null=False),
            _c("share_of_pool", "DOUBLE", null=False),
            _c("nhs_minimum_gbp", "DECIMAL(18,2)"),
            _c("meets_minimum", "BOOLEAN"),
            _c("explanation", "VARCHAR", null=False),
        ),
    ),
    Table(
        "finance_payment_line",
        "finance",
        "Blended payment: each contract's payment line by line. Counts are exact: contract "
        "monitoring between commissioner and provider, not a publication.",
        _PAYMENTS,
        (
            _c("provider_code", "VARCHAR", null=False),
            _c("financial_year", "VARCHAR", null=False),
            _c("rules", "VARCHAR", null=False),
            _c("line", "VARCHAR", null=False),
            _c("point_of_delivery", "VARCHAR"),
            _c("planned_count", "BIGINT", measure="count"),
            _c("actual_count", "BIGINT", measure="count"),
            _c("unit_price_gbp", "DECIMAL(18,2)"),
            _c("market_forces_factor", "DOUBLE"),
            _c("amount_gbp", "DECIMAL(18,2)", null=False),
            _c("explanation", "VARCHAR", null=False),
        ),
    ),
    Table(
        "finance_ledger",
        "finance",
        "Organisations' plans and actuals by month and category (imported or synthetic).",
        _CONTROL_TOTAL,
        (
            _c("organisation_code", "VARCHAR", null=False),
            _c("financial_year", "VARCHAR", null=False),
            _c("month", "TINYINT", null=False, measure="number"),
            _c("month_start_date", "DATE", null=False),
            _c("category", "VARCHAR", null=False),
            _c("plan_gbp", "DECIMAL(18,2)", null=False),
            _c("actual_gbp", "DECIMAL(18,2)"),
        ),
    ),
    Table(
        "finance_control_total",
        "finance",
        "The system control total: each organisation and the system (SYSTEM).",
        _CONTROL_TOTAL,
        (
            _c("organisation_code", "VARCHAR", null=False),
            _c("organisation_name", "VARCHAR", null=False),
            _c("financial_year", "VARCHAR", null=False),
            _c("months_reported_count", "TINYINT", null=False, measure="count"),
            _c("plan_ytd_gbp", "DECIMAL(18,2)", null=False),
            _c("actual_ytd_gbp", "DECIMAL(18,2)", null=False),
            _c("plan_full_year_gbp", "DECIMAL(18,2)", null=False),
            _c("forecast_run_rate_gbp", "DECIMAL(18,2)", null=False),
            _c("forecast_trend_gbp", "DECIMAL(18,2)", null=False),
            _c("forecast_gbp", "DECIMAL(18,2)", null=False),
            _c("forecast_method", "VARCHAR", null=False),
            _c("forecast_variance_gbp", "DECIMAL(18,2)", null=False),
            _c("rule", "VARCHAR", null=False),
            _c("must_break_even", "BOOLEAN", null=False),
            _c("meets_rule", "BOOLEAN"),
            _c("explanation", "VARCHAR", null=False),
        ),
    ),
    Table(
        "finance_variance",
        "finance",
        "Variance to date by organisation and cause (category), favourable positive.",
        _CONTROL_TOTAL,
        (
            _c("organisation_code", "VARCHAR", null=False),
            _c("financial_year", "VARCHAR", null=False),
            _c("category", "VARCHAR", null=False),
            _c("plan_ytd_gbp", "DECIMAL(18,2)", null=False),
            _c("actual_ytd_gbp", "DECIMAL(18,2)", null=False),
            _c("variance_gbp", "DECIMAL(18,2)", null=False),
            _c("favourable", "BOOLEAN", null=False),
        ),
    ),
    Table(
        "finance_control_total_waterfall",
        "finance",
        "Steps from the system's planned surplus to its forecast outturn, for the chart.",
        _CONTROL_TOTAL,
        (
            _c("financial_year", "VARCHAR", null=False),
            _c("step", "SMALLINT", null=False, measure="key"),
            _c("label", "VARCHAR", null=False),
            _c("amount_gbp", "DECIMAL(18,2)", null=False),
            _c("running_total_gbp", "DECIMAL(18,2)", null=False),
        ),
    ),
    Table(
        "finance_risk_share",
        "finance",
        "The risk-share agreement applied to each outturn scenario: one row per party. Losses "
        "(overspends) are positive, gains negative; final positions sum to the variances.",
        _RISK_SHARE,
        (
            _c("scenario", "VARCHAR", null=False),
            _c("party_code", "VARCHAR", null=False),
            _c("party_name", "VARCHAR", null=False),
            _c("party_kind", "VARCHAR", null=False),
            _c("budget_gbp", "DECIMAL(18,2)", null=False),
            _c("variance_gbp", "DECIMAL(18,2)", null=False),
            _c("retained_gbp", "DECIMAL(18,2)", null=False),
            _c("pooled_gbp", "DECIMAL(18,2)", null=False),
            _c("pool_share_gbp", "DECIMAL(18,2)", null=False),
            _c("limit_adjustment_gbp", "DECIMAL(18,2)", null=False),
            _c("residual_gbp", "DECIMAL(18,2)", null=False),
            _c("final_gbp", "DECIMAL(18,2)", null=False),
            _c("explanation", "VARCHAR", null=False),
        ),
    ),
    Table(
        "finance_what_if",
        "finance",
        "What-if scenarios: the effect on each place of a change in activity.",
        _WHAT_IF,
        (
            _c("scenario", "VARCHAR", null=False),
            _c("description", "VARCHAR", null=False),
            _c("financial_year", "VARCHAR", null=False),
            _c("place_code", "VARCHAR", null=False),
            _c("place_name", "VARCHAR", null=False),
            _c("baseline_cost_gbp", "DECIMAL(18,2)", null=False),
            _c("scenario_cost_gbp", "DECIMAL(18,2)", null=False),
            _c("cost_change_gbp", "DECIMAL(18,2)", null=False),
            _c("baseline_index", "DOUBLE", null=False),
            _c("scenario_index", "DOUBLE", null=False),
            _c("baseline_target_gbp", "DECIMAL(18,2)", null=False),
            _c("scenario_target_gbp", "DECIMAL(18,2)", null=False),
            _c("target_change_gbp", "DECIMAL(18,2)", null=False),
            _c("allocation_change_gbp", "DECIMAL(18,2)", null=False),
        ),
    ),
    Table(
        "finance_run",
        "finance",
        "The run: one row with the settings used.",
        _FINANCE_RUN,
        (
            _c("run_id", "VARCHAR", null=False),
            _c("run_at", "VARCHAR", null=False),
            _c("joinedup_version", "VARCHAR", null=False),
            _c("need_source", "VARCHAR", null=False),
            _c("steps", "VARCHAR", null=False),
            _c("settings_yaml", "VARCHAR", null=False),
        ),
    ),
)


# --- FHIR ingest (`ingest fhir`) ---------------------------------------------------------------

_INGEST = ("ingest fhir",)

_INGEST_TABLES: tuple[Table, ...] = (
    Table(
        "fhir_resource",
        "ingest",
        "The raw store: every resource ever loaded, one row per type, id and version. The "
        "canonical tables are rebuilt from the latest version of each.",
        _INGEST,
        (
            _c("resource_type", "VARCHAR", null=False),
            _c("id", "VARCHAR", null=False),
            _c("version_id", "VARCHAR", null=False),
            _c("last_updated", "VARCHAR"),
            _c("resource", "JSON", null=False),
            _c("load_id", "VARCHAR", null=False),
            _c("load_seq", "BIGINT", null=False, measure="key"),
            _c("source_file", "VARCHAR", null=False),
            _c("source_line", "BIGINT", null=False, measure="key"),
            _c("load_order", "BIGINT", measure="key"),
        ),
        identifiable=True,
    ),
    Table(
        "fhir_quarantine",
        "ingest",
        "Records set aside: not readable, or failing a check. Identical records from a re-run are "
        "not added twice.",
        _INGEST,
        (
            _c("load_id", "VARCHAR", null=False),
            _c("source_file", "VARCHAR", null=False),
            _c("source_line", "BIGINT", null=False, measure="key"),
            _c("resource_type", "VARCHAR"),
            _c("resource_id", "VARCHAR"),
            _c("reason", "VARCHAR", null=False),
            _c("content_hash", "VARCHAR", null=False),
            _c("content", "VARCHAR"),
        ),
        identifiable=True,
    ),
    Table(
        "fhir_load",
        "ingest",
        "One row per load.",
        _INGEST,
        (
            _c("load_id", "VARCHAR", null=False),
            _c("load_seq", "BIGINT", null=False, measure="key"),
            _c("started_at", "VARCHAR", null=False),
            _c("finished_at", "VARCHAR", null=False),
            _c("inputs", "VARCHAR", null=False),
            _c("resources_in_count", "BIGINT", null=False, measure="count"),
            _c("stored_count", "BIGINT", null=False, measure="count"),
            _c("unchanged_count", "BIGINT", null=False, measure="count"),
            _c("quarantined_count", "BIGINT", null=False, measure="count"),
            _c("joinedup_version", "VARCHAR", null=False),
        ),
    ),
    Table(
        "fhir_load_quality",
        "ingest",
        "The data-quality report of each load, as rows: `section` is one of resources in, stored, "
        "unchanged, quarantined (by resource type), quarantine reasons, rows out (by table), "
        "unmapped codes, dangling references, people.",
        _INGEST,
        (
            _c("load_id", "VARCHAR", null=False),
            _c("section", "VARCHAR", null=False),
            _c("item", "VARCHAR", null=False),
            _c("detail", "VARCHAR", null=False),
            _c("items_count", "BIGINT", null=False, measure="count"),
        ),
    ),
    Table(
        "procedure",
        "ingest",
        "Procedures from FHIR Procedure resources (no synthetic counterpart).",
        _INGEST,
        (
            _c("person_id", "BIGINT", null=False, measure="key"),
            _c("procedure_date", "DATE"),
            _c("code_system", "VARCHAR", null=False),
            _c("code", "VARCHAR", null=False),
            _c("description", "VARCHAR"),
            _c("status", "VARCHAR"),
            _c("organisation_code", "VARCHAR"),
        ),
    ),
    Table(
        "practitioner",
        "ingest",
        "Practitioners from FHIR Practitioner resources.",
        _INGEST,
        (
            _c("practitioner_key", "VARCHAR", null=False),
            _c("identifier_system", "VARCHAR"),
            _c("identifier_value", "VARCHAR"),
            _c("family", "VARCHAR"),
            _c("given", "VARCHAR"),
            _c("prefix", "VARCHAR"),
            _c("gender", "VARCHAR"),
            _c("qualification", "VARCHAR"),
        ),
        identifiable=True,
    ),
    Table(
        "practitioner_role",
        "ingest",
        "Practitioners' roles from FHIR PractitionerRole resources.",
        _INGEST,
        (
            _c("role_key", "VARCHAR", null=False),
            _c("practitioner_key", "VARCHAR"),
            _c("organisation_code", "VARCHAR"),
            _c("role_code", "VARCHAR"),
            _c("role_display", "VARCHAR"),
            _c("specialty_code", "VARCHAR"),
            _c("active", "BOOLEAN"),
            _c("start_date", "DATE"),
            _c("end_date", "DATE"),
        ),
    ),
    Table(
        "source_organisation",
        "ingest",
        "Organisations as the FHIR sources describe them (the footprint tables stay as built).",
        _INGEST,
        (
            _c("organization_key", "VARCHAR", null=False),
            _c("ods_code", "VARCHAR"),
            _c("name", "VARCHAR"),
            _c("type_code", "VARCHAR"),
            _c("type_display", "VARCHAR"),
            _c("active", "BOOLEAN"),
            _c("part_of", "VARCHAR"),
            _c("postcode", "VARCHAR"),
        ),
    ),
)

# --- working tables: written and dropped inside one job ---------------------------------------

_SCRATCH_TABLES: tuple[Table, ...] = (
    Table(
        "phm_person_train",
        "phm",
        "`phm_person` two years before the index date, the risk model's training population.",
        _PHM_RUN,
        (),
        scratch=True,
    ),
    Table(
        "phm_person_step_<n>",
        "phm",
        "`phm_person` built in steps, one per-person summary joined at a time "
        "(`population.conditions.phm_person_steps`), dropped when the snapshot is made.",
        _PHM_RUN,
        (),
        scratch=True,
    ),
    Table(
        "risk_score_scratch",
        "phm",
        "The model's scores of `phm_person`, before tiers make them `phm_risk`.",
        _PHM_RUN,
        (),
        scratch=True,
    ),
    *(
        Table(name, "ingest", description, _INGEST, (), identifiable=True, scratch=True)
        for name, description in (
            ("fhir_arrived", "The records of this load beside any stored version of each."),
            ("fhir_new", "The versions this load adds to the raw store."),
            ("fhir_current", "The latest version of every stored resource."),
            (
                "fhir_person_key",
                "Each FHIR patient's person key, by the person index, NHS number or source id.",
            ),
            ("fhir_encounter_activity", "Encounters as activity, with their person keys."),
            ("fhir_out", "One canonical table's rows before they replace the table's contents."),
            (
                "v_<view>",
                "One per shipped SQL-on-FHIR ViewDefinition (`src/joinedup/fhir/shipped`), "
                "which declares its columns.",
            ),
        )
    ),
)

# --- the dashboard's access store (SQLite, `joinedup serve` and `joinedup users`) ------------

_ACCESS = ("serve", "users add")
_TEXT_AT = "UTC instant (ISO 8601)."


def _access(name: str, description: str, columns: tuple[Column, ...], **flags: bool) -> Table:
    return Table(name, "access", description, _ACCESS, columns, store="access", **flags)


_ACCESS_TABLES: tuple[Table, ...] = (
    _access(
        "users",
        "Dashboard users: role, PCN or practice, password hash.",
        (
            _c("username", "VARCHAR", "Sign-in name.", null=False),
            _c("display_name", "VARCHAR", "Name shown.", null=False),
            _c("role", "VARCHAR", "Role (clinician, analyst, finance, admin ...).", null=False),
            _c("pcn_code", "VARCHAR", "PCN a clinician may see."),
            _c("practice_code", "VARCHAR", "Practice a clinician may see."),
            _c("password_hash", "VARCHAR", "Password hash (never the password).", null=False),
            _c("demo", "BIGINT", "1 for a demo user.", null=False, measure="flag"),
            _c("active", "BIGINT", "1 while the user may sign in.", null=False, measure="flag"),
            _c("created_at", "VARCHAR", _TEXT_AT, null=False),
            _c("patient_id", "VARCHAR", "A citizen's own FHIR Patient id (citizens only)."),
            _c(
                "organisation_code",
                "VARCHAR",
                "ODS code of the organisation a clinician or care worker works for (a trust, a "
                "council), beyond a practice and PCN.",
            ),
            _c(
                "last_sign_in_at",
                "VARCHAR",
                "When they last signed in with a password (ISO text, UTC); empty: never, or not "
                "since sign-ins were recorded. For the administrators' review of accounts.",
            ),
        ),
        identifiable=True,
    ),
    _access(
        "proxies",
        "Who may see another person's record for them (a parent, guardian, carer or attorney).",
        (
            _c("username", "VARCHAR", "The citizen acting for the person.", null=False),
            _c("patient_id", "VARCHAR", "The person's FHIR Patient id.", null=False),
            _c("relationship", "VARCHAR", "parent, guardian, carer or attorney.", null=False),
            _c("granted_at", "VARCHAR", _TEXT_AT, null=False),
            _c("revoked_at", "VARCHAR", "When it was revoked (ISO text); empty while in force."),
            _c("until_date", "DATE", "Its last day (UTC); empty: until revoked."),
            _c(
                "until_reason",
                "VARCHAR",
                "Why it ends on until_date: --until, or the day before the person's birthday "
                "that ends a parent's or guardian's access (records.proxy_age); empty with no "
                "until_date or for a grant from before it was kept.",
            ),
            _c(
                "renewed_at",
                "VARCHAR",
                "When the person's GP practice renewed a parent's or guardian's access after "
                "the review at the child's review birthday (ISO text; records.proxy_age, "
                "`users renew-proxy`); empty: not since it was granted.",
            ),
            _c("renewed_by", "VARCHAR", "The admin or practice clinician who renewed it."),
            _c(
                "review_date",
                "DATE",
                "The review day (the child's review birthday) a renewal, or a grant recorded "
                "as its own review (`users proxy --by`), was for: it counts for that review "
                "and earlier ones, whatever the notice period is set to later; empty: none.",
            ),
            _c(
                "review_notice_from",
                "VARCHAR",
                "For a grant already in the database when the review rule reached it: when it "
                "did (ISO text), so the grant is suspended no sooner than the notice period "
                "after; empty for grants recorded since.",
            ),
        ),
        identifiable=True,
    ),
    _access(
        "sessions",
        "Signed-in sessions, by a hash of their token.",
        (
            _c("token_hash", "VARCHAR", "SHA-256 of the session token.", null=False),
            _c("username", "VARCHAR", "User.", null=False),
            _c("kind", "VARCHAR", "What the token is for.", null=False),
            _c("created_at", "VARCHAR", _TEXT_AT, null=False),
            _c("expires_at", "VARCHAR", _TEXT_AT, null=False),
        ),
        identifiable=True,
    ),
    _access(
        "login_failures",
        "Failed sign-ins, for the lock-out.",
        (
            _c("username", "VARCHAR", "Name tried.", null=False),
            _c("client", "VARCHAR", "Client address.", null=False),
            _c("at", "VARCHAR", _TEXT_AT, null=False),
        ),
        identifiable=True,
    ),
    _access(
        "audit",
        "The audit log: append-only, each entry chained to the one before by hash.",
        (
            _c("seq", "BIGINT", "Position in the log.", null=False, measure="key"),
            _c("at", "VARCHAR", _TEXT_AT, null=False),
            _c("username", "VARCHAR", "Who.", null=False),
            _c("role", "VARCHAR", "Their role.", null=False),
            _c("action", "VARCHAR", "What they did.", null=False),
            _c("resource", "VARCHAR", "What they did it to.", null=False),
            _c("detail", "VARCHAR", "More about it.", null=False),
            _c("reason", "VARCHAR", "The reason given.", null=False),
            _c("client", "VARCHAR", "Client address.", null=False),
            _c("prev_hash", "VARCHAR", "Hash of the entry before.", null=False),
            _c("hash", "VARCHAR", "Hash of this entry and the one before.", null=False),
            _c("organisation", "VARCHAR", "The user's organisation (ODS code).", null=False),
            _c("purpose", "VARCHAR", "Purpose of use (TREAT, BTG, PATRQT ...).", null=False),
            _c("patients", "VARCHAR", "FHIR Patient ids the request touched.", null=False),
        ),
        identifiable=True,
    ),
    _access(
        "worklist_status",
        "Where a PCN team is with each person on a worklist (to-contact, contacted, declined, "
        "done), with a note: one row per PCN, worklist and person, the latest change.",
        (
            _c("pcn_code", "VARCHAR", "PCN whose team set it.", null=False),
            _c("worklist_id", "VARCHAR", "Worklist id from the settings file.", null=False),
            _c("person_id", "BIGINT", "Pseudonymous person key.", null=False, measure="key"),
            _c("status", "VARCHAR", "to-contact, contacted, declined or done.", null=False),
            _c("note", "VARCHAR", "The team's note (may be empty).", null=False),
            _c("username", "VARCHAR", "Who changed it last.", null=False),
            _c("at", "VARCHAR", _TEXT_AT, null=False),
        ),
        identifiable=True,
    ),
    _access(
        "audit_checkpoint",
        "Signed checkpoints of the audit log's head: append-only.",
        (
            _c("id", "BIGINT", "Checkpoint number.", null=False, measure="key"),
            _c("kind", "VARCHAR", "What made the checkpoint.", null=False),
            _c("seq", "BIGINT", "Last audit entry covered.", null=False, measure="key"),
            _c("entries_count", "BIGINT", "Entries covered.", null=False, measure="count"),
            _c("hash", "VARCHAR", "Hash of the log up to `seq`.", null=False),
            _c("at", "VARCHAR", _TEXT_AT, null=False),
            _c("mac", "VARCHAR", "HMAC of the checkpoint with the audit key.", null=False),
        ),
    ),
)

#: Every table any job writes.
REGISTRY: tuple[Table, ...] = (
    *_CANONICAL_TABLES,
    *_PHM_TABLES,
    *_FINANCE_TABLES,
    *_INGEST_TABLES,
    *_SCRATCH_TABLES,
    *_ACCESS_TABLES,
)
_BY_NAME: dict[str, Table] = {t.name: t for t in REGISTRY if not t.is_pattern}
_PATTERNS: tuple[Table, ...] = tuple(t for t in REGISTRY if t.is_pattern)

#: `phm_person`'s (and `phm_person_previous`'s) counts renamed `_count`, also the risk model's
#: feature names (`population.risk`).
_PHM_PERSON_RENAMED: dict[str, str] = {
    c: f"{c}_count"
    for c in (
        *(
            f"{g}_issues"
            for g in (
                "laxatives", "antispasmodics", "analgesics", "antiepileptics", "antidepressants",
                "anxiolytics_hypnotics", "asthma_medicines", "lithium",
            )
        ),
        "medicines",
        "raised_bp_days_24m",
        *(
            f"prior_{u}"
            for u in (
                "ae_12m", "emergency_12m", "elective_12m", "outpatient_12m", "gp_12m",
                "community_12m", "mental_health_12m", "gp_6m",
            )
        ),
    )
}  # fmt: skip
#: Columns renamed to keep the conventions, by table, old name to new. A warehouse or lake
#: written before a rename still holds the old names; `outdated` says so, and how to rebuild,
#: rather than let a reader fail on a missing column. (The access store's one rename is made
#: in place when the store opens: it holds the audit log, which no command could write again.)
RENAMED_COLUMNS: dict[str, dict[str, str]] = {
    "practice": {"list_size": "registered_count"},
    "build": {"people": "people_count"},
    "phm_segment_counts": {"people": "people_count"},
    "phm_segment_transitions": {"people": "people_count"},
    "phm_risk_tiers": {"people": "people_count"},
    "phm_inequalities": {"events": "events_count", "people": "people_count"},
    "phm_core20plus5": {
        f"{side}_{part}": f"{side}_{part}_count"
        for side in ("core20plus", "rest")
        for part in ("numerator", "denominator")
    },
    "finance_practice_need": {"population": "registered_count"},
    "finance_need_index": {"population": "registered_count"},
    "finance_health_inequalities": {"expected_deaths": "expected_deaths_count"},
    "fhir_load": {c: f"{c}_count" for c in ("resources_in", "stored", "unchanged", "quarantined")},
    "fhir_load_quality": {"count": "items_count"},
    "audit_checkpoint": {"entries": "entries_count"},
    "phm_person": _PHM_PERSON_RENAMED,
    "phm_person_previous": _PHM_PERSON_RENAMED,
}

#: Words that mean money in a column name: such a column is DECIMAL pounds ending `_gbp`.
MONEY_WORDS: tuple[str, ...] = ("cost", "price", "spend", "budget", "amount", "pounds", "gbp")
#: ... unless it ends in one of these: then it is a fraction of money, not money.
RATIO_WORDS: tuple[str, ...] = ("growth", "share", "index", "ratio", "rate", "factor")


def lookup(name: str) -> Table | None:
    """The registered table called `name` (or the pattern it belongs to, `v_<view>`)."""
    found = _BY_NAME.get(name)
    if found is not None:
        return found
    return next((t for t in _PATTERNS if t.matches(name)), None)


def _registered(name: str) -> Table:
    table = lookup(name)
    if table is None:
        raise RegistryError(f"{name}: not a registered table (joinedup.warehouse.registry)")
    if table.scratch:
        raise RegistryError(
            f"{name}: a working table, dropped before its job ends; its columns are not registered"
        )
    return table


def outdated(name: str, column_names: Iterable[str]) -> str | None:
    """One line saying table `name` was written by an older version of joinedup, under a
    column name since changed, and which command rebuilds it; None when it has none."""
    renamed = RENAMED_COLUMNS.get(name, {})
    have = set(column_names)
    old = next((o for o, n in renamed.items() if o in have and n not in have), None)
    table = lookup(name)
    if old is None or table is None:
        return None
    commands = " or ".join(f"`joinedup {w}`" for w in table.written_by)
    return (
        f"table {name} was written by an older version of joinedup (column {old}, now "
        f"{renamed[old]}): rebuild it with {commands}"
    )


def check(name: str, arrow_schema: pa.Schema) -> list[str]:
    """What differs between a written table's Arrow schema and its registration, one line per
    difference naming table and column: a missing column, an extra one, or another type; or,
    for a table written by an older version, one line saying so (`outdated`).
    (Nullability is not compared: engines report every column nullable; `conform` checks
    the values.)"""
    try:
        table = _registered(name)
    except RegistryError as err:
        return [str(err)]
    found = {f.name: f.type for f in arrow_schema}
    older = outdated(name, found)
    if older is not None:
        return [older]
    differences = [
        f"{name}.{c.name}: missing (registered {c.type})"
        for c in table.columns
        if c.name not in found and not c.optional
    ]
    for column_name, arrow_type in found.items():
        column = table.column(column_name)
        if column is None:
            differences.append(f"{name}.{column_name}: not registered (written as {arrow_type})")
        elif arrow_type != column.arrow_type:
            differences.append(
                f"{name}.{column_name}: written as {arrow_type}, registered {column.type} "
                f"({column.arrow_type})"
            )
    return differences


def conform(name: str, data: pa.Table) -> pa.Table:
    """`data` with the registered columns of table `name`, in their order and types, matched
    by column name. Refuses (RegistryError, naming table and column) a missing column, an
    unregistered one, a value that cannot be cast, or a null where none may be; a table
    written by an older version is refused saying so (`outdated`)."""
    table = _registered(name)
    older = outdated(name, data.column_names)
    if older is not None:
        raise RegistryError(older)
    extra = [c for c in data.column_names if table.column(c) is None]
    if extra:
        raise RegistryError(f"{name}.{extra[0]}: not a registered column")
    arrays: list[pa.ChunkedArray] = []
    fields: list[pa.Field] = []
    for column in table.columns:
        if column.name not in data.column_names:
            if column.optional:
                continue
            raise RegistryError(f"{name}.{column.name}: missing (registered {column.type})")
        values = data.column(column.name)
        try:
            cast = values.cast(column.arrow_type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            reason = str(err).splitlines()[0]
            raise RegistryError(
                f"{name}.{column.name}: cannot be {column.type} ({values.type}): {reason}"
            ) from None
        if not column.nullable and cast.null_count:
            raise RegistryError(
                f"{name}.{column.name}: {cast.null_count} null value(s) where none may be"
            )
        arrays.append(cast)
        fields.append(pa.field(column.name, column.arrow_type, nullable=column.nullable))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def naming_problems(table: Table) -> list[str]:
    """Where `table`'s columns break the naming conventions, with no exceptions: dates end
    `_date`, counts `_count`, money `_gbp`; every whole number says what it measures."""
    return [
        f"{table.name}.{c.name}: {reason}" for c in table.columns for reason in column_problems(c)
    ]


def column_problems(c: Column) -> list[str]:
    """How one column's name breaks the conventions."""
    rules = (
        (c.type == "DATE", c.name.endswith("_date"), "a date ends _date", "_date is for DATE"),
        (
            c.measure == "count",
            c.name.endswith("_count"),
            "a count ends _count",
            "_count is for a column measuring a count",
        ),
        (c.type in MONEY_TYPES, c.name.endswith("_gbp"), "money ends _gbp", "_gbp is for DECIMAL"),
    )
    problems = [
        first if is_kind else second
        for is_kind, has_suffix, first, second in rules
        if is_kind != has_suffix
    ]
    if c.type in INTEGER_TYPES and c.measure is None:
        problems.append("a whole number says what it measures (count, flag, key or number)")
    words = c.name.split("_")
    numeric = c.type in INTEGER_TYPES or c.type == "DOUBLE"
    if numeric and any(w in MONEY_WORDS for w in words) and words[-1] not in RATIO_WORDS:
        problems.append(f"money is DECIMAL pounds, not {c.type}")
    return problems


def render_markdown() -> str:
    """The registered tables, for docs/warehouse.md (between its registry markers)."""
    lines = [
        *textwrap.wrap(
            "Every table a job writes is declared in `src/joinedup/warehouse/registry.py`: its "
            "columns with type and nullability, its kind, the commands that write it, and whether "
            "it is published (passed disclosure control) or identifiable. `check(name, schema)` "
            "lists what a written table does differently; `conform(name, table)` casts to the "
            "declaration by column name or refuses naming the table and column. A unit test runs "
            "`phm run`, `finance run` and `ingest fhir` on a small world and fails when a table "
            "is written that is not registered or differs from its declaration.",
            width=100,
            break_on_hyphens=False,
        ),
        "",
        *textwrap.wrap(
            "The canonical tables' columns are in [data-model.md](data-model.md); the columns "
            "of every other table are in the registry, their meanings in the tables pages of "
            "their modules (also in data-model.md). Working tables (dropped before their job "
            "ends) are registered by name only.",
            width=100,
            break_on_hyphens=False,
        ),
        "",
        "| table | kind | written by | columns | published | identifiable |",
        "|---|---|---|---|---|---|",
    ]
    for t in REGISTRY:
        columns = "working" if t.scratch else str(len(t.columns))
        store = " (access store)" if t.store == "access" else ""
        lines.append(
            f"| `{t.name}`{store} | {t.kind} | {', '.join(f'`{w}`' for w in t.written_by)} | "
            f"{columns} | {'yes' if t.published else ''} | {'yes' if t.identifiable else ''} |"
        )
    lines += [
        "",
        *textwrap.wrap(
            "Every column keeps the naming conventions (dates `_date`, counts `_count`, money "
            "`_gbp`), with no exceptions; a test fails for any that does not. Columns renamed "
            "to keep them are in `RENAMED_COLUMNS`. A warehouse or lake written before a rename "
            "is refused in one line naming the table and the command that rebuilds it (a job "
            "opening it to write may replace its own outputs). The FHIR load records "
            "(`fhir_load`, `fhir_load_quality`) are renamed in place by the next `ingest fhir`, "
            "and the access store's `audit_checkpoint` when the store opens: they are histories "
            "no command could write again.",
            width=100,
            break_on_hyphens=False,
        ),
        "",
    ]
    for table_name, renamed in RENAMED_COLUMNS.items():
        pairs = ", ".join(f"`{old}` → `{new}`" for old, new in renamed.items())
        item = f"- `{table_name}`: {pairs}"
        lines += textwrap.wrap(item, width=100, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines) + "\n"


DOC_BEGIN = "<!-- registry: generated by `python -m joinedup.warehouse.registry` -->"
DOC_END = "<!-- registry: end -->"


def with_registry_section(page: str) -> str:
    """`page` (docs/warehouse.md) with the text between its registry markers regenerated."""
    if DOC_BEGIN not in page or DOC_END not in page:
        raise RegistryError(f"the page lacks the registry markers {DOC_BEGIN} and {DOC_END}")
    head, rest = page.split(DOC_BEGIN, 1)
    tail = rest.split(DOC_END, 1)[1]
    return f"{head}{DOC_BEGIN}\n\n{render_markdown()}\n{DOC_END}{tail}"


__all__ = [
    "ARROW_TYPES",
    "KINDS",
    "REGISTRY",
    "RENAMED_COLUMNS",
    "Column",
    "RegistryError",
    "Table",
    "check",
    "column_problems",
    "conform",
    "lookup",
    "naming_problems",
    "outdated",
    "render_markdown",
    "with_registry_section",
]


if __name__ == "__main__":  # regenerate the section of docs/warehouse.md
    import sys
    from pathlib import Path

    doc = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/warehouse.md")
    doc.write_text(with_registry_section(doc.read_text(encoding="utf-8")), encoding="utf-8")
