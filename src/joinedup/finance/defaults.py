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
from typing import Any

from joinedup.finance.budgets import (
    DelegationConfig,
    NhsContribution,
    OtherContribution,
    Pool,
    PooledBudgetConfig,
)
from joinedup.finance.calendar import next_year
from joinedup.finance.config import (
    AllocationSettings,
    ControlTotalSettings,
    FinanceConfig,
    RiskShareSettings,
    YearTotal,
)
from joinedup.finance.guarantees import CommunityGuaranteeConfig, MhisConfig, SpendLine
from joinedup.finance.money import pence, pounds, split
from joinedup.finance.payment import ContractConfig
from joinedup.finance.risk_share import Party, RiskShareAgreement, Scenario, Tier
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
class Collaborative:
    code: str
    name: str
    place_code: str | None  # a vertical (place) partnership has a place
    members: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    """What the defaults are sized from: the footprint and today's registered population."""

    places: Mapping[str, str]  # code -> name
    population: Mapping[str, int]  # place code -> people registered today
    organisations: tuple[Organisation, ...] = ()
    provider_cost: Mapping[str, int] = field(default_factory=dict)  # pence in the last year
    collaboratives: tuple[Collaborative, ...] = ()
    #: Activity counts by financial year, provider and point of delivery (full years only).
    activity: Mapping[str, Mapping[str, Mapping[str, int]]] = field(default_factory=dict)


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


#: An illustrative mental health budget: about 13% of the pot, split by service (NHS England
#: Mental Health Five Year Forward View dashboard categories, shares approximate).
MENTAL_HEALTH_SHARE = Decimal("0.13")
MENTAL_HEALTH_LINES: tuple[tuple[str, Decimal], ...] = (
    ("adult_community_mental_health", Decimal("0.30")),
    ("inpatient_mental_health", Decimal("0.22")),
    ("crisis_and_liaison", Decimal("0.08")),
    ("children_and_young_people", Decimal("0.10")),
    ("talking_therapies", Decimal("0.06")),
    ("learning_disability", Decimal("0.14")),
    ("autism", Decimal("0.02")),
    ("dementia", Decimal("0.08")),
)
#: Community services: about 9% of the pot.
COMMUNITY_SHARE = Decimal("0.09")
#: Better Care Fund 2024/25 (policy framework, approximate): the NHS minimum contribution is
#: about £4.8 billion, the improved BCF grant to councils about £2.1 billion and the Disabled
#: Facilities Grant about £0.7 billion, for about 57 million registered people.
BCF_NHS_MINIMUM_PER_HEAD = Decimal("84")
BCF_NHS_PER_HEAD = Decimal("86")
BCF_COUNCIL_PER_HEAD = Decimal("37")
BCF_DFG_PER_HEAD = Decimal("12")


def _grow(amount: Decimal, rate: Decimal) -> Decimal:
    return (amount * (1 + rate)).quantize(Decimal("0.01"))


def default_guarantees(
    allocation: AllocationSettings,
) -> tuple[MhisConfig, CommunityGuaranteeConfig]:
    """Mental health and community spend growing a little faster than the allocation."""
    year = allocation.years[0]
    growth = (year.total_gbp - allocation.baseline_total_gbp) / allocation.baseline_total_gbp
    mental_health = allocation.baseline_total_gbp * MENTAL_HEALTH_SHARE
    previous = [
        SpendLine(category=c, amount_gbp=(mental_health * share).quantize(Decimal("0.01")))
        for c, share in MENTAL_HEALTH_LINES
    ]
    planned = [
        SpendLine(
            category=line.category, amount_gbp=_grow(line.amount_gbp, growth + Decimal("0.005"))
        )
        for line in previous
    ]
    community = (allocation.baseline_total_gbp * COMMUNITY_SHARE).quantize(Decimal("0.01"))
    return (
        MhisConfig(year=year.year, previous_spend=previous, planned_spend=planned),
        CommunityGuaranteeConfig(
            year=year.year,
            rule="growth_at_least_allocation_growth",
            previous_spend_gbp=community,
            planned_spend_gbp=_grow(community, growth + Decimal("0.002")),
        ),
    )


