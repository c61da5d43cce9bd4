"""The small areas (2011 LSOAs) of each real place, with their deprivation and ages.

Sources, both Open Government Licence v3:

- `population_mid2020_lsoa11.csv`: ONS mid-2020 small area population estimates, persons by
  2011 LSOA and single year of age 0..89 and 90+ (via humaniverse/demographr). `lsoa11_name`
  begins with the name of the local authority the LSOA sat in when it was drawn ("Wirral 001A").
- `imd2019_lsoa11.csv`: MHCLG English Indices of Deprivation 2019, `IMD_decile` by
  `lsoa11_code` (1 = most deprived 10% of England; via humaniverse/IMD).

A place (a local authority district) gets the LSOAs whose name begins with its name. Authorities
formed or renamed since the LSOA names were set are looked up in `PLACE_PREDECESSORS` by code or
name; names compare without case or punctuation, so "St Helens" finds "St. Helens 001A".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from numpy.typing import NDArray

from joinedup.errors import InputError
from joinedup.reference.csvfile import csv_rows

POPULATION_FILE_NAME = "population_mid2020_lsoa11.csv"
IMD_FILE_NAME = "imd2019_lsoa11.csv"

#: Age columns of the population file: single years 0..89, then 90 and over.
AGE_COLUMNS: tuple[str, ...] = (*(str(age) for age in range(90)), "90+")


@dataclass(frozen=True)
class Area:
    """Small areas of one place: codes, IMD deciles and population by single year of age."""

    lsoa_codes: NDArray[np.str_]
    imd_deciles: NDArray[np.int16]
    #: people by area (rows) and single year of age 0..90+ (columns).
    age_counts: NDArray[np.float64]


class Predecessors(NamedTuple):
    """Where a reorganised authority's people sit in older files.

    `lsoa_prefixes` are the authority names at the start of 2011 LSOA names; `ltla21_codes` are
    the 2021 local authority codes (Census 2021) it was formed from, empty if it existed in 2021.
    """

    name: str
    lsoa_prefixes: tuple[str, ...]
    ltla21_codes: tuple[str, ...] = ()


# Authorities created, merged or renamed since 2011, by current LAD code. Codes E06000058-62 and
# E07000112/244-246 are 2019-2021 changes (in NHS England's 2025/26 practice file and Census
# 2021); E06000063-66 are the April 2023 unitaries, listed for files that use 2023 codes.
PLACE_PREDECESSORS: Mapping[str, Predecessors] = {
    "E06000058": Predecessors(
        "Bournemouth, Christchurch and Poole", ("Bournemouth", "Christchurch", "Poole")
    ),
    "E06000059": Predecessors(
        "Dorset",
        ("East Dorset", "North Dorset", "Purbeck", "West Dorset", "Weymouth and Portland"),
    ),
    "E06000060": Predecessors(
        "Buckinghamshire", ("Aylesbury Vale", "Chiltern", "South Bucks", "Wycombe")
    ),
    "E06000061": Predecessors(
        "North Northamptonshire",
        ("Corby", "East Northamptonshire", "Kettering", "Wellingborough"),
    ),
    "E06000062": Predecessors(
        "West Northamptonshire", ("Daventry", "Northampton", "South Northamptonshire")
    ),
    "E06000063": Predecessors(
        "Cumberland",
        ("Allerdale", "Carlisle", "Copeland"),
        ("E07000026", "E07000028", "E07000029"),
    ),
    "E06000064": Predecessors(
        "Westmorland and Furness",
        ("Barrow-in-Furness", "Eden", "South Lakeland"),
        ("E07000027", "E07000030", "E07000031"),
    ),
    "E06000065": Predecessors(
        "North Yorkshire",
        ("Craven", "Hambleton", "Harrogate", "Richmondshire", "Ryedale", "Scarborough", "Selby"),
        ("E07000163", "E07000164", "E07000165", "E07000166", "E07000167", "E07000168", "E07000169"),
    ),
    "E06000066": Predecessors(
        "Somerset",
        ("Mendip", "Sedgemoor", "South Somerset", "Taunton Deane", "West Somerset"),
        ("E07000187", "E07000188", "E07000189", "E07000246"),
    ),
    "E07000112": Predecessors("Folkestone and Hythe", ("Shepway",)),
    "E07000244": Predecessors("East Suffolk", ("Suffolk Coastal", "Waveney")),
    "E07000245": Predecessors("West Suffolk", ("Forest Heath", "St Edmundsbury")),
    "E07000246": Predecessors("Somerset West and Taunton", ("Taunton Deane", "West Somerset")),
}

_PREDECESSORS_BY_NAME: dict[str, Predecessors] = {}  # filled below, by normalised name
_LSOA_SUFFIX = re.compile(r"\s+\d{3}[A-Z]$")  # the " 001A" at the end of an LSOA name
_OFFICIAL_SUFFIX = re.compile(r",\s*(city|county) of$", re.IGNORECASE)  # "Bristol, City of"
_PUNCTUATION = re.compile(r"[^a-z0-9 ]+")
_SPACES = re.compile(r"\s+")


def normalise_place_name(name: str) -> str:
    """A place name for comparison: lower case, no punctuation, no ", City of" style suffix."""
    text = _OFFICIAL_SUFFIX.sub("", name.strip()).lower().replace("-", " ")
    return _SPACES.sub(" ", _PUNCTUATION.sub("", text)).strip()


for _entry in PLACE_PREDECESSORS.values():
    _PREDECESSORS_BY_NAME[normalise_place_name(_entry.name)] = _entry


def lsoa_name_prefixes(place_code: str, place_name: str) -> tuple[str, ...]:
    """Normalised authority names that begin the 2011 LSOA names of a place."""
    entry = PLACE_PREDECESSORS.get(place_code) or _PREDECESSORS_BY_NAME.get(
        normalise_place_name(place_name)
    )
    names = entry.lsoa_prefixes if entry is not None else (place_name,)
    return tuple(normalise_place_name(n) for n in names)


def load_place_areas(reference_dir: Path, places: Mapping[str, str]) -> dict[str, Area]:
    """The LSOAs of each place (code → name), with IMD 2019 deciles and mid-2020 ages.

    LSOAs are sorted by code, so the result does not depend on row order in the files.
    """
    population_path = find_reference_file(reference_dir, POPULATION_FILE_NAME)
    imd_path = find_reference_file(reference_dir, IMD_FILE_NAME)
    wanted = {code: lsoa_name_prefixes(code, name) for code, name in places.items()}
    # A prefix may belong to two places asked for together (Allerdale and Cumberland).
    prefix_places: dict[str, list[str]] = {}
    for code, prefixes in wanted.items():
        for prefix in prefixes:
            prefix_places.setdefault(prefix, []).append(code)

    table = read_csv_columns(
        population_path,
        {"lsoa11_name": pa.string(), "lsoa11_code": pa.string()}
        | dict.fromkeys(AGE_COLUMNS, pa.float64()),
    )
    names = table.column("lsoa11_name").to_pylist()
    codes = table.column("lsoa11_code").to_pylist()
    rows_by_place: dict[str, list[int]] = {code: [] for code in places}
    for row, lsoa_name in enumerate(names):
        if lsoa_name is None:
            continue
        matched = prefix_places.get(normalise_place_name(_LSOA_SUFFIX.sub("", lsoa_name)), [])
        if matched and not codes[row]:
            raise InputError(f"{population_path}:{row + 2}", "column 'lsoa11_code': empty")
        for place in matched:
            rows_by_place[place].append(row)
    for code, rows in rows_by_place.items():
        if not rows:
            raise InputError(
                str(population_path),
                f"no LSOAs for place {code} ({places[code]!r}): no 'lsoa11_name' begins with "
                f"{' or '.join(repr(p) for p in wanted[code])}",
            )

    ages = np.column_stack(
        [_numbers(table.column(c), population_path, c, row_base=2) for c in AGE_COLUMNS]
    )
    deciles = _imd_deciles(imd_path, {codes[r] for rows in rows_by_place.values() for r in rows})

    out: dict[str, Area] = {}
    for code, rows in rows_by_place.items():
        rows.sort(key=lambda r: str(codes[r]))
        lsoa_codes = [str(codes[r]) for r in rows]
        missing = [c for c in lsoa_codes if c not in deciles]
        if missing:
            raise InputError(
                str(imd_path),
                f"no 'IMD_decile' for {len(missing)} LSOA(s) of place {code} "
                f"({places[code]!r}), e.g. {missing[0]}",
            )
        out[code] = Area(
            lsoa_codes=np.asarray(lsoa_codes, dtype=np.str_),
            imd_deciles=np.asarray([deciles[c] for c in lsoa_codes], dtype=np.int16),
            age_counts=ages[rows],
        )
    return out


def _imd_deciles(path: Path, lsoa_codes: Iterable[str | None]) -> dict[str, int]:
    table = read_csv_columns(path, {"lsoa11_code": pa.string(), "IMD_decile": pa.float64()})
    wanted = set(lsoa_codes)
    values = _numbers(table.column("IMD_decile"), path, "IMD_decile", row_base=2)
    out: dict[str, int] = {}
    for row, (code, value) in enumerate(
        zip(table.column("lsoa11_code").to_pylist(), values, strict=True)
    ):
        if code not in wanted:
            continue
        if value != round(value) or not 1 <= value <= 10:
            raise InputError(
                f"{path}:{row + 2}", f"column 'IMD_decile': {value:g} is not a decile 1 to 10"
            )
        out[code] = int(value)
    return out


def find_reference_file(reference_dir: Path, file_name: str) -> Path:
    """The path of `file_name` in `reference_dir`, or an `InputError` saying what is missing."""
    if not reference_dir.is_dir():
        raise InputError(str(reference_dir), "reference directory not found")
    path = reference_dir / file_name
    if not path.is_file():
        raise InputError(str(path), f"file not found: put {file_name} in the reference directory")
    return path


def read_header(path: Path) -> list[str]:
    """The column names of a CSV file (first row), or an `InputError` naming the file."""
    with csv_rows(path, "file", ()) as reader:
        return [name.strip() for name in reader.fieldnames or []]


def read_csv_columns(path: Path, columns: Mapping[str, Any]) -> Any:
    """Just `columns` (name → Arrow type) of a CSV file, as an Arrow table.

    Checks the header first, so a missing column is reported by name with the file.
    """
    header = read_header(path)
    missing = [c for c in columns if c not in header]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise InputError(str(path), f"missing column{'s' if len(missing) > 1 else ''} {names}")
    try:
        return pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=list(columns), column_types=dict(columns)
            ),
        )
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(str(path), f"not a readable CSV file ({err})") from err


def _numbers(column: Any, path: Path, name: str, *, row_base: int) -> NDArray[np.float64]:
    """A column of non-negative numbers; an empty cell or negative value names its line."""
    values: NDArray[np.float64] = np.asarray(
        pc.fill_null(column, float("nan")).to_numpy(), dtype=np.float64
    )
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        row = int(bad[0])
        shown = column[row].as_py()
        raise InputError(
            f"{path}:{row + row_base}",
            f"column {name!r}: {'empty' if shown is None else repr(shown)}, "
            "expected a non-negative number",
        )
    return values
