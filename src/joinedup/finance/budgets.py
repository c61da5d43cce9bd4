"""Budgets below the ICB: what is delegated to places, and what is pooled with councils.

**Delegated place budgets.** Each place's allocation is split by sector (`SECTORS`); the ICB
delegates a configured share of each sector to the place and holds the rest at system level.
Per place and sector, `money.split` shares the allocation with weights (share, 1 - share), so
delegated + retained = allocation exactly: the delegated part is the exact share rounded to
the nearest penny, a half penny going to the delegated part, and retained is the rest.

**Pooled budgets.** Under a Section 75 agreement, or the Better Care Fund (BCF), the NHS and a
local authority put money into one pool for a place. The NHS contribution is either a fixed
sum or a share of the place's allocation for one sector (rounded as above); the council and
other partners (e.g. the Disabled Facilities Grant) give fixed sums. Each partner's share of
the pool is its contribution over the total, exactly. Where a national NHS minimum is set (the
BCF), the NHS contribution is tested against it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from joinedup.errors import ConfigurationError, InputError
from joinedup.finance.money import GBP_TYPE, gbp_text, pence, percent_text, pounds, split
from joinedup.finance.schema import FinanceModel, Pounds, Rate
from joinedup.finance.sectors import SECTORS

PLACE_BUDGET_TABLE = "finance_place_budget"
POOLED_BUDGET_TABLE = "finance_pooled_budget"
NHS_PARTNER = "nhs"

PLACE_BUDGET_SCHEMA = pa.schema(
    [
        ("place_code", pa.string()),
        ("sector", pa.string()),
        ("allocation_gbp", GBP_TYPE),
        ("delegated_gbp", GBP_TYPE),
        ("retained_gbp", GBP_TYPE),
        ("delegated_share", pa.float64()),
    ]
)
POOLED_BUDGET_SCHEMA = pa.schema(
    [
        ("pool", pa.string()),
        ("kind", pa.string()),
        ("place_code", pa.string()),
        ("partner", pa.string()),
        ("contribution_gbp", GBP_TYPE),
        ("share_of_pool", pa.float64()),
        ("nhs_minimum_gbp", GBP_TYPE),
        ("meets_minimum", pa.bool_()),
        ("explanation", pa.string()),
    ]
)


def _check_sector(sector: str, where: str) -> None:
    if sector not in SECTORS:
        raise ValueError(f"{where}unknown sector {sector!r}; sectors: {', '.join(SECTORS)}")


def _check_share(share: Decimal, where: str) -> None:
    if not 0 <= share <= 1:
        raise ValueError(f"{where}share {share} is out of range: 0 to 1 (0.25 is 25%)")


def _not_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError(f"{value} is negative: give a contribution as a positive amount")
    return value


def check_places(codes: Iterable[str], places: Mapping[str, str], where: str) -> None:
    """Refuses any of `codes` that is not a known place, naming it and the known places."""
    known = sorted(places)
    for code in codes:
        if code not in places:
            raise ConfigurationError(
                f"{where}: place {code!r} is not a place of this ICS; known places: "
                f"{', '.join(known) or '(none)'}"
            )


def _checked_allocation(
    sector_allocation: Mapping[str, Mapping[str, int]], places: Mapping[str, str]
) -> None:
    check_places(sector_allocation, places, "sector allocation")
    for place, sectors in sector_allocation.items():
        for sector, amount in sectors.items():
            if sector not in SECTORS:
                raise InputError(
                    f"sector allocation of {place}",
                    f"unknown sector {sector!r}; sectors: {', '.join(SECTORS)}",
                )
            if amount < 0:
                raise InputError(
                    f"sector allocation of {place}, {sector}", f"{amount}p is negative"
                )


def _share_of(amount_pence: int, share: Fraction) -> int:
    """`share` of an amount, rounded to the nearest penny, a half penny up (`money.split`)."""
    return split(amount_pence, {"part": share, "rest": 1 - share})["part"]


# --- delegated place budgets ----------------------------------------------------------------


class DelegationConfig(FinanceModel):
    """Per place code, the share (0 to 1) of each sector's allocation delegated to the place.
    A sector not named is held at system level (share 0); a place not named delegates
    nothing."""

    places: dict[str, dict[str, Rate]] = Field(default_factory=dict)

    @field_validator("places")
    @classmethod
    def _known_sectors(cls, value: dict[str, dict[str, Decimal]]) -> dict[str, dict[str, Decimal]]:
        for place, shares in value.items():
            if not place.strip():
                raise ValueError("a place code is blank")
            for sector, share in shares.items():
                _check_sector(sector, f"{place}: ")
                _check_share(share, f"{place}.{sector}: ")
        return value

    def check_places(self, places: Mapping[str, str]) -> None:
        """Refuses a place code that is not one of `places` (code -> name)."""
        check_places(self.places, places, "delegation")

    def share(self, place: str, sector: str) -> Fraction:
        return Fraction(self.places.get(place, {}).get(sector, Decimal(0)))


@dataclass(frozen=True)
class SectorBudget:
    sector: str
    allocation_pence: int
    delegated_pence: int
    retained_pence: int
    delegated_share: Fraction


@dataclass(frozen=True)
class PlaceBudget:
    """One place's budgets by sector and in total; delegated + retained = allocation."""

    place_code: str
    place_name: str
    sectors: tuple[SectorBudget, ...]
    allocation_pence: int
    delegated_pence: int
    retained_pence: int
    explanation: str


