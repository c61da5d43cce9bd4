"""Reading a ledger CSV: what a good file gives, and how each kind of bad row is told (file,
line, column and reason), up to ten problems in one message."""

from __future__ import annotations

from pathlib import Path

import pytest

from joinedup.errors import InputError
from joinedup.finance.control_total import Category, LedgerRow, load_ledger

ORGANISATIONS = {"T1": "Example Trust", "Q1": "Example ICB"}
HEADER = "organisation_code,financial_year,month,category,plan_gbp,actual_gbp"


def _lines(reported: int = 2) -> list[str]:
    """A good ledger as lines: `lines[i]` is line i + 1 of the file (line 1 the header).
    T1 income is on lines 2-13 (months 1-12), T1 pay on 14-25, Q1 income on 26-37."""
    lines = [HEADER]
    for org, category, plan, actual in (
        ("T1", "income", "1000.00", "1010.50"),
        ("T1", "pay", "900.00", "905.25"),
        ("Q1", "income", "2000.00", "2000.00"),
    ):
        for month in range(1, 13):
            done = actual if month <= reported else ""
            lines.append(f"{org},2025/26,{month},{category},{plan},{done}")
    return lines


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "ledger.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _error(tmp_path: Path, lines: list[str]) -> str:
    path = _write(tmp_path, lines)
    with pytest.raises(InputError) as caught:
        load_ledger(path, ORGANISATIONS)
    return str(caught.value)


def test_a_good_file_loads_in_pence(tmp_path: Path) -> None:
    ledger = load_ledger(_write(tmp_path, _lines()), ORGANISATIONS)
    assert len(ledger.rows) == 36
    assert ledger.rows[0] == LedgerRow("Q1", "2025/26", 1, Category.INCOME, 200_000, 200_000)
    t1_pay = [r for r in ledger.rows if r.organisation_code == "T1" and r.category == "pay"]
    assert [r.actual_pence for r in t1_pay[:3]] == [90_525, 90_525, None]
    assert ledger.organisation_names == {"Q1": "Example ICB", "T1": "Example Trust"}


def test_pounds_may_carry_commas_and_a_pound_sign(tmp_path: Path) -> None:
    lines = _lines()
    lines[1] = 'T1,2025/26,1,income,"£1,000.00",1010.5'
    assert load_ledger(_write(tmp_path, lines), ORGANISATIONS).rows[12].plan_pence == 100_000


def test_an_unknown_organisation(tmp_path: Path) -> None:
    lines = _lines()
    lines[5] = lines[5].replace("T1,", "ZZ9,", 1)
    message = _error(tmp_path, lines)
    assert message == (
        f"{tmp_path / 'ledger.csv'}:6: column 'organisation_code': unknown organisation "
        "'ZZ9': not among the 2 given"
    )


def test_a_bad_month(tmp_path: Path) -> None:
    lines = _lines()
    lines[3] = "T1,2025/26,13,income,1000.00,"
    lines[4] = "T1,2025/26,Apr,income,1000.00,"
    message = _error(tmp_path, lines)
    assert "ledger.csv:4: column 'month': 13 is not a month of the financial year" in message
    assert "ledger.csv:5: column 'month': 'Apr' is not a whole number" in message


def test_money_with_fractions_of_a_penny(tmp_path: Path) -> None:
    lines = _lines()
    lines[2] = "T1,2025/26,2,income,1000.005,1010.50"
    lines[3] = "T1,2025/26,3,income,1000.00,lots"
    message = _error(tmp_path, lines)
    assert (
        "ledger.csv:3: column 'plan_gbp': '1000.005' has fractions of a penny: give pounds "
        "to 2 decimal places" in message
    )
    assert "ledger.csv:4: column 'actual_gbp': 'lots' is not a number" in message


def test_a_duplicate_row(tmp_path: Path) -> None:
    lines = [*_lines(), "T1,2025/26,3,pay,900.00,"]
    message = _error(tmp_path, lines)
    assert message.endswith(
        "ledger.csv:38: column 'month': duplicate row: T1 pay month 3 of 2025/26 is already at "
        f"{tmp_path / 'ledger.csv'}:16"
    )


