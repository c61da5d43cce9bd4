"""Settings to start from, for any footprint: `joinedup finance config` writes them.

The figures are illustrative, sized to the warehouse's population, and say so in the file:
- the pot is about £2,000 per registered person in 2025/26 (NHS England's ICB allocations for
  2025/26 come to about that per head, approximate) and grows about 3% a year in cash;
- each place's baseline is its head-count share of the pot, the usual starting point before
  need is taken into account; a finance director replaces it with real budgets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from joinedup.finance.calendar import next_year
from joinedup.finance.config import (
    AllocationSettings,
    ControlTotalSettings,
    FinanceConfig,
    YearTotal,
)
from joinedup.finance.money import pence, pounds, split
from joinedup.finance.whatif import ActivityChange, ActivityShift

POUNDS_PER_HEAD = 2_000
CASH_GROWTH: tuple[Decimal, ...] = (Decimal("0.030"), Decimal("0.028"), Decimal("0.027"))
BASELINE_YEAR = "2025/26"


@dataclass(frozen=True)
class Organisation:
    code: str
    name: str
    kind: str
    place_code: str | None


@dataclass(frozen=True)
class Profile:
    """What the defaults are sized from: the footprint and today's registered population."""

    places: Mapping[str, str]  # code -> name
    population: Mapping[str, int]  # place code -> people registered today
    organisations: tuple[Organisation, ...] = ()
    provider_cost: Mapping[str, int] = field(default_factory=dict)  # pence in the last year


def default_allocation(profile: Profile, baseline_year: str = BASELINE_YEAR) -> AllocationSettings:
    people = sum(profile.population.values())
    total = people * POUNDS_PER_HEAD * 100
    baselines = split(total, {k: profile.population.get(k, 0) for k in profile.places})
    years = []
    year, amount = baseline_year, total
    for growth in CASH_GROWTH:
        year = next_year(year)
        amount = int(Decimal(amount) * (1 + growth))
        years.append(YearTotal(year=year, total_gbp=pounds(amount)))
    return AllocationSettings(
        baseline_year=baseline_year,
        baseline_total_gbp=pounds(total),
        baselines_gbp={k: pounds(v) for k, v in baselines.items()},
        years=years,
    )


def default_what_if(profile: Profile) -> list[ActivityChange | ActivityShift]:
    """Three scenarios a planner asks first: fewer emergency admissions in the largest place and
    among people living with frailty, and outpatient follow-ups moved to the community."""
    largest = max(profile.places, key=lambda k: profile.population.get(k, 0))
    return [
        ActivityChange(
            name="fewer-admissions-" + largest.lower(),
            activity_type="emergency_admission",
            change=Decimal("-0.10"),
            place=largest,
        ),
        ActivityChange(
            name="fewer-admissions-frailty",
            activity_type="emergency_admission",
            change=Decimal("-0.10"),
            segment="frailty_dementia",
        ),
        ActivityShift(
            name="outpatients-to-community",
            from_activity="outpatient_attendance",
            to_activity="community_contact",
            share=Decimal("0.20"),
        ),
    ]


#: Shares of an ICB's allocation spent with its NHS trusts, for sizing the synthetic ledger:
#: about three quarters with trusts, of which ambulance services about 4% of the allocation
#: (NHS England ICB and trust accounts 2023/24, approximate).
TRUST_SHARE = Decimal("0.75")
AMBULANCE_SHARE = Decimal("0.04")
NHS_TRUSTS = ("acute_trust", "community_trust", "mental_health_trust")


def default_control_total(profile: Profile, allocation: AllocationSettings) -> ControlTotalSettings:
    """Month 7 of the first allocation year, each trust sized by the activity it provides and
    the ICB by its allocation."""
    first = allocation.years[0]
    total = pence(first.total_gbp)
    trusts = {
        o.code: profile.provider_cost.get(o.code, 0)
        for o in profile.organisations
        if o.kind in NHS_TRUSTS and profile.provider_cost.get(o.code, 0) > 0
    }
    scale: dict[str, int] = {}
    if trusts:
        scale |= split(int(total * TRUST_SHARE), trusts)
    for o in profile.organisations:
        if o.kind == "icb":
            scale[o.code] = total
        elif o.kind == "ambulance_trust":
            scale[o.code] = int(total * AMBULANCE_SHARE)
    return ControlTotalSettings(
        year=first.year, scale_gbp={k: pounds(v) for k, v in scale.items() if v > 0}
    )


def default_config(profile: Profile) -> FinanceConfig:
    """Illustrative settings for the footprint in `profile`."""
    allocation = default_allocation(profile)
    return FinanceConfig(
        allocation=allocation,
        control_total=default_control_total(profile, allocation),
        what_if=default_what_if(profile),
    )
