"""Population health settings: risk tiers, Core20PLUS groups and case-finding worklists, read
from a YAML file and checked field by field (`joinedup phm run --config FILE`).

The shipped defaults live in `defaults/phm.yaml`; a bad file fails with the field and reason.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from joinedup.errors import InputError, describe_validation_error
from joinedup.population.conditions import CMS_CONDITIONS
from joinedup.population.history import ETHNIC_GROUPS

#: Person-level fields worklist criteria may test, with what each means. All come from the
#: `phm_person` and `phm_risk` tables on the index date.
WORKLIST_FIELDS: dict[str, str] = {
    "age": "Age in whole years",
    "sex": "Administrative sex (female, male, other, unknown)",
    "imd_quintile": "IMD 2019 quintile of the home LSOA (1 = most deprived)",
    "ethnic_group": "Ethnic group (White, Mixed, Asian, Black, Other, Not stated)",
    "ltc_count": "Number of the 20 Cambridge Multimorbidity Score conditions",
    "cms_general": "Cambridge Multimorbidity Score (general outcome weights)",
    **{c.name: f"{c.label}: 1 if present ({c.definition})" for c in CMS_CONDITIONS},
    "frailty_level": "Latest frailty code: 0 none, 1 mild, 2 moderate, 3 severe",
    "palliative_12m": "Palliative care code in the last 12 months (1/0)",
    "learning_disability": "Learning disability code ever (1/0)",
    "physical_disability": "Physical disability code ever (1/0)",
    "pregnant": "Pregnancy coded in the last 9 months (1/0)",
    "fall_6m": "Fall coded in the last 6 months (1/0)",
    "medicines_count": "Different repeat medicines issued in the last 90 days",
    "prior_ae_12m_count": "A&E attendances in the last 12 months",
    "prior_emergency_12m_count": "Emergency admissions in the last 12 months",
    "prior_outpatient_12m_count": "Outpatient attendances in the last 12 months",
    "prior_gp_12m_count": "GP consultations in the last 12 months",
    "prior_gp_6m_count": "GP consultations in the last 6 months",
    "raised_bp_days_24m_count": "Days with a reading of 140+ systolic or 90+ diastolic in 2 years",
    "latest_systolic_bp": "Latest systolic blood pressure (mmHg)",
    "latest_diastolic_bp": "Latest diastolic blood pressure (mmHg)",
    "egfr_latest": "Latest eGFR (mL/min/1.73m2)",
    "physical_health_check_12m": "Blood pressure, BMI and smoking all recorded in 12 months (1/0)",
    "segment": "Bridges to Health segment key",
    "risk_score": "Predicted probability of an emergency admission in the next 12 months",
    "risk_tier": "Risk tier: very_high, high, moderate or low",
}

Operator = Literal["equals", "not_equals", "in", "at_least", "at_most", "above", "below"]
OPERATORS: tuple[str, ...] = ("equals", "not_equals", "in", "at_least", "at_most", "above", "below")


class Criterion(BaseModel):
    """One test on one field; a person qualifies for a worklist when every criterion holds."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    field: str
    equals: float | str | None = None
    not_equals: float | str | None = None
    in_: list[float | str] | None = Field(default=None, alias="in")
    at_least: float | None = None
    at_most: float | None = None
    above: float | None = None
    below: float | None = None

    @field_validator("field")
    @classmethod
    def _known_field(cls, value: str) -> str:
        if value not in WORKLIST_FIELDS:
            raise ValueError(f"unknown field {value!r}; `joinedup phm fields` lists them")
        return value

    @model_validator(mode="after")
    def _one_operator(self) -> Criterion:
        given = [op for op in OPERATORS if self.value_of(op) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(OPERATORS)} (got {given or 'none'})")
        if self.in_ is not None and not self.in_:
            raise ValueError("'in' needs at least one value")
        return self

    def value_of(self, op: str) -> Any:
        return getattr(self, "in_" if op == "in" else op)

    @property
    def operator(self) -> str:
        return next(op for op in OPERATORS if self.value_of(op) is not None)

    @property
    def value(self) -> Any:
        return self.value_of(self.operator)


class Worklist(BaseModel):
    """A case-finding cohort: who qualifies, and why the list exists."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,62}$")
    title: str = Field(min_length=3)
    purpose: str = ""
    criteria: list[Criterion] = Field(min_length=1)


class RiskSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier_shares: tuple[float, float, float] = (0.005, 0.045, 0.15)
    seed: int = 20260401
    #: The model is fitted on a seeded sample of at most this many people (the fit's memory
    #: and time are bounded by it, not by the population) ...
    max_train_people: int = Field(default=250_000, ge=100)
    #: ... and validated on a seeded sample of at most this many.
    max_validation_people: int = Field(default=500_000, ge=100)

    @field_validator("tier_shares")
    @classmethod
    def _shares(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in value) or sum(value) >= 1:
            raise ValueError("tier shares must be positive and sum to less than 1")
        return value


class PlusGroup(BaseModel):
    """A local PLUS population: people in any of the ethnic groups or with any of the flags."""

    model_config = ConfigDict(extra="forbid")

    name: str
    ethnic_groups: list[str] = []
    flags: list[str] = []

    @model_validator(mode="after")
    def _known(self) -> PlusGroup:
        groups = set(ETHNIC_GROUPS.values())
        bad = [g for g in self.ethnic_groups if g not in groups]
        if bad:
            raise ValueError(f"unknown ethnic group(s) {bad}; choose from {sorted(groups)}")
        flags = {k for k, v in WORKLIST_FIELDS.items() if "(1/0)" in v or "1 if present" in v}
        bad = [f for f in self.flags if f not in flags]
        if bad:
            raise ValueError(f"unknown flag(s) {bad}; choose from {sorted(flags)}")
        if not self.ethnic_groups and not self.flags:
            raise ValueError("a PLUS group needs ethnic_groups or flags")
        return self


class Core20Plus5Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: IMD deciles counted as Core20 (the most deprived 20% nationally).
    core20_deciles: list[int] = [1, 2]
    plus_groups: list[PlusGroup] = []


class PhmConfig(BaseModel):
    """Everything `joinedup phm run` can be told."""

    model_config = ConfigDict(extra="forbid")

    risk: RiskSettings = RiskSettings()
    core20plus5: Core20Plus5Settings = Core20Plus5Settings()
    worklists: list[Worklist] = []

    @model_validator(mode="after")
    def _unique_ids(self) -> PhmConfig:
        ids = [w.id for w in self.worklists]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"worklist ids must be unique; repeated: {dupes}")
        return self


def _parse(text: str, where: str) -> PhmConfig:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise InputError(where, f"not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise InputError(where, "expected a mapping at the top level")
    try:
        return PhmConfig.model_validate(data)
    except ValidationError as err:
        raise InputError(where, describe_validation_error(err)) from None


def default_config_text() -> str:
    return (
        resources.files("joinedup.population")
        .joinpath("defaults", "phm.yaml")
        .read_text(encoding="utf-8")
    )


def load_config(path: Path | None = None) -> PhmConfig:
    """The settings in `path`, or the shipped defaults."""
    if path is None:
        return _parse(default_config_text(), "phm.yaml (shipped defaults)")
    if not path.is_file():
        raise InputError(str(path), "settings file not found")
    return _parse(path.read_text(encoding="utf-8"), str(path))
