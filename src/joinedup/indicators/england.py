"""England's values to compare each area with, and the Fingertips-style comparison itself.

England values come from a CSV file with the columns `indicator_id, period, value, lower,
upper, source` (lower and upper may be blank): the shipped `england.csv`, whose figures are the
published England figures joinedup's synthetic population is calibrated to (a test derives each
from `joinedup.synth.params`), or a file the user supplies. A malformed file is refused in one
line naming the file, the row (its line in the file, the header being line 1) and the column.

An area is compared with a comparator by whether its 95% interval excludes the comparator's
value, as OHID Fingertips does: "better", "similar" or "worse" by the indicator's polarity, or
"higher", "similar" or "lower" where the polarity is unknown.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from joinedup.errors import InputError
from joinedup.indicators.definitions import Definitions, Polarity, shipped_definitions
from joinedup.reference.csvfile import csv_rows

COLUMNS: tuple[str, ...] = ("indicator_id", "period", "value", "lower", "upper", "source")

Comparison = Literal["better", "similar", "worse", "higher", "lower"]


@dataclass(frozen=True)
class EnglandValue:
    """England's value of one indicator for one period, with where it comes from."""

    indicator_id: str
    period: str
    value: float
    lower: float | None
    upper: float | None
    source: str


def _number(text: str, where: str, column: str, *, required: bool) -> float | None:
    cleaned = text.strip()
    if not cleaned:
        if required:
            raise InputError(where, f"column {column!r}: a number is required")
        return None
    try:
        number = float(cleaned)
    except ValueError:
        raise InputError(where, f"column {column!r}: {cleaned!r} is not a number") from None
    if not math.isfinite(number):
        raise InputError(where, f"column {column!r}: {cleaned!r} is not a finite number")
    return number


def _required(text: str, where: str, column: str) -> float:
    number = _number(text, where, column, required=True)
    if number is None:  # unreachable: a required number is never None
        raise InputError(where, f"column {column!r}: a number is required")
    return number


def load_england(path: Path, definitions: Definitions | None = None) -> list[EnglandValue]:
    """The England values in `path`; refused (InputError naming file, row and column) when a
    row names an unknown indicator, lacks a period, value or source, has a limit on the wrong
    side of its value, or repeats an indicator and period."""
    known = definitions or shipped_definitions()
    with csv_rows(path, "England values file", COLUMNS) as reader:
        header = reader.fieldnames or []
        extra = [c for c in header if c not in COLUMNS]
        if extra:
            raise InputError(
                f"{path}, row 1",
                f"column {extra[0]!r} is not one of {', '.join(COLUMNS)}",
            )
        rows = list(_rows(reader, str(path), known))
    if not rows:
        raise InputError(str(path), "no rows after the header")
    return rows


def _rows(reader: csv.DictReader[str], source: str, known: Definitions) -> Iterator[EnglandValue]:
    ids = {i.id for i in known}
    seen: dict[tuple[str, str], int] = {}
    for row in reader:
        line = reader.line_num
        where = f"{source}, row {line}"
        if None in row or any(row.get(c) is None for c in COLUMNS):
            raise InputError(where, f"expected {len(COLUMNS)} columns ({', '.join(COLUMNS)})")
        text = {c: str(row[c]) for c in COLUMNS}
        for column, cell in text.items():
            # Period and source are shown on pages and written to downloads as they are.
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in cell):
                raise InputError(where, f"column {column!r}: contains a control character")
        indicator_id = text["indicator_id"].strip()
        if indicator_id not in ids:
            raise InputError(where, f"column 'indicator_id': no indicator {indicator_id!r}")
        period = text["period"].strip()
        if not period:
            raise InputError(where, "column 'period': a period is required (e.g. 2023-24)")
        value = _required(text["value"], where, "value")
        lower = _number(text["lower"], where, "lower", required=False)
        upper = _number(text["upper"], where, "upper", required=False)
        if lower is not None and lower > value:
            raise InputError(where, f"column 'lower': {lower} is above the value {value}")
        if upper is not None and upper < value:
            raise InputError(where, f"column 'upper': {upper} is below the value {value}")
        source_text = text["source"].strip()
        if not source_text:
            raise InputError(where, "column 'source': say where the value comes from")
        key = (indicator_id, period)
        if key in seen:
            raise InputError(
                where,
                f"column 'period': {indicator_id} {period} repeats row {seen[key]}",
            )
        seen[key] = line
        yield EnglandValue(indicator_id, period, value, lower, upper, source_text)


def shipped_england() -> list[EnglandValue]:
    """The England values shipped with joinedup (`england.csv`)."""
    with resources.as_file(resources.files(__package__).joinpath("england.csv")) as path:
        return load_england(path)


def england_for(
    values: Iterable[EnglandValue], indicator_id: str, period: str
) -> EnglandValue | None:
    """England's value of `indicator_id` for `period` if given, else its latest (the greatest
    period label, e.g. 2023-24 over 2022-23); None when there is none."""
    mine = [v for v in values if v.indicator_id == indicator_id]
    exact = [v for v in mine if v.period == period]
    if exact:
        return exact[0]
    return max(mine, key=lambda v: v.period) if mine else None


def compare(
    value: float | None,
    lower: float | None,
    upper: float | None,
    comparator: float | None,
    polarity: Polarity,
) -> Comparison | None:
    """The area (value and 95% interval) against a comparator's value, Fingertips-style:
    "similar" when the interval includes it, otherwise "better" or "worse" by `polarity`, or
    "higher" or "lower" when polarity is unknown. None when either is missing."""
    if value is None or lower is None or upper is None or comparator is None:
        return None
    if any(math.isnan(x) for x in (value, lower, upper, comparator)):
        return None
    if lower <= comparator <= upper:
        return "similar"
    higher = lower > comparator
    if polarity == "unknown":
        return "higher" if higher else "lower"
    good = higher == (polarity == "higher is better")
    return "better" if good else "worse"
