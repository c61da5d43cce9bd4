"""Finance settings: one YAML file, typed and checked field by field
(`joinedup finance ... --config FILE`; `joinedup finance config` writes one to start from).

A file that does not add up is refused at load with the field and the reason: baselines that do
not reconcile to their total, shares that do not sum to 100%, a place or organisation the
footprint does not have. Money is written in pounds to the penny.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from joinedup.errors import InputError, describe_validation_error
from joinedup.finance.allocation import PacePolicy
from joinedup.finance.budgets import DelegationConfig, PooledBudgetConfig
from joinedup.finance.calendar import FinancialYear, next_year
from joinedup.finance.capitation import CapitationSettings
from joinedup.finance.control_total import BreakEvenRules, ForecastMethod
from joinedup.finance.guarantees import CommunityGuaranteeConfig, MhisConfig
from joinedup.finance.payment import ContractConfig
from joinedup.finance.risk_share import RiskShareAgreement, Scenario
from joinedup.finance.schema import FinanceModel, Pounds, Rate
from joinedup.finance.sectors import SectorSettings
from joinedup.finance.whatif import Driver
from joinedup.population.conditions import SEGMENT_KEYS


class PaceSettings(FinanceModel):
    """Pace of change: how fast allocations move from baselines to targets."""

    growth_floor: Rate = Field(Decimal("0.02"), ge=-1, description="Minimum growth a year.")
    growth_cap: Rate | None = Field(Decimal("0.06"), description="Maximum growth a year.")
    convergence: Rate = Field(
        Decimal("0.33"), ge=0, le=1, description="Share of the gap to target closed a year."
    )
    max_under_target: Rate | None = Field(
        Decimal("0.05"), ge=0, lt=1, description="No place ends a year further under target."
    )

    @model_validator(mode="after")
    def _consistent(self) -> PaceSettings:
        if self.growth_cap is not None and self.growth_cap < self.growth_floor:
            raise ValueError("growth_cap is below growth_floor")
        return self

    def policy(self) -> PacePolicy:
        def exact(value: Decimal | None) -> Fraction | None:
            return None if value is None else Fraction(value)

        return PacePolicy(
            growth_floor=Fraction(self.growth_floor),
            growth_cap=exact(self.growth_cap),
            convergence=Fraction(self.convergence),
            max_under_target=exact(self.max_under_target),
        )


class YearTotal(FinanceModel):
    year: FinancialYear
    total_gbp: Pounds = Field(gt=0)


NeedComponent = Literal[
    "final", "general_and_acute", "community_services", "mental_health", "maternity",
    "prescribing", "health_inequalities", "primary_medical_care",
]  # fmt: skip


class AllocationSettings(FinanceModel):
    """The pot, the baselines it starts from and the path towards need."""

    need_component: NeedComponent = Field(
        "final", description="Weighted population that sets place targets (final = overall)."
    )
    baseline_year: FinancialYear
    baseline_total_gbp: Pounds = Field(gt=0)
    baselines_gbp: dict[str, Pounds] = Field(
        min_length=1, description="Each place's budget in the baseline year."
    )
    years: list[YearTotal] = Field(min_length=1, description="The pot in each following year.")
    pace: PaceSettings = Field(default_factory=PaceSettings)
    sectors: SectorSettings = Field(default_factory=SectorSettings)

    @model_validator(mode="after")
    def _reconciles(self) -> AllocationSettings:
        total = sum(self.baselines_gbp.values(), Decimal(0))
        if total != self.baseline_total_gbp:
            raise ValueError(
                f"baselines_gbp sum to £{total:,.2f}, not the baseline_total_gbp of "
                f"£{self.baseline_total_gbp:,.2f} (a difference of "
                f"£{total - self.baseline_total_gbp:,.2f})"
            )
        negative = sorted(k for k, v in self.baselines_gbp.items() if v < 0)
        if negative:
            raise ValueError(f"baselines_gbp: negative budget for {', '.join(negative)}")
        expected = self.baseline_year
        for i, year in enumerate(self.years):
            expected = next_year(expected)
            if year.year != expected:
                raise ValueError(
                    f"years.{i}.year: {year.year} out of order; the path runs year by year "
                    f"from {self.baseline_year}, so this should be {expected}"
                )
        return self


class ControlTotalSettings(FinanceModel):
    """The system control total: which year, how it is forecast and the break-even rules. With
    no ledger imported (`joinedup finance control-total --ledger FILE`), a synthetic ledger is
    made for the year from `seed`, `months_reported` and `scale_gbp`."""

    year: FinancialYear
    forecast_method: ForecastMethod = ForecastMethod.TREND
    rules: BreakEvenRules = Field(default_factory=BreakEvenRules)
    months_reported: int = Field(7, ge=0, le=12, description="Months of the synthetic ledger.")
    seed: int = Field(42, description="Seed of the synthetic ledger.")
    scale_gbp: dict[str, Pounds] = Field(
        default_factory=dict,
        description="Annual planned expenditure by organisation for the synthetic ledger.",
    )

    @model_validator(mode="after")
    def _positive(self) -> ControlTotalSettings:
        bad = sorted(code for code, amount in self.scale_gbp.items() if amount <= 0)
        if bad:
            raise ValueError(f"scale_gbp: expenditure must be positive for {', '.join(bad)}")
        return self


class RiskShareSettings(FinanceModel):
    """A risk-share agreement and the outturn scenarios it is applied to."""

    agreement: RiskShareAgreement
    scenarios: list[Scenario] = Field(min_length=1)

    @model_validator(mode="after")
    def _scenarios_name_parties(self) -> RiskShareSettings:
        parties = {p.code for p in self.agreement.parties}
        names = [s.name for s in self.scenarios]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"scenarios: name used twice: {', '.join(twice)}")
        for i, scenario in enumerate(self.scenarios):
            unknown = sorted(set(scenario.variances_gbp) - parties)
            if unknown:
                raise ValueError(
                    f"scenarios.{i}.variances_gbp: unknown party {', '.join(unknown)}; "
                    f"parties: {', '.join(sorted(parties))}"
                )
        return self


class FinanceConfig(FinanceModel):
    """Every finance setting of one ICS."""

    capitation: CapitationSettings = Field(default_factory=CapitationSettings)
    allocation: AllocationSettings
    mhis: MhisConfig | None = None
    community_guarantee: CommunityGuaranteeConfig | None = None
    budgets_year: FinancialYear | None = Field(
        None, description="Year of delegated and pooled budgets (default: the first year)."
    )
    delegation: DelegationConfig | None = None
    pooled_budgets: PooledBudgetConfig | None = None
    control_total: ControlTotalSettings | None = None
    contracts: list[ContractConfig] = Field(
        default_factory=list, description="Provider contracts paid from warehouse activity."
    )
    risk_share: RiskShareSettings | None = None
    what_if: list[Driver] = Field(
        default_factory=list, description="Scenarios `joinedup finance what-if` runs."
    )

    def budget_year(self) -> str:
        return self.budgets_year or self.allocation.years[0].year

    @model_validator(mode="after")
    def _years_known(self) -> FinanceConfig:
        known = [self.allocation.baseline_year, *(y.year for y in self.allocation.years)]
        for name in ("mhis", "community_guarantee"):
            section = getattr(self, name)
            if section is not None and section.year not in known[1:]:
                raise ValueError(
                    f"{name}.year: {section.year} is not a year of the allocation path "
                    f"({', '.join(known[1:])}); its growth is measured against the year before"
                )
        if self.budgets_year is not None and self.budgets_year not in known:
            raise ValueError(f"budgets_year: {self.budgets_year} is not one of {', '.join(known)}")
        return self

    @model_validator(mode="after")
    def _scenarios(self) -> FinanceConfig:
        names = [d.name for d in self.what_if]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"what_if: scenario names must be unique ({', '.join(repeated)})")
        for i, driver in enumerate(self.what_if):
            if driver.segment is not None and driver.segment not in SEGMENT_KEYS:
                raise ValueError(
                    f"what_if.{i}.segment: unknown segment {driver.segment!r}; choose from "
                    + ", ".join(SEGMENT_KEYS)
                )
        return self

    def check_footprint(
        self, places: Mapping[str, str], organisations: Mapping[str, str], source: str
    ) -> None:
        """Refuse places and organisations the warehouse's footprint does not have."""
        problems = _unknown(self.allocation.baselines_gbp, places, "allocation.baselines_gbp")
        missing = sorted(set(places) - set(self.allocation.baselines_gbp))
        if missing:
            problems.append(f"allocation.baselines_gbp: no baseline for {', '.join(missing)}")
        problems += _unknown(
            [d.place for d in self.what_if if d.place is not None], places, "what_if.place"
        )
        if self.delegation is not None:
            problems += _unknown(list(self.delegation.places), places, "delegation.places")
        if self.pooled_budgets is not None:
            for i, pool in enumerate(self.pooled_budgets.pools):
                problems += _unknown([pool.place], places, f"pooled_budgets.pools.{i}.place")
                problems += _unknown(
                    [pool.local_authority], organisations,
                    f"pooled_budgets.pools.{i}.local_authority",
                )  # fmt: skip
        problems += _unknown(
            [c.provider_code for c in self.contracts], organisations, "contracts.provider_code"
        )
        if self.control_total is not None:
            problems += _unknown(
                list(self.control_total.scale_gbp), organisations, "control_total.scale_gbp"
            )
        if problems:
            raise InputError(source, "; ".join(problems[:10]))


def _unknown(
    used: Mapping[str, Any] | list[str], known: Mapping[str, str], where: str
) -> list[str]:
    choices = ", ".join(f"{code} ({name})" for code, name in sorted(known.items()))
    return [
        f"{where}.{code}: unknown code {code!r}; the footprint has {choices}"
        for code in sorted(used)
        if code not in known
    ]


def load_config(path: Path) -> FinanceConfig:
    """Read and check a finance settings file; errors name the file, field and reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(str(path), f"cannot read finance settings ({err.strerror})") from err
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "finance settings") -> FinanceConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise InputError(where, f"not valid YAML ({getattr(err, 'problem', err)})") from err
    if not isinstance(raw, dict):
        raise InputError(source, "expected a mapping of settings at the top level")
    try:
        return FinanceConfig.model_validate(raw)
    except ValidationError as err:
        raise InputError(source, describe_validation_error(err)) from err


def dump_config(config: FinanceConfig) -> str:
    """The settings as YAML, money and rates written as plain numbers that read back exactly
    (a float's shortest text is its decimal: 1234.56 stays 1234.56)."""
    data = _plain(config.model_dump(mode="python", exclude_none=True))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Enum):
        return value.value
    return value
