"""Risk share: how the over- and underspends of an ICS's places and provider collaboratives are
shared between them. There is no national default, so every rule is configuration
(`RiskShareAgreement`), applied to outturn scenarios (`Scenario`).

Signs: a variance is outturn - budget, so positive is an overspend (a loss) and negative an
underspend (a gain); every position below follows the same sign.

1. **Retained.** Each party keeps `retained_share` of its own variance (0.5 is "50:50 between
   the party and the pool") and puts the rest into the pool.
2. **Pool.** The pool nets the contributions. Its size is shared out by tiers: the first
   `up_to_gbp` on tier 1's basis, the next slice on tier 2's, the rest on the last tier's.
   A net loss uses `loss_tiers`; a net gain `gain_tiers` (the loss tiers when not given). A
   basis is `budget` (in proportion to budgets), `equal` or `fixed` (configured shares), among
   the tier's `parties` (all parties when not given).
3. **Caps and collars.** A party's final loss may not exceed its `cap_gbp`, nor its final gain
   its `collar_gbp`. In rounds until settled: every party beyond a limit is brought back to
   it; the amounts so removed are netted, and the net is passed on to the parties that can
   still take it (not at their limit in that direction, with a positive weight) on the basis
   of the tier the pool's last pound was shared on (when the net runs the pool's way), or else
   of the first tier for the net's direction. What no party can take goes to the
   `residual_party`, which has no limits.

**Rounding.** Everything is whole pence, and every split is `money.split` on the magnitude
(largest remainder), the sign put back after, so gains and losses round alike and the parts sum
to the whole. The retained part is the exact share to the nearest penny, a half penny kept by
the party; pennies left over in a tier go to the largest remainders, ties to the earlier party
code. The final positions therefore sum exactly to the variances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

import pyarrow as pa
from pydantic import Field, ValidationInfo, field_validator, model_validator

from joinedup.errors import ConfigurationError, InputError
from joinedup.finance.money import GBP_TYPE, pence, pounds, split
from joinedup.finance.schema import FinanceModel, Pounds, Rate, check_shares

RISK_SHARE_TABLE = "finance_risk_share"
PartyKind = Literal["place", "collaborative", "system"]
Basis = Literal["budget", "equal", "fixed"]

RISK_SHARE_SCHEMA = pa.schema(
    [
        ("scenario", pa.string()),
        ("party_code", pa.string()),
        ("party_name", pa.string()),
        ("party_kind", pa.string()),
        ("budget_gbp", GBP_TYPE),
        ("variance_gbp", GBP_TYPE),
        ("retained_gbp", GBP_TYPE),
        ("pooled_gbp", GBP_TYPE),
        ("pool_share_gbp", GBP_TYPE),
        ("limit_adjustment_gbp", GBP_TYPE),
        ("residual_gbp", GBP_TYPE),
        ("final_gbp", GBP_TYPE),
        ("explanation", pa.string()),
    ]
)


def _gbp(amount_pence: int) -> str:
    sign = "-" if amount_pence < 0 else ""
    return f"{sign}£{pounds(abs(amount_pence)):,}"


def _pct(rate: Fraction | Decimal) -> str:
    return f"{float(rate):.2%}"


def _sign(amount: int) -> int:
    return -1 if amount < 0 else 1


def _loss_or_gain(amount: int) -> str:
    return "loss" if amount > 0 else "gain"


def _not_negative(value: Decimal | None) -> Decimal | None:
    if value is not None and value < 0:
        raise ValueError(f"{value} is negative: give it as a positive amount of pounds")
    return value


# --- configuration ---------------------------------------------------------------------------


class Party(FinanceModel):
    """A place, provider collaborative or the system (ICB) in the agreement. `cap_gbp` is the
    most loss it can bear after sharing, `collar_gbp` the most gain it can receive (both
    optional, in pounds, not negative)."""

    code: str = Field(min_length=1)
    name: str = Field(min_length=1)
    kind: PartyKind
    budget_gbp: Pounds
    cap_gbp: Pounds | None = None
    collar_gbp: Pounds | None = None

    @field_validator("budget_gbp", "cap_gbp", "collar_gbp")
    @classmethod
    def _positive_amounts(cls, value: Decimal | None) -> Decimal | None:
        return _not_negative(value)


class Tier(FinanceModel):
    """One band of the pool: up to `up_to_gbp` of the pool's size (the last tier has no limit
    and takes the rest), shared on `basis` among `parties` (all parties when not given). A
    `fixed` basis takes `shares` (party code -> share, summing to 100%) instead of parties."""

    up_to_gbp: Pounds | None = None
    basis: Basis
    shares: dict[str, Rate] | None = None
    parties: list[str] | None = None

    @field_validator("up_to_gbp")
    @classmethod
    def _above_zero(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value <= 0:
            raise ValueError(f"{value} is not above zero: a tier covers the pool up to a sum")
        return value

    @field_validator("shares")
    @classmethod
    def _sum_to_all(cls, value: dict[str, Decimal] | None) -> dict[str, Decimal] | None:
        if value is not None:
            if not value:
                raise ValueError("no shares given: name each party's share of the tier")
            check_shares(value)
        return value

    @field_validator("parties")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("no parties given: leave parties out to share among all")
            twice = sorted({p for p in value if value.count(p) > 1})
            if twice:
                raise ValueError(f"party named twice: {', '.join(twice)}")
        return value

    @model_validator(mode="after")
    def _shares_with_fixed(self) -> Tier:
        if self.basis == "fixed" and self.shares is None:
            raise ValueError("basis is fixed: give shares (party code -> share, summing to 100%)")
        if self.basis != "fixed" and self.shares is not None:
            raise ValueError(
                f"shares are given but the basis is {self.basis}: shares need basis fixed"
            )
        if self.basis == "fixed" and self.parties is not None:
            raise ValueError("a fixed basis names its parties in shares: leave parties out")
        return self

    def members(self, all_parties: Sequence[str]) -> list[str]:
        """The parties sharing this tier, in the agreement's order."""
        if self.shares is not None:
            return [p for p in all_parties if p in self.shares]
        named = self.parties
        return [p for p in all_parties if named is None or p in named]

    def describe(self, lower_pence: int) -> str:
        """e.g. `first £1,000,000.00, equal shares` or `above £1,000,000.00, by budget`."""
        basis = {"budget": "by budget", "equal": "equal shares", "fixed": "fixed shares"}
        if self.up_to_gbp is None:
            band = f"above {_gbp(lower_pence)}" if lower_pence else "the whole pool"
        elif lower_pence:
            band = f"{_gbp(lower_pence)} to {_gbp(pence(self.up_to_gbp))}"
        else:
            band = f"first {_gbp(pence(self.up_to_gbp))}"
        return f"{band}, {basis[self.basis]}"


