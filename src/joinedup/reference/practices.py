"""NHS England's practice-level weighted populations: every GP practice with its place and need.

The file is the one NHS England publishes with the ICB place-based allocation tool
(`gp_practice_weighted_populations_2025_26.csv`): one row per practice with its location, ICB,
local authority district, projected registered population and a weighted population per
allocation component. The footprint builder uses the places and populations; the finance module
uses the weighted populations. Every bad row or column is reported with the file and row number.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from joinedup.errors import InputError
from joinedup.reference.csvfile import csv_rows

PRACTICE_FILE_NAME = "gp_practice_weighted_populations_2025_26.csv"

# Text columns the loader needs, by the attribute they fill.
TEXT_COLUMNS: Mapping[str, str] = {
    "practice_code": "Practice_Code",
    "practice_name": "GP_Practice_Name",
    "postcode": "Practice_Postcode",
    "icb_code": "ICB",
    "icb_name": "ICBname",
    "lad_code": "LAD",
    "ltla_name": "LTLA",
}

# Weighted population per allocation component, by attribute. Each column sums to the national
# population: the weights redistribute people by need, they do not add any.
WEIGHTED_POPULATION_COLUMNS: Mapping[str, str] = {
    "general_and_acute_wp": "G&A WP",
    "community_services_wp": "CS WP",
    "mental_health_wp": "MH WP",
    "maternity_wp": "Mat WP",
    "health_inequalities_wp": "Health Ineq WP",
    "prescribing_wp": "Prescr WP",
    "final_wp": "Final WP",
    "primary_medical_care_wp": "Primary Medical Care WP",
    "final_pmc_wp": "Final PMC WP",
}

REQUIRED_COLUMNS: tuple[str, ...] = (
    *TEXT_COLUMNS.values(),
    "Latitude",
    "Longitude",
    "Population",
    *WEIGHTED_POPULATION_COLUMNS.values(),
)


@dataclass(frozen=True, slots=True)
class PracticeRecord:
    """One practice row of the weighted populations file, typed and checked.

    `population` is NHS England's projected registered population (a fraction, not a head
    count); the `*_wp` fields are the weighted populations per allocation component.
    """

    practice_code: str
    practice_name: str
    postcode: str | None
    latitude: float | None
    longitude: float | None
    icb_code: str
    icb_name: str
    lad_code: str
    ltla_name: str
    pcn_code: str | None
    population: float
    general_and_acute_wp: float
    community_services_wp: float
    mental_health_wp: float
    maternity_wp: float
    health_inequalities_wp: float
    prescribing_wp: float
    final_wp: float
    primary_medical_care_wp: float
    final_pmc_wp: float


def find_practice_file(reference_dir: Path) -> Path:
    """Locate the weighted populations file in a reference directory, or say what is missing."""
    if not reference_dir.is_dir():
        raise InputError(str(reference_dir), "reference directory not found")
    path = reference_dir / PRACTICE_FILE_NAME
    if not path.is_file():
        raise InputError(
            str(reference_dir),
            f"no {PRACTICE_FILE_NAME} here: download NHS England's practice-level weighted "
            "populations (ICB allocation tool) into this directory",
        )
    return path


def load_practices(path: Path) -> list[PracticeRecord]:
    """Read and check every practice row; errors name the file, line and column."""
    with csv_rows(path, "practice file", REQUIRED_COLUMNS) as reader:
        return list(_read(reader, str(path)))


def load_practices_from_dir(reference_dir: Path) -> list[PracticeRecord]:
    """Find the weighted populations file in `reference_dir` and load it."""
    return load_practices(find_practice_file(reference_dir))


def _read(reader: csv.DictReader[str], source: str) -> Iterator[PracticeRecord]:
    seen: dict[str, int] = {}
    count = 0
    for row in reader:
        where = f"{source}:{reader.line_num}"
        record = _record(row, where)
        if record.practice_code in seen:
            raise InputError(
                where,
                f"column 'Practice_Code': duplicate practice {record.practice_code!r} "
                f"(first on line {seen[record.practice_code]})",
            )
        seen[record.practice_code] = reader.line_num
        count += 1
        yield record
    if count == 0:
        raise InputError(source, "no practice rows after the header")


def _record(row: Mapping[str, str | None], where: str) -> PracticeRecord:
    text = {attr: _text(row, column, where) for attr, column in TEXT_COLUMNS.items()}
    for attr in ("practice_code", "icb_code", "icb_name", "lad_code", "ltla_name"):
        if not text[attr]:
            raise InputError(where, f"column {TEXT_COLUMNS[attr]!r}: empty")
    wp = {attr: _number(row, column, where) for attr, column in WEIGHTED_POPULATION_COLUMNS.items()}
    return PracticeRecord(
        practice_code=text["practice_code"],
        practice_name=text["practice_name"] or text["practice_code"],
        postcode=text["postcode"] or None,
        latitude=_optional_number(row, "Latitude", where, low=-90.0, high=90.0),
        longitude=_optional_number(row, "Longitude", where, low=-180.0, high=180.0),
        icb_code=text["icb_code"],
        icb_name=text["icb_name"],
        lad_code=text["lad_code"],
        ltla_name=text["ltla_name"],
        # Optional: empty in the 2025/26 release, absent from older files.
        pcn_code=(row.get("PCN_Code") or "").strip() or None,
        population=_number(row, "Population", where),
        general_and_acute_wp=wp["general_and_acute_wp"],
        community_services_wp=wp["community_services_wp"],
        mental_health_wp=wp["mental_health_wp"],
        maternity_wp=wp["maternity_wp"],
        health_inequalities_wp=wp["health_inequalities_wp"],
        prescribing_wp=wp["prescribing_wp"],
        final_wp=wp["final_wp"],
        primary_medical_care_wp=wp["primary_medical_care_wp"],
        final_pmc_wp=wp["final_pmc_wp"],
    )


def _text(row: Mapping[str, str | None], column: str, where: str) -> str:
    value = row.get(column)
    if value is None:
        raise InputError(where, f"column {column!r}: missing (the row has too few fields)")
    return value.strip()


def _number(row: Mapping[str, str | None], column: str, where: str) -> float:
    """A required non-negative number, such as a population."""
    value = _optional_number(row, column, where)
    if value is None:
        raise InputError(where, f"column {column!r}: empty, expected a number")
    return value


def _optional_number(
    row: Mapping[str, str | None],
    column: str,
    where: str,
    *,
    low: float = 0.0,
    high: float = math.inf,
) -> float | None:
    raw = _text(row, column, where)
    if not raw:
        return None
    try:
        value = float(raw.replace(",", ""))
    except ValueError:
        raise InputError(where, f"column {column!r}: {raw!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise InputError(where, f"column {column!r}: {raw!r} is outside {low:g} to {high:g}")
    return value