def delegate(
    sector_allocation: Mapping[str, Mapping[str, int]],
    config: DelegationConfig,
    places: Mapping[str, str],
) -> list[PlaceBudget]:
    """Each place's delegated and retained budget by sector (see the module docstring), for
    the places in `sector_allocation` (place -> sector -> pence; a sector absent is 0), in
    order of place code. Places are checked against `places` (code -> name)."""
    _checked_allocation(sector_allocation, places)
    config.check_places(places)
    missing = sorted(set(config.places) - set(sector_allocation))
    if missing:
        raise ConfigurationError(
            f"delegation: no sector allocation for place(s) {', '.join(missing)}"
        )
    budgets: list[PlaceBudget] = []
    for code in sorted(sector_allocation):
        rows: list[SectorBudget] = []
        for sector in SECTORS:
            amount = sector_allocation[code].get(sector, 0)
            share = config.share(code, sector)
            delegated = _share_of(amount, share)
            rows.append(SectorBudget(sector, amount, delegated, amount - delegated, share))
        total = sum(r.allocation_pence for r in rows)
        delegated_total = sum(r.delegated_pence for r in rows)
        name = places[code]
        overall = f" ({percent_text(Fraction(delegated_total, total))})" if total else ""
        budgets.append(
            PlaceBudget(
                place_code=code,
                place_name=name,
                sectors=tuple(rows),
                allocation_pence=total,
                delegated_pence=delegated_total,
                retained_pence=total - delegated_total,
                explanation=(
                    f"{name} ({code}): {gbp_text(delegated_total)} of {gbp_text(total)} "
                    f"delegated to the place{overall}, {gbp_text(total - delegated_total)} held "
                    "at system level."
                ),
            )
        )
    return budgets


def place_budget_table(budgets: Iterable[PlaceBudget]) -> pa.Table:
    """`finance_place_budget`: one row per place and sector; `delegated_share` is the
    configured share (0.5 is half)."""
    rows = [(b.place_code, s) for b in budgets for s in b.sectors]
    return pa.table(
        {
            "place_code": [p for p, _ in rows],
            "sector": [s.sector for _, s in rows],
            "allocation_gbp": [pounds(s.allocation_pence) for _, s in rows],
            "delegated_gbp": [pounds(s.delegated_pence) for _, s in rows],
            "retained_gbp": [pounds(s.retained_pence) for _, s in rows],
            "delegated_share": [float(s.delegated_share) for _, s in rows],
        },
        schema=PLACE_BUDGET_SCHEMA,
    )


# --- pooled budgets -------------------------------------------------------------------------


