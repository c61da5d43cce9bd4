"""Allocation and pace of change, on the hand-worked examples of docs/finance.md and as
properties: every year sums exactly to its total and every floor is kept."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from joinedup.errors import ConfigurationError
from joinedup.finance.allocation import (
    PacePolicy,
    allocate_year,
    distance_from_target,
    pace_of_change,
    plan,
    targets,
)
from joinedup.finance.sectors import SectorSettings, split_sectors

BASELINE = {"A": 100_000, "B": 100_000, "C": 100_000}
NEED = {"A": 2, "B": 1, "C": 1}
POLICY = PacePolicy(
    growth_floor=Fraction("0.02"), growth_cap=Fraction("0.15"), convergence=Fraction("0.5")
)


def test_hand_worked_year_with_money_to_spare() -> None:
    total = 330_000
    target = targets(total, NEED)
    assert target == {"A": 165_000, "B": 82_500, "C": 82_500}
    # Floors 102,000 each; A aims at 132,500 but its 15% cap holds it at 115,000; B and C aim
    # below their floors, so hold at 102,000; the 11,000 left goes to B and C (below their
    # caps) in proportion to their targets.
    assert allocate_year(total, BASELINE, target, POLICY) == {
        "A": 115_000, "B": 107_500, "C": 107_500,
    }  # fmt: skip
    assert distance_from_target(BASELINE, target)["A"] == Fraction(-65_000, 165_000)


def test_hand_worked_year_short_of_money() -> None:
    # Floors take 306,000 of 310,000; A's lift of 13,000 is scaled to the 4,000 left.
    total = 310_000
    assert allocate_year(total, BASELINE, targets(total, NEED), POLICY) == {
        "A": 106_000, "B": 102_000, "C": 102_000,
    }  # fmt: skip


def test_a_total_that_cannot_fund_the_floor_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"cannot fund the growth floor of 2\.00%"):
        allocate_year(305_000, BASELINE, targets(305_000, NEED), POLICY)


def test_the_path_converges_on_target() -> None:
    path = pace_of_change([330_000, 345_000, 360_000, 380_000], BASELINE, NEED, POLICY)
    gaps = [
        abs(distance_from_target(year, targets(sum(year.values()), NEED))["A"]) for year in path
    ]
    assert gaps == sorted(gaps, reverse=True)
    assert all(sum(year.values()) == total for year, total in
               zip(path, [330_000, 345_000, 360_000, 380_000], strict=True))  # fmt: skip


AMOUNTS = st.integers(min_value=1_000, max_value=10**12)


@given(
    baseline=st.lists(AMOUNTS, min_size=1, max_size=8),
    need=st.lists(st.integers(min_value=1, max_value=10**6), min_size=8, max_size=8),
    growth=st.fractions(min_value=0, max_value=Fraction(1, 2)),
    floor=st.fractions(min_value=0, max_value=Fraction(1, 10)),
    convergence=st.fractions(min_value=0, max_value=1),
)
def test_every_year_sums_to_its_total_and_keeps_every_floor(
    baseline: list[int], need: list[int], growth: Fraction, floor: Fraction, convergence: Fraction
) -> None:
    places = {f"P{i}": b for i, b in enumerate(baseline)}
    weights = {p: need[i] for i, p in enumerate(places)}
    total = int(sum(baseline) * (1 + max(growth, floor))) + 1
    policy = PacePolicy(growth_floor=floor, convergence=convergence)
    result = allocate_year(total, places, targets(total, weights), policy)
    assert sum(result.values()) == total
    for p, b in places.items():
        assert result[p] >= b * (1 + floor) - 1


@given(baseline=st.lists(AMOUNTS, min_size=1, max_size=8), extra=st.integers(0, 10**9))
def test_full_convergence_without_limits_lands_on_target(baseline: list[int], extra: int) -> None:
    places = {f"P{i}": b for i, b in enumerate(baseline)}
    need = {p: i + 1 for i, p in enumerate(places)}
    total = sum(baseline) + extra
    target = targets(total, need)
    # A growth floor of -100% lets budgets fall, so nothing holds a place away from target.
    policy = PacePolicy(growth_floor=Fraction(-1), convergence=Fraction(1))
    result = allocate_year(total, places, target, policy)
    assert all(abs(result[p] - target[p]) <= 1 for p in places)


def test_hand_worked_multi_year_plan_with_the_head_count_split_beside_it() -> None:
    # The first year of the example above, from plan(): A has half the need but a third of
    # the heads, so its head-count share (110,000) is far below its target (165,000).
    rows = plan([("2026/27", 330_000)], BASELINE, NEED, {"A": 1, "B": 1, "C": 1}, POLICY)
    a = next(r for r in rows if r.place_code == "A")
    assert (a.baseline_pence, a.target_pence, a.allocation_pence, a.head_count_pence) == (
        100_000, 165_000, 115_000, 110_000,
    )  # fmt: skip
    assert a.growth == Fraction(15, 100)
    assert a.distance_from_target == Fraction(115_000 - 165_000, 165_000)


def test_hand_worked_sector_split() -> None:
    """£1,000.00 with 5% continuing healthcare; the rest by share x index: acute 0.6 x 1.2 =
    0.72, community 0.2 x 1.0 = 0.2, primary care 0.2 x 0.5 = 0.1, of 1.02. The 95,000p left
    after 5,000p of continuing healthcare splits 67,058.82p, 18,627.45p, 9,313.73p; the two
    pence left go to the largest remainders (acute .82, primary care .73)."""
    settings = SectorSettings(
        components={"acute": ["general_and_acute"], "community": ["community_services"],
                    "primary_care": ["primary_medical_care"]},
        continuing_healthcare_share="0.05",
    )  # fmt: skip
    indices = {"general_and_acute": 1.2, "community_services": 1.0, "primary_medical_care": 0.5}
    shares = {"general_and_acute": 0.6, "community_services": 0.2, "primary_medical_care": 0.2}
    assert split_sectors(100_000, indices, shares, settings) == {
        "primary_care": 9_314, "community": 18_627, "acute": 67_059,
        "continuing_healthcare": 5_000,
    }  # fmt: skip


@given(
    amount=st.integers(min_value=0, max_value=10**13),
    index=st.lists(st.floats(min_value=0.01, max_value=5), min_size=6, max_size=6),
)
def test_sectors_always_sum_to_the_place_allocation(amount: int, index: list[float]) -> None:
    settings = SectorSettings()
    names = ["general_and_acute", "community_services", "mental_health", "maternity",
             "prescribing", "primary_medical_care"]  # fmt: skip
    indices = dict(zip(names, index, strict=True))
    shares = dict.fromkeys(names, 1 / 6)
    assert sum(split_sectors(amount, indices, shares, settings).values()) == amount
