"""One money format for the finance page, the API's text figures and the report: £ million to
one decimal place in summaries, whole pounds with thousands separators in detail."""

from __future__ import annotations

from decimal import Decimal

import pytest

from joinedup.finance.money import money_text


@pytest.mark.parametrize(
    ("amount", "unit", "signed", "text"),
    [
        (Decimal("17898000.00"), "£m", False, "£17.9m"),
        (Decimal("17850000.00"), "£m", False, "£17.9m"),  # halves away from zero
        (Decimal("-2721888.19"), "£m", True, "-£2.7m"),
        (Decimal("49999.99"), "£m", True, "£0.0m"),  # rounds to zero: no sign
        (Decimal("1234567.50"), "£", False, "£1,234,568"),
        (Decimal("-9233.25"), "£", False, "-£9,233"),
        (Decimal("29656.79"), "£", True, "+£29,657"),
        (Decimal("0.49"), "£", True, "£0"),
        (-0.5, "£", True, "-£1"),
        (1234, "£", False, "£1,234"),
        (None, "£", False, ""),
    ],
)
def test_money_text(amount: Decimal | float | None, unit: str, signed: bool, text: str) -> None:
    assert money_text(amount, unit, signed=signed) == text  # type: ignore[arg-type]
