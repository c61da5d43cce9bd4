"""The system control total on the hand-worked examples of docs/finance.md: forecasts by run
rate and by trend, the break-even rule by year, the waterfall from plan to forecast, and the
synthetic ledger a demo runs on."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from joinedup.errors import ConfigurationError, InputError
from joinedup.finance.control_total import (
    CONTROL_TOTAL_TABLE,
    LEDGER_TABLE,
    SYSTEM_CODE,
    VARIANCE_TABLE,
    WATERFALL_TABLE,
    BreakEvenRules,
    Category,
    ForecastMethod,
    Ledger,
    LedgerRow,
    Rule,
    control_total,
    control_total_tables,
    ledger_table,
    load_ledger,
    run_rate_forecast,
    synthetic_ledger,
    trend_forecast,
    waterfall,
    write_ledger,
)
from joinedup.footprint.default import _organisations

P = 100  # pence in a pound: the examples are written in pounds


def _line(
    org: str, year: str, category: str, plan: int, actuals: Sequence[int] = ()
) -> list[LedgerRow]:
    """Twelve months of one line: the same plan each month (pounds), actuals for months 1..k."""
    return [
        LedgerRow(
            org, year, m, Category(category), plan * P,
            actuals[m - 1] * P if m <= len(actuals) else None,
        )
        for m in range(1, 13)
    ]  # fmt: skip


# Example A: one trust, three months reported. Plan: income £20,000 and pay £14,000 a month,
# a surplus of £6,000 a month, £72,000 for the year. Actual: income £21,000 each month; pay
# £10,000, £16,000, £19,000; so the monthly surplus is £11,000, £5,000, £2,000.
EXAMPLE_A = Ledger(
    tuple(
        _line("T1", "2025/26", "income", 20_000, [21_000, 21_000, 21_000])
        + _line("T1", "2025/26", "pay", 14_000, [10_000, 16_000, 19_000])
    ),
    {"T1": "Example Trust"},
)


def test_run_rate_and_trend_forecasts_worked_by_hand() -> None:
    result = control_total(EXAMPLE_A, "2025/26")
    t1 = result.position("T1")
    assert t1.months_reported == 3
    # YTD actual 11,000 + 5,000 + 2,000 = 18,000; YTD plan 3 x 6,000 = 18,000.
    assert (t1.actual_ytd_pence, t1.plan_ytd_pence) == (18_000 * P, 18_000 * P)
    assert t1.plan_full_year_pence == 72_000 * P
    # Run rate: 18,000 / 3 x 12 = 72,000 (on plan).
    assert t1.forecast_run_rate_pence == 72_000 * P
    # Trend: mean month 2, mean surplus 6,000; Sxy = (-1)(11,000) + 0 + (1)(2,000) = -9,000,
    # Sxx = 2, so the slope b = -4,500 a month and a = 6,000 + 4,500 x 2 = 15,000. Months 4..12:
    # 9 x 15,000 - 4,500 x (4 + ... + 12 = 72) = 135,000 - 324,000 = -189,000.
    # Forecast = 18,000 - 189,000 = -171,000, which is 243,000 adverse to plan.
    assert t1.forecast_trend_pence == -171_000 * P
    assert t1.forecast_method is ForecastMethod.TREND
    assert t1.forecast_pence == -171_000 * P
    assert t1.forecast_variance_pence == -243_000 * P
    by_run_rate = control_total(EXAMPLE_A, "2025/26", method=ForecastMethod.RUN_RATE)
    assert by_run_rate.position("T1").forecast_pence == 72_000 * P
    assert by_run_rate.position("T1").forecast_variance_pence == 0


def test_variance_by_cause_is_in_surplus_terms() -> None:
    result = control_total(EXAMPLE_A, "2025/26")
    rows = {(v.organisation_code, v.category): v for v in result.variances}
    income, pay = rows["T1", Category.INCOME], rows["T1", Category.PAY]
    # Income: 63,000 received against 60,000 planned: +3,000, favourable.
    assert (income.plan_ytd_pence, income.actual_ytd_pence) == (60_000 * P, 63_000 * P)
    assert income.variance_pence == 3_000 * P and income.favourable
    # Pay: 45,000 spent against 42,000 planned: -3,000, adverse.
    assert (pay.plan_ytd_pence, pay.actual_ytd_pence) == (42_000 * P, 45_000 * P)
    assert pay.variance_pence == -3_000 * P and not pay.favourable
    assert rows[SYSTEM_CODE, Category.PAY].variance_pence == -3_000 * P


def test_the_waterfall_runs_from_plan_to_the_forecast() -> None:
    steps = waterfall(control_total(EXAMPLE_A, "2025/26"))
    # 72,000 planned; +3,000 income; -3,000 pay; rest of year: (-171,000 - 18,000) forecast
    # for months 4..12 against (72,000 - 18,000) planned = -243,000; outturn -171,000.
    assert [(s.label, s.amount_pence // P, s.running_total_pence // P) for s in steps] == [
        ("Planned surplus 2025/26", 72_000, 72_000),
        ("Income variance to date", 3_000, 75_000),
        ("Pay variance to date", -3_000, 72_000),
        ("Rest of year: trend forecast against plan", -243_000, -171_000),
        ("Forecast outturn (trend)", -171_000, -171_000),
    ]
    assert [s.step for s in steps] == [1, 2, 3, 4, 5]


def test_forecasts_round_once_to_the_penny_halves_away_from_zero() -> None:
    assert run_rate_forecast([1, 0, 0, 0, 0, 0, 0, 0], 0) == 2  # 1 / 8 x 12 = 1.5p
    assert run_rate_forecast([-1, 0, 0, 0, 0, 0, 0, 0], 0) == -2
    assert run_rate_forecast([1, 0, 0, 0, 0, 0, 0], 0) == 2  # 12 / 7 = 1.71p
    # Two months 0p, 1p: the line y = m - 1 gives 2p .. 11p for months 3..12, 65p; plus 1p.
    assert trend_forecast([0, 1], 0) == 66
    # One month: the trend is the run rate. None: both are the plan. Twelve: the actual.
    assert trend_forecast([50], 999) == run_rate_forecast([50], 999) == 600
    assert trend_forecast([], 999) == run_rate_forecast([], 999) == 999
    year = [5, -3, 8, 1, 0, 7, -2, 4, 4, 9, -6, 2]
    assert trend_forecast(year, 0) == run_rate_forecast(year, 0) == sum(year)


def test_nothing_reported_yet_forecasts_the_plan() -> None:
    ledger = Ledger(
        tuple(_line("T1", "2025/26", "income", 100) + _line("T1", "2025/26", "pay", 90)),
        {"T1": "Example Trust"},
    )
    t1 = control_total(ledger, "2025/26").position("T1")
    assert t1.months_reported == 0
    # Plan £100 - £90 = £10 a month, £120 a year; nothing reported, so the forecast is the plan.
    assert t1.forecast_pence == t1.forecast_run_rate_pence == 120 * P
    assert t1.forecast_variance_pence == 0 and t1.actual_ytd_pence == 0


def test_the_rule_in_force_by_year() -> None:
    rules = BreakEvenRules()
    assert rules.rule("2022/23") is Rule.NONE
    assert rules.rule("2023/24") is Rule.SYSTEM
    assert rules.rule("2025/26") is Rule.SYSTEM
    assert rules.rule("2026/27") is Rule.SYSTEM_AND_EACH
    later = BreakEvenRules(system_from="2024/25", each_organisation_from="2028/29")
    assert later.rule("2023/24") is Rule.NONE
    assert later.rule("2027/28") is Rule.SYSTEM


def test_bad_rules_are_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"each_organisation_from\n.*before system_from"):
        BreakEvenRules(each_organisation_from="2022/23")
    with pytest.raises(ValidationError, match=r"system_from\n.*written like 2025/26"):
        BreakEvenRules(system_from="2023-24")
    with pytest.raises(ValidationError, match="extra"):
        BreakEvenRules.model_validate({"system_form": "2023/24"})


def _system_breaks_even_one_trust_does_not() -> Ledger:
    # The ICB: income £1,000 and pay £900 a month, on plan: £100 a month, £1,200 a year.
    # T1: income £500, pay planned £500 but £520 spent: -£20 a month, -£240 a year.
    # The system: £80 a month, £960 a year.
    rows: list[LedgerRow] = []
    for year in ("2022/23", "2025/26", "2026/27"):
        rows += _line("Q1", year, "income", 1_000, [1_000] * 3)
        rows += _line("Q1", year, "pay", 900, [900] * 3)
        rows += _line("T1", year, "income", 500, [500] * 3)
        rows += _line("T1", year, "pay", 500, [520] * 3)
    return Ledger(tuple(rows), {"Q1": "Example ICB", "T1": "Example Trust"})


def test_a_system_that_breaks_even_while_one_trust_does_not() -> None:
    ledger = _system_breaks_even_one_trust_does_not()
    before = control_total(ledger, "2022/23")
    assert before.rule is Rule.NONE and before.met is None and before.failing == ()
    assert all(p.meets_rule is None and not p.must_break_even for p in before.positions)

    joint = control_total(ledger, "2025/26")
    assert joint.system.forecast_pence == 960 * P
    assert joint.position("T1").forecast_pence == -240 * P
    assert joint.rule is Rule.SYSTEM and joint.met is True and joint.failing == ()
    assert joint.position("T1").must_break_even is False
    assert joint.position("T1").meets_rule is None
    assert joint.system.must_break_even and joint.system.meets_rule is True

    each = control_total(ledger, "2026/27")
    assert each.rule is Rule.SYSTEM_AND_EACH and each.met is False
    assert each.failing == ("T1",)
    assert each.position("T1").meets_rule is False
    assert each.position("Q1").meets_rule is True and each.system.meets_rule is True
    assert "not met by T1" in each.explanation
    assert "forecast deficit £240.00" in each.position("T1").explanation


def test_a_year_the_ledger_lacks_is_refused() -> None:
    with pytest.raises(InputError, match=r"2024/25: the ledger has no rows for it \(2025/26\)"):
        control_total(EXAMPLE_A, "2024/25")


def test_a_ledger_built_in_code_is_checked_like_an_import() -> None:
    rows = _line("T1", "2025/26", "pay", 10, [10, 10, 10])
    gap = [r if r.month != 2 else LedgerRow("T1", "2025/26", 2, Category.PAY, 1_000) for r in rows]
    with pytest.raises(InputError, match=r"month 2 pay: column 'actual_gbp': .*without a gap"):
        Ledger(tuple(gap), {"T1": "Example Trust"})
    saving = _line("T1", "2025/26", "efficiency", 500)
    with pytest.raises(InputError, match=r"negative cost: 500\.00 should be -500\.00"):
        Ledger(tuple(saving), {"T1": "Example Trust"})
    with pytest.raises(InputError, match="no name given"):
        Ledger(tuple(rows), {})


def test_the_tables() -> None:
    result = control_total(_system_breaks_even_one_trust_does_not(), "2025/26")
    tables = control_total_tables(result)
    assert set(tables) == {CONTROL_TOTAL_TABLE, VARIANCE_TABLE, WATERFALL_TABLE}
    summary = tables[CONTROL_TOTAL_TABLE]
    assert summary.column_names == [
        "organisation_code", "organisation_name", "financial_year", "months_reported_count",
        "plan_ytd_gbp", "actual_ytd_gbp", "plan_full_year_gbp", "forecast_run_rate_gbp",
        "forecast_trend_gbp", "forecast_gbp", "forecast_method", "forecast_variance_gbp",
        "rule", "must_break_even", "meets_rule", "explanation",
    ]  # fmt: skip
    assert summary.schema.field("forecast_gbp").type == pa.decimal128(18, 2)
    assert summary.column("organisation_code").to_pylist() == ["Q1", "T1", SYSTEM_CODE]
    assert summary.column("forecast_gbp").to_pylist() == [
        Decimal("1200.00"), Decimal("-240.00"), Decimal("960.00"),
    ]  # fmt: skip
    assert summary.column("meets_rule").to_pylist() == [None, None, True]
    assert summary.column("rule").to_pylist() == ["system"] * 3
    variance = tables[VARIANCE_TABLE]
    assert variance.column_names == [
        "organisation_code", "financial_year", "category", "plan_ytd_gbp", "actual_ytd_gbp",
        "variance_gbp", "favourable",
    ]  # fmt: skip
    t1_pay = variance.filter(pc.equal(variance["organisation_code"], "T1")).to_pylist()[1]
    assert t1_pay["variance_gbp"] == Decimal("-60.00") and t1_pay["favourable"] is False
    steps = tables[WATERFALL_TABLE]
    assert steps.column_names == [
        "financial_year", "step", "label", "amount_gbp", "running_total_gbp",
    ]  # fmt: skip
    assert steps.column("running_total_gbp").to_pylist()[-1] == Decimal("960.00")
    ledger = ledger_table(_system_breaks_even_one_trust_does_not())
    assert ledger.num_rows == 3 * 4 * 12
    assert ledger.column_names[:7] == [
        "organisation_code", "financial_year", "month", "month_start_date", "category",
        "plan_gbp", "actual_gbp",
    ]  # fmt: skip
    assert ledger.column("actual_gbp").null_count == 3 * 4 * 9
    assert LEDGER_TABLE == "finance_ledger"


def test_rerunning_gives_the_same_result() -> None:
    ledger = _system_breaks_even_one_trust_does_not()
    first, second = control_total(ledger, "2026/27"), control_total(ledger, "2026/27")
    assert first == second
    assert all(
        a.equals(b)
        for a, b in zip(
            control_total_tables(first).values(), control_total_tables(second).values(), strict=True
        )
    )


# Synthetic ---------------------------------------------------------------------------------

ORGANISATIONS = [(o.code, o.name, o.type.value) for o in _organisations()]
NAMES = {code: name for code, name, _ in ORGANISATIONS}


def test_the_synthetic_ledger_is_reproducible_and_seeded() -> None:
    ledger = synthetic_ledger(ORGANISATIONS, "2025/26", 6, seed=7)
    assert ledger == synthetic_ledger(ORGANISATIONS, "2025/26", 6, seed=7)
    assert ledger != synthetic_ledger(ORGANISATIONS, "2025/26", 6, seed=8)
    # A longer year reported keeps the months already reported.
    longer = synthetic_ledger(ORGANISATIONS, "2025/26", 9, seed=7)
    early = [r for r in longer.rows if r.month <= 6]
    assert early == [r for r in ledger.rows if r.month <= 6]


def test_the_synthetic_ledger_passes_the_import_checks(tmp_path: Path) -> None:
    ledger = synthetic_ledger(ORGANISATIONS, "2025/26", 5, seed=3)
    path = tmp_path / "ledger.csv"
    write_ledger(ledger, path)
    assert load_ledger(path, NAMES) == ledger
    assert load_ledger(path, NAMES, year="2025/26") == ledger


def test_the_synthetic_ledger_has_nhs_shapes() -> None:
    ledger = synthetic_ledger(
        ORGANISATIONS, "2026/27", 6, seed=11, scale_gbp={"ZZT04": 120_000_000 * P}
    )
    # Local authorities and voluntary organisations are outside the NHS control total.
    assert sorted(ledger.organisation_names) == [
        "QZZ", "ZZA01", "ZZT01", "ZZT02", "ZZT03", "ZZT04", "ZZT05", "ZZT06",
    ]  # fmt: skip
    assert {r.month for r in ledger.rows if r.actual_pence is not None} == set(range(1, 7))

    def annual(code: str, *categories: Category) -> int:
        return sum(
            r.plan_pence
            for r in ledger.rows
            if r.organisation_code == code and r.category in categories
        )

    costs = (Category.PAY, Category.NON_PAY, Category.DRUGS, Category.EFFICIENCY)
    # The scale is the planned expenditure, exactly (after savings).
    assert annual("ZZT04", *costs) == 120_000_000 * P
    # The ICB: a £2bn allocation and a 0.5% planned surplus on £1.99bn of spending.
    assert annual("QZZ", *costs) == 1_990_000_000 * P
    assert annual("QZZ", Category.INCOME) == 2_000_000_000 * P - 50_000 * P
    # Pay is about 60% of an acute trust's costs before savings.
    gross = annual("ZZT01", Category.PAY, Category.NON_PAY, Category.DRUGS)
    assert abs(annual("ZZT01", Category.PAY) / gross - 0.60) < 0.001
    assert 400_000_000 * P <= annual("ZZT01", *costs) <= 700_000_000 * P
    # Savings are negative costs; plans are near break-even, and some trusts slip into
    # deficit in the year.
    assert all(r.plan_pence <= 0 for r in ledger.rows if r.category is Category.EFFICIENCY)
    result = control_total(ledger, "2026/27")
    plans = [p.plan_full_year_pence for p in result.positions[:-1] if p.organisation_code != "QZZ"]
    assert all(abs(plan) < 0.01 * 700_000_000 * P for plan in plans)
    assert len(result.failing) >= 1


def test_bad_generator_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="months_reported must be 0 to 12, not 13"):
        synthetic_ledger(ORGANISATIONS, "2025/26", 13, seed=1)
    with pytest.raises(ConfigurationError, match="unknown organisation kind 'hospice'"):
        synthetic_ledger([("X1", "Hospice", "hospice")], "2025/26", 3, seed=1)
    with pytest.raises(ConfigurationError, match="scale_gbp names unknown organisations: ZZZ"):
        synthetic_ledger(ORGANISATIONS, "2025/26", 3, seed=1, scale_gbp={"ZZZ": 1})
    with pytest.raises(ConfigurationError, match="ZZL01 is a local_authority"):
        synthetic_ledger(ORGANISATIONS, "2025/26", 3, seed=1, scale_gbp={"ZZL01": 1})
    with pytest.raises(ConfigurationError, match="no NHS organisation"):
        synthetic_ledger([("ZZV01", "Voluntary", "voluntary_sector")], "2025/26", 3, seed=1)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    months=st.integers(min_value=0, max_value=12),
    method=st.sampled_from(list(ForecastMethod)),
)
def test_the_system_adds_up_and_the_waterfall_sums_exactly(
    seed: int, months: int, method: ForecastMethod
) -> None:
    ledger = synthetic_ledger(ORGANISATIONS[:5], "2025/26", months, seed=seed)
    result = control_total(ledger, "2025/26", method=method)
    orgs, system = result.positions[:-1], result.system
    for name in ("plan_ytd_pence", "actual_ytd_pence", "plan_full_year_pence", "forecast_pence"):
        assert getattr(system, name) == sum(getattr(p, name) for p in orgs)
    steps = waterfall(result)
    assert steps[0].amount_pence == system.plan_full_year_pence
    assert steps[0].amount_pence + sum(s.amount_pence for s in steps[1:-1]) == (
        system.forecast_pence
    )
    assert steps[-1].amount_pence == steps[-1].running_total_pence == system.forecast_pence
    ytd = sum(v.variance_pence for v in result.variances if v.organisation_code == SYSTEM_CODE)
    assert ytd == system.actual_ytd_pence - system.plan_ytd_pence
