"""The Mental Health Investment Standard and the community services guarantee, on the
hand-worked examples of docs/finance.md, and bad settings refused with the reason."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from joinedup.errors import InputError
from joinedup.finance.guarantees import (
    GUARANTEE_SCHEMA,
    CommunityGuaranteeConfig,
    MhisConfig,
    community_guarantee,
    guarantees_table,
    mhis,
)

# Allocation £1,000,000.00 in 2024/25, £1,045,000.00 in 2025/26: growth 45,000 / 1,000,000 = 4.5%.
ALLOCATION_PREVIOUS = 100_000_000
ALLOCATION_CURRENT = 104_500_000


def lines(**amounts: int | str) -> list[dict[str, Any]]:
    return [{"category": c, "amount_gbp": a} for c, a in amounts.items()]


PREVIOUS = lines(
    adult_mental_health=80_000, children_and_young_people=20_000, dementia=10_000,
    learning_disability=5_000,
)  # fmt: skip
SHORT_PLAN = lines(
    adult_mental_health=83_000, children_and_young_people=21_000, dementia=12_000,
    learning_disability=5_000,
)  # fmt: skip


def test_mhis_not_met() -> None:
    config = MhisConfig(year="2025/26", previous_spend=PREVIOUS, planned_spend=SHORT_PLAN)
    result = mhis(config, ALLOCATION_PREVIOUS, ALLOCATION_CURRENT)
    # In scope 2024/25: 80,000 + 20,000 = £100,000 (dementia 10,000 and LD 5,000 excluded).
    # Minimum: 100,000 x 1.045 = £104,500.00. Planned in scope: 83,000 + 21,000 = £104,000.
    assert result.allocation_growth == Fraction(9, 200)
    assert result.allocation_growth_percent == 4.5
    assert result.previous_pence == 10_000_000
    assert result.previous_excluded_pence == 1_500_000
    assert result.planned_excluded_pence == 1_700_000
    assert result.minimum_pence == 10_450_000
    assert result.planned_pence == 10_400_000
    assert result.margin_pence == -50_000
    assert result.met is False
    assert result.spend_growth == Fraction(4, 100)  # 104,000 / 100,000 - 1
    assert "NOT met: short by £500.00" in result.explanation
    assert "minimum of £104,500.00" in result.explanation
    assert "dementia, learning_disability" in result.explanation


def test_mhis_met() -> None:
    planned = lines(adult_mental_health=84_000, children_and_young_people=21_000, dementia=9_000)
    config = MhisConfig(year="2025/26", previous_spend=PREVIOUS, planned_spend=planned)
    result = mhis(config, ALLOCATION_PREVIOUS, ALLOCATION_CURRENT)
    # Planned in scope 84,000 + 21,000 = £105,000 against £104,500: met by £500.
    assert (result.planned_pence, result.margin_pence, result.met) == (10_500_000, 50_000, True)
    assert "met by £500.00" in result.explanation


def test_counting_dementia_in_scope_moves_the_answer() -> None:
    config = MhisConfig(
        year="2025/26",
        excluded_categories=["learning_disability", "autism", "specialised_commissioning"],
        previous_spend=PREVIOUS,
        planned_spend=SHORT_PLAN,
    )
    result = mhis(config, ALLOCATION_PREVIOUS, ALLOCATION_CURRENT)
    # In scope 2024/25: 80,000 + 20,000 + 10,000 = £110,000; minimum x 1.045 = £114,950.00.
    # Planned: 83,000 + 21,000 + 12,000 = £116,000: met by £1,050.00 (not met by default).
    assert result.minimum_pence == 11_495_000
    assert result.planned_pence == 11_600_000
    assert (result.margin_pence, result.met) == (105_000, True)


def test_the_minimum_rounds_up_a_fraction_of_a_penny() -> None:
    # Allocation £30m to £31m: growth 1/30. 100,000,001p x 31/30 = 103,333,334.37p, rounded
    # UP to 103,333,335p (£1,033,333.35); to the nearest it would be a penny less.
    def result(planned: str) -> tuple[int, int, bool]:
        config = MhisConfig(
            year="2025/26",
            previous_spend=lines(adult_mental_health="1000000.01"),
            planned_spend=lines(adult_mental_health=planned),
        )
        r = mhis(config, 3_000_000_000, 3_100_000_000)
        return r.minimum_pence, r.margin_pence, r.met

    assert result("1033333.34") == (103_333_335, -1, False)
    assert result("1033333.35") == (103_333_335, 0, True)


# Community: £200,000.00 in 2024/25, £210,000.00 planned (growth 5%), allocation growth 4.5%.
COMMUNITY = {"year": "2025/26", "previous_spend_gbp": "200000", "planned_spend_gbp": "210,000"}


@pytest.mark.parametrize(
    ("rule", "minimum", "met"),
    [
        # 200,000 x (1 + 4.5%) = £209,000: met by £1,000.
        ({"rule": "growth_at_least_allocation_growth"}, 20_900_000, True),
        # 200,000 x (1 + 4.5% + 1 point) = £211,000: short by £1,000.
        ({"rule": "growth_at_least_allocation_growth", "margin_points": 1}, 21_100_000, False),
        # 20% of the £1,045,000 allocation = £209,000: met by £1,000.
        ({"rule": "share_at_least", "minimum_share": "0.2"}, 20_900_000, True),
        # 200,000 x 1.06 = £212,000: short by £2,000.
        ({"rule": "growth_at_least", "minimum_growth": "0.06"}, 21_200_000, False),
    ],
)
def test_each_community_rule(rule: dict[str, Any], minimum: int, met: bool) -> None:
    config = CommunityGuaranteeConfig(**COMMUNITY, **rule)
    result = community_guarantee(config, ALLOCATION_PREVIOUS, ALLOCATION_CURRENT)
    assert result.minimum_pence == minimum
    assert result.planned_pence == 21_000_000
    assert result.margin_pence == 21_000_000 - minimum
    assert result.met is met
    assert result.spend_growth == Fraction(1, 20)
    assert rule["rule"] in result.explanation
    assert ("met by" if met else "NOT met") in result.explanation


def test_the_guarantees_table() -> None:
    config = MhisConfig(year="2025/26", previous_spend=PREVIOUS, planned_spend=SHORT_PLAN)
    community = CommunityGuaranteeConfig(**COMMUNITY, rule="growth_at_least_allocation_growth")
    table = guarantees_table(
        [
            mhis(config, ALLOCATION_PREVIOUS, ALLOCATION_CURRENT),
            community_guarantee(community, ALLOCATION_PREVIOUS, ALLOCATION_CURRENT),
        ]
    )
    assert table.schema == GUARANTEE_SCHEMA
    assert table.schema.field("margin_gbp").type == pa.decimal128(18, 2)
    rows = table.to_pylist()
    assert [r["guarantee"] for r in rows] == [
        "mental_health_investment_standard", "community_services",
    ]  # fmt: skip
    assert rows[0]["minimum_gbp"] == Decimal("104500.00")
    assert rows[0]["margin_gbp"] == Decimal("-500.00")
    assert rows[1]["margin_gbp"] == Decimal("1000.00")
    assert rows[1]["allocation_growth"] == 0.045
    assert rows[1]["spend_growth"] == 0.05


def test_no_spend_last_year_has_no_spend_growth() -> None:
    config = CommunityGuaranteeConfig(
        year="2025/26", rule="growth_at_least", minimum_growth="0.03",
        previous_spend_gbp=0, planned_spend_gbp=10,
    )  # fmt: skip
    result = community_guarantee(config, ALLOCATION_PREVIOUS, ALLOCATION_CURRENT)
    assert (result.minimum_pence, result.met, result.spend_growth) == (0, True, None)
    assert guarantees_table([result]).column("spend_growth").to_pylist() == [None]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"previous_spend": lines(dementia=1) + lines(Dementia=2)}, "Dementia is given twice"),
        ({"planned_spend": lines(adult_mental_health=-5)}, "is negative"),
        ({"planned_spend": lines(adult_mental_health="1.005")}, "fractions of a penny"),
        ({"year": "2025/27"}, "2025/27"),
        ({"excluded_categories": ["dementia", " "]}, "entry 2 is blank"),
        ({"surplus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_mhis_settings_are_refused(changes: dict[str, Any], reason: str) -> None:
    settings = {"year": "2025/26", "previous_spend": PREVIOUS, "planned_spend": SHORT_PLAN}
    with pytest.raises(ValidationError, match=reason):
        MhisConfig(**(settings | changes))


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ({"rule": "share_at_least"}, "rule share_at_least needs minimum_share"),
        ({"rule": "growth_at_least"}, "rule growth_at_least needs minimum_growth"),
        ({"rule": "share_at_least", "minimum_share": "1.5"}, "minimum_share 1.5 is out of range"),
        ({"rule": "share_at_least", "minimum_share": 0}, "minimum_share 0 is out of range"),
        ({"rule": "growth_at_least", "minimum_growth": 2}, "minimum_growth 2 is out of range"),
        (
            {"rule": "share_at_least", "minimum_share": "0.2", "margin_points": 1},
            "margin_points is not used by rule share_at_least",
        ),
        (
            {"rule": "growth_at_least_allocation_growth", "minimum_growth": "0.03"},
            "minimum_growth is not used",
        ),
        (
            {"rule": "growth_at_least_allocation_growth", "margin_points": 150},
            "margin_points 150 is out of range",
        ),
        ({"rule": "at_least_something"}, "growth_at_least_allocation_growth"),
        ({"rule": "growth_at_least_allocation_growth", "planned_spend_gbp": -1}, "is negative"),
    ],
)
def test_bad_community_settings_are_refused(rule: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        CommunityGuaranteeConfig(**(COMMUNITY | rule))


def test_growth_needs_last_years_allocation() -> None:
    config = MhisConfig(year="2025/26", previous_spend=PREVIOUS, planned_spend=SHORT_PLAN)
    with pytest.raises(InputError, match="allocation_previous_pence: 0 is not positive"):
        mhis(config, 0, ALLOCATION_CURRENT)