def default_delegation(profile: Profile) -> DelegationConfig:
    """Primary care, community, continuing healthcare and prescribing delegated to place in
    full, half of mental health and a quarter of acute (illustrative)."""
    shares = {
        "primary_care": Decimal(1), "community": Decimal(1), "continuing_healthcare": Decimal(1),
        "prescribing": Decimal(1), "mental_health": Decimal("0.5"), "acute": Decimal("0.25"),
    }  # fmt: skip
    return DelegationConfig(places={code: dict(shares) for code in profile.places})


def default_pools(profile: Profile) -> PooledBudgetConfig:
    """A Better Care Fund pool with each place's council, sized by head."""
    councils = {o.place_code: o.code for o in profile.organisations if o.kind == "local_authority"}
    pools = []
    for code, name in profile.places.items():
        council = councils.get(code)
        people = Decimal(profile.population.get(code, 0))
        if council is None or people == 0:
            continue
        pools.append(
            Pool(
                name=f"{name} Better Care Fund",
                kind="bcf",
                place=code,
                local_authority=council,
                nhs_contribution=NhsContribution(fixed_gbp=people * BCF_NHS_PER_HEAD),
                la_contribution_gbp=people * BCF_COUNCIL_PER_HEAD,
                other_contributions=[
                    OtherContribution(
                        partner="Disabled Facilities Grant", amount_gbp=people * BCF_DFG_PER_HEAD
                    )
                ],
                nhs_minimum_gbp=people * BCF_NHS_MINIMUM_PER_HEAD,
            )
        )
    return PooledBudgetConfig(pools=pools)


#: National average unit prices of elective points of delivery (NHS England National Cost
#: Collection 2022/23, approximate; the same as the synthetic population's costs).
ELECTIVE_PRICES_GBP = {"EL": Decimal("3800.00"), "DC": Decimal("950.00"), "OP": Decimal("160.00")}
#: Non-elective points of delivery priced into the fixed element, at the same source's prices.
FIXED_PRICES_GBP = {"NEL": Decimal("1650.00"), "AE": Decimal("250.00")}
#: CQUIN was 1.25% of a contract's value in 2023/24 and 2024/25 (NHS England, approximate).
CQUIN_SHARE = Decimal("0.0125")
#: Market forces factors, illustrative: a little above and below 1.
MARKET_FORCES = (Decimal("1.0234"), Decimal("1.0102"), Decimal("0.9876"))


def default_contracts(profile: Profile) -> list[ContractConfig]:
    """Each acute trust's contract for the latest full year, planned on the year before, paid
    under the 2023/24 rules and, for comparison, the 2022/23 rules."""
    years = sorted(profile.activity, key=lambda y: y)
    if len(years) < 2:
        return []
    year, before = years[-1], years[-2]
    acute = [o for o in profile.organisations if o.kind == "acute_trust"]
    contracts = []
    for i, trust in enumerate(acute):
        planned = {
            pod: profile.activity[before].get(trust.code, {}).get(pod, 0)
            for pod in ELECTIVE_PRICES_GBP
        }
        fixed = sum(
            (price * profile.activity[before].get(trust.code, {}).get(pod, 0)
             for pod, price in FIXED_PRICES_GBP.items()),
            Decimal(0),
        )  # fmt: skip
        if not any(planned.values()) or fixed == 0:
            continue
        mff = MARKET_FORCES[i % len(MARKET_FORCES)]
        cquin = (fixed * CQUIN_SHARE).quantize(Decimal("0.01"))
        common: dict[str, Any] = {
            "provider_code": trust.code,
            "year": year,
            "market_forces_factor": mff,
            "unit_prices_gbp": dict(ELECTIVE_PRICES_GBP),
            "planned_activity": planned,
        }
        contracts.append(
            ContractConfig(
                **common, fixed_element_gbp=fixed + cquin, cquin_gbp=cquin,
                cquin_achievement=Decimal("0.8"),
            )
        )  # fmt: skip
        # Under the 2022/23 rules the fixed element pays for the planned electives too; the
        # variable element moves it by 75% of the difference.
        planned_value = sum(
            (ELECTIVE_PRICES_GBP[pod] * mff * n for pod, n in planned.items()), Decimal(0)
        ).quantize(Decimal("0.01"))
        contracts.append(
            ContractConfig(**common, rules="2022/23", fixed_element_gbp=fixed + planned_value)
        )
    return contracts


