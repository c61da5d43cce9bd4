"""Blended payment for a secondary-care provider contract (NHS Payment Scheme), from the year's
activity counts, the contract's unit prices and the provider's market forces factor (MFF).

Elective value of counts = sum over elective points of delivery of count x unit price x MFF.

**2022/23 rules** (used for years up to 2022/23 unless `rules` says otherwise): payment =
fixed element + variable element, where the variable element = 75% x (actual elective value -
planned elective value). It is negative when elective activity falls short of plan. One
variable line per elective point of delivery: 75% x (actual - planned) x price x MFF.

**2023/24 rules** (2023/24 onward): payment = fixed element (covering non-elective activity
and including CQUIN) - CQUIN deduction + elective activity at 100% of unit price x MFF. CQUIN
deduction = CQUIN value x (1 - achievement). The planned elective value is shown beside it on
a line of amount zero, for comparison only.

**Low-volume block** (2023/24 rules only): when the contract's annual value (fixed element +
planned elective value) is below the threshold (by default £500,000 up to 2024/25, £1,500,000
from 2025/26), the provider is paid a block equal to that annual value, on one line: no
variable element, no CQUIN deduction, actual activity not paid for.

**Rounding.** Each line is worked exactly (fractions) and rounded once to the nearest penny,
halves away from zero (so half up for payments, half down for deductions); values per point of
delivery (planned and actual) are rounded the same way; the total is the sum of the lines.

**Activity counts** are keyed by point-of-delivery code. Elective codes of the contract are
paid (a count above zero needs a unit price); the warehouse's other codes (NEL, AE, COM, MH,
GP, ASC, and EL, DC, OP when the contract does not count them as elective) are covered by the
fixed element and ignored; any other code is refused, so a misspelt code cannot go unpaid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from joinedup.errors import InputError
from joinedup.finance.calendar import FinancialYear, start_year
from joinedup.finance.money import GBP_TYPE, gbp_text, pence, pounds
from joinedup.finance.schema import FinanceModel, Pounds, Rate

PaymentRules = Literal["2022/23", "2023/24"]
PAYMENT_LINE_TABLE = "finance_payment_line"
#: Point-of-delivery codes in the warehouse's activity, with the words explanations use.
POINTS_OF_DELIVERY: dict[str, tuple[str, str]] = {
    "EL": ("elective admission", "elective admissions"),
    "DC": ("day case", "day cases"),
    "OP": ("outpatient attendance", "outpatient attendances"),
    "NEL": ("non-elective admission", "non-elective admissions"),
    "AE": ("A&E attendance", "A&E attendances"),
    "COM": ("community contact", "community contacts"),
    "MH": ("mental health contact", "mental health contacts"),
    "GP": ("GP appointment", "GP appointments"),
    "ASC": ("adult social care service", "adult social care services"),
}
#: Lines a payment can hold, in the order they are listed.
LINE_KINDS: tuple[str, ...] = (
    "fixed", "cquin_deduction", "variable", "elective_activity", "elective_plan",
    "low_volume_block",
)  # fmt: skip
_VARIABLE_SHARE = Fraction(3, 4)
_THRESHOLD_UP_TO_2024_25 = Decimal("500000.00")
_THRESHOLD_FROM_2025_26 = Decimal("1500000.00")

Count = Annotated[int, Field(ge=0)]
UnitPrice = Annotated[Pounds, Field(gt=0)]


def rules_for_year(year: str) -> PaymentRules:
    """The rules a year uses by default: 2022/23 rules up to 2022/23, 2023/24 rules after."""
    return "2022/23" if start_year(year) <= 2022 else "2023/24"


def default_low_volume_threshold(year: str) -> Decimal:
    """£500,000 up to 2024/25; £1,500,000 from 2025/26 (NHS Payment Scheme)."""
    return _THRESHOLD_UP_TO_2024_25 if start_year(year) <= 2024 else _THRESHOLD_FROM_2025_26


class ContractConfig(FinanceModel):
    """One provider's contract for one year: the agreed fixed element, prices, MFF and plan."""

    provider_code: str = Field(min_length=1)
    year: FinancialYear
    rules: PaymentRules | None = Field(
        None, description="2022/23 or 2023/24 rules; by default from the year (see rules_used)."
    )
    fixed_element_gbp: Pounds = Field(
        ge=0, description="The agreed fixed payment; under 2023/24 rules it includes CQUIN."
    )
    market_forces_factor: Rate = Field(gt=0, description="Applied to unit prices, e.g. 1.0234.")
    elective_points_of_delivery: list[str] = Field(
        default_factory=lambda: ["EL", "DC", "OP"], min_length=1
    )
    unit_prices_gbp: dict[str, UnitPrice] = Field(default_factory=dict)
    planned_activity: dict[str, Count] = Field(default_factory=dict)
    cquin_gbp: Pounds = Field(Decimal("0.00"), ge=0)
    cquin_achievement: Rate = Field(Decimal(1), ge=0, le=1)
    low_volume_threshold_gbp: Pounds | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> ContractConfig:
        elective = self.elective_points_of_delivery
        blank = [code for code in elective if not code.strip()]
        if blank:
            raise ValueError("elective_points_of_delivery: a point-of-delivery code is empty")
        repeated = sorted({code for code in elective if elective.count(code) > 1})
        if repeated:
            raise ValueError(f"elective_points_of_delivery: {', '.join(repeated)} listed twice")
        for code in self.planned_activity:
            if code not in elective:
                raise ValueError(
                    f"planned_activity.{code}: {code} is not in elective_points_of_delivery "
                    f"({', '.join(elective)}); only elective activity is planned here, the rest "
                    "is covered by the fixed element"
                )
            if code not in self.unit_prices_gbp:
                raise ValueError(
                    f"planned_activity.{code}: {code} has planned activity but no unit price "
                    "in unit_prices_gbp"
                )
        for code in self.unit_prices_gbp:
            if code not in elective:
                raise ValueError(
                    f"unit_prices_gbp.{code}: {code} is not in elective_points_of_delivery "
                    f"({', '.join(elective)}), so its price would never be used"
                )
        if self.cquin_gbp > self.fixed_element_gbp:
            raise ValueError(
                f"cquin_gbp: CQUIN of £{self.cquin_gbp:,} is more than the fixed element of "
                f"£{self.fixed_element_gbp:,}, which includes it"
            )
        if self.rules_used == "2022/23":
            if self.cquin_achievement != 1:
                raise ValueError(
                    "cquin_achievement: CQUIN deductions are a 2023/24-onward rule; under "
                    "2022/23 rules the fixed element is paid in full (leave it at 1)"
                )
            if self.low_volume_threshold_gbp is not None:
                raise ValueError(
                    "low_volume_threshold_gbp: low-volume blocks are a 2023/24-onward rule; "
                    "remove it for a contract under 2022/23 rules"
                )
        return self

    @property
    def rules_used(self) -> PaymentRules:
        """`rules` when given, else the year's (2022/23 rules up to 2022/23)."""
        return self.rules if self.rules is not None else rules_for_year(self.year)

    @property
    def low_volume_threshold_pence(self) -> int:
        threshold = self.low_volume_threshold_gbp
        return pence(
            threshold if threshold is not None else default_low_volume_threshold(self.year)
        )


