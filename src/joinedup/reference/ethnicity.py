"""The ethnic mix of each real place, in NHS Data Dictionary ethnic categories.

Source: `ethnicity_census2021_ltla21.csv`, ONS Census 2021 ethnic group (19 detailed
categories, counts and percentages) by 2021 lower tier local authority (Open Government Licence
v3, via humaniverse/demographr). The counts ("... (number)" rows) are mapped to the NHS ethnic
category codes A-S; percentage rows and any total or heading rows are ignored.

A place whose code is not in the file (an authority formed after 2021, such as North Yorkshire,
E06000065) gets the combined counts of the 2021 authorities it was formed from
(`PLACE_PREDECESSORS`); a place with neither is left out of the result, and the generator then
uses England's mix for it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from joinedup.errors import InputError
from joinedup.reference.areas import PLACE_PREDECESSORS, find_reference_file
from joinedup.reference.csvfile import csv_rows

ETHNICITY_FILE_NAME = "ethnicity_census2021_ltla21.csv"
ETHNICITY_COLUMNS: tuple[str, ...] = ("ltla21_code", "ethnic_group", "value")

#: Census 2021 detailed ethnic group → NHS Data Dictionary ethnic category code.
CENSUS_TO_NHS_ETHNIC_CATEGORY: Mapping[str, str] = {
    "White: English, Welsh, Scottish, Northern Irish or British": "A",
    "White: Irish": "B",
    "White: Gypsy or Irish Traveller": "C",
    "White: Roma": "C",
    "White: Other White": "C",
    "Mixed or Multiple ethnic groups: White and Black Caribbean": "D",
    "Mixed or Multiple ethnic groups: White and Black African": "E",
    "Mixed or Multiple ethnic groups: White and Asian": "F",
    "Mixed or Multiple ethnic groups: Other Mixed or Multiple ethnic groups": "G",
    "Asian, Asian British or Asian Welsh: Indian": "H",
    "Asian, Asian British or Asian Welsh: Pakistani": "J",
    "Asian, Asian British or Asian Welsh: Bangladeshi": "K",
    "Asian, Asian British or Asian Welsh: Other Asian": "L",
    "Black, Black British, Black Welsh, Caribbean or African: Caribbean": "M",
    "Black, Black British, Black Welsh, Caribbean or African: African": "N",
    "Black, Black British, Black Welsh, Caribbean or African: Other Black": "P",
    "Asian, Asian British or Asian Welsh: Chinese": "R",
    "Other ethnic group: Arab": "S",
    "Other ethnic group: Any other ethnic group": "S",
}

_COUNT_SUFFIX = re.compile(r"\s*\(number\)$", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def load_place_ethnicity(
    reference_dir: Path, place_codes: Iterable[str]
) -> dict[str, dict[str, float]]:
    """Shares of each NHS ethnic category (A-S, summing to 1) by place code.

    Places absent from the census file use their 2021 predecessors if all are present, and are
    otherwise omitted (the caller falls back to England's mix).
    """
    path = find_reference_file(reference_dir, ETHNICITY_FILE_NAME)
    counts = _counts_by_ltla(path)
    out: dict[str, dict[str, float]] = {}
    for code in place_codes:
        if code in counts:
            sources: tuple[str, ...] = (code,)
        else:
            entry = PLACE_PREDECESSORS.get(code)
            if entry is None or not entry.ltla21_codes:
                continue
            if not all(c in counts for c in entry.ltla21_codes):
                continue
            sources = entry.ltla21_codes
        combined: dict[str, float] = {}
        for source in sources:
            for category, value in counts[source].items():
                combined[category] = combined.get(category, 0.0) + value
        total = sum(combined.values())
        if total <= 0:
            continue
        out[code] = {c: combined[c] / total for c in sorted(combined)}
    return out


def _counts_by_ltla(path: Path) -> dict[str, dict[str, float]]:
    with csv_rows(path, "ethnicity file", ETHNICITY_COLUMNS) as reader:
        return _read(reader, str(path))


def _read(reader: csv.DictReader[str], source: str) -> dict[str, dict[str, float]]:
    counts: dict[str, dict[str, float]] = {}
    for row in reader:
        where = f"{source}:{reader.line_num}"
        group = _SPACES.sub(" ", (row.get("ethnic_group") or "").strip())
        if not _COUNT_SUFFIX.search(group):
            continue  # percentages are derived from the counts
        category_name = _COUNT_SUFFIX.sub("", group)
        category = CENSUS_TO_NHS_ETHNIC_CATEGORY.get(category_name)
        if category is None:
            if ":" in category_name and not category_name.lower().startswith("total"):
                raise InputError(
                    where, f"column 'ethnic_group': unknown Census 2021 category {group!r}"
                )
            continue  # a total or a heading that sums the detailed rows
        code = (row.get("ltla21_code") or "").strip()
        if not code:
            raise InputError(where, "column 'ltla21_code': empty")
        raw = (row.get("value") or "").strip()
        try:
            value = float(raw.replace(",", ""))
        except ValueError:
            raise InputError(where, f"column 'value': {raw!r} is not a number") from None
        if not value >= 0 or value == float("inf"):
            raise InputError(where, f"column 'value': {raw!r} is not a count")
        place = counts.setdefault(code, {})
        place[category] = place.get(category, 0.0) + value
    if not counts:
        raise InputError(source, "no '(number)' rows of a known 'ethnic_group'")
    return counts
