"""Money is exact: amounts are whole pence (`int`), and a total split into parts always sums
back to the total.

`split` shares a total in proportion to weights by the largest remainder method (Hamilton's):
each part gets the whole pence of its exact share, then the pence left over go one each to the
parts with the largest fractional remainders, ties to the earlier key in sorted order. The
exact shares are computed with `fractions.Fraction`, so no rounding error decides a penny.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Literal

import pyarrow as pa

from joinedup.errors import InputError

#: The warehouse type of every finance money column (`*_gbp`): pounds, exact to the penny.
GBP_TYPE = pa.decimal128(18, 2)


def pence(pounds: Decimal | int | str) -> int:
    """Whole pence from pounds given as Decimal, int or text; refuses fractions of a penny."""
    value = Decimal(str(pounds)) * 100
    if value != value.to_integral_value():
        raise InputError(str(pounds), "money must be whole pence")
    return int(value)


def pounds(amount_pence: int) -> Decimal:
    """Pence as pounds, exactly (Decimal with two places)."""
    return (Decimal(amount_pence) / 100).quantize(Decimal("0.01"))


def gbp_text(amount_pence: int) -> str:
    """Pence as text for explanations: £1,234.50, or -£1,234.50."""
    sign = "-" if amount_pence < 0 else ""
    return f"{sign}£{pounds(abs(amount_pence)):,}"


#: How money is shown: "£m" in £ million to one decimal place (summaries), "£" in whole pounds
#: with thousands separators (detail tables).
MoneyUnit = Literal["£m", "£"]
#: Each unit in words, for the one place a table states it.
MONEY_UNITS: dict[str, str] = {"£m": "£ million, to one decimal place", "£": "whole pounds"}


def money_text(
    amount_gbp: Decimal | int | float | None, unit: MoneyUnit = "£", *, signed: bool = False
) -> str:
    """Pounds as the dashboard and the report show them, the one formatter both use: £17.9m
    (unit "£m") or £1,234,567 (unit "£"), halves rounded away from zero; a minus sign on a
    negative figure, a plus on a positive one when `signed` (a change), and no sign on a figure
    that rounds to zero. None (a suppressed or missing figure) is empty."""
    if amount_gbp is None:
        return ""
    value = Decimal(str(amount_gbp)) if isinstance(amount_gbp, float) else Decimal(amount_gbp)
    if unit == "£m":
        shown = (abs(value) / 1_000_000).quantize(Decimal("0.1"), ROUND_HALF_UP)
        text = f"£{shown:,.1f}m"
    else:
        shown = abs(value).quantize(Decimal("1"), ROUND_HALF_UP)
        text = f"£{shown:,.0f}"
    if shown == 0:
        return text
    return ("-" if value < 0 else "+" if signed else "") + text


def percent_text(rate: Fraction | Decimal | float) -> str:
    """A rate as a percentage to two places: 0.0345 -> 3.45%."""
    return f"{float(rate):.2%}"


def split(total_pence: int, weights: Mapping[str, float | int | Fraction]) -> dict[str, int]:
    """`total_pence` shared in proportion to `weights`, in whole pence summing to the total.

    Weights must be non-negative with a positive sum. Floats are taken at their exact binary
    value, so the same inputs always give the same pennies.
    """
    if not weights:
        raise InputError("weights", "nothing to split the money between")
    exact = {k: Fraction(w) for k, w in weights.items()}
    negative = sorted(k for k, w in exact.items() if w < 0)
    if negative:
        raise InputError("weights", f"negative weight for {', '.join(negative)}")
    whole = sum(exact.values(), Fraction(0))
    if whole <= 0:
        raise InputError("weights", "the weights sum to zero")
    shares = {k: total_pence * w / whole for k, w in exact.items()}
    parts = {k: s.numerator // s.denominator for k, s in shares.items()}
    left = total_pence - sum(parts.values())
    by_remainder = sorted(shares, key=lambda k: (-(shares[k] - parts[k]), k))
    for key in by_remainder[:left]:
        parts[key] += 1
    return parts
