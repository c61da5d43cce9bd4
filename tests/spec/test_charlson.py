"""Spec: the Charlson Comorbidity Index (Quan 2005 ICD-10 coding) on every engine.

Each expected score is worked by hand from the weights in docs/population.md.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pyarrow as pa
import pytest
from spec_tables import diagnosis, p, person, rows

from joinedup.errors import ConfigurationError
from joinedup.population import CONDITION_NAMES, charlson_from_warehouse, score_table
from joinedup.warehouse.analytics import run
from joinedup.warehouse.engines import Engine

SHORT = {
    "myocardial_infarction": "ami",
    "congestive_heart_failure": "chf",
    "mild_liver_disease": "mld",
    "diabetes_without_complications": "diab",
    "diabetes_with_complications": "diabwc",
    "renal_disease": "rend",
    "any_malignancy": "canc",
    "moderate_or_severe_liver_disease": "msld",
    "metastatic_solid_tumour": "metacanc",
    "aids_hiv": "aids",
}

CODES: list[tuple[int, str | None, float | None]] = [
    (1, "I21.0", 55),  # myocardial infarction, dotted
    (1, "k70.4", 55),  # moderate/severe liver disease, lower case
    (2, "E11.9", 80),  # diabetes without complications ...
    (2, "E112", 80),  # ... and with: only the latter scores
    (3, "K700", 49),  # mild liver disease ...
    (3, "K70.4", 49),  # ... with moderate/severe: only the latter scores
    (4, "C50.9", 60),  # any malignancy ...
    (4, "C780", 60),  # ... with a metastatic solid tumour: only the latter scores
    (5, "Z99 2", 79.5),  # renal disease, with a space
    (5, "B20", 79.5),  # AIDS/HIV
    (6, "R69", 70),  # unrelated
    (6, "I2", 70),  # too short for any prefix
    (6, "E11", 70),  # diabetes needs the fourth character
    (6, "C7", 70),
    (7, None, None),  # no code, no age
    (8, "I50", 50),  # heart failure three times over
    (8, "I50.0", 50),
    (8, "I500", 50),
]


def _flags(**on: int) -> dict[str, int]:
    return {name: on.get(SHORT.get(name, name), 0) for name in CONDITION_NAMES}


# person: (flags, quan score, charlson score, age points)
EXPECTED: dict[int, tuple[dict[str, int], int, int, int | None]] = {
    1: (_flags(ami=1, msld=1), 0 + 4, 1 + 3, 1),
    2: (_flags(diab=1, diabwc=1), 1, 2, 4),
    3: (_flags(mld=1, msld=1), 4, 3, 0),
    4: (_flags(canc=1, metacanc=1), 6, 6, 2),
    5: (_flags(rend=1, aids=1), 1 + 4, 2 + 6, 3),
    6: (_flags(), 0, 0, 3),
    7: (_flags(), 0, 0, None),
    8: (_flags(chf=1), 2, 1, 1),
}
COLUMNS = ["person_id", *CONDITION_NAMES, "charlson_score", "charlson_age_adjusted"]


def _input(with_age: bool = True) -> pa.Table:
    data: dict[str, Any] = {
        "person_id": pa.array([r[0] for r in CODES], pa.int64()),
        "code": pa.array([r[1] for r in CODES], pa.string()),
    }
    if with_age:
        data["age"] = pa.array([r[2] for r in CODES], pa.float64())
    return pa.table(data)


def _expected(weighting: str, with_age: bool = True) -> list[tuple[Any, ...]]:
    out = []
    for pid, (flags, quan, charlson, points) in EXPECTED.items():
        score = quan if weighting == "quan" else charlson
        adjusted = score + points if with_age and points is not None else None
        out.append((pid, *flags.values(), score, adjusted))
    return out


@pytest.mark.parametrize("weighting", ["quan", "charlson"])
def test_flags_scores_and_age_adjustment(engine: Engine, weighting: str) -> None:
    result = score_table(engine, _input(), age=True, weighting=weighting)
    assert rows(result, COLUMNS) == _expected(weighting)
    for name in (*CONDITION_NAMES, "charlson_score", "charlson_age_adjusted"):
        assert result.schema.field(name).type == pa.int32(), name


def test_without_ages_the_adjusted_score_is_null(engine: Engine) -> None:
    result = score_table(engine, _input(with_age=False), age=False)
    assert rows(result, COLUMNS) == _expected("quan", with_age=False)


def test_an_unknown_weighting_is_refused(engine: Engine) -> None:
    with pytest.raises(ConfigurationError, match="weighting"):
        score_table(engine, _input(), age=True, weighting="elixhauser")


REF = date(2023, 12, 31)


def _warehouse(engine: Engine) -> None:
    engine.load(
        "person",
        person(
            p(1, (1950, 6)),  # 73 at REF: 3 age points
            p(2, (1980, 1)),  # 43
            p(3, (1960, 1), died=date(2023, 1, 1)),
            p(4, (1960, 1), opted_out=True),
            p(5, (1990, 1)),  # no diagnoses at all
        ),
    )
    diagnoses = [
        (1, date(2020, 1, 1), "icd10", "I50"),  # heart failure: 2
        (1, date(2021, 1, 1), "icd10", "C78.0"),  # metastatic: 6
        (1, date(2024, 1, 1), "icd10", "G30"),  # after REF: not yet
        (2, date(2020, 1, 1), "snomed", "E112"),  # right code, wrong system
        (2, date(2020, 1, 1), "icd10", "J45"),  # chronic pulmonary disease: 1
        (3, date(2020, 1, 1), "icd10", "B20"),  # dead
        (4, date(2020, 1, 1), "icd10", "B20"),  # opted out
    ]
    engine.load("diagnosis", diagnosis(diagnoses, "inpatient", "R1"))


def test_warehouse_scores_people_alive_at_the_reference_date(engine: Engine) -> None:
    _warehouse(engine)
    result = engine.execute(charlson_from_warehouse(REF))
    got = [
        (r["person_id"], r["congestive_heart_failure"], r["chronic_pulmonary_disease"],
         r["charlson_score"], r["charlson_age_adjusted"])
        for r in result.to_pylist()
    ]  # fmt: skip
    assert got == [(1, 1, 0, 8, 11), (2, 0, 1, 1, 1), (5, 0, 0, 0, 0)]


def test_distribution_counts_everyone_in_a_band(engine: Engine) -> None:
    _warehouse(engine)
    result = run(engine, "charlson_distribution", ref_date=REF)
    assert rows(result, ["charlson_band", "people"]) == [
        ("0", 1),
        ("1-2", 1),
        ("3-4", 0),
        ("5+", 1),
    ]
    adjusted = run(engine, "charlson_distribution", ref_date=REF, age_adjusted=True)
    assert [r["people"] for r in adjusted.to_pylist()] == [1, 1, 0, 1]
    everyone = run(engine, "charlson_distribution", ref_date=REF, exclude_opted_out=False)
    assert [r["people"] for r in everyone.to_pylist()] == [1, 1, 1, 1]  # AIDS/HIV scores 4
    assert result.schema.field("people").type == pa.int64()