class NhsContribution(FinanceModel):
    """Either `fixed_gbp`, or `sector` and `share`: a share of the place's allocation for that
    sector."""

    fixed_gbp: Pounds | None = None
    sector: str | None = None
    share: Rate | None = None

    @model_validator(mode="after")
    def _one_form(self) -> NhsContribution:
        fixed = self.fixed_gbp is not None
        by_share = self.sector is not None or self.share is not None
        if fixed == by_share:
            raise ValueError("give either fixed_gbp, or sector and share (not both, not neither)")
        if fixed:
            _not_negative(self.fixed_gbp or Decimal(0))
            return self
        if self.sector is None or self.share is None:
            raise ValueError("a share contribution needs both sector and share")
        _check_sector(self.sector, "")
        if self.share > 1:
            raise ValueError(f"share {self.share} is over 1: the NHS cannot pool over 100%")
        _check_share(self.share, "")
        return self


class OtherContribution(FinanceModel):
    """A further partner's fixed contribution (e.g. the Disabled Facilities Grant)."""

    partner: str = Field(min_length=1)
    amount_gbp: Pounds

    _amount = field_validator("amount_gbp")(_not_negative)


class Pool(FinanceModel):
    """One pooled budget of a place with a local authority (org code)."""

    name: str = Field(min_length=1)
    kind: Literal["bcf", "section75"]
    place: str = Field(min_length=1)
    local_authority: str = Field(min_length=1)
    nhs_contribution: NhsContribution
    la_contribution_gbp: Pounds
    other_contributions: list[OtherContribution] = Field(default_factory=list)
    nhs_minimum_gbp: Pounds | None = None

    _amounts = field_validator("la_contribution_gbp")(_not_negative)

    @field_validator("nhs_minimum_gbp")
    @classmethod
    def _minimum(cls, value: Decimal | None) -> Decimal | None:
        return None if value is None else _not_negative(value)

    @model_validator(mode="after")
    def _partners_once(self) -> Pool:
        seen = {NHS_PARTNER.casefold(), self.local_authority.casefold()}
        for other in self.other_contributions:
            if other.partner.casefold() in seen:
                raise ValueError(
                    f"partner {other.partner} is named twice (the NHS is {NHS_PARTNER!r}, "
                    f"the council {self.local_authority!r}): give one line per partner"
                )
            seen.add(other.partner.casefold())
        return self


class PooledBudgetConfig(FinanceModel):
    pools: list[Pool] = Field(default_factory=list)

    @field_validator("pools")
    @classmethod
    def _names_once(cls, value: list[Pool]) -> list[Pool]:
        seen: dict[str, tuple[int, str]] = {}
        for i, pool in enumerate(value, 1):
            key = pool.name.casefold()
            if key in seen:
                first, name = seen[key]
                raise ValueError(
                    f"pool {i} is named {pool.name!r}, as pool {first} ({name!r}) is: "
                    "name each pool once"
                )
            seen[key] = (i, pool.name)
        return value

    def check_places(self, places: Mapping[str, str]) -> None:
        """Refuses a pool whose place is not one of `places` (code -> name)."""
        for pool in self.pools:
            check_places([pool.place], places, f"pool {pool.name!r}")


@dataclass(frozen=True)
class Contribution:
    """One partner's money in a pool and its exact share of the pool."""

    partner: str
    amount_pence: int
    share: Fraction
    share_float: float
    explanation: str


@dataclass(frozen=True)
class PooledBudget:
    """A pool's total and contributions (NHS first, then the council, then the others).
    `meets_minimum` and `minimum_margin_pence` are None when no NHS minimum is set."""

    name: str
    kind: str
    place_code: str
    place_name: str
    local_authority_code: str
    total_pence: int
    contributions: tuple[Contribution, ...]
    nhs_pence: int
    nhs_minimum_pence: int | None
    meets_minimum: bool | None
    minimum_margin_pence: int | None
    explanation: str


def _nhs_pence(pool: Pool, sector_allocation: Mapping[str, Mapping[str, int]]) -> tuple[int, str]:
    nhs = pool.nhs_contribution
    if nhs.fixed_gbp is not None:
        return pence(nhs.fixed_gbp), "a fixed sum"
    sector, share = nhs.sector or "", Fraction(nhs.share or 0)
    if pool.place not in sector_allocation:
        raise ConfigurationError(
            f"pool {pool.name!r}: no sector allocation for place {pool.place} to take a share of"
        )
    base = sector_allocation[pool.place].get(sector, 0)
    return _share_of(
        base, share
    ), f"{percent_text(share)} of the {sector} allocation of {gbp_text(base)}"


