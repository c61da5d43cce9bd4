"""Risk share, on the hand-worked examples of docs/finance.md and as properties: gains and
losses are conserved to the penny, caps and collars hold, and gains mirror losses."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from joinedup.errors import InputError, describe_validation_error
from joinedup.finance.money import pence, pounds
from joinedup.finance.risk_share import (
    RISK_SHARE_SCHEMA,
    Party,
    RiskShareAgreement,
    RiskShareOutcome,
    Scenario,
    Tier,
    apply_risk_share,
    outcomes_by_scenario,
    risk_share_table,
)

M = 1_000_000
PLACES = ["NTH", "STH", "MHC"]


def parties(with_icb: bool = False, **limits: dict[str, Any]) -> list[Party]:
    """North and South places (£60m, £30m), a mental health collaborative (£10m) and, when
    asked, the ICB (£20m) as the residual party."""
    rows = [
        Party(code="NTH", name="North Place", kind="place", budget_gbp=60 * M,
              **limits.get("NTH", {})),
        Party(code="STH", name="South Place", kind="place", budget_gbp=30 * M,
              **limits.get("STH", {})),
        Party(code="MHC", name="Mental Health Collaborative", kind="collaborative",
              budget_gbp=10 * M, **limits.get("MHC", {})),
    ]  # fmt: skip
    if with_icb:
        rows.append(Party(code="ICB", name="Example ICB", kind="system", budget_gbp=20 * M))
    return rows


def run(agreement: RiskShareAgreement, **variances_gbp: float) -> RiskShareOutcome:
    given = {p.code: Decimal(0) for p in agreement.parties}
    given.update({k: Decimal(str(v)) for k, v in variances_gbp.items()})
    return apply_risk_share(agreement, Scenario(name="outturn", variances_gbp=given))


def finals(outcome: RiskShareOutcome) -> dict[str, Decimal]:
    return {r.party_code: pounds(r.final_pence) for r in outcome.parties}


def dec(text: str) -> Decimal:
    return Decimal(text)


# --- hand-worked examples (docs/finance.md, "Risk share") ------------------------------------


def test_fifty_fifty_with_a_budget_share_pool() -> None:
    agreement = RiskShareAgreement(name="50:50", parties=parties(), retained_share="0.5")
    outcome = run(agreement, NTH=4 * M, STH=-1 * M, MHC=1 * M)
    # Each keeps half: NTH 2m, STH -0.5m, MHC 0.5m; the pool is 2m - 0.5m + 0.5m = 2m, shared
    # 60:30:10 as 1.2m, 0.6m, 0.2m. Finals: 2m + 1.2m, -0.5m + 0.6m, 0.5m + 0.2m.
    assert outcome.pool_pence == pence(2 * M)
    assert [r.retained_pence for r in outcome.parties] == [
        pence(x) for x in (2 * M, -M // 2, M // 2)
    ]
    assert [r.pool_share_pence for r in outcome.parties] == [
        pence(x) for x in (1_200_000, 600_000, 200_000)
    ]
    assert finals(outcome) == {
        "NTH": dec("3200000.00"),
        "STH": dec("100000.00"),
        "MHC": dec("700000.00"),
    }
    assert outcome.total_final_pence == outcome.total_variance_pence == pence(4 * M)
    assert outcome.party("STH").explanation == (
        "Underspend of £1,000,000.00. Keeps 50.00% of it (£500,000.00) and puts £500,000.00 "
        "into the pool. Its share of the pool's net loss of £2,000,000.00 is £600,000.00 "
        "(tier 1, the whole pool, by budget: £600,000.00). Final position: a loss of "
        "£100,000.00."
    )  # fmt: skip


def test_a_half_penny_retained_is_kept_by_the_party_for_gains_and_losses_alike() -> None:
    agreement = RiskShareAgreement(name="50:50", parties=parties(), retained_share="0.5")
    # Half of 3p is 1.5p: the party keeps 2p and pools 1p, whether over- or underspent.
    outcome = run(agreement, NTH=0.03, STH=-0.03)
    assert [(r.retained_pence, r.pooled_pence) for r in outcome.parties[:2]] == [(2, 1), (-2, -1)]
    assert outcome.pool_pence == 0


def test_equal_shares_give_the_odd_penny_to_the_first_code() -> None:
    agreement = RiskShareAgreement(
        name="equal", parties=parties(), loss_tiers=[Tier(basis="equal")]
    )
    outcome = run(agreement, NTH=1000, STH=200, MHC=-500)
    # Pool £700.00 = 70,000p; a third is 23,333.33p each; the spare penny goes to MHC, first of
    # MHC, NTH, STH in sorted order.
    assert finals(outcome) == {"NTH": dec("233.33"), "STH": dec("233.33"), "MHC": dec("233.34")}


def test_fixed_percentages_for_gains_and_budget_for_losses() -> None:
    fixed = Tier(basis="fixed", shares={"NTH": "0.5", "STH": "0.3", "MHC": "0.2"})
    agreement = RiskShareAgreement(name="fixed gains", parties=parties(), gain_tiers=[fixed])
    # A net gain of 1m (-0.3m + 0.1m - 0.8m) is shared 50:30:20.
    gain = run(agreement, NTH=-300_000, STH=100_000, MHC=-800_000)
    assert finals(gain) == {
        "NTH": dec("-500000.00"),
        "STH": dec("-300000.00"),
        "MHC": dec("-200000.00"),
    }
    # A net loss of 1m still goes by budget, 60:30:10.
    loss = run(agreement, NTH=M)
    assert finals(loss) == {
        "NTH": dec("600000.00"),
        "STH": dec("300000.00"),
        "MHC": dec("100000.00"),
    }


TWO_TIERS = [Tier(up_to_gbp=M, basis="equal"), Tier(basis="budget")]


def test_two_loss_tiers() -> None:
    agreement = RiskShareAgreement(name="tiers", parties=parties(), loss_tiers=TWO_TIERS)
    outcome = run(agreement, NTH=2 * M, STH=M, MHC=-M // 2)
    # Pool 2.5m: the first 1m equally (33,333,333.33p each, the spare penny to MHC), the other
    # 1.5m by budget (0.9m, 0.45m, 0.15m).
    assert outcome.tier_pence == (pence(M), pence(1_500_000))
    assert finals(outcome) == {
        "NTH": dec("1233333.33"),
        "STH": dec("783333.33"),
        "MHC": dec("483333.34"),
    }
    assert "tier 2, above £1,000,000.00, by budget: £900,000.00" in outcome.party("NTH").explanation


def test_a_cap_on_two_tiers_passes_the_excess_on_the_top_tiers_basis() -> None:
    tiers = [
        Tier(up_to_gbp=M, basis="equal", parties=PLACES),
        Tier(basis="budget", parties=PLACES),
    ]
    agreement = RiskShareAgreement(
        name="tiers capped", parties=parties(True, MHC={"cap_gbp": 400_000}),
        loss_tiers=tiers, residual_party="ICB",
    )  # fmt: skip
    outcome = run(agreement, NTH=2 * M, STH=M, MHC=-M // 2)
    # MHC's 483,333.34 is 83,333.34 over its cap; the pool's last pound was on tier 2 (budget),
    # so NTH and STH take it 2:1: 55,555.56 and 27,777.78.
    assert finals(outcome) == {
        "NTH": dec("1288888.89"),
        "STH": dec("811111.11"),
        "MHC": dec("400000.00"),
        "ICB": dec("0.00"),
    }
    assert outcome.passed_on_pence == 8_333_334


def test_a_cap_pushes_the_excess_to_the_other_parties() -> None:
    agreement = RiskShareAgreement(
        name="capped", parties=parties(True, STH={"cap_gbp": 500_000}),
        loss_tiers=[Tier(basis="budget", parties=PLACES)], residual_party="ICB",
    )  # fmt: skip
    outcome = run(agreement, NTH=3 * M)
    # 3m by budget: 1.8m, 0.9m, 0.3m. STH is 0.4m over its cap; NTH and MHC take it 60:10,
    # 34,285,714.29p and 5,714,285.71p exactly, so 342,857.14 and 57,142.86 (the larger
    # remainder, MHC's, takes the spare penny).
    assert finals(outcome) == {
        "NTH": dec("2142857.14"),
        "STH": dec("500000.00"),
        "MHC": dec("357142.86"),
        "ICB": dec("0.00"),
    }
    sth = outcome.party("STH")
    assert sth.limit_adjustment_pence == -pence(400_000)
    assert "Its cap of £500,000.00 passes on £400,000.00 of loss." in sth.explanation
    assert "Takes £57,142.86 of loss passed on" in outcome.party("MHC").explanation


def test_when_everyone_is_capped_the_residual_party_takes_the_rest() -> None:
    caps = {"NTH": {"cap_gbp": 150_000}, "STH": {"cap_gbp": 100_000}, "MHC": {"cap_gbp": 220_000}}
    agreement = RiskShareAgreement(
        name="all capped", parties=parties(True, **caps),
        loss_tiers=[Tier(basis="equal", parties=PLACES)], residual_party="ICB",
    )  # fmt: skip
    outcome = run(agreement, NTH=600_000)
    # 200k each. Round 1: NTH passes on 50k and STH 100k, all to MHC (350k). Round 2: MHC
    # passes on 130k and nobody else can take it, so the ICB does.
    assert finals(outcome) == {
        "NTH": dec("150000.00"),
        "STH": dec("100000.00"),
        "MHC": dec("220000.00"),
        "ICB": dec("130000.00"),
    }
    assert outcome.party("MHC").limit_adjustment_pence == pence(150_000 - 130_000)
    icb = outcome.party("ICB")
    assert icb.residual_pence == outcome.residual_pence == pence(130_000)
    assert "As the residual party, takes £130,000.00 of loss" in icb.explanation


def test_a_gain_with_a_collar() -> None:
    agreement = RiskShareAgreement(
        name="collar", parties=parties(True, NTH={"collar_gbp": 400_000}),
        loss_tiers=[Tier(basis="budget", parties=PLACES)], residual_party="ICB",
    )  # fmt: skip
    outcome = run(agreement, NTH=-M)
    # A 1m gain by budget: -0.6m, -0.3m, -0.1m. NTH may gain at most 0.4m, so 0.2m of gain goes
    # to STH and MHC 30:10: -0.15m and -0.05m.
    assert finals(outcome) == {
        "NTH": dec("-400000.00"),
        "STH": dec("-450000.00"),
        "MHC": dec("-150000.00"),
        "ICB": dec("0.00"),
    }
    assert (
        "Its collar of £400,000.00 passes on £200,000.00 of gain."
        in outcome.party("NTH").explanation
    )


def test_a_cap_with_nothing_pooled_passes_on_by_the_first_tier() -> None:
    agreement = RiskShareAgreement(
        name="kept", parties=parties(True, NTH={"cap_gbp": 300}), retained_share=1,
        loss_tiers=[Tier(basis="budget", parties=PLACES)], residual_party="ICB",
    )  # fmt: skip
    outcome = run(agreement, NTH=500)
    # NTH keeps its £500 but may bear £300; the £200 goes by budget to STH and MHC, 3:1.
    assert outcome.pool_pence == 0
    assert finals(outcome) == {
        "NTH": dec("300.00"),
        "STH": dec("150.00"),
        "MHC": dec("50.00"),
        "ICB": dec("0.00"),
    }


def test_the_table_has_a_row_per_scenario_and_party() -> None:
    agreement = RiskShareAgreement(name="50:50", parties=parties(), retained_share="0.5")
    scenarios = [
        Scenario(name="plan", variances_gbp={"NTH": 0, "STH": 0, "MHC": 0}),
        Scenario(name="outturn", variances_gbp={"NTH": 4 * M, "STH": -M, "MHC": M}),
    ]
    table = risk_share_table(outcomes_by_scenario(agreement, scenarios))
    assert table.schema == RISK_SHARE_SCHEMA
    assert table.schema.field("final_gbp").type == pa.decimal128(18, 2)
    assert table.num_rows == 6
    row = table.slice(4, 1).to_pylist()[0]
    assert row["scenario"] == "outturn" and row["party_code"] == "STH"
    assert row["party_kind"] == "place"
    assert row["variance_gbp"] == dec("-1000000.00") and row["retained_gbp"] == dec("-500000.00")
    assert row["pooled_gbp"] == dec("-500000.00") and row["pool_share_gbp"] == dec("600000.00")
    assert row["limit_adjustment_gbp"] == row["residual_gbp"] == dec("0.00")
    assert row["final_gbp"] == dec("100000.00")
    with pytest.raises(InputError, match="scenario name used twice: plan"):
        outcomes_by_scenario(agreement, [scenarios[0], scenarios[0]])


# --- bad agreements and scenarios are refused with the reason --------------------------------


def agreement_dict(**change: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "test",
        "parties": [
            {"code": "NTH", "name": "North", "kind": "place", "budget_gbp": 600},
            {"code": "STH", "name": "South", "kind": "place", "budget_gbp": 300},
            {"code": "ICB", "name": "ICB", "kind": "system", "budget_gbp": 0},
        ],
    }
    base.update(change)
    return base


def nth(**fields: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = agreement_dict()["parties"]
    rows[0] = {**rows[0], **fields}
    return rows


BAD = [
    ({"loss_tiers": [{"basis": "fixed", "shares": {"NTH": 0.5, "XYZ": 0.5}}]},
     "loss_tiers tier 1: unknown party XYZ; parties: NTH, STH, ICB"),
    ({"loss_tiers": [{"basis": "fixed", "shares": {"NTH": 0.5, "STH": 0.4}}]},
     "loss_tiers.0.shares: shares sum to 90.0%, not 100%"),
    ({"gain_tiers": [{"basis": "fixed", "shares": {"NTH": 1.5, "STH": -0.5}}]},
     "gain_tiers.0.shares: negative share for STH"),
    ({"parties": agreement_dict()["parties"] + [{"code": "NTH", "name": "N2", "kind": "place",
                                                 "budget_gbp": 1}]},
     "parties: party code used twice: NTH"),
    ({"loss_tiers": [{"up_to_gbp": 1000, "basis": "equal"}, {"up_to_gbp": 500, "basis": "equal"},
                     {"basis": "budget"}]},
     "loss_tiers: tier 2's up_to_gbp (£500.00) is not above tier 1's (£1,000.00)"),
    ({"loss_tiers": [{"up_to_gbp": 1000, "basis": "equal"}]},
     "loss_tiers: the last tier (tier 1) takes whatever is left: leave out its up_to_gbp"),
    ({"loss_tiers": [{"basis": "equal"}, {"basis": "budget"}]},
     "loss_tiers: tier 1 has no up_to_gbp but is not the last tier"),
    ({"loss_tiers": [{"up_to_gbp": 0, "basis": "equal"}, {"basis": "budget"}]},
     "loss_tiers.0.up_to_gbp: 0.00 is not above zero"),
    ({"loss_tiers": []}, "loss_tiers: no tiers"),
    ({"loss_tiers": [{"basis": "fixed"}]},
     "loss_tiers.0: basis is fixed: give shares (party code -> share, summing to 100%)"),
    ({"loss_tiers": [{"basis": "equal", "shares": {"NTH": 1}}]},
     "loss_tiers.0: shares are given but the basis is equal: shares need basis fixed"),
    ({"loss_tiers": [{"basis": "fair"}]}, "loss_tiers.0.basis: Input should be 'budget', 'equal'"),
    ({"loss_tiers": [{"basis": "equal", "parties": ["NTH", "NTH"]}]},
     "loss_tiers.0.parties: party named twice: NTH"),
    ({"loss_tiers": [{"basis": "budget", "parties": ["ICB"]}]},
     "loss_tiers tier 1: basis is budget but the budgets of its parties (ICB) are all zero"),
    ({"parties": nth(budget_gbp=-1)}, "parties.0.budget_gbp: -1.00 is negative"),
    ({"parties": nth(cap_gbp="-5", collar_gbp=1)}, "parties.0.cap_gbp: -5.00 is negative"),
    ({"parties": nth(kind="trust")}, "parties.0.kind: Input should be 'place', 'collaborative'"),
    ({"parties": nth(budget_gbp="10.005")},
     "parties.0.budget_gbp: '10.005' has fractions of a penny"),
    ({"retained_share": "1.5"}, "retained_share: 1.5 is out of range: 0 to 1"),
    ({"parties": nth(cap_gbp=100)}, "residual_party: required because NTH has a cap or collar"),
    ({"residual_party": "CCG"}, "residual_party: 'CCG' is not a party; parties: NTH, STH, ICB"),
    ({"parties": nth(collar_gbp=100), "residual_party": "NTH"},
     "residual_party: NTH has a cap or collar, but the residual party must be able to take any"),
    ({"parties": []}, "parties: List should have at least 1 item"),
    ({"pool": "everything"}, "pool: Extra inputs are not permitted"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "reason"), BAD, ids=[r for _, r in BAD])
def test_bad_agreements_are_refused_with_the_reason(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as err:
        RiskShareAgreement.model_validate(agreement_dict(**change))
    assert reason in describe_validation_error(err.value)


def test_a_good_agreement_loads() -> None:
    agreement = RiskShareAgreement.model_validate(
        agreement_dict(
            retained_share="0.5",
            parties=nth(cap_gbp="1,000"),
            loss_tiers=[{"up_to_gbp": "£1,000", "basis": "equal"}, {"basis": "budget"}],
            gain_tiers=[{"basis": "fixed", "shares": {"NTH": "0.6", "STH": "0.4"}}],
            residual_party="ICB",
        )
    )
    assert agreement.parties[0].cap_gbp == dec("1000.00")


def test_a_scenario_must_name_every_party_and_only_them() -> None:
    agreement = RiskShareAgreement(name="50:50", parties=parties())
    with pytest.raises(
        InputError, match="variance given for unknown party XYZ; parties of '50:50'"
    ):
        apply_risk_share(
            agreement, Scenario(name="s", variances_gbp={"NTH": 0, "STH": 0, "MHC": 0, "XYZ": 1})
        )
    with pytest.raises(InputError, match=r"scenario 's': no variance for party MHC \(give 0"):
        apply_risk_share(agreement, Scenario(name="s", variances_gbp={"NTH": 0, "STH": 0}))


# --- properties ------------------------------------------------------------------------------

MONEY = st.integers(min_value=-(10**10), max_value=10**10)


@st.composite
def tier_lists(draw: st.DrawFn, codes: list[str]) -> list[Tier]:
    uppers = sorted(draw(st.sets(st.integers(1, 10**9), max_size=2)))
    tiers = []
    for upper in [*uppers, None]:
        basis = draw(st.sampled_from(["budget", "equal", "fixed"]))
        members = draw(st.none() | st.lists(st.sampled_from(codes), min_size=1, unique=True))
        up_to = None if upper is None else pounds(upper)
        if basis == "fixed":
            named = members or codes
            weights = draw(st.lists(st.integers(1, 100), min_size=len(named), max_size=len(named)))
            points = [w * 10_000 // sum(weights) for w in weights]
            points[0] += 10_000 - sum(points)
            shares = {c: Decimal(p) / 10_000 for c, p in zip(named, points, strict=True)}
            tiers.append(Tier(up_to_gbp=up_to, basis="fixed", shares=shares))
        else:
            tiers.append(Tier(up_to_gbp=up_to, basis=basis, parties=members))
    return tiers


@st.composite
def cases(
    draw: st.DrawFn, limits: bool = True, retained: int | None = None
) -> tuple[RiskShareAgreement, Scenario]:
    """A random agreement between up to five parties and an ICB (the residual party), and a
    scenario. Every budget is positive, so any budget basis has a weight."""
    codes = [f"P{i}" for i in range(draw(st.integers(1, 5)))] + ["ICB"]
    limit = st.none() | st.integers(0, 10**9).map(pounds)
    rows = [
        Party(
            code=c, name=f"Party {c}", kind="system" if c == "ICB" else "place",
            budget_gbp=pounds(draw(st.integers(1, 10**11))),
            cap_gbp=draw(limit) if limits and c != "ICB" else None,
            collar_gbp=draw(limit) if limits and c != "ICB" else None,
        )
        for c in codes
    ]  # fmt: skip
    share = draw(st.integers(0, 100)) if retained is None else retained
    agreement = RiskShareAgreement(
        name="random",
        parties=rows,
        retained_share=Decimal(share) / 100,
        loss_tiers=draw(tier_lists(codes)),
        gain_tiers=draw(st.none() | tier_lists(codes)),
        residual_party="ICB",
    )
    variances = {c: pounds(draw(MONEY)) for c in codes}
    return agreement, Scenario(name="random", variances_gbp=variances)


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_gains_and_losses_are_conserved_to_the_penny(
    case: tuple[RiskShareAgreement, Scenario],
) -> None:
    outcome = apply_risk_share(*case)
    assert sum(r.final_pence for r in outcome.parties) == sum(
        r.variance_pence for r in outcome.parties
    )
    assert outcome.total_final_pence == outcome.total_variance_pence
    assert sum(r.pool_share_pence for r in outcome.parties) == outcome.pool_pence
    assert sum(outcome.tier_pence) == outcome.pool_pence
    for r in outcome.parties:
        assert r.retained_pence + r.pooled_pence == r.variance_pence
        assert (
            r.retained_pence + r.pool_share_pence + r.limit_adjustment_pence + r.residual_pence
            == r.final_pence
        )


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_caps_and_collars_hold(case: tuple[RiskShareAgreement, Scenario]) -> None:
    agreement, scenario = case
    outcome = apply_risk_share(agreement, scenario)
    for party, row in zip(agreement.parties, outcome.parties, strict=True):
        if party.cap_gbp is not None:
            assert row.final_pence <= pence(party.cap_gbp)
        if party.collar_gbp is not None:
            assert -row.final_pence <= pence(party.collar_gbp)
        if party.code != agreement.residual_party:
            assert row.residual_pence == 0


@settings(max_examples=200, deadline=None)
@given(case=cases(retained=100))
def test_with_all_retained_nothing_is_pooled(case: tuple[RiskShareAgreement, Scenario]) -> None:
    outcome = apply_risk_share(*case)
    assert outcome.pool_pence == 0
    for r in outcome.parties:
        assert r.retained_pence == r.variance_pence
        assert r.pooled_pence == r.pool_share_pence == 0


@settings(max_examples=200, deadline=None)
@given(case=cases(limits=False, retained=100))
def test_with_all_retained_and_no_limits_every_party_keeps_its_own_variance(
    case: tuple[RiskShareAgreement, Scenario],
) -> None:
    outcome = apply_risk_share(*case)
    for r in outcome.parties:
        assert r.final_pence == r.variance_pence


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_a_gain_mirrors_a_loss(case: tuple[RiskShareAgreement, Scenario]) -> None:
    # Turn every variance round, swap caps with collars and loss tiers with gain tiers: every
    # final position turns round too, to the penny.
    agreement, scenario = case
    mirror = agreement.model_copy(
        update={
            "parties": [
                p.model_copy(update={"cap_gbp": p.collar_gbp, "collar_gbp": p.cap_gbp})
                for p in agreement.parties
            ],
            "loss_tiers": agreement.gain_tiers or agreement.loss_tiers,
            "gain_tiers": agreement.loss_tiers,
        }
    )
    turned = Scenario(
        name="mirror", variances_gbp={c: -v for c, v in scenario.variances_gbp.items()}
    )
    there = apply_risk_share(agreement, scenario)
    back = apply_risk_share(mirror, turned)
    assert [r.final_pence for r in back.parties] == [-r.final_pence for r in there.parties]