def _default_tiers() -> list[Tier]:
    return [Tier(basis="budget")]


class RiskShareAgreement(FinanceModel):
    """A risk-share agreement between the parties (see the module docstring for the rules).
    `retained_share` (0 to 1, default 0) is the share of its own variance each party keeps;
    the default tiers share the whole pool by budget; `gain_tiers` default to the loss tiers;
    `residual_party` takes what caps and collars leave, and is required when any are set."""

    name: str = Field(min_length=1)
    parties: list[Party] = Field(min_length=1)
    retained_share: Rate = Decimal(0)
    loss_tiers: list[Tier] = Field(default_factory=_default_tiers)
    gain_tiers: list[Tier] | None = None
    residual_party: str | None = None

    @field_validator("retained_share")
    @classmethod
    def _a_share(cls, value: Decimal) -> Decimal:
        if not 0 <= value <= 1:
            raise ValueError(f"{value} is out of range: 0 to 1 (0.5 is 50:50 with the pool)")
        return value

    @field_validator("loss_tiers", "gain_tiers")
    @classmethod
    def _tiers_in_order(cls, value: list[Tier] | None, info: ValidationInfo) -> list[Tier] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("no tiers: give at least one (the last without up_to_gbp)")
        previous: Decimal | None = None
        for number, tier in enumerate(value, start=1):
            last = number == len(value)
            if last and tier.up_to_gbp is not None:
                raise ValueError(
                    f"the last tier (tier {number}) takes whatever is left: leave out its "
                    f"up_to_gbp ({_gbp(pence(tier.up_to_gbp))})"
                )
            if not last and tier.up_to_gbp is None:
                raise ValueError(
                    f"tier {number} has no up_to_gbp but is not the last tier: only the last "
                    "tier is unlimited"
                )
            if tier.up_to_gbp is not None and previous is not None and tier.up_to_gbp <= previous:
                raise ValueError(
                    f"tier {number}'s up_to_gbp ({_gbp(pence(tier.up_to_gbp))}) is not above "
                    f"tier {number - 1}'s ({_gbp(pence(previous))})"
                )
            previous = tier.up_to_gbp
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RiskShareAgreement:
        codes = [p.code for p in self.parties]
        twice = sorted({c for c in codes if codes.count(c) > 1})
        if twice:
            raise ValueError(f"parties: party code used twice: {', '.join(twice)}")
        known = set(codes)
        budget = {p.code: p.budget_gbp for p in self.parties}
        lists = [("loss_tiers", self.loss_tiers)]
        if self.gain_tiers is not None:
            lists.append(("gain_tiers", self.gain_tiers))
        for field, tiers in lists:
            for number, tier in enumerate(tiers, start=1):
                where = f"{field} tier {number}"
                named = list(tier.shares or {}) + list(tier.parties or [])
                unknown = sorted(set(named) - known)
                if unknown:
                    raise ValueError(
                        f"{where}: unknown party {', '.join(unknown)}; parties: {', '.join(codes)}"
                    )
                members = tier.members(codes)
                if tier.basis == "budget" and sum(budget[p] for p in members) <= 0:
                    raise ValueError(
                        f"{where}: basis is budget but the budgets of its parties "
                        f"({', '.join(members)}) are all zero"
                    )
        limited = [
            p.code for p in self.parties if p.cap_gbp is not None or p.collar_gbp is not None
        ]
        if self.residual_party is None:
            if limited:
                raise ValueError(
                    f"residual_party: required because {', '.join(limited)} "
                    "has a cap or collar; name the party (e.g. the ICB) that takes what nobody "
                    "else can"
                )
        elif self.residual_party not in known:
            raise ValueError(
                f"residual_party: {self.residual_party!r} is not a party; parties: "
                f"{', '.join(codes)}"
            )
        elif self.residual_party in limited:
            raise ValueError(
                f"residual_party: {self.residual_party} has a cap or collar, but the residual "
                "party must be able to take any amount"
            )
        return self

    def tiers_for(self, amount: int) -> list[Tier]:
        """The tiers that share a pool (or an excess) of this sign: positive is a loss."""
        if amount < 0 and self.gain_tiers is not None:
            return self.gain_tiers
        return self.loss_tiers