@dataclass(frozen=True)
class PaymentLine:
    """One line of a contract payment, in pence, with the sum that makes it. Counts, price and
    MFF are None on lines that are not per point of delivery."""

    provider_code: str
    year: str
    rules: PaymentRules
    line: str  # one of LINE_KINDS
    point_of_delivery: str | None
    planned_count: int | None
    actual_count: int | None
    unit_price_pence: int | None
    market_forces_factor: Decimal | None
    amount_pence: int
    explanation: str


@dataclass(frozen=True)
class ContractPayment:
    """A contract's payment for the year: its lines and their total, with the planned and
    actual elective values (each point of delivery rounded to the penny, then summed)."""

    provider_code: str
    year: str
    rules: PaymentRules
    lines: tuple[PaymentLine, ...]
    total_pence: int
    planned_elective_pence: int
    actual_elective_pence: int
    annual_value_pence: int  # fixed element + planned elective value
    low_volume: bool


def round_pence(amount: Fraction) -> int:
    """Exact pence to the nearest whole penny, halves away from zero."""
    whole = (abs(amount) * 2 + 1) // 2
    return int(whole) if amount >= 0 else -int(whole)


def _mff_text(mff: Decimal) -> str:
    exponent = mff.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -4:
        mff = mff.quantize(Decimal("0.0001"))
    return format(mff, "f")


def _rate_text(rate: Decimal) -> str:
    return format((rate * 100).normalize(), "f") + "%"


