"""Real small-area shape of Cheshire and Merseyside's places: ONS LSOA populations, IMD 2019 and
Census 2021 ethnic groups, as the synthetic population generator receives them."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from joinedup.footprint import footprint_from_reference
from joinedup.reference import (
    POPULATION_FILE_NAME,
    Area,
    load_place_areas,
    load_place_ethnicity,
    load_practices_from_dir,
)

# Counts of 2011 LSOAs per place, read from population_mid2020_lsoa11.csv.
QYG_LSOA_COUNTS = {
    "Cheshire East": 234,
    "Cheshire West and Chester": 212,
    "Halton": 79,
    "Knowsley": 98,
    "Liverpool": 298,
    "St. Helens": 119,
    "Sefton": 189,
    "Warrington": 127,
    "Wirral": 206,
}


@pytest.fixture(scope="module")
def qyg_places(reference_dir: Path) -> dict[str, str]:
    footprint = footprint_from_reference(load_practices_from_dir(reference_dir), "QYG")
    return {place.code: place.name for place in footprint.places}


@pytest.fixture(scope="module")
def areas(reference_dir: Path, qyg_places: dict[str, str]) -> dict[str, Area]:
    return load_place_areas(reference_dir, qyg_places)


@pytest.fixture(scope="module")
def ethnicity(reference_dir: Path, qyg_places: dict[str, str]) -> dict[str, dict[str, float]]:
    return load_place_ethnicity(reference_dir, qyg_places)


def _by_name(qyg_places: dict[str, str], name: str) -> str:
    return next(code for code, place_name in qyg_places.items() if place_name == name)


@pytest.mark.reference
def test_every_place_gets_its_lsoas(areas: dict[str, Area], qyg_places: dict[str, str]) -> None:
    assert set(areas) == set(qyg_places)
    counts = {qyg_places[code]: len(area.lsoa_codes) for code, area in areas.items()}
    assert counts == QYG_LSOA_COUNTS
    for area in areas.values():
        assert area.age_counts.shape == (len(area.lsoa_codes), 91)
        assert len(set(area.lsoa_codes.tolist())) == len(area.lsoa_codes)
        assert all(code.startswith("E01") for code in area.lsoa_codes.tolist())


@pytest.mark.reference
def test_liverpool_population_matches_the_file(
    reference_dir: Path, areas: dict[str, Area], qyg_places: dict[str, str]
) -> None:
    with (reference_dir / POPULATION_FILE_NAME).open(encoding="utf-8", newline="") as handle:
        file_total = sum(
            float(row["total_population"])
            for row in csv.DictReader(handle)
            if re.fullmatch(r"Liverpool \d{3}[A-Z]", row["lsoa11_name"])
        )
    liverpool = areas[_by_name(qyg_places, "Liverpool")]
    total = float(liverpool.age_counts.sum())
    assert 475_000 < total < 525_000  # ONS mid-2020: about 500,000 people
    assert total == pytest.approx(file_total, rel=0.05)


@pytest.mark.reference
def test_imd_deciles_show_knowsley_more_deprived_than_cheshire_east(
    areas: dict[str, Area], qyg_places: dict[str, str]
) -> None:
    for area in areas.values():
        assert area.imd_deciles.dtype == np.int16
        assert area.imd_deciles.min() >= 1
        assert area.imd_deciles.max() <= 10
    knowsley = areas[_by_name(qyg_places, "Knowsley")].imd_deciles.mean()
    cheshire_east = areas[_by_name(qyg_places, "Cheshire East")].imd_deciles.mean()
    assert knowsley < cheshire_east


@pytest.mark.reference
def test_ethnic_mix_per_place(
    ethnicity: dict[str, dict[str, float]], qyg_places: dict[str, str]
) -> None:
    assert set(ethnicity) == set(qyg_places)
    for shares in ethnicity.values():
        assert sum(shares.values()) == pytest.approx(1.0)
        assert set(shares) <= set("ABCDEFGHJKLMNPRS")
        assert all(0.0 <= share <= 1.0 for share in shares.values())
    liverpool = ethnicity[_by_name(qyg_places, "Liverpool")]
    wirral = ethnicity[_by_name(qyg_places, "Wirral")]
    assert liverpool["A"] < wirral["A"]


@pytest.mark.reference
def test_every_practice_place_in_england_gets_lsoas_once(reference_dir: Path) -> None:
    places = {p.lad_code: p.ltla_name for p in load_practices_from_dir(reference_dir)}
    areas = load_place_areas(reference_dir, places)
    codes = [code for area in areas.values() for code in area.lsoa_codes.tolist()]
    assert len(codes) == len(set(codes)) == 32_844  # every 2011 LSOA in England, once


@pytest.mark.reference
def test_authorities_formed_in_2023_combine_their_predecessors(reference_dir: Path) -> None:
    new = {"E06000063": "Cumberland", "E06000065": "North Yorkshire", "E06000066": "Somerset"}
    areas = load_place_areas(reference_dir, new)
    assert {code: len(area.lsoa_codes) for code, area in areas.items()} == {
        "E06000063": 177,
        "E06000065": 373,
        "E06000066": 327,
    }
    ethnicity = load_place_ethnicity(reference_dir, [*new, "E99999999"])
    assert set(ethnicity) == set(new)  # an unknown code is left to England's mix
    assert sum(ethnicity["E06000065"].values()) == pytest.approx(1.0)