class Scenario(FinanceModel):
    """An outturn scenario: each party's variance (outturn - budget) in pounds; positive is an
    overspend. Every party of the agreement must be given (0 for on budget)."""

    name: str = Field(min_length=1)
    variances_gbp: dict[str, Pounds]


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartyOutcome:
    """One party's position in a scenario, in pence (positive a loss, negative a gain):
    variance = retained + pooled and final = retained + pool_share + limit_adjustment +
    residual."""

    party_code: str
    party_name: str
    party_kind: str
    budget_pence: int
    variance_pence: int
    retained_pence: int
    pooled_pence: int
    pool_share_pence: int
    limit_adjustment_pence: int
    residual_pence: int
    final_pence: int
    explanation: str


@dataclass(frozen=True)
class RiskShareOutcome:
    """An agreement applied to a scenario. `tier_pence` is the signed amount of the pool
    shared on each tier of the list used; `passed_on_pence` the total brought back to caps
    and collars (a magnitude); `residual_pence` what the residual party took."""

    agreement: str
    scenario: str
    parties: tuple[PartyOutcome, ...]
    pool_pence: int
    tier_pence: tuple[int, ...]
    passed_on_pence: int
    residual_pence: int
    total_variance_pence: int
    total_final_pence: int

    def party(self, code: str) -> PartyOutcome:
        for row in self.parties:
            if row.party_code == code:
                return row
        raise InputError(f"risk share {self.agreement!r}", f"no party {code!r}")


