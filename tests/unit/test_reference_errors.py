"""Small-area and ethnicity loaders on tiny files: what they return, and how bad input is told."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from joinedup.errors import InputError
from joinedup.reference import (
    AGE_COLUMNS,
    ETHNICITY_FILE_NAME,
    IMD_FILE_NAME,
    POPULATION_FILE_NAME,
    load_place_areas,
    load_place_ethnicity,
)


def _population(rows: Sequence[tuple[str, str, float]], columns: Sequence[str] = ()) -> str:
    """A population file: each LSOA gets `people` at age 30 and nobody at other ages."""
    header = list(columns) or ["lsoa11_name", "lsoa11_code", "total_population", *AGE_COLUMNS]
    lines = [",".join(header)]
    for name, code, people in rows:
        ages = [str(people) if age == "30" else "0" for age in AGE_COLUMNS]
        lines.append(",".join([name, code, str(people), *ages][: len(header)]))
    return "\n".join(lines) + "\n"


def _imd(deciles: dict[str, int], column: str = "IMD_decile") -> str:
    lines = [f"lsoa11_code,{column},IMD_rank"]
    lines += [f"{code},{decile}.0,1.0" for code, decile in deciles.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    rows = [
        ("St. Helens 001A", "E01000003", 1500.0),
        ("St. Helens 001B", "E01000002", 1200.0),
        ("Wycombe 004C", "E01000010", 1800.0),
        ("Chiltern 002A", "E01000011", 1700.0),
        ("Wirral 001A", "E01000020", 1600.0),
    ]
    (tmp_path / POPULATION_FILE_NAME).write_text(_population(rows))
    deciles = {"E01000002": 2, "E01000003": 5, "E01000010": 9, "E01000011": 10, "E01000020": 3}
    (tmp_path / IMD_FILE_NAME).write_text(_imd(deciles))
    return tmp_path


def test_places_get_their_lsoas_by_name_ignoring_punctuation(reference: Path) -> None:
    areas = load_place_areas(reference, {"E08000013": "St Helens"})
    area = areas["E08000013"]
    assert area.lsoa_codes.tolist() == ["E01000002", "E01000003"]  # sorted by code
    assert area.imd_deciles.tolist() == [2, 5]
    assert area.age_counts.shape == (2, 91)
    assert area.age_counts[:, 30].tolist() == [1200.0, 1500.0]
    assert np.isclose(area.age_counts.sum(), 2700.0)


def test_a_reorganised_authority_takes_its_predecessors_lsoas(reference: Path) -> None:
    by_code = load_place_areas(reference, {"E06000060": "Buckinghamshire"})
    by_name = load_place_areas(reference, {"E99000001": "Buckinghamshire"})
    assert by_code["E06000060"].lsoa_codes.tolist() == ["E01000010", "E01000011"]
    assert by_name["E99000001"].lsoa_codes.tolist() == ["E01000010", "E01000011"]


def test_a_place_with_no_lsoas_is_named(reference: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_place_areas(reference, {"E08000012": "Liverpool", "E08000015": "Wirral"})
    message = str(caught.value)
    assert "E08000012" in message
    assert "Liverpool" in message
    assert POPULATION_FILE_NAME in message


def test_a_missing_population_column_is_named(tmp_path: Path) -> None:
    columns = ["lsoa11_name", "lsoa11_code", *AGE_COLUMNS[:-1]]  # no "90+"
    (tmp_path / POPULATION_FILE_NAME).write_text(
        _population([("Wirral 001A", "E01000020", 10.0)], columns)
    )
    (tmp_path / IMD_FILE_NAME).write_text(_imd({"E01000020": 3}))
    with pytest.raises(InputError, match=r"population_mid2020_lsoa11\.csv.*'90\+'"):
        load_place_areas(tmp_path, {"E08000015": "Wirral"})


def test_a_missing_imd_column_is_named(reference: Path) -> None:
    (reference / IMD_FILE_NAME).write_text(_imd({"E01000020": 3}, column="IMD_Decile"))
    with pytest.raises(InputError, match=r"imd2019_lsoa11\.csv.*'IMD_decile'"):
        load_place_areas(reference, {"E08000015": "Wirral"})


def test_an_lsoa_without_an_imd_decile_is_named(reference: Path) -> None:
    (reference / IMD_FILE_NAME).write_text(_imd({"E01000002": 2}))
    with pytest.raises(InputError, match=r"IMD_decile.*E08000013.*E01000003"):
        load_place_areas(reference, {"E08000013": "St. Helens"})


def test_an_empty_age_cell_names_its_line(reference: Path) -> None:
    text = (reference / POPULATION_FILE_NAME).read_text().splitlines()
    cells = text[2].split(",")
    cells[3] = ""  # age 0 of the second LSOA
    text[2] = ",".join(cells)
    (reference / POPULATION_FILE_NAME).write_text("\n".join(text) + "\n")
    with pytest.raises(InputError, match=r"population_mid2020_lsoa11\.csv:3: column '0': empty"):
        load_place_areas(reference, {"E08000015": "Wirral"})


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=POPULATION_FILE_NAME):
        load_place_areas(tmp_path, {"E08000015": "Wirral"})
    with pytest.raises(InputError, match=ETHNICITY_FILE_NAME):
        load_place_ethnicity(tmp_path, ["E08000015"])


def _ethnicity(rows: Sequence[tuple[str, str, float]]) -> str:
    lines = ["ltla21_code,ltla21_name,ethnic_group,value"]
    lines += [f'{code},Somewhere,"{group}",{value}' for code, group, value in rows]
    return "\n".join(lines) + "\n"


def test_ethnicity_maps_census_groups_to_nhs_categories(tmp_path: Path) -> None:
    white_british = "White: English, Welsh, Scottish, Northern Irish or British"
    rows = [
        ("E07000026", f"{white_british} (number)", 60.0),
        ("E07000026", "White: Roma (number)", 10.0),
        ("E07000026", "White: Other White (number)", 10.0),
        ("E07000026", "Other ethnic group: Arab (number)", 20.0),
        ("E07000026", "White: Roma (percent)", 10.0),
        ("E07000028", f"{white_british} (number)", 100.0),
        ("E07000029", f"{white_british} (number)", 100.0),
    ]
    (tmp_path / ETHNICITY_FILE_NAME).write_text(_ethnicity(rows))
    shares = load_place_ethnicity(tmp_path, ["E07000026", "E06000063", "E06000065"])
    assert shares["E07000026"] == pytest.approx({"A": 0.6, "C": 0.2, "S": 0.2})
    # Cumberland (2023) combines Allerdale, Carlisle and Copeland (2021).
    assert shares["E06000063"] == pytest.approx({"A": 260 / 300, "C": 20 / 300, "S": 20 / 300})
    # North Yorkshire's predecessors are absent: left to England's mix.
    assert "E06000065" not in shares


def test_ethnicity_missing_column_and_unknown_group_are_named(tmp_path: Path) -> None:
    path = tmp_path / ETHNICITY_FILE_NAME
    path.write_text("ltla21_code,ethnic_group,count\nE08000015,White: Irish (number),5\n")
    with pytest.raises(InputError, match=r"ethnicity_census2021_ltla21\.csv.*'value'"):
        load_place_ethnicity(tmp_path, ["E08000015"])
    path.write_text(_ethnicity([("E08000015", "White: Martian (number)", 5.0)]))
    with pytest.raises(InputError, match=r"csv:2: column 'ethnic_group'.*Martian"):
        load_place_ethnicity(tmp_path, ["E08000015"])
