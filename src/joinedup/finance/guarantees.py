"""Investment guarantees: the Mental Health Investment Standard and a community services floor.

**Mental Health Investment Standard (MHIS).** An ICB's mental health spend must grow at least
as fast as its allocation:

    minimum(t) = in-scope MH spend(t-1) x (1 + allocation growth(t))
    allocation growth(t) = (allocation(t) - allocation(t-1)) / allocation(t-1)

Spend on learning disability, autism, dementia and specialised commissioning is outside the
standard by default (the list is configurable); the same exclusions apply to both years.

**Community services guarantee.** A national floor whose local form is configured: community
spend grows at least as fast as the allocation (plus a margin in percentage points), or is at
least a share of the allocation, or grows at least by a fixed rate.

**Rounding.** Growth is an exact fraction of the two allocations. A minimum is a floor, so it
is rounded **up** to the whole penny: spending the rounded figure always meets the exact one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from joinedup.errors import InputError
from joinedup.finance.calendar import FinancialYear, previous_year
from joinedup.finance.money import GBP_TYPE, gbp_text, pence, percent_text, pounds
from joinedup.finance.schema import FinanceModel, Pounds, Rate

MHIS = "mental_health_investment_standard"
COMMUNITY = "community_services"
GUARANTEE_TABLE = "finance_guarantee"
#: Outside the MHIS unless configured otherwise (NHS England's MHIS definitions).
MHIS_EXCLUDED_CATEGORIES: tuple[str, ...] = (
    "learning_disability", "autism", "dementia", "specialised_commissioning",
)  # fmt: skip
CommunityRule = Literal["growth_at_least_allocation_growth", "share_at_least", "growth_at_least"]

GUARANTEE_SCHEMA = pa.schema(
    [
        ("guarantee", pa.string()),
        ("financial_year", pa.string()),
        ("previous_gbp", GBP_TYPE),
        ("minimum_gbp", GBP_TYPE),
        ("planned_gbp", GBP_TYPE),
        ("margin_gbp", GBP_TYPE),
        ("met", pa.bool_()),
        ("allocation_growth", pa.float64()),
        ("spend_growth", pa.float64()),
        ("explanation", pa.string()),
    ]
)


class SpendLine(FinanceModel):
    """One category of spend in a year, in pounds."""

    category: str = Field(min_length=1)
    amount_gbp: Pounds

    @field_validator("amount_gbp")
    @classmethod
    def _not_negative(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError(f"{value} is negative: give spend as a positive amount")
        return value


def _no_repeats(lines: list[SpendLine]) -> list[SpendLine]:
    seen: set[str] = set()
    for line in lines:
        key = line.category.casefold()
        if key in seen:
            raise ValueError(f"category {line.category} is given twice: give one line each")
        seen.add(key)
    return lines


class MhisConfig(FinanceModel):
    """Mental health spend of the year before and planned for `year`, by category."""

    year: FinancialYear
    excluded_categories: list[str] = Field(default_factory=lambda: list(MHIS_EXCLUDED_CATEGORIES))
    previous_spend: list[SpendLine]
    planned_spend: list[SpendLine]

    @field_validator("excluded_categories")
    @classmethod
    def _named(cls, value: list[str]) -> list[str]:
        blank = [i for i, c in enumerate(value) if not c.strip()]
        if blank:
            raise ValueError(f"entry {blank[0] + 1} is blank: name the category to exclude")
        return [c.strip() for c in value]

    @field_validator("previous_spend", "planned_spend")
    @classmethod
    def _one_line_per_category(cls, value: list[SpendLine]) -> list[SpendLine]:
        return _no_repeats(value)

    def excluded(self, category: str) -> bool:
        """Whether `category` is outside the standard (compared ignoring case)."""
        return category.casefold() in {c.casefold() for c in self.excluded_categories}


@dataclass(frozen=True)
class MhisResult:
    """The MHIS for one year: money in pence, growth exact. `previous_pence` and
    `planned_pence` are in-scope spend; the excluded figures are what was left out."""

    year: str
    allocation_previous_pence: int
    allocation_current_pence: int
    allocation_growth: Fraction
    allocation_growth_percent: float
    previous_pence: int
    previous_excluded_pence: int
    planned_excluded_pence: int
    minimum_pence: int
    planned_pence: int
    margin_pence: int
    met: bool
    spend_growth: Fraction | None  # None when there was no in-scope spend the year before
    explanation: str
    guarantee: str = MHIS


@dataclass(frozen=True)
class GuaranteeResult:
    """The community services guarantee for one year, money in pence."""

    year: str
    rule: str
    allocation_growth: Fraction
    previous_pence: int
    minimum_pence: int
    planned_pence: int
    margin_pence: int
    met: bool
    spend_growth: Fraction | None  # None when there was no spend the year before
    explanation: str
    guarantee: str = COMMUNITY


def _ceil(value: Fraction) -> int:
    """Rounded up to the whole penny (a floor must never be rounded below itself)."""
    return -((-value.numerator) // value.denominator)


def allocation_growth(allocation_previous_pence: int, allocation_current_pence: int) -> Fraction:
    """(current - previous) / previous, exactly; refuses a previous allocation of zero or less
    and a negative current one."""
    if allocation_previous_pence <= 0:
        raise InputError(
            "allocation_previous_pence",
            f"{allocation_previous_pence} is not positive: growth needs last year's allocation",
        )
    if allocation_current_pence < 0:
        raise InputError("allocation_current_pence", f"{allocation_current_pence} is negative")
    return Fraction(allocation_current_pence - allocation_previous_pence, allocation_previous_pence)


def _growth(previous: int, planned: int) -> Fraction | None:
    return None if previous == 0 else Fraction(planned - previous, previous)


def _verdict(margin: int) -> str:
    return f"met by {gbp_text(margin)}" if margin >= 0 else f"NOT met: short by {gbp_text(-margin)}"


def mhis(
    config: MhisConfig, allocation_previous_pence: int, allocation_current_pence: int
) -> MhisResult:
    """The Mental Health Investment Standard for `config.year` (see the module docstring)."""
    growth = allocation_growth(allocation_previous_pence, allocation_current_pence)

    def in_and_out(lines: list[SpendLine]) -> tuple[int, int]:
        kept = sum(pence(x.amount_gbp) for x in lines if not config.excluded(x.category))
        left = sum(pence(x.amount_gbp) for x in lines if config.excluded(x.category))
        return kept, left

    previous, previous_excluded = in_and_out(config.previous_spend)
    planned, planned_excluded = in_and_out(config.planned_spend)
    minimum = _ceil(previous * (1 + growth))
    margin = planned - minimum
    spend_growth = _growth(previous, planned)
    excluded = sorted(
        {
            x.category
            for x in config.previous_spend + config.planned_spend
            if config.excluded(x.category)
        }
    )
    left_out = (
        f" Excluded from both years: {', '.join(excluded)} ({gbp_text(previous_excluded)} in "
        f"{previous_year(config.year)}, {gbp_text(planned_excluded)} planned)."
        if excluded
        else ""
    )
    grew = "" if spend_growth is None else f" (growth {percent_text(spend_growth)})"
    explanation = (
        f"MHIS {config.year}: planned mental health spend {gbp_text(planned)}{grew} against a "
        f"minimum of {gbp_text(minimum)} ({gbp_text(previous)} in {previous_year(config.year)} x "
        f"(1 + allocation growth {percent_text(growth)}), rounded up to the penny): "
        f"{_verdict(margin)}.{left_out}"
    )
    return MhisResult(
        year=config.year,
        allocation_previous_pence=allocation_previous_pence,
        allocation_current_pence=allocation_current_pence,
        allocation_growth=growth,
        allocation_growth_percent=float(growth * 100),
        previous_pence=previous,
        previous_excluded_pence=previous_excluded,
        planned_excluded_pence=planned_excluded,
        minimum_pence=minimum,
        planned_pence=planned,
        margin_pence=margin,
        met=margin >= 0,
        spend_growth=spend_growth,
        explanation=explanation,
    )


_RULE_FIELDS: dict[str, str | None] = {
    "growth_at_least_allocation_growth": None,  # margin_points has a default of 0
    "share_at_least": "minimum_share",
    "growth_at_least": "minimum_growth",
}


class CommunityGuaranteeConfig(FinanceModel):
    """The local community services guarantee and the community spend it is tested on.

    - `growth_at_least_allocation_growth`: spend growth >= allocation growth + `margin_points`
      percentage points (0.5 is half a point; default 0).
    - `share_at_least`: planned spend >= `minimum_share` (0 < share <= 1) of this year's
      allocation.
    - `growth_at_least`: spend growth >= `minimum_growth` (a rate: 0.03 is 3%).
    """

    year: FinancialYear
    rule: CommunityRule
    margin_points: Rate = Decimal(0)
    minimum_share: Rate | None = None
    minimum_growth: Rate | None = None
    previous_spend_gbp: Pounds
    planned_spend_gbp: Pounds

    @field_validator("previous_spend_gbp", "planned_spend_gbp")
    @classmethod
    def _not_negative(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError(f"{value} is negative: give spend as a positive amount")
        return value

    @model_validator(mode="after")
    def _fields_of_the_rule(self) -> CommunityGuaranteeConfig:
        needed = _RULE_FIELDS[self.rule]
        if needed is not None and getattr(self, needed) is None:
            raise ValueError(f"rule {self.rule} needs {needed}")
        for name in ("minimum_share", "minimum_growth"):
            if name != needed and getattr(self, name) is not None:
                raise ValueError(f"{name} is not used by rule {self.rule}: remove it")
        if self.rule != "growth_at_least_allocation_growth" and self.margin_points != 0:
            raise ValueError(f"margin_points is not used by rule {self.rule}: remove it")
        if not -100 <= self.margin_points <= 100:
            raise ValueError(
                f"margin_points {self.margin_points} is out of range: percentage points, "
                "-100 to 100 (0.5 is half a point)"
            )
        if self.minimum_share is not None and not 0 < self.minimum_share <= 1:
            raise ValueError(
                f"minimum_share {self.minimum_share} is out of range: a share above 0 and at "
                "most 1 (0.05 is 5%)"
            )
        if self.minimum_growth is not None and not -1 <= self.minimum_growth <= 1:
            raise ValueError(
                f"minimum_growth {self.minimum_growth} is out of range: a rate from -1 to 1 "
                "(0.03 is 3%)"
            )
        return self


def community_guarantee(
    config: CommunityGuaranteeConfig, allocation_previous_pence: int, allocation_current_pence: int
) -> GuaranteeResult:
    """The community services guarantee for `config.year` under its configured rule; the
    minimum is rounded up to the whole penny."""
    growth = allocation_growth(allocation_previous_pence, allocation_current_pence)
    previous = pence(config.previous_spend_gbp)
    planned = pence(config.planned_spend_gbp)
    last_year = previous_year(config.year)
    if config.rule == "growth_at_least_allocation_growth":
        points = Fraction(config.margin_points) / 100
        minimum = _ceil(previous * (1 + growth + points))
        extra = f" + {config.margin_points} percentage points" if config.margin_points else ""
        how = (
            f"{gbp_text(previous)} in {last_year} x (1 + allocation growth "
            f"{percent_text(growth)}{extra})"
        )
    elif config.rule == "share_at_least":
        share = Fraction(config.minimum_share or 0)
        minimum = _ceil(share * allocation_current_pence)
        how = (
            f"{percent_text(share)} of the {config.year} allocation of "
            f"{gbp_text(allocation_current_pence)}"
        )
    else:
        rate = Fraction(config.minimum_growth or 0)
        minimum = _ceil(previous * (1 + rate))
        how = f"{gbp_text(previous)} in {last_year} x (1 + minimum growth {percent_text(rate)})"
    margin = planned - minimum
    spend_growth = _growth(previous, planned)
    grew = "" if spend_growth is None else f" (growth {percent_text(spend_growth)})"
    explanation = (
        f"Community services guarantee {config.year} ({config.rule}): planned spend "
        f"{gbp_text(planned)}{grew} against a minimum of {gbp_text(minimum)} ({how}, rounded up to "
        f"the penny): {_verdict(margin)}."
    )
    return GuaranteeResult(
        year=config.year,
        rule=config.rule,
        allocation_growth=growth,
        previous_pence=previous,
        minimum_pence=minimum,
        planned_pence=planned,
        margin_pence=margin,
        met=margin >= 0,
        spend_growth=spend_growth,
        explanation=explanation,
    )


def guarantees_table(results: Iterable[MhisResult | GuaranteeResult]) -> pa.Table:
    """`finance_guarantee`: one row per guarantee and year. Growth columns are fractions
    (0.05 is 5%); `spend_growth` is null when there was no spend the year before."""
    rows = list(results)
    return pa.table(
        {
            "guarantee": [r.guarantee for r in rows],
            "financial_year": [r.year for r in rows],
            "previous_gbp": [pounds(r.previous_pence) for r in rows],
            "minimum_gbp": [pounds(r.minimum_pence) for r in rows],
            "planned_gbp": [pounds(r.planned_pence) for r in rows],
            "margin_gbp": [pounds(r.margin_pence) for r in rows],
            "met": [r.met for r in rows],
            "allocation_growth": [float(r.allocation_growth) for r in rows],
            "spend_growth": [
                None if r.spend_growth is None else float(r.spend_growth) for r in rows
            ],
            "explanation": [r.explanation for r in rows],
        },
        schema=GUARANTEE_SCHEMA,
    )