def pooled_budgets(
    config: PooledBudgetConfig,
    sector_allocation: Mapping[str, Mapping[str, int]],
    places: Mapping[str, str],
) -> list[PooledBudget]:
    """Each pool's total, every partner's contribution and share, and the NHS minimum test,
    in the order configured."""
    _checked_allocation(sector_allocation, places)
    config.check_places(places)
    out: list[PooledBudget] = []
    for pool in config.pools:
        nhs, how = _nhs_pence(pool, sector_allocation)
        parts: list[tuple[str, int, str]] = [
            (NHS_PARTNER, nhs, how),
            (pool.local_authority, pence(pool.la_contribution_gbp), "local authority"),
        ]
        parts += [
            (o.partner, pence(o.amount_gbp), "other partner") for o in pool.other_contributions
        ]
        total = sum(amount for _, amount, _ in parts)
        if total == 0:
            raise ConfigurationError(f"pool {pool.name!r}: every contribution is zero")
        minimum = None if pool.nhs_minimum_gbp is None else pence(pool.nhs_minimum_gbp)
        margin = None if minimum is None else nhs - minimum
        meets = None if margin is None else margin >= 0
        label = "BCF" if pool.kind == "bcf" else "Section 75"
        test = ""
        if minimum is not None and margin is not None:
            verdict = (
                f"met by {gbp_text(margin)}"
                if margin >= 0
                else f"NOT met: short by {gbp_text(-margin)}"
            )
            test = f"; NHS minimum {gbp_text(minimum)} {verdict}"
        contributions = []
        for partner, amount, what in parts:
            share = Fraction(amount, total)
            note = test.removeprefix("; ") if partner == NHS_PARTNER and test else ""
            contributions.append(
                Contribution(
                    partner=partner,
                    amount_pence=amount,
                    share=share,
                    share_float=float(share),
                    explanation=(
                        f"{partner}: {gbp_text(amount)} ({what}), {percent_text(share)} of the pool"
                        + (f"; {note}" if note else "")
                        + "."
                    ),
                )
            )
        listing = ", ".join(
            f"{c.partner} {gbp_text(c.amount_pence)} ({percent_text(c.share)})"
            for c in contributions
        )
        out.append(
            PooledBudget(
                name=pool.name,
                kind=pool.kind,
                place_code=pool.place,
                place_name=places[pool.place],
                local_authority_code=pool.local_authority,
                total_pence=total,
                contributions=tuple(contributions),
                nhs_pence=nhs,
                nhs_minimum_pence=minimum,
                meets_minimum=meets,
                minimum_margin_pence=margin,
                explanation=(
                    f"{label} pool {pool.name} for {places[pool.place]} ({pool.place}) with "
                    f"{pool.local_authority}: {gbp_text(total)} in all: {listing}{test}."
                ),
            )
        )
    return out


def pooled_budget_table(pools: Sequence[PooledBudget]) -> pa.Table:
    """`finance_pooled_budget`: one row per pool and partner. The NHS minimum and whether it
    is met sit on the NHS row (null on the others, and when no minimum is set)."""
    rows = [(p, c) for p in pools for c in p.contributions]

    def on_nhs(pool: PooledBudget, c: Contribution) -> bool:
        return c.partner == NHS_PARTNER and pool.nhs_minimum_pence is not None

    return pa.table(
        {
            "pool": [p.name for p, _ in rows],
            "kind": [p.kind for p, _ in rows],
            "place_code": [p.place_code for p, _ in rows],
            "partner": [c.partner for _, c in rows],
            "contribution_gbp": [pounds(c.amount_pence) for _, c in rows],
            "share_of_pool": [c.share_float for _, c in rows],
            "nhs_minimum_gbp": [
                pounds(p.nhs_minimum_pence or 0) if on_nhs(p, c) else None for p, c in rows
            ],
            "meets_minimum": [p.meets_minimum if on_nhs(p, c) else None for p, c in rows],
            "explanation": [c.explanation for _, c in rows],
        },
        schema=POOLED_BUDGET_SCHEMA,
    )