def test_a_gap_in_the_reported_months(tmp_path: Path) -> None:
    lines = _lines(reported=4)
    lines[15] = "T1,2025/26,3,pay,900.00,"  # T1 pay month 3 left empty, month 4 reported
    message = _error(tmp_path, lines)
    assert message.endswith(
        "ledger.csv:16: column 'actual_gbp': empty, but T1 pay reports month 4 (Jul): actuals "
        "are reported from month 1 without a gap"
    )


def test_lines_reported_to_different_months(tmp_path: Path) -> None:
    lines = _lines(reported=3)
    lines[27] = "Q1,2025/26,3,income,2000.00,"  # Q1 stops at month 2, the rest at month 3
    message = _error(tmp_path, lines)
    assert message.endswith(
        "ledger.csv:28: column 'actual_gbp': empty, but 3 months of 2025/26 are reported for "
        "T1 income: every organisation reports every line for the same months"
    )


def test_plans_for_all_twelve_months(tmp_path: Path) -> None:
    lines = _lines()
    del lines[35]  # Q1 income month 11
    message = _error(tmp_path, lines)
    assert message.endswith(
        "ledger.csv:26: column 'month': Q1 income 2025/26 has no row for month 11 (Feb): a plan "
        "is needed for all 12 months"
    )


def test_bad_year_category_plan_and_saving(tmp_path: Path) -> None:
    lines = _lines()
    lines[1] = "T1,2025/27,1,income,1000.00,1010.50"
    lines[2] = "T1,2025/26,2,salaries,1000.00,1010.50"
    lines[3] = "T1,2025/26,3,income,,"
    lines[4] = "T1,2025/26,4,efficiency,250.00,"
    message = _error(tmp_path, lines)
    # The reason after the year is calendar.start_year's own.
    assert "ledger.csv:2: column 'financial_year': '2025/27': " in message
    assert (
        "ledger.csv:3: column 'category': unknown category 'salaries': use one of income, pay, "
        "non_pay, drugs, efficiency" in message
    )
    assert "ledger.csv:4: column 'plan_gbp': empty: every month needs a plan" in message
    assert (
        "ledger.csv:5: column 'plan_gbp': efficiency is savings recorded as a negative cost: "
        "250.00 should be -250.00" in message
    )


def test_at_most_ten_problems_are_told(tmp_path: Path) -> None:
    lines = _lines()
    for i in range(1, 14):
        lines[i] = lines[i].replace("T1,", "ZZ9,", 1)
    message = _error(tmp_path, lines)
    assert message.count("unknown organisation 'ZZ9'") == 10
    assert message.startswith(f"{tmp_path / 'ledger.csv'}:2: column 'organisation_code'")
    assert message.endswith("; and 3 more problems")


def test_file_level_problems(tmp_path: Path) -> None:
    missing = _error(tmp_path, ["organisation_code,financial_year,month,category,plan_gbp"])
    assert missing.endswith("ledger.csv: missing column 'actual_gbp'")
    assert _error(tmp_path, [HEADER]).endswith("ledger.csv: no ledger rows after the header")
    lines = _lines()
    lines[1] += ",extra"
    assert "ledger.csv:2: column 'actual_gbp': more values than columns" in _error(tmp_path, lines)
    with pytest.raises(InputError, match="cannot read ledger file"):
        load_ledger(tmp_path / "absent.csv", ORGANISATIONS)


def test_a_year_is_picked_from_a_file_of_several(tmp_path: Path) -> None:
    lines = _lines()
    lines += [line.replace("2025/26", "2024/25") for line in _lines()[1:]]
    path = _write(tmp_path, lines)
    assert load_ledger(path, ORGANISATIONS).years == ("2024/25", "2025/26")
    picked = load_ledger(path, ORGANISATIONS, year="2024/25")
    assert picked.years == ("2024/25",) and len(picked.rows) == 36
    held = r"no rows for 2023/24 \(the file holds 2024/25, 2025/26\)"
    with pytest.raises(InputError, match=held):
        load_ledger(path, ORGANISATIONS, year="2023/24")