# --- applying an agreement -------------------------------------------------------------------


def _weights(tier: Tier, parties: Sequence[Party]) -> dict[str, int | Fraction]:
    """Each member's positive weight on the tier's basis."""
    members = tier.members([p.code for p in parties])
    by_code = {p.code: p for p in parties}
    weights: dict[str, int | Fraction]
    if tier.basis == "budget":
        weights = {c: pence(by_code[c].budget_gbp) for c in members}
    elif tier.basis == "equal":
        weights = dict.fromkeys(members, 1)
    else:
        shares = tier.shares or {}
        weights = {c: Fraction(shares[c]) for c in members}
    return {c: w for c, w in weights.items() if w > 0}


def _bands(size: int, tiers: Sequence[Tier]) -> list[int]:
    """How much of a pool of `size` (pence, not negative) falls in each tier."""
    bands: list[int] = []
    lower = 0
    for tier in tiers:
        upper = size if tier.up_to_gbp is None else min(size, pence(tier.up_to_gbp))
        bands.append(max(0, upper - lower))
        lower = upper if tier.up_to_gbp is None else pence(tier.up_to_gbp)
    return bands


def _lower_bounds(tiers: Sequence[Tier]) -> list[int]:
    lows, lower = [], 0
    for tier in tiers:
        lows.append(lower)
        if tier.up_to_gbp is not None:
            lower = pence(tier.up_to_gbp)
    return lows


def _variances(agreement: RiskShareAgreement, scenario: Scenario) -> dict[str, int]:
    codes = [p.code for p in agreement.parties]
    where = f"scenario {scenario.name!r}"
    unknown = sorted(set(scenario.variances_gbp) - set(codes))
    if unknown:
        raise InputError(
            where,
            f"variance given for unknown party {', '.join(unknown)}; parties of "
            f"{agreement.name!r}: {', '.join(codes)}",
        )
    missing = [c for c in codes if c not in scenario.variances_gbp]
    if missing:
        raise InputError(
            where, f"no variance for party {', '.join(missing)} (give 0 for a party on budget)"
        )
    return {c: pence(scenario.variances_gbp[c]) for c in codes}


@dataclass
class _Limits:
    """Running record of one party's caps and collars across the rounds."""

    cap: int | None
    collar: int | None
    passed_loss: int = 0
    passed_gain: int = 0
    received: int = 0
    residual: int = 0