def _activity(code: str, count: int) -> str:
    one, many = POINTS_OF_DELIVERY.get(code, (f"{code} unit", f"{code} units"))
    return f"{count:,} {one if count == 1 else many}"


def _checked_activity(config: ContractConfig, actual: Mapping[str, int]) -> dict[str, int]:
    """The elective counts from `actual`, refusing bad counts and codes (see module docstring)."""
    where = f"actual_activity for {config.provider_code} {config.year}"
    elective = config.elective_points_of_delivery
    counts: dict[str, int] = {}
    for code, count in actual.items():
        if isinstance(count, bool) or not isinstance(count, int):
            raise InputError(f"{where}, {code}", f"{count!r} is not a whole number of activities")
        if count < 0:
            raise InputError(f"{where}, {code}", f"count {count:,} is negative")
        if code in elective:
            if count > 0 and code not in config.unit_prices_gbp:
                raise InputError(
                    f"{where}, {code}",
                    f"{_activity(code, count)} but no unit price for elective point of delivery "
                    f"{code}: add it to unit_prices_gbp",
                )
            counts[code] = count
        elif code not in POINTS_OF_DELIVERY:
            known = ", ".join(sorted(set(POINTS_OF_DELIVERY) | set(elective)))
            raise InputError(f"{where}, {code}", f"unknown point-of-delivery code (known: {known})")
    return counts


def contract_payment(config: ContractConfig, actual_activity: Mapping[str, int]) -> ContractPayment:
    """The contract's payment for the year under its rules (module docstring), line by line."""
    actual = _checked_activity(config, actual_activity)
    rules = config.rules_used
    mff = config.market_forces_factor
    mff_text = _mff_text(mff)
    # Elective points of delivery planned or counted; a zero count without a price has no line.
    codes = [
        c
        for c in config.elective_points_of_delivery
        if c in config.planned_activity or (c in actual and c in config.unit_prices_gbp)
    ]
    prices = {c: pence(config.unit_prices_gbp[c]) for c in codes}

    def value(code: str, count: int) -> int:
        return round_pence(count * prices[code] * Fraction(mff)) if count else 0

    planned = {c: config.planned_activity.get(c, 0) for c in codes}
    counted = {c: actual.get(c, 0) for c in codes}
    planned_value = {c: value(c, planned[c]) for c in codes}
    actual_value = {c: value(c, counted[c]) for c in codes}
    planned_total = sum(planned_value.values())
    actual_total = sum(actual_value.values())
    fixed = pence(config.fixed_element_gbp)
    cquin = pence(config.cquin_gbp)
    annual = fixed + planned_total
    threshold = config.low_volume_threshold_pence
    low_volume = rules == "2023/24" and annual < threshold

    def line(kind: str, amount: int, explanation: str, code: str | None = None) -> PaymentLine:
        return PaymentLine(
            provider_code=config.provider_code,
            year=config.year,
            rules=rules,
            line=kind,
            point_of_delivery=code,
            planned_count=planned[code] if code is not None else None,
            actual_count=counted[code] if code is not None else None,
            unit_price_pence=prices.get(code) if code is not None else None,
            market_forces_factor=mff if code is not None else None,
            amount_pence=amount,
            explanation=explanation,
        )

    def sum_text(code: str, count: int) -> str:
        return f"{_activity(code, count)} × {gbp_text(prices[code])} × MFF {mff_text}"

    lines: list[PaymentLine] = []
    with_cquin = f"including CQUIN of {gbp_text(cquin)}" if cquin else ""
    if low_volume:
        block_note = f" ({with_cquin})" if cquin else ""
        parts = [f"{sum_text(c, planned[c])} = {gbp_text(planned_value[c])}" for c in codes]
        plan_text = f" ({'; '.join(parts)})" if parts else ""
        done = ", ".join(_activity(c, counted[c]) for c in codes) or "none"
        lines.append(
            line(
                "low_volume_block",
                annual,
                f"Low-volume block for {config.year}: annual contract value {gbp_text(annual)} "
                f"= fixed element {gbp_text(fixed)}{block_note} + planned elective activity "
                f"{gbp_text(planned_total)}{plan_text} is below the {gbp_text(threshold)} "
                f"threshold, so the provider is paid a block of {gbp_text(annual)}: no variable "
                f"element and no CQUIN deduction; actual elective activity ({done}) is not paid "
                "for separately",
            )
        )
    elif rules == "2022/23":
        lines.append(
            line(
                "fixed",
                fixed,
                f"Fixed element agreed for {config.year}{', ' + with_cquin if cquin else ''}: "
                f"{gbp_text(fixed)}",
            )
        )
        for c in codes:
            exact = _VARIABLE_SHARE * (counted[c] - planned[c]) * prices[c] * Fraction(mff)
            amount = round_pence(exact)
            change = f"({counted[c]:,} actual - {planned[c]:,} planned)"
            words = POINTS_OF_DELIVERY.get(c, ("", f"{c} units"))[1]
            lines.append(
                line(
                    "variable",
                    amount,
                    f"Variable element: 75% × {change} {words} × {gbp_text(prices[c])} × MFF "
                    f"{mff_text} = {gbp_text(amount)}",
                    c,
                )
            )
    else:
        lines.append(
            line(
                "fixed",
                fixed,
                f"Fixed element agreed for {config.year}, covering non-elective activity"
                f"{' and ' + with_cquin if cquin else ''}: {gbp_text(fixed)}",
            )
        )
        if cquin:
            shortfall = 1 - Fraction(config.cquin_achievement)
            deduction = -round_pence(cquin * shortfall)
            achieved = _rate_text(config.cquin_achievement)
            text = (
                f"CQUIN deduction: {gbp_text(cquin)} × (100% - {achieved} achieved) = "
                f"{gbp_text(deduction)}"
                if deduction
                else f"CQUIN achieved in full ({achieved}): no deduction from {gbp_text(cquin)}"
            )
            lines.append(line("cquin_deduction", deduction, text))
        for c in codes:
            lines.append(
                line(
                    "elective_activity",
                    actual_value[c],
                    f"{sum_text(c, counted[c])} = {gbp_text(actual_value[c])} "
                    f"(plan: {_activity(c, planned[c])}, {gbp_text(planned_value[c])})",
                    c,
                )
            )
        gap = actual_total - planned_total
        side = "above" if gap > 0 else "below" if gap < 0 else "equal to"
        by = f"{gbp_text(abs(gap))} " if gap else ""
        lines.append(
            line(
                "elective_plan",
                0,
                f"For comparison, not paid: planned elective activity is worth "
                f"{gbp_text(planned_total)}; actual elective activity, {gbp_text(actual_total)}, "
                f"is {by}{side} plan",
            )
        )
    return ContractPayment(
        provider_code=config.provider_code,
        year=config.year,
        rules=rules,
        lines=tuple(lines),
        total_pence=sum(x.amount_pence for x in lines),
        planned_elective_pence=planned_total,
        actual_elective_pence=actual_total,
        annual_value_pence=annual,
        low_volume=low_volume,
    )


