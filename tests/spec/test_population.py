"""Spec: headcounts by place and the age-sex pyramid."""

from __future__ import annotations

from datetime import date

import pytest
from spec_tables import footprint, p, person, rows

from joinedup.errors import ConfigurationError
from joinedup.warehouse.analytics import BROAD_BANDS, age_sex_pyramid, run
from joinedup.warehouse.engines import Engine

REF = date(2023, 12, 31)


def _people(engine: Engine) -> None:
    footprint(engine)
    engine.load(
        "person",
        person(
            p(1, (1980, 6)),  # alive, Northby
            p(2, (1950, 3), practice="P2", died=date(2023, 5, 1)),  # died before ref
            p(3, (1990, 1), practice="P3"),  # alive, Southby
            p(4, (2000, 7), opted_out=True),  # opted out, Northby
            p(5, (1960, 2), practice="P3", died=date(2024, 1, 15)),  # dies after ref: counts
            p(6, (2024, 2)),  # not yet born at ref
            p(7, (1970, 1), died=REF),  # died on the ref date: not alive at it
        ),
    )


def test_population_by_place_counts_the_living_and_excludes_opt_outs(engine: Engine) -> None:
    _people(engine)
    result = run(engine, "population_by_place", ref_date=REF)
    assert rows(result, ["place_code", "place_name", "people"]) == [
        ("E1", "Northby", 1),
        ("E2", "Southby", 2),
    ]


def test_population_by_place_includes_opt_outs_when_asked(engine: Engine) -> None:
    _people(engine)
    result = run(engine, "population_by_place", ref_date=REF, exclude_opted_out=False)
    assert rows(result, ["place_code", "place_name", "people"]) == [
        ("E1", "Northby", 2),
        ("E2", "Southby", 2),
    ]


def _pyramid_people(engine: Engine) -> None:
    engine.load(
        "person",
        person(
            p(1, (1979, 6)),  # 45 in June 2024: birthday month counts as reached
            p(2, (1979, 7), "male"),  # 44: birthday not yet reached
            p(3, (2019, 6)),  # 5
            p(4, (2019, 7)),  # 4
            p(5, (1930, 1), "male"),  # 94
            p(6, (1934, 7), "male"),  # 89
        ),
    )


def test_age_sex_pyramid_uses_month_of_birth(engine: Engine) -> None:
    _pyramid_people(engine)
    result = run(engine, "age_sex_pyramid", ref_date=date(2024, 6, 15))
    assert rows(result, ["age_band", "sex", "people"]) == [
        ("0-4", "female", 1),
        ("5-9", "female", 1),
        ("40-44", "male", 1),
        ("45-49", "female", 1),
        ("85-89", "male", 1),
        ("90+", "male", 1),
    ]


def test_age_sex_pyramid_with_broad_bands(engine: Engine) -> None:
    _pyramid_people(engine)
    result = run(engine, "age_sex_pyramid", ref_date=date(2024, 6, 15), bands=BROAD_BANDS)
    assert rows(result, ["age_band", "sex", "people"]) == [
        ("0-17", "female", 2),
        ("18-64", "female", 1),
        ("18-64", "male", 1),
        ("85+", "male", 2),
    ]


@pytest.mark.parametrize("bands", [(), (5, 10), (0, 10, 10)])
def test_age_bands_must_start_at_zero_and_increase(bands: tuple[int, ...]) -> None:
    with pytest.raises(ConfigurationError, match="age band"):
        age_sex_pyramid(REF, bands=bands)
