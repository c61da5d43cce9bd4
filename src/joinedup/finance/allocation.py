"""Allocation: targets from need, and a pace-of-change path from today's budgets towards them.

All money is whole pence; every year's allocations sum exactly to that year's total.

**Target.** A year's total shared in proportion to weighted populations (`money.split`).

**Distance from target** = (allocation - target) / target: negative is under target.

**One year's allocation under a policy** (`PacePolicy`):
1. **Floor.** Everyone first gets `baseline x (1 + growth_floor)`. A total that cannot fund
   the floors is refused.
2. **Aim.** Each place aims to close `convergence` of its gap to target:
   `baseline + convergence x (target - baseline)`. The aim is held between the floor and
   `baseline x (1 + growth_cap)` (when there is a cap), and raised to at least
   `target x (1 - max_under_target)` (when set).
3. **Fit to the total.** If the aims ask for more than the total, each place's lift above its
   floor is scaled down in proportion. If they ask for less, the spare money goes to places
   below their cap, in proportion to their targets; if every place is at its cap, it goes to
   all, in proportion to their targets.
4. **Exact pence.** The amounts, exact as fractions and summing to the total, are rounded to
   whole pence by `money.split`: each within a penny, the total kept exactly.

A path repeats this year after year, each year's allocation becoming the next year's baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from joinedup.errors import ConfigurationError
from joinedup.finance.money import split


@dataclass(frozen=True)
class PacePolicy:
    """How fast allocations move towards target. Rates are fractions: 0.02 is 2%. A negative
    growth floor lets budgets fall (-1 places no floor at all)."""

    growth_floor: Fraction = Fraction(0)
    growth_cap: Fraction | None = None
    convergence: Fraction = Fraction(1)
    max_under_target: Fraction | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.convergence <= 1:
            raise ConfigurationError("convergence must be between 0 and 1 (a share of the gap)")
        if self.growth_floor < -1:
            raise ConfigurationError("growth_floor cannot be below -100%")
        if self.growth_cap is not None and self.growth_cap < self.growth_floor:
            raise ConfigurationError("growth_cap is below growth_floor")
        if self.max_under_target is not None and not 0 <= self.max_under_target < 1:
            raise ConfigurationError("max_under_target must be at least 0 and below 1")


def targets(total_pence: int, need: Mapping[str, float | int | Fraction]) -> dict[str, int]:
    """The total shared in proportion to need (weighted populations), in whole pence."""
    return split(total_pence, need)


def distance_from_target(
    allocation: Mapping[str, int], target: Mapping[str, int]
) -> dict[str, Fraction]:
    return {k: Fraction(allocation[k] - target[k], target[k]) for k in target if target[k]}


def allocate_year(
    total_pence: int, baseline: Mapping[str, int], target: Mapping[str, int], policy: PacePolicy
) -> dict[str, int]:
    """One year's allocations (see the module docstring), summing exactly to the total."""
    if set(baseline) != set(target):
        unknown = sorted(set(baseline) ^ set(target))
        raise ConfigurationError(f"baseline and target differ in places: {', '.join(unknown)}")
    floor = {k: baseline[k] * (1 + Fraction(policy.growth_floor)) for k in baseline}
    if sum(floor.values()) > total_pence:
        raise ConfigurationError(
            f"the total ({total_pence:,}p) cannot fund the growth floor of "
            f"{float(policy.growth_floor):.2%} ({int(sum(floor.values())):,}p)"
        )
    cap = {
        k: None if policy.growth_cap is None else baseline[k] * (1 + policy.growth_cap)
        for k in baseline
    }
    aim: dict[str, Fraction] = {}
    for k in baseline:
        a = baseline[k] + policy.convergence * (target[k] - baseline[k])
        if policy.max_under_target is not None:
            a = max(a, target[k] * (1 - policy.max_under_target))
        c = cap[k]
        if c is not None:
            a = min(a, c)
        aim[k] = max(a, floor[k])
    lift = {k: aim[k] - floor[k] for k in baseline}
    spare = total_pence - sum(floor.values()) - sum(lift.values())
    if spare < 0:  # the aims ask too much: scale every lift down alike
        budget = Fraction(total_pence) - sum(floor.values(), Fraction(0))
        scale = budget / sum(lift.values(), Fraction(0))
        lift = {k: v * scale for k, v in lift.items()}
    elif spare > 0:
        room = [k for k in baseline if (c := cap[k]) is None or aim[k] < c]
        takers = room or list(baseline)
        share = Fraction(spare) / sum(Fraction(target[k]) for k in takers)
        lift = {k: v + (target[k] * share if k in takers else 0) for k, v in lift.items()}
    # floor + lift now sums exactly to the total, so each part's share is exactly its amount:
    # the split only rounds it to whole pence (within a penny, the total kept exactly).
    return split(total_pence, {k: floor[k] + lift[k] for k in baseline})


def pace_of_change(
    totals: Sequence[int],
    baseline: Mapping[str, int],
    need: Mapping[str, float | int | Fraction],
    policy: PacePolicy,
) -> list[dict[str, int]]:
    """Allocations for each year's total, starting from `baseline`, towards need."""
    path: list[dict[str, int]] = []
    current = dict(baseline)
    for total in totals:
        current = allocate_year(total, current, targets(total, need), policy)
        path.append(current)
    return path


@dataclass(frozen=True)
class PlaceYear:
    """One place in one year of the allocation path."""

    year: str
    place_code: str
    baseline_pence: int  # the year before's allocation (the configured baseline in year one)
    target_pence: int
    allocation_pence: int
    head_count_pence: int  # the same total shared by head count alone, for comparison

    @property
    def distance_from_target(self) -> Fraction:
        return Fraction(self.allocation_pence - self.target_pence, self.target_pence or 1)

    @property
    def growth(self) -> Fraction:
        return Fraction(self.allocation_pence - self.baseline_pence, self.baseline_pence or 1)


def plan(
    years: Sequence[tuple[str, int]],
    baseline: Mapping[str, int],
    need: Mapping[str, float | int | Fraction],
    population: Mapping[str, float | int | Fraction],
    policy: PacePolicy,
) -> list[PlaceYear]:
    """The multi-year path: each (year, total) allocated from the year before under `policy`,
    with targets from `need` and the head-count split from `population` beside them."""
    path = pace_of_change([total for _, total in years], baseline, need, policy)
    rows: list[PlaceYear] = []
    previous = dict(baseline)
    for (year, total), allocation in zip(years, path, strict=True):
        target = targets(total, need)
        heads = split(total, population)
        rows += [
            PlaceYear(year, k, previous[k], target[k], allocation[k], heads[k])
            for k in sorted(allocation)
        ]
        previous = allocation
    return rows