def apply_risk_share(agreement: RiskShareAgreement, scenario: Scenario) -> RiskShareOutcome:
    """Each party's final position under the agreement in the scenario (module docstring)."""
    parties = agreement.parties
    variance = _variances(agreement, scenario)
    keep = Fraction(agreement.retained_share)

    retained: dict[str, int] = {}
    for code, v in variance.items():
        retained[code] = (
            _sign(v) * split(abs(v), {"retained": keep, "to_pool": 1 - keep})["retained"]
        )
    pooled = {c: variance[c] - retained[c] for c in variance}
    pool = sum(pooled.values())

    tiers = agreement.tiers_for(pool)
    bands = _bands(abs(pool), tiers)
    tier_share: dict[str, list[int]] = {c: [0] * len(tiers) for c in variance}
    for number, (tier, band) in enumerate(zip(tiers, bands, strict=True)):
        if band:
            for code, part in split(band, _weights(tier, parties)).items():
                tier_share[code][number] = _sign(pool) * part
    pool_share = {c: sum(tier_share[c]) for c in variance}

    position = {c: retained[c] + pool_share[c] for c in variance}
    limits = {
        p.code: _Limits(
            cap=None if p.cap_gbp is None else pence(p.cap_gbp),
            collar=None if p.collar_gbp is None else pence(p.collar_gbp),
        )
        for p in parties
    }
    # Rounds: the first may bring parties back to caps and to collars, and passes on the net;
    # after it, amounts only move one way, so each round either settles or leaves at least one
    # more party at its limit, where it stays: at most one round per party, plus two.
    while True:
        excess = 0
        for code, lim in limits.items():
            if lim.cap is not None and position[code] > lim.cap:
                over = position[code] - lim.cap
                lim.passed_loss += over
                position[code], excess = lim.cap, excess + over
            if lim.collar is not None and position[code] < -lim.collar:
                over = -lim.collar - position[code]
                lim.passed_gain += over
                position[code], excess = -lim.collar, excess - over
        if excess == 0:
            break
        basis = _passing_on_tier(agreement, pool, bands, excess)
        takers = {
            c: w
            for c, w in _weights(basis, parties).items()
            if _can_take(limits[c], position[c], excess)
        }
        if not takers:
            residual = agreement.residual_party
            if residual is None:  # refused at load: limits need a residual party
                raise ConfigurationError(f"{agreement.name}: no residual_party to take the rest")
            limits[residual].residual += excess
            position[residual] += excess
            break
        for code, part in split(abs(excess), takers).items():
            limits[code].received += _sign(excess) * part
            position[code] += _sign(excess) * part

    rows = []
    lows = _lower_bounds(tiers)
    for p in parties:
        c, lim = p.code, limits[p.code]
        adjustment = lim.received + lim.passed_gain - lim.passed_loss
        rows.append(
            PartyOutcome(
                party_code=c,
                party_name=p.name,
                party_kind=p.kind,
                budget_pence=pence(p.budget_gbp),
                variance_pence=variance[c],
                retained_pence=retained[c],
                pooled_pence=pooled[c],
                pool_share_pence=pool_share[c],
                limit_adjustment_pence=adjustment,
                residual_pence=lim.residual,
                final_pence=position[c],
                explanation=_explain(
                    p,
                    agreement,
                    variance[c],
                    retained[c],
                    pooled[c],
                    pool,
                    tiers,
                    lows,
                    bands,
                    tier_share[c],
                    lim,
                    position[c],
                ),
            )
        )
    return RiskShareOutcome(
        agreement=agreement.name,
        scenario=scenario.name,
        parties=tuple(rows),
        pool_pence=pool,
        tier_pence=tuple(_sign(pool) * b for b in bands),
        passed_on_pence=sum(lim.passed_loss + lim.passed_gain for lim in limits.values()),
        residual_pence=sum(lim.residual for lim in limits.values()),
        total_variance_pence=sum(variance.values()),
        total_final_pence=sum(r.final_pence for r in rows),
    )


def _passing_on_tier(
    agreement: RiskShareAgreement, pool: int, bands: Sequence[int], excess: int
) -> Tier:
    """The basis an excess is passed on by: the tier the pool's last pound was shared on, when
    the excess runs the pool's way; otherwise the first tier for the excess's direction."""
    if pool != 0 and (pool > 0) == (excess > 0):
        top = max(number for number, band in enumerate(bands) if band)
        return agreement.tiers_for(pool)[top]
    return agreement.tiers_for(excess)[0]


def _can_take(lim: _Limits, position: int, excess: int) -> bool:
    if excess > 0:
        return lim.cap is None or position < lim.cap
    return lim.collar is None or position > -lim.collar


