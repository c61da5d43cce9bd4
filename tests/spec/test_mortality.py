"""Spec: deaths by year, age and sex, and mortality rates per 100,000."""

from __future__ import annotations

from datetime import date

from spec_tables import p, person, rows

from joinedup.warehouse.analytics import run
from joinedup.warehouse.engines import Engine

DEATHS = ["year", "age_band", "sex", "deaths"]
RATES = ["year", "age_band", "sex", "deaths", "people", "rate_per_100000"]


def _load(engine: Engine) -> None:
    engine.load(
        "person",
        person(
            p(1, (1950, 6), "male", died=date(2022, 3, 10)),  # 71 at death
            p(2, (1950, 2), "male", died=date(2022, 3, 10)),  # 72 at death
            p(3, (1945, 3), died=date(2023, 3, 1)),  # 78 at death: birthday month reached
            p(4, (1980, 1)),
            p(5, (1940, 1), died=date(2023, 7, 1), opted_out=True),  # 83 at death
            p(6, (1946, 1)),
            p(7, (1946, 1)),
        ),
    )


def test_deaths_by_year_age_sex(engine: Engine) -> None:
    _load(engine)
    assert rows(run(engine, "deaths_by_year_age_sex"), DEATHS) == [
        (2022, "70-74", "male", 2),
        (2023, "75-79", "female", 1),
    ]


def test_deaths_by_year_age_sex_with_opt_outs(engine: Engine) -> None:
    _load(engine)
    result = run(engine, "deaths_by_year_age_sex", exclude_opted_out=False)
    assert rows(result, DEATHS) == [
        (2022, "70-74", "male", 2),
        (2023, "75-79", "female", 1),
        (2023, "80-84", "female", 1),
    ]


def test_mortality_rates_use_people_alive_at_the_start_of_the_year(engine: Engine) -> None:
    # Ages are on 31 December of the year before: 2021 for 2022, 2022 for 2023.
    _load(engine)
    assert rows(run(engine, "mortality_rates"), RATES) == [
        (2022, "40-44", "female", 0, 1, 0.0),
        (2022, "70-74", "male", 2, 2, 100000.0),
        (2022, "75-79", "female", 0, 3, 0.0),
        (2023, "40-44", "female", 0, 1, 0.0),
        (2023, "75-79", "female", 1, 3, 33333.33),
    ]
