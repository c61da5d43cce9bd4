"""Each place's allocation split into the sectors that spend it.

A place's allocation is shared between sectors in proportion to the place's need for each:

    weight(sector, place) = sum over the sector's components of
                            share(component) x need index(component, place)

where `share` is the component's share of the overall weighted population (its share of the
modelled cost) and the index is the place's need index for that component. Continuing
healthcare has no component of its own: it takes a configured share of every place's
allocation first. Health inequalities is an adjustment, not a service: it is spread over the
sectors with the rest. Every place's sectors sum exactly to its allocation (`money.split`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction

from pydantic import Field, model_validator

from joinedup.finance.money import split
from joinedup.finance.schema import FinanceModel, Rate

#: The sectors an ICS spends its allocation on.
SECTORS: tuple[str, ...] = (
    "primary_care", "community", "mental_health", "acute", "continuing_healthcare",
    "prescribing",
)  # fmt: skip
CONTINUING_HEALTHCARE = "continuing_healthcare"

#: An illustrative spending mix of an ICB by need component, for published weights, which come
#: without costs: general and acute about half, primary medical care about a tenth (NHS England
#: ICB allocations 2025/26 and the mental health investment standard, approximate).
PUBLISHED_COMPONENT_SHARES: dict[str, float] = {
    "general_and_acute": 0.55,
    "community_services": 0.09,
    "mental_health": 0.13,
    "maternity": 0.03,
    "prescribing": 0.10,
    "primary_medical_care": 0.10,
}


class SectorSettings(FinanceModel):
    """Which need components each sector follows, and continuing healthcare's share."""

    components: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "primary_care": ["primary_medical_care"],
            "community": ["community_services"],
            "mental_health": ["mental_health"],
            "acute": ["general_and_acute", "maternity"],
            "prescribing": ["prescribing"],
        }
    )
    #: NHS continuing healthcare was about 4.5% of ICB spending in 2023/24 (NHS England CHC
    #: statistics, about £5.5 billion; approximate).
    continuing_healthcare_share: Rate = Field(Decimal("0.045"), ge=0, lt=1)
    #: Each component's share of spending, to weigh the sectors. When absent, need estimated
    #: from the population uses its own modelled cost; published weights use
    #: PUBLISHED_COMPONENT_SHARES.
    component_shares: dict[str, Rate] | None = None

    @model_validator(mode="after")
    def _known(self) -> SectorSettings:
        for sector, components in self.components.items():
            if sector not in SECTORS or sector == CONTINUING_HEALTHCARE:
                choices = ", ".join(s for s in SECTORS if s != CONTINUING_HEALTHCARE)
                raise ValueError(f"components.{sector}: unknown sector; choose from {choices}")
            if not components:
                raise ValueError(f"components.{sector}: give at least one need component")
        for component, share in (self.component_shares or {}).items():
            if share < 0:
                raise ValueError(f"component_shares.{component}: a share cannot be negative")
        return self


def sector_weights(
    indices: Mapping[str, float], shares: Mapping[str, float], settings: SectorSettings
) -> dict[str, Fraction]:
    """The (unscaled) weight of each sector for one place, from its need indices."""
    weights = {
        sector: Fraction(
            sum(shares.get(c, 0.0) * indices.get(c, 1.0) for c in components if c in indices)
        )
        for sector, components in settings.components.items()
    }
    unknown = sorted(c for cs in settings.components.values() for c in cs if c not in indices)
    if unknown:
        raise ValueError(f"no need index for component(s) {', '.join(unknown)}")
    return weights


def split_sectors(
    allocation_pence: int,
    indices: Mapping[str, float],
    shares: Mapping[str, float],
    settings: SectorSettings,
) -> dict[str, int]:
    """One place's allocation by sector, in whole pence summing to the allocation."""
    chc = Fraction(settings.continuing_healthcare_share)
    rest = sector_weights(indices, shares, settings)
    whole = sum(rest.values(), Fraction(0))
    weights = {CONTINUING_HEALTHCARE: chc}
    if whole > 0:
        weights |= {s: (1 - chc) * w / whole for s, w in rest.items()}
    parts = split(allocation_pence, weights)
    return {s: parts.get(s, 0) for s in SECTORS if s in parts}