def _explain(
    party: Party,
    agreement: RiskShareAgreement,
    variance: int,
    retained: int,
    pooled: int,
    pool: int,
    tiers: Sequence[Tier],
    lows: Sequence[int],
    bands: Sequence[int],
    shares: Sequence[int],
    lim: _Limits,
    final: int,
) -> str:
    if variance > 0:
        parts = [f"Overspend of {_gbp(variance)}."]
    elif variance < 0:
        parts = [f"Underspend of {_gbp(-variance)}."]
    else:
        parts = ["On budget."]
    if variance:
        parts.append(
            f"Keeps {_pct(agreement.retained_share)} of it ({_gbp(abs(retained))}) and puts "
            f"{_gbp(abs(pooled))} into the pool."
        )
    if pool == 0:
        parts.append("The pool nets to nil.")
    else:
        kind = _loss_or_gain(pool)
        detail = [
            f"tier {n + 1}, {tier.describe(lows[n])}: {_gbp(abs(share))}"
            for n, (tier, band, share) in enumerate(zip(tiers, bands, shares, strict=True))
            if band and share
        ]
        total = sum(shares)
        if detail:
            parts.append(
                f"Its share of the pool's net {kind} of {_gbp(abs(pool))} is "
                f"{_gbp(abs(total))} ({'; '.join(detail)})."
            )
        else:
            parts.append(f"Takes no share of the pool's net {kind} of {_gbp(abs(pool))}.")
    if lim.passed_loss and lim.cap is not None:
        parts.append(f"Its cap of {_gbp(lim.cap)} passes on {_gbp(lim.passed_loss)} of loss.")
    if lim.passed_gain and lim.collar is not None:
        parts.append(f"Its collar of {_gbp(lim.collar)} passes on {_gbp(lim.passed_gain)} of gain.")
    if lim.received:
        parts.append(
            f"Takes {_gbp(abs(lim.received))} of {_loss_or_gain(lim.received)} passed on by "
            "parties at their cap or collar."
        )
    if lim.residual:
        parts.append(
            f"As the residual party, takes {_gbp(abs(lim.residual))} of "
            f"{_loss_or_gain(lim.residual)} that no other party could."
        )
    if final:
        parts.append(f"Final position: a {_loss_or_gain(final)} of {_gbp(abs(final))}.")
    else:
        parts.append("Final position: nil.")
    return " ".join(parts)


# --- warehouse table -------------------------------------------------------------------------


def risk_share_table(outcomes: Sequence[RiskShareOutcome]) -> pa.Table:
    """`finance_risk_share`: one row per scenario and party; positive amounts are losses,
    negative gains, and final = retained + pool_share + limit_adjustment + residual."""
    rows = [(o.scenario, r) for o in outcomes for r in o.parties]
    return pa.table(
        {
            "scenario": [s for s, _ in rows],
            "party_code": [r.party_code for _, r in rows],
            "party_name": [r.party_name for _, r in rows],
            "party_kind": [r.party_kind for _, r in rows],
            "budget_gbp": [pounds(r.budget_pence) for _, r in rows],
            "variance_gbp": [pounds(r.variance_pence) for _, r in rows],
            "retained_gbp": [pounds(r.retained_pence) for _, r in rows],
            "pooled_gbp": [pounds(r.pooled_pence) for _, r in rows],
            "pool_share_gbp": [pounds(r.pool_share_pence) for _, r in rows],
            "limit_adjustment_gbp": [pounds(r.limit_adjustment_pence) for _, r in rows],
            "residual_gbp": [pounds(r.residual_pence) for _, r in rows],
            "final_gbp": [pounds(r.final_pence) for _, r in rows],
            "explanation": [r.explanation for _, r in rows],
        },
        schema=RISK_SHARE_SCHEMA,
    )


def outcomes_by_scenario(
    agreement: RiskShareAgreement, scenarios: Sequence[Scenario]
) -> list[RiskShareOutcome]:
    """The agreement applied to each scenario; scenario names must be distinct."""
    names = [s.name for s in scenarios]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError("scenarios", f"scenario name used twice: {', '.join(twice)}")
    return [apply_risk_share(agreement, s) for s in scenarios]


__all__ = [
    "RISK_SHARE_SCHEMA",
    "RISK_SHARE_TABLE",
    "Party",
    "PartyOutcome",
    "RiskShareAgreement",
    "RiskShareOutcome",
    "Scenario",
    "Tier",
    "apply_risk_share",
    "outcomes_by_scenario",
    "risk_share_table",
]
