"""Building blocks of the finance configuration: every finance settings model derives from
`FinanceModel` and spells money and shares with these types, so a bad file fails at load with
the field and the reason.

- `Pounds`: money as written by a person, in pounds with at most two decimal places
  (`1250000.00`, `"1,250,000"`); it becomes whole pence with `money.pence` inside.
- `Rate`: a fraction such as a growth rate or a share (`0.02` is 2%), read exactly as a
  Decimal from its text, so `0.1` is one tenth and not a binary approximation.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


class FinanceModel(BaseModel):
    """Strict: unknown keys are refused, values are frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    if isinstance(value, float):
        value = repr(value)  # the shortest text that round-trips: 0.1 stays one tenth
    try:
        number = Decimal(str(value).replace(",", "").replace("£", "").strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _pounds(value: Any) -> Decimal:
    number = _decimal(value)
    if number != number.quantize(Decimal("0.01")):
        raise ValueError(f"{value!r} has fractions of a penny: give pounds to 2 decimal places")
    return number.quantize(Decimal("0.01"))


#: Money in pounds, to the penny (may be negative: a deficit, a variance).
Pounds = Annotated[Decimal, BeforeValidator(_pounds)]
#: A fraction read exactly (0.02 is 2%); ranges are checked where each is used.
Rate = Annotated[Decimal, BeforeValidator(_decimal)]


def check_shares(shares: Mapping[str, Decimal]) -> None:
    """Shares must be non-negative and sum to exactly 1 (100%). Raises ValueError, for use in
    model validators (pydantic then names the field)."""
    negative = sorted(k for k, v in shares.items() if v < 0)
    if negative:
        raise ValueError(f"negative share for {', '.join(negative)}")
    total = sum(shares.values(), Decimal(0))
    if total != 1:
        raise ValueError(f"shares sum to {total * 100:g}%, not 100%")
