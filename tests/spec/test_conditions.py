"""Spec: condition prevalence from diagnoses and a codelist."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
from spec_tables import diagnosis, p, person, rows

from joinedup.warehouse.analytics import BROAD_BANDS, run
from joinedup.warehouse.engines import Engine

REF = date(2023, 12, 31)
COLUMNS = ["condition", "people", "denominator", "prevalence"]


def _load(engine: Engine) -> None:
    engine.load(
        "codelist",
        pa.table(
            {
                "condition": ["diabetes", "diabetes", "asthma", "copd"],
                "code_system": ["icd10", "snomed", "icd10", "icd10"],
                "code": ["E11", "44054006", "J45", "J44"],
            }
        ),
    )
    engine.load(
        "person",
        person(
            p(1, (1950, 1), "male"),  # 73
            p(2, (1980, 1)),  # 43
            p(3, (1980, 1)),  # 43
            p(4, (1980, 1), died=date(2023, 6, 1)),
            p(5, (1980, 1), opted_out=True),
            p(6, (2015, 1)),  # 8
            p(7, (1980, 1), "male"),  # 43
        ),
    )
    diagnoses = [
        (1, date(2020, 1, 1), "icd10", "E11"),  # diabetes
        (2, REF, "snomed", "44054006"),  # diabetes, recorded on the ref date
        (3, date(2024, 1, 1), "icd10", "E11"),  # after the ref date: not yet a case
        (4, date(2020, 1, 1), "icd10", "E11"),  # dead
        (5, date(2020, 1, 1), "icd10", "J45"),  # opted out
        (6, date(2019, 1, 1), "icd10", "J45"),  # asthma, recorded twice
        (6, date(2021, 1, 1), "icd10", "J45"),
        (6, date(2021, 1, 1), "snomed", "E11"),  # right code, wrong code system
    ]
    engine.load("diagnosis", diagnosis(diagnoses, "primary_care", "P1"))


def test_condition_prevalence(engine: Engine) -> None:
    _load(engine)
    result = run(engine, "condition_prevalence", codelist="codelist", ref_date=REF)
    assert rows(result, COLUMNS) == [
        ("asthma", 1, 5, 0.2),
        ("copd", 0, 5, 0.0),
        ("diabetes", 2, 5, 0.4),
    ]


def test_condition_prevalence_with_opt_outs(engine: Engine) -> None:
    _load(engine)
    result = run(
        engine,
        "condition_prevalence",
        codelist="codelist",
        ref_date=REF,
        exclude_opted_out=False,
    )
    assert rows(result, COLUMNS) == [
        ("asthma", 2, 6, 0.333333),
        ("copd", 0, 6, 0.0),
        ("diabetes", 2, 6, 0.333333),
    ]


def test_condition_prevalence_by_age_sex(engine: Engine) -> None:
    _load(engine)
    result = run(
        engine,
        "condition_prevalence_by_age_sex",
        codelist="codelist",
        ref_date=REF,
        bands=BROAD_BANDS,
    )
    columns = ["condition", "age_band", "sex", "people", "denominator", "prevalence"]
    assert rows(result, columns) == [
        ("asthma", "0-17", "female", 1, 1, 1.0),
        ("asthma", "18-64", "female", 0, 2, 0.0),
        ("asthma", "18-64", "male", 0, 1, 0.0),
        ("asthma", "65-74", "male", 0, 1, 0.0),
        ("copd", "0-17", "female", 0, 1, 0.0),
        ("copd", "18-64", "female", 0, 2, 0.0),
        ("copd", "18-64", "male", 0, 1, 0.0),
        ("copd", "65-74", "male", 0, 1, 0.0),
        ("diabetes", "0-17", "female", 0, 1, 0.0),
        ("diabetes", "18-64", "female", 1, 2, 0.5),
        ("diabetes", "18-64", "male", 0, 1, 0.0),
        ("diabetes", "65-74", "male", 1, 1, 1.0),
    ]
