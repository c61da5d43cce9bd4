"""Spec: the board summary by place, and empty input for every analytic."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from spec_tables import activity, footprint, p, person, rows

import joinedup.population  # noqa: F401 - registers the population analytics
from joinedup.warehouse.analytics import ANALYTICS, run
from joinedup.warehouse.engines import Engine
from joinedup.warehouse.schema import TABLES

REF = date(2023, 12, 31)
COLUMNS = [
    "place_code",
    "place_name",
    "people",
    "aged_65_plus",
    "deaths_last_year",
    "emergency_admissions_last_year",
    "emergency_admissions_per_1000",
    "opted_out_share",
]


def test_system_summary(engine: Engine) -> None:
    footprint(engine)
    engine.load(
        "person",
        person(
            p(1, (1950, 1)),
            p(2, (1990, 1), practice="P2", opted_out=True),
            p(3, (1980, 1), died=date(2023, 6, 1)),
            p(4, (1980, 1), died=date(2022, 12, 31)),  # a year and a day before
            p(5, (1958, 12)),  # 65 in December 2023
            p(6, (2000, 1), practice="P3"),
            p(7, (2000, 1), practice="P3"),
            p(8, (2000, 1), practice="P3"),
        ),
    )
    admission = "emergency_admission"
    engine.load(
        "activity",
        activity(
            (1, 1, admission, date(2023, 6, 1), Decimal("1"), 1),
            (2, 1, admission, date(2023, 6, 1), Decimal("1"), 1),
            (3, 3, admission, date(2023, 5, 1), Decimal("1"), 1),  # died later
            (4, 1, admission, date(2022, 12, 31), Decimal("1"), 1),  # over a year before
            (5, 6, admission, date(2023, 1, 1), Decimal("1"), 1),
            (6, 6, "gp_consultation", date(2023, 1, 1), Decimal("1"), None),
        ),
    )
    # Person 2 has a national data opt-out: left out of every figure but the opt-out share.
    assert rows(run(engine, "system_summary", ref_date=REF), COLUMNS) == [
        ("E1", "Northby", 2, 2, 1, 3, 1500.0, 0.333333),
        ("E2", "Southby", 3, 0, 0, 1, 333.3333, 0.0),
    ]
    everyone = run(engine, "system_summary", ref_date=REF, exclude_opted_out=False)
    assert rows(everyone, COLUMNS) == [
        ("E1", "Northby", 3, 2, 1, 3, 1000.0, 0.333333),
        ("E2", "Southby", 3, 0, 0, 1, 333.3333, 0.0),
    ]


PARAMS: dict[str, dict[str, Any]] = {
    "population_by_place": {"ref_date": REF},
    "age_sex_pyramid": {"ref_date": REF},
    "condition_prevalence": {"codelist": "codelist", "ref_date": REF},
    "condition_prevalence_by_age_sex": {"codelist": "codelist", "ref_date": REF},
    "activity_rates": {"start_date": date(2023, 1, 1), "end_date": REF},
    "activity_summary": {"start_date": date(2023, 1, 1), "end_date": REF},
    "deaths_by_year_age_sex": {},
    "mortality_rates": {},
    "rtt_waiting_list": {"ref_date": REF},
    "system_summary": {"ref_date": REF},
    "charlson_distribution": {"ref_date": REF},
}


def test_every_analytic_has_an_empty_input_spec() -> None:
    assert set(PARAMS) == set(ANALYTICS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_empty_input_gives_empty_output(engine: Engine, name: str) -> None:
    for t in ("person", "practice", "place", "activity", "diagnosis", "rtt_pathway"):
        engine.load(t, TABLES[t].arrow_schema().empty_table())
    engine.load(
        "codelist",
        pa.table({"condition": ["asthma"], "code_system": ["icd10"], "code": ["J45"]}),
    )
    result = run(engine, name, **PARAMS[name])
    assert result.num_rows == 0
    assert result.num_columns > 0
