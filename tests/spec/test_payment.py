"""Blended payment on the hand-worked examples of docs/finance.md (one per rule set and the
low-volume block), the refusals of bad contracts and counts, and as properties: the total is
the sum of the lines, and the elective and variable lines are the formula within rounding."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from joinedup.errors import InputError
from joinedup.finance.money import pence
from joinedup.finance.payment import (
    PAYMENT_LINE_SCHEMA,
    ContractConfig,
    ContractPayment,
    contract_payment,
    payments_table,
    round_pence,
)

# The large contract of the examples: prices and plan for elective admissions (EL), day cases
# (DC) and outpatient attendances (OP), MFF 1.0234.
LARGE: dict[str, Any] = {
    "provider_code": "ZZT01",
    "fixed_element_gbp": "10,000,000.00",
    "market_forces_factor": "1.0234",
    "unit_prices_gbp": {"EL": "3800.00", "DC": "900.00", "OP": "150.00"},
    "planned_activity": {"EL": 330, "DC": 1200, "OP": 20000},
}
# Non-elective counts (NEL, AE) are covered by the fixed element: they change nothing.
LARGE_ACTUAL = {"EL": 312, "DC": 1250, "OP": 19400, "NEL": 5000, "AE": 30000}
# The small contract: a fixed element of £1.1m with £13,750 of CQUIN, half achieved.
SMALL: dict[str, Any] = {
    "provider_code": "ZZT09",
    "fixed_element_gbp": "1100000.00",
    "market_forces_factor": "1.05",
    "unit_prices_gbp": {"EL": "3800.00", "DC": "900.00"},
    "planned_activity": {"EL": 40, "DC": 150},
    "cquin_gbp": "13750.00",
    "cquin_achievement": "0.5",
}
SMALL_ACTUAL = {"EL": 55, "DC": 120}


def amounts(payment: ContractPayment) -> list[tuple[str, str | None, int]]:
    return [(x.line, x.point_of_delivery, x.amount_pence) for x in payment.lines]


def test_hand_worked_2022_23_with_a_negative_variable_element() -> None:
    payment = contract_payment(ContractConfig(year="2022/23", **LARGE), LARGE_ACTUAL)
    assert payment.rules == "2022/23"
    # EL: 0.75 × (312 - 330) × £3,800.00 × 1.0234 = -13.5 × 3,800 = -51,300 × 1.0234 = -52,500.42
    # DC: 0.75 × (1,250 - 1,200) × £900.00 × 1.0234 = 33,750 × 1.0234 = 34,539.75
    # OP: 0.75 × (19,400 - 20,000) × £150.00 × 1.0234 = -67,500 × 1.0234 = -69,079.50
    assert amounts(payment) == [
        ("fixed", None, 1_000_000_000),
        ("variable", "EL", -5_250_042),
        ("variable", "DC", 3_453_975),
        ("variable", "OP", -6_907_950),
    ]
    # Variable element -52,500.42 + 34,539.75 - 69,079.50 = -87,040.17; total 9,912,959.83.
    assert payment.total_pence == 991_295_983
    # Planned value 1,283,343.60 + 1,105,272.00 + 3,070,200.00 = 5,458,815.60; actual
    # 1,213,343.04 + 1,151,325.00 + 2,978,094.00 = 5,342,762.04; 0.75 × -116,053.56 = -87,040.17.
    assert payment.planned_elective_pence == 545_881_560
    assert payment.actual_elective_pence == 534_276_204
    assert payment.low_volume is False
    el = payment.lines[1]
    assert (el.planned_count, el.actual_count, el.unit_price_pence) == (330, 312, 380_000)
    assert el.market_forces_factor == Decimal("1.0234")
    assert el.explanation == (
        "Variable element: 75% × (312 actual - 330 planned) elective admissions × £3,800.00 × "
        "MFF 1.0234 = -£52,500.42"
    )
    assert payment.lines[0].explanation == "Fixed element agreed for 2022/23: £10,000,000.00"


def test_hand_worked_2023_24_rules_with_a_cquin_shortfall() -> None:
    config = ContractConfig(year="2024/25", cquin_gbp="125000.00", cquin_achievement="0.6", **LARGE)
    payment = contract_payment(config, LARGE_ACTUAL)
    assert payment.rules == "2023/24"
    # CQUIN deduction £125,000.00 × (1 - 0.6) = £50,000.00.
    # EL 312 × £3,800.00 × 1.0234 = 1,185,600 × 1.0234 = 1,213,343.04
    # DC 1,250 × £900.00 × 1.0234 = 1,125,000 × 1.0234 = 1,151,325.00
    # OP 19,400 × £150.00 × 1.0234 = 2,910,000 × 1.0234 = 2,978,094.00
    assert amounts(payment) == [
        ("fixed", None, 1_000_000_000),
        ("cquin_deduction", None, -5_000_000),
        ("elective_activity", "EL", 121_334_304),
        ("elective_activity", "DC", 115_132_500),
        ("elective_activity", "OP", 297_809_400),
        ("elective_plan", None, 0),
    ]
    # 10,000,000.00 - 50,000.00 + 5,342,762.04 = 15,292,762.04
    assert payment.total_pence == 1_529_276_204
    assert payment.annual_value_pence == 1_545_881_560  # 10,000,000.00 + 5,458,815.60
    text = [x.explanation for x in payment.lines]
    assert text[1] == "CQUIN deduction: £125,000.00 × (100% - 60% achieved) = -£50,000.00"
    assert text[2] == (
        "312 elective admissions × £3,800.00 × MFF 1.0234 = £1,213,343.04 "
        "(plan: 330 elective admissions, £1,283,343.60)"
    )
    assert text[5] == (
        "For comparison, not paid: planned elective activity is worth £5,458,815.60; actual "
        "elective activity, £5,342,762.04, is £116,053.56 below plan"
    )


def test_hand_worked_low_volume_block_under_the_2025_26_threshold() -> None:
    payment = contract_payment(ContractConfig(year="2025/26", **SMALL), SMALL_ACTUAL)
    # Planned EL 40 × £3,800.00 × 1.05 = 159,600.00; DC 150 × £900.00 × 1.05 = 141,750.00.
    # Annual value 1,100,000.00 + 301,350.00 = 1,401,350.00, below the 2025/26 default of
    # £1,500,000.00: paid as a block, the CQUIN shortfall and the actual activity aside.
    assert payment.low_volume is True
    assert amounts(payment) == [("low_volume_block", None, 140_135_000)]
    assert payment.total_pence == payment.annual_value_pence == 140_135_000
    assert payment.lines[0].explanation == (
        "Low-volume block for 2025/26: annual contract value £1,401,350.00 = fixed element "
        "£1,100,000.00 (including CQUIN of £13,750.00) + planned elective activity £301,350.00 "
        "(40 elective admissions × £3,800.00 × MFF 1.0500 = £159,600.00; 150 day cases × "
        "£900.00 × MFF 1.0500 = £141,750.00) is below the £1,500,000.00 threshold, so the "
        "provider is paid a block of £1,401,350.00: no variable element and no CQUIN deduction; "
        "actual elective activity (55 elective admissions, 120 day cases) is not paid for "
        "separately"
    )


def test_the_same_small_contract_in_2024_25_is_above_the_500k_threshold() -> None:
    payment = contract_payment(ContractConfig(year="2024/25", **SMALL), SMALL_ACTUAL)
    # 1,100,000.00 - 13,750.00 × 0.5 + 55 × 3,800 × 1.05 + 120 × 900 × 1.05
    # = 1,100,000.00 - 6,875.00 + 219,450.00 + 113,400.00 = 1,425,975.00
    assert payment.low_volume is False
    assert amounts(payment) == [
        ("fixed", None, 110_000_000),
        ("cquin_deduction", None, -687_500),
        ("elective_activity", "EL", 21_945_000),
        ("elective_activity", "DC", 11_340_000),
        ("elective_plan", None, 0),
    ]
    assert payment.total_pence == 142_597_500


def test_the_block_needs_the_annual_value_strictly_below_the_threshold() -> None:
    at = ContractConfig(year="2025/26", low_volume_threshold_gbp="1401350.00", **SMALL)
    above = ContractConfig(year="2025/26", low_volume_threshold_gbp="1401350.01", **SMALL)
    assert contract_payment(at, SMALL_ACTUAL).low_volume is False
    assert contract_payment(above, SMALL_ACTUAL).low_volume is True


def test_the_rules_follow_the_year_unless_given() -> None:
    assert ContractConfig(year="2021/22", **LARGE).rules_used == "2022/23"
    assert ContractConfig(year="2022/23", **LARGE).rules_used == "2022/23"
    assert ContractConfig(year="2023/24", **LARGE).rules_used == "2023/24"
    assert ContractConfig(year="2030/31", **LARGE).rules_used == "2023/24"
    what_if = ContractConfig(year="2025/26", rules="2022/23", **LARGE)
    assert contract_payment(what_if, LARGE_ACTUAL).total_pence == 991_295_983


def test_lines_are_rounded_to_the_penny_halves_away_from_zero() -> None:
    assert [round_pence(Fraction(n, 2)) for n in (-3, -1, 1, 3)] == [-2, -1, 1, 2]
    assert round_pence(Fraction(149, 100)) == 1
    # 3 × £100.00 × MFF 1.00005 = £300.015 -> £300.02 (half up).
    up = ContractConfig(
        provider_code="ZZT02", year="2024/25", fixed_element_gbp="0", market_forces_factor=
        "1.00005", unit_prices_gbp={"OP": "100.00"}, planned_activity={"OP": 3},
        low_volume_threshold_gbp="0.01",  # no block, so the activity line is paid
    )  # fmt: skip
    assert contract_payment(up, {"OP": 3}).lines[1].amount_pence == 30_002
    # 0.75 × (0 - 1) × £0.02 × MFF 1 = -£0.015 -> -£0.02 (away from zero).
    down = ContractConfig(
        provider_code="ZZT02", year="2022/23", fixed_element_gbp="0", market_forces_factor="1",
        unit_prices_gbp={"OP": "0.02"}, planned_activity={"OP": 1},
    )  # fmt: skip
    payment = contract_payment(down, {})
    assert payment.lines[1].amount_pence == -2
    assert "MFF 1.0000" in payment.lines[1].explanation


def test_cquin_achieved_in_full_has_a_line_with_no_deduction() -> None:
    config = ContractConfig(year="2024/25", cquin_gbp="125000.00", **LARGE)
    line = contract_payment(config, LARGE_ACTUAL).lines[1]
    assert (line.line, line.amount_pence) == ("cquin_deduction", 0)
    assert line.explanation == "CQUIN achieved in full (100%): no deduction from £125,000.00"


def test_activity_codes_outside_the_contract() -> None:
    config = ContractConfig(year="2024/25", elective_points_of_delivery=["EL", "DC"], **SMALL)
    # OP is a warehouse code this contract does not count as elective: covered, ignored.
    base = contract_payment(config, SMALL_ACTUAL)
    assert contract_payment(config, {**SMALL_ACTUAL, "OP": 900, "MH": 4}) == base
    with pytest.raises(InputError, match=r"ZZT09 2024/25, El: unknown point-of-delivery code"):
        contract_payment(config, {**SMALL_ACTUAL, "El": 3})
    with pytest.raises(InputError, match=r"DC: count -1 is negative"):
        contract_payment(config, {"DC": -1})
    with pytest.raises(InputError, match=r"EL: 2.5 is not a whole number"):
        contract_payment(config, {"EL": 2.5})  # type: ignore[dict-item]


def test_an_elective_count_without_a_price_is_refused_by_name() -> None:
    config = ContractConfig(year="2024/25", **SMALL)  # EL, DC and OP elective; OP unpriced
    with pytest.raises(
        InputError,
        match=r"OP: 7 outpatient attendances but no unit price for elective point of delivery OP",
    ):
        contract_payment(config, {**SMALL_ACTUAL, "OP": 7})
    # A zero count has nothing to pay, so needs no price and has no line.
    zero = contract_payment(config, {**SMALL_ACTUAL, "OP": 0})
    assert [x.point_of_delivery for x in zero.lines] == [None, None, "EL", "DC", None]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"planned_activity": {"EL": 40, "DC": 150, "OP": 10}}, r"planned_activity\.OP: OP "
         r"has planned activity but no unit price"),
        ({"cquin_gbp": "1100000.01"}, r"cquin_gbp: CQUIN of £1,100,000.01 is more than the "
         r"fixed element of £1,100,000.00"),
        ({"market_forces_factor": "0"}, r"market_forces_factor\n  Input should be greater than 0"),
        ({"market_forces_factor": -1.02}, r"market_forces_factor\n  Input should be greater"),
        ({"cquin_achievement": "1.1"}, r"cquin_achievement\n  Input should be less than or "
         r"equal to 1"),
        ({"cquin_achievement": "-0.1"}, r"cquin_achievement\n  Input should be greater than or"),
        ({"year": "2025/27"}, r"year\n  Value error, '2025/27': write 2025/26"),
        ({"year": "2025-26"}, r"year\n  Value error, '2025-26': a financial year is written like"),
        ({"rules": "2024/25"}, r"rules\n  Input should be '2022/23' or '2023/24'"),
        ({"planned_activity": {"NEL": 10}}, r"planned_activity\.NEL: NEL is not in "
         r"elective_points_of_delivery \(EL, DC, OP\)"),
        ({"unit_prices_gbp": {"EL": "3800", "DC": "900", "NEL": "1200"}}, r"unit_prices_gbp\."
         r"NEL: NEL is not in elective_points_of_delivery \(EL, DC, OP\), so its price would"),
        ({"unit_prices_gbp": {"EL": "3800", "DC": "0"}}, r"unit_prices_gbp\.DC\n  Input should "
         r"be greater than 0"),
        ({"unit_prices_gbp": {"EL": "3800.001", "DC": "900"}}, r"fractions of a penny"),
        ({"planned_activity": {"EL": -1, "DC": 150}}, r"planned_activity\.EL\n  Input should be "
         r"greater than or equal to 0"),
        ({"fixed_element_gbp": "-1"}, r"fixed_element_gbp\n  Input should be greater than or"),
        ({"elective_points_of_delivery": ["EL", "DC", "EL"]}, r"EL listed twice"),
        ({"rules": "2022/23"}, r"cquin_achievement: CQUIN deductions are a 2023/24-onward rule"),
        ({"cquin_achievement": 1, "year": "2022/23", "low_volume_threshold_gbp": "500000"},
         r"low_volume_threshold_gbp: low-volume blocks are a 2023/24-onward rule"),
        ({"mff": "1.02"}, r"mff\n  Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_bad_contracts_are_refused_with_the_field_and_the_reason(
    change: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        ContractConfig(**({"year": "2024/25"} | SMALL | change))


def test_the_payment_line_table() -> None:
    payments = [
        contract_payment(ContractConfig(year="2022/23", **LARGE), LARGE_ACTUAL),
        contract_payment(ContractConfig(year="2025/26", **SMALL), SMALL_ACTUAL),
    ]
    table = payments_table(payments)
    assert table.schema == PAYMENT_LINE_SCHEMA
    assert table.num_rows == 5
    rows = table.to_pylist()
    assert rows[1] == {
        "provider_code": "ZZT01", "financial_year": "2022/23", "rules": "2022/23",
        "line": "variable", "point_of_delivery": "EL", "planned_count": 330,
        "actual_count": 312, "unit_price_gbp": Decimal("3800.00"),
        "market_forces_factor": 1.0234, "amount_gbp": Decimal("-52500.42"),
        "explanation": payments[0].lines[1].explanation,
    }  # fmt: skip
    assert rows[4]["line"] == "low_volume_block"
    assert rows[4]["point_of_delivery"] is None
    assert rows[4]["unit_price_gbp"] is None
    assert sum(r["amount_gbp"] for r in rows[:4]) == Decimal("9912959.83")
    assert payments_table([]).schema == PAYMENT_LINE_SCHEMA
    assert pa.types.is_decimal(table.schema.field("amount_gbp").type)


PODS = ("EL", "DC", "OP")


@st.composite
def contracts(draw: st.DrawFn) -> tuple[ContractConfig, dict[str, int]]:
    """A contract with prices and a plan for some elective PODs, and a year's counts."""
    rules = draw(st.sampled_from(["2022/23", "2023/24"]))
    first = draw(st.integers(2018, 2022) if rules == "2022/23" else st.integers(2023, 2030))
    priced = draw(st.lists(st.sampled_from(PODS), min_size=1, max_size=3, unique=True))
    # Up to £1m (often a low-volume block) or £1m to £100m (not).
    fixed = draw(st.integers(0, 10**8) | st.integers(10**8, 10**10))
    config = ContractConfig(
        provider_code="ZZT01",
        year=f"{first}/{(first + 1) % 100:02d}",
        fixed_element_gbp=Decimal(fixed) / 100,
        market_forces_factor=Decimal(draw(st.integers(8_000, 13_000))) / 10_000,
        unit_prices_gbp={p: Decimal(draw(st.integers(1, 2_000_000))) / 100 for p in priced},
        planned_activity={p: draw(st.integers(0, 50_000)) for p in priced},
        cquin_gbp=Decimal(draw(st.integers(0, fixed // 40))) / 100,
        cquin_achievement=Decimal(draw(st.integers(0, 100))) / 100 if rules == "2023/24" else 1,
    )
    actual = {p: draw(st.integers(0, 50_000)) for p in priced}
    return config, actual | {"NEL": draw(st.integers(0, 10**5))}


@settings(max_examples=200, deadline=None)
@given(contracts())
def test_the_total_is_the_sum_of_the_lines(contract: tuple[ContractConfig, dict[str, int]]) -> None:
    payment = contract_payment(*contract)
    assert payment.total_pence == sum(x.amount_pence for x in payment.lines)
    if payment.low_volume:
        assert payment.total_pence == payment.annual_value_pence


def _exact(config: ContractConfig, counts: dict[str, int], pod: str) -> Fraction:
    price = Fraction(config.unit_prices_gbp[pod]) * 100
    return counts.get(pod, 0) * price * Fraction(config.market_forces_factor)


@settings(max_examples=200, deadline=None)
@given(contracts())
def test_elective_lines_are_the_formula_within_half_a_penny(
    contract: tuple[ContractConfig, dict[str, int]],
) -> None:
    config, actual = contract
    payment = contract_payment(config, actual)
    plan = config.planned_activity
    by_pod = {x.point_of_delivery: x for x in payment.lines if x.point_of_delivery}
    if payment.rules == "2023/24" and not payment.low_volume:
        assert set(by_pod) == set(plan)
        for pod, line in by_pod.items():
            assert line.line == "elective_activity"
            assert abs(line.amount_pence - _exact(config, actual, pod)) <= Fraction(1, 2)
    elif payment.rules == "2022/23":
        difference = sum(_exact(config, actual, p) - _exact(config, plan, p) for p in plan)
        variable = sum(x.amount_pence for x in by_pod.values())
        assert all(x.line == "variable" for x in by_pod.values())
        assert abs(variable - Fraction(3, 4) * difference) <= Fraction(len(by_pod), 2)
        assert payment.total_pence == pence(config.fixed_element_gbp) + variable
