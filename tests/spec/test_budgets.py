"""Delegated place budgets and pooled budgets, on the hand-worked examples of docs/finance.md;
delegated + retained is the allocation to the penny; bad settings are refused with the reason."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from joinedup.errors import ConfigurationError, InputError
from joinedup.finance.budgets import (
    PLACE_BUDGET_SCHEMA,
    POOLED_BUDGET_SCHEMA,
    SECTORS,
    DelegationConfig,
    PooledBudgetConfig,
    delegate,
    place_budget_table,
    pooled_budget_table,
    pooled_budgets,
)

PLACES = {"P1": "North", "P2": "South"}
ALLOCATION = {
    "P1": {
        "primary_care": 10_001, "community": 5_000, "mental_health": 3_333, "acute": 100_000,
        "continuing_healthcare": 2_000, "prescribing": 7,
    },
    "P2": {"acute": 50_000},
}  # fmt: skip
DELEGATION = DelegationConfig(
    places={
        "P1": {"primary_care": 1, "community": "0.5", "mental_health": "0.25", "prescribing": 0.5}
    }
)


def test_hand_worked_delegation() -> None:
    north, south = delegate(ALLOCATION, DELEGATION, PLACES)
    by_sector = {s.sector: (s.delegated_pence, s.retained_pence) for s in north.sectors}
    assert by_sector == {
        "primary_care": (10_001, 0),  # all of it
        "community": (2_500, 2_500),  # half of 5,000
        "mental_health": (833, 2_500),  # 3,333 x 0.25 = 833.25 -> 833
        "acute": (0, 100_000),  # not named: held at system
        "continuing_healthcare": (0, 2_000),
        "prescribing": (4, 3),  # 7 x 0.5 = 3.5: the half penny goes to the delegated part
    }
    # 10,001 + 5,000 + 3,333 + 100,000 + 2,000 + 7 = 120,341; 10,001 + 2,500 + 833 + 4 = 13,338.
    assert (north.allocation_pence, north.delegated_pence, north.retained_pence) == (
        120_341, 13_338, 107_003,
    )  # fmt: skip
    assert "£133.38 of £1,203.41 delegated" in north.explanation
    # South is not in the delegation: everything is held at system level.
    assert (south.place_name, south.delegated_pence, south.retained_pence) == ("South", 0, 50_000)
    assert [s.sector for s in south.sectors] == list(SECTORS)


def test_the_place_budget_table() -> None:
    table = place_budget_table(delegate(ALLOCATION, DELEGATION, PLACES))
    assert table.schema == PLACE_BUDGET_SCHEMA
    assert table.schema.field("delegated_gbp").type == pa.decimal128(18, 2)
    assert table.num_rows == 2 * len(SECTORS)
    row = table.to_pylist()[2]
    assert row == {
        "place_code": "P1", "sector": "mental_health", "allocation_gbp": Decimal("33.33"),
        "delegated_gbp": Decimal("8.33"), "retained_gbp": Decimal("25.00"),
        "delegated_share": 0.25,
    }  # fmt: skip


SHARES = st.sampled_from([Decimal(0), Decimal(1)]) | st.decimals(min_value=0, max_value=1, places=4)


@settings(max_examples=200, deadline=None)
@given(
    allocation=st.dictionaries(
        st.sampled_from(["A", "B", "C", "D"]),
        st.dictionaries(st.sampled_from(SECTORS), st.integers(0, 10**13)),
        min_size=1,
    ),
    shares=st.dictionaries(st.sampled_from(SECTORS), SHARES),
)
def test_delegated_plus_retained_is_the_allocation(
    allocation: dict[str, dict[str, int]], shares: dict[str, Decimal]
) -> None:
    places = {code: f"Place {code}" for code in allocation}
    config = DelegationConfig(places=dict.fromkeys(allocation, shares))
    for budget in delegate(allocation, config, places):
        for s in budget.sectors:
            assert s.delegated_pence + s.retained_pence == s.allocation_pence
            assert s.delegated_pence >= 0 and s.retained_pence >= 0
            exact = s.allocation_pence * Fraction(shares.get(s.sector, 0))
            assert abs(s.delegated_pence - exact) <= Fraction(1, 2)
        assert budget.allocation_pence == sum(allocation[budget.place_code].values())
        assert budget.delegated_pence + budget.retained_pence == budget.allocation_pence


POOL_ALLOCATION = {"P1": {"community": 100_000_000, "acute": 500_000_000}}  # £1m, £5m
BCF = {
    "name": "North BCF",
    "kind": "bcf",
    "place": "P1",
    "local_authority": "E08000001",
    "nhs_contribution": {"sector": "community", "share": "0.3"},
    "la_contribution_gbp": "150,000",
    "other_contributions": [{"partner": "Disabled Facilities Grant", "amount_gbp": 50_000}],
    "nhs_minimum_gbp": 290_000,
}
SECTION_75 = {
    "name": "North learning disability",
    "kind": "section75",
    "place": "P1",
    "local_authority": "E08000001",
    "nhs_contribution": {"fixed_gbp": "120000.00"},
    "la_contribution_gbp": 80_000,
}


def test_a_bcf_pool_with_a_share_of_community() -> None:
    (pool,) = pooled_budgets(PooledBudgetConfig(pools=[BCF]), POOL_ALLOCATION, PLACES)
    # NHS: 30% of the £1,000,000 community allocation = £300,000; council £150,000; DFG
    # £50,000: £500,000 in all, so 60%, 30% and 10%. The NHS minimum £290,000 is met by £10,000.
    assert pool.total_pence == 50_000_000
    assert [(c.partner, c.amount_pence, c.share) for c in pool.contributions] == [
        ("nhs", 30_000_000, Fraction(3, 5)),
        ("E08000001", 15_000_000, Fraction(3, 10)),
        ("Disabled Facilities Grant", 5_000_000, Fraction(1, 10)),
    ]
    assert sum(c.share for c in pool.contributions) == 1
    assert (pool.nhs_minimum_pence, pool.meets_minimum, pool.minimum_margin_pence) == (
        29_000_000, True, 1_000_000,
    )  # fmt: skip
    assert "NHS minimum £290,000.00 met by £10,000.00" in pool.explanation
    nhs = pool.contributions[0].explanation
    assert "30.00% of the community allocation of £1,000,000.00" in nhs


def test_a_section_75_pool_with_a_fixed_nhs_contribution() -> None:
    (pool,) = pooled_budgets(PooledBudgetConfig(pools=[SECTION_75]), POOL_ALLOCATION, PLACES)
    # £120,000 + £80,000 = £200,000: 60% and 40%; no national minimum.
    assert pool.total_pence == 20_000_000
    assert [(c.partner, c.share) for c in pool.contributions] == [
        ("nhs", Fraction(3, 5)), ("E08000001", Fraction(2, 5)),
    ]  # fmt: skip
    assert (pool.nhs_minimum_pence, pool.meets_minimum) == (None, None)
    assert pool.explanation.startswith("Section 75 pool North learning disability")


def test_an_nhs_minimum_not_met() -> None:
    short = BCF | {"nhs_minimum_gbp": "300000.01"}
    (pool,) = pooled_budgets(PooledBudgetConfig(pools=[short]), POOL_ALLOCATION, PLACES)
    assert (pool.meets_minimum, pool.minimum_margin_pence) == (False, -1)
    assert "NOT met: short by £0.01" in pool.explanation


def test_the_pooled_budget_table() -> None:
    config = PooledBudgetConfig(pools=[BCF, SECTION_75])
    table = pooled_budget_table_of(config)
    assert table.schema == POOLED_BUDGET_SCHEMA
    rows = table.to_pylist()
    assert [(r["pool"], r["partner"]) for r in rows] == [
        ("North BCF", "nhs"), ("North BCF", "E08000001"),
        ("North BCF", "Disabled Facilities Grant"),
        ("North learning disability", "nhs"), ("North learning disability", "E08000001"),
    ]  # fmt: skip
    assert rows[0]["contribution_gbp"] == Decimal("300000.00")
    assert rows[0]["share_of_pool"] == 0.6
    assert (rows[0]["nhs_minimum_gbp"], rows[0]["meets_minimum"]) == (Decimal("290000.00"), True)
    assert (rows[1]["nhs_minimum_gbp"], rows[1]["meets_minimum"]) == (None, None)
    assert (rows[3]["nhs_minimum_gbp"], rows[3]["meets_minimum"]) == (None, None)
    assert sum(r["share_of_pool"] for r in rows[:3]) == pytest.approx(1)


def pooled_budget_table_of(config: PooledBudgetConfig) -> pa.Table:
    return pooled_budget_table(pooled_budgets(config, POOL_ALLOCATION, PLACES))


@pytest.mark.parametrize(
    ("places", "reason"),
    [
        ({"P1": {"comunity": "0.5"}}, "unknown sector 'comunity'; sectors: primary_care"),
        ({"P1": {"community": "1.2"}}, r"P1\.community: share 1\.2 is out of range"),
        ({"P1": {"community": "-0.1"}}, "out of range"),
        ({"P1": {"community": "half"}}, "'half' is not a number"),
    ],
)
def test_bad_delegation_settings_are_refused(places: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        DelegationConfig(places=places)


def test_an_unknown_place_is_refused_with_the_known_ones() -> None:
    config = DelegationConfig(places={"P9": {"community": 1}})
    with pytest.raises(ConfigurationError, match="place 'P9' is not a place of this ICS; "
                       "known places: P1, P2"):  # fmt: skip
        delegate(ALLOCATION, config, PLACES)
    with pytest.raises(ConfigurationError, match="sector allocation: place 'P3'"):
        delegate({"P3": {"acute": 1}}, DelegationConfig(), PLACES)
    with pytest.raises(ConfigurationError, match="no sector allocation for place"):
        delegate({"P1": {"acute": 1}}, DelegationConfig(places={"P2": {"acute": 1}}), PLACES)
    with pytest.raises(InputError, match="P1, acute: -1p is negative"):
        delegate({"P1": {"acute": -1}}, DelegationConfig(), PLACES)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"nhs_contribution": {"sector": "social_care", "share": "0.3"}}, "unknown sector"),
        ({"nhs_contribution": {"sector": "community", "share": "1.1"}}, "share 1.1 is over 1"),
        ({"nhs_contribution": {"sector": "community"}}, "needs both sector and share"),
        (
            {"nhs_contribution": {"fixed_gbp": 1, "sector": "community", "share": "0.1"}},
            "either fixed_gbp, or sector and share",
        ),
        ({"nhs_contribution": {"fixed_gbp": -1}}, "is negative"),
        ({"la_contribution_gbp": "-150000"}, "la_contribution_gbp\n.*is negative"),
        ({"other_contributions": [{"partner": "DFG", "amount_gbp": -5}]}, "is negative"),
        ({"other_contributions": [{"partner": "nhs", "amount_gbp": 5}]}, "partner nhs is named"),
        ({"kind": "s75"}, "'bcf' or 'section75'"),
    ],
)
def test_bad_pools_are_refused(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        PooledBudgetConfig(pools=[BCF | change])


def test_a_repeated_pool_name_is_refused() -> None:
    reason = r"pool 2 is named 'north bcf', as pool 1 \('North BCF'\) is"
    with pytest.raises(ValidationError, match=reason):
        PooledBudgetConfig(pools=[BCF, SECTION_75 | {"name": "north bcf"}])


def test_a_pool_in_an_unknown_place_is_refused() -> None:
    config = PooledBudgetConfig(pools=[BCF | {"place": "P7"}])
    with pytest.raises(ConfigurationError, match="pool 'North BCF': place 'P7' is not a place"):
        pooled_budgets(config, POOL_ALLOCATION, PLACES)
    shared = PooledBudgetConfig(pools=[BCF | {"place": "P2"}])
    with pytest.raises(ConfigurationError, match="no sector allocation for place P2"):
        pooled_budgets(shared, POOL_ALLOCATION, PLACES)
