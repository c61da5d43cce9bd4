"""docs/finance.md shows the hand-worked examples the spec tests check: each figure below is
asserted by the spec test named beside it, and must stand in the page too, so the page and the
code cannot tell a finance director different things."""

from __future__ import annotations

from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "finance.md"

FIGURES: tuple[tuple[str, str], ...] = (
    ("test_money.py", "3,334p, 3,333p and 3,333p"),
    ("test_money.py", "67p and 33p"),
    ("test_allocation.py", "£1,150.00, £1,075.00 and £1,075.00"),
    ("test_allocation.py", "£1,060.00, £1,020.00 and £1,020.00"),
    ("test_allocation.py", "acute 67,059p, community 18,627p, primary care 9,314p"),
    ("test_capitation.py", "1,000/600 = 1.667"),
    ("test_capitation.py", "SMR 2.0"),
    ("test_capitation.py", "4.29, 0.43 and 1.29"),
    ("test_guarantees.py", "**£104,500.00**"),
    ("test_guarantees.py", "£114,950.00"),
    ("test_guarantees.py", "**£1,033,333.35**"),
    ("test_budgets.py", "£1,203.41"),
    ("test_payment.py", "**£9,912,959.83**"),
    ("test_payment.py", "**£15,292,762.04**"),
    ("test_payment.py", "**£1,401,350.00**"),
    ("test_payment.py", "**£1,425,975.00**"),
    ("test_control_total.py", "**£72,000** (on plan)"),
    ("test_control_total.py", "**−£171,000**, £243,000 adverse"),
    ("test_control_total.py", "forecast deficit £240.00"),
    ("test_risk_share.py", "North **£3,200,000.00**, South **£100,000.00**"),
    ("test_risk_share.py", "**£1,233,333.33**, **£783,333.33** and **£483,333.34**"),
    ("test_risk_share.py", "**£2,142,857.14**, **£500,000.00**, **£357,142.86**"),
    ("test_risk_share.py", "the ICB takes **£130,000.00**"),
    ("test_risk_share.py", "**−£400,000.00**, **−£450,000.00**, **−£150,000.00**"),
)


@pytest.mark.parametrize(("spec", "figure"), FIGURES)
def test_the_hand_worked_figure_is_in_the_finance_page(spec: str, figure: str) -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    assert figure in text, f"docs/finance.md no longer shows {figure!r} (checked by {spec})"
    assert (Path(__file__).resolve().parents[1] / "spec" / spec).is_file()