#: Illustrative outturn scenarios: each party's variance as a share of its budget (positive an
#: overspend), by the order the parties are listed in.
RISK_SCENARIOS: dict[str, tuple[Decimal, ...]] = {
    "winter pressure": (Decimal("0.012"), Decimal("0.004"), Decimal("0.015"), Decimal("0.009"),
                        Decimal("0.006"), Decimal("0.02"), Decimal("0.008")),
    "mixed year": (Decimal("0.018"), Decimal("-0.006"), Decimal("0.004"), Decimal("-0.01"),
                   Decimal("0.002"), Decimal("-0.004"), Decimal("0.012")),
    "savings ahead of plan": (Decimal("-0.008"), Decimal("-0.012"), Decimal("-0.004"),
                              Decimal("-0.006"), Decimal("-0.01"), Decimal("-0.003"),
                              Decimal("-0.005")),
}  # fmt: skip
RISK_CAP_SHARE = Decimal("0.01")  # no party bears a loss or takes a gain above 1% of budget


def default_risk_share(
    profile: Profile, allocation: AllocationSettings, scale: Mapping[str, Decimal]
) -> RiskShareSettings | None:
    """Places (their vertical partnerships) and the horizontal collaboratives share half of
    their variance in a pool: the first 0.5% of the pot by budget, the rest equally; each is
    capped and collared at 1% of budget; the ICB takes what is left."""
    icb = next((o for o in profile.organisations if o.kind == "icb"), None)
    if icb is None or not profile.collaboratives:
        return None
    first = allocation.years[0]
    share_of_pot = first.total_gbp / allocation.baseline_total_gbp
    parties: list[Party] = []
    for c in profile.collaboratives:
        if c.place_code is not None:
            budget = allocation.baselines_gbp.get(c.place_code, Decimal(0)) * share_of_pot
            kind = "place"
        else:
            budget = sum((scale.get(m, Decimal(0)) for m in c.members), Decimal(0))
            kind = "collaborative"
        if budget <= 0:
            continue
        budget = budget.quantize(Decimal("0.01"))
        limit = (budget * RISK_CAP_SHARE).quantize(Decimal("0.01"))
        parties.append(
            Party(code=c.code, name=c.name, kind=kind, budget_gbp=budget, cap_gbp=limit,
                  collar_gbp=limit)
        )  # fmt: skip
    if len(parties) < 2:
        return None
    parties.append(Party(code=icb.code, name=icb.name, kind="system", budget_gbp=Decimal(0)))
    band = (first.total_gbp * Decimal("0.005")).quantize(Decimal("0.01"))
    agreement = RiskShareAgreement(
        name=f"{icb.name} risk share {first.year}",
        parties=parties,
        retained_share=Decimal("0.5"),
        loss_tiers=[
            Tier(up_to_gbp=band, basis="budget"),
            Tier(basis="equal", parties=[p.code for p in parties if p.kind != "system"]),
        ],
        gain_tiers=[Tier(basis="budget")],
        residual_party=icb.code,
    )
    scenarios = []
    for name, rates in RISK_SCENARIOS.items():
        variances = {
            p.code: (p.budget_gbp * rates[i % len(rates)]).quantize(Decimal("0.01"))
            for i, p in enumerate(parties[:-1])
        }
        variances[icb.code] = Decimal(0)
        scenarios.append(Scenario(name=name, variances_gbp=variances))
    return RiskShareSettings(agreement=agreement, scenarios=scenarios)


def default_config(profile: Profile) -> FinanceConfig:
    """Illustrative settings for the footprint in `profile`."""
    allocation = default_allocation(profile)
    mhis, community = default_guarantees(allocation)
    control_total = default_control_total(profile, allocation)
    return FinanceConfig(
        allocation=allocation,
        mhis=mhis,
        community_guarantee=community,
        delegation=default_delegation(profile),
        pooled_budgets=default_pools(profile),
        control_total=control_total,
        contracts=default_contracts(profile),
        risk_share=default_risk_share(profile, allocation, control_total.scale_gbp),
        what_if=default_what_if(profile),
    )
