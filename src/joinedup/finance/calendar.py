"""NHS financial years: April to March, written `2025/26`.

A financial year is named by the calendar year it starts in and the last two digits of the
next (`2025/26` runs from 1 April 2025 to 31 March 2026). Months inside a year are numbered
1 (April) to 12 (March), as NHS finance returns number them.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from pydantic import AfterValidator

from joinedup.errors import InputError

_PATTERN = re.compile(r"^(\d{4})/(\d{2})$")
MONTH_NAMES: tuple[str, ...] = (
    "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Jan", "Feb", "Mar",
)  # fmt: skip


def start_year(year: str) -> int:
    """The calendar year `year` (e.g. `2025/26`) starts in; refuses anything else."""
    match = _PATTERN.match(year.strip())
    if match is None:
        raise InputError(year, "a financial year is written like 2025/26")
    first = int(match.group(1))
    if int(match.group(2)) != (first + 1) % 100:
        raise InputError(
            year, f"write {year_name(first)}: the part after / is the next year's last two digits"
        )
    return first


def _checked(year: str) -> str:
    try:
        start_year(year)
    except InputError as err:
        raise ValueError(f"{year!r}: {err.reason}") from None
    return year.strip()


#: A financial year as a validated configuration value (`2025/26`).
FinancialYear = Annotated[str, AfterValidator(_checked)]


def year_name(first: int) -> str:
    """`2025` -> `2025/26`."""
    return f"{first}/{(first + 1) % 100:02d}"


def next_year(year: str) -> str:
    return year_name(start_year(year) + 1)


def previous_year(year: str) -> str:
    return year_name(start_year(year) - 1)


def first_day(year: str) -> dt.date:
    return dt.date(start_year(year), 4, 1)


def last_day(year: str) -> dt.date:
    return dt.date(start_year(year) + 1, 3, 31)


def year_of(day: dt.date) -> str:
    """The financial year a date falls in."""
    return year_name(day.year if day.month >= 4 else day.year - 1)


def month_number(day: dt.date) -> int:
    """1 for April ... 12 for March."""
    return (day.month - 4) % 12 + 1


def month_first_day(year: str, month: int) -> dt.date:
    """The first day of month `month` (1 = April) of `year`."""
    if not 1 <= month <= 12:
        raise InputError(str(month), "a month of the financial year is 1 (April) to 12 (March)")
    first = start_year(year)
    calendar_month = (month + 2) % 12 + 1
    return dt.date(first if month <= 9 else first + 1, calendar_month, 1)