PAYMENT_LINE_SCHEMA = pa.schema(
    [
        ("provider_code", pa.string()),
        ("financial_year", pa.string()),
        ("rules", pa.string()),
        ("line", pa.string()),
        ("point_of_delivery", pa.string()),
        ("planned_count", pa.int64()),
        ("actual_count", pa.int64()),
        ("unit_price_gbp", GBP_TYPE),
        ("market_forces_factor", pa.float64()),
        ("amount_gbp", GBP_TYPE),
        ("explanation", pa.string()),
    ]
)


def payments_table(payments: Sequence[ContractPayment]) -> pa.Table:
    """Every line of the payments as `finance_payment_line`, in order. The MFF is a float64
    for charts; the exact figure is in each line's explanation."""
    rows = [x for p in payments for x in p.lines]
    return pa.table(
        {
            "provider_code": [r.provider_code for r in rows],
            "financial_year": [r.year for r in rows],
            "rules": [r.rules for r in rows],
            "line": [r.line for r in rows],
            "point_of_delivery": [r.point_of_delivery for r in rows],
            "planned_count": [r.planned_count for r in rows],
            "actual_count": [r.actual_count for r in rows],
            "unit_price_gbp": [
                None if r.unit_price_pence is None else pounds(r.unit_price_pence) for r in rows
            ],
            "market_forces_factor": [
                None if r.market_forces_factor is None else float(r.market_forces_factor)
                for r in rows
            ],
            "amount_gbp": [pounds(r.amount_pence) for r in rows],
            "explanation": [r.explanation for r in rows],
        },
        schema=PAYMENT_LINE_SCHEMA,
    )
