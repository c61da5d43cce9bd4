"""The shipped population-health code lists (phm_conditions) are well formed and complete."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from importlib import resources
from typing import Any

import pytest

HEADER = ["group", "code_system", "code", "description", "source"]

CMS_GROUPS = (
    "alcohol_problems",
    "anxiety_depression",
    "asthma",
    "atrial_fibrillation",
    "cancer",
    "chronic_kidney_disease",
    "connective_tissue_disorder",
    "copd",
    "coronary_heart_disease",
    "dementia",
    "diabetes",
    "epilepsy",
    "hearing_loss",
    "heart_failure",
    "hypertension",
    "irritable_bowel",
    "psychosis_bipolar",
    "stroke_tia",
)
SNOMED_ONLY_GROUPS = ("frailty_mild", "frailty_moderate", "frailty_severe")
SEGMENT_GROUPS = (
    *SNOMED_ONLY_GROUPS,
    "palliative_care",
    "secondary_cancer",
    "liver_failure",
    "learning_disability",
    "physical_disability",
    "pregnancy",
    "fall",
)
ALL_GROUPS = (*CMS_GROUPS, *SEGMENT_GROUPS)

# Codes the synthetic data generator (joinedup.synth.params) emits, by group.
GENERATOR_CODES: dict[str, dict[str, tuple[str, ...]]] = {
    "hypertension": {"snomed": ("38341003", "1201005"), "icd10": ("I10",)},
    "diabetes": {"snomed": ("44054006", "46635009"), "icd10": ("E11", "E10")},
    "asthma": {"snomed": ("195967001",), "icd10": ("J45",)},
    "coronary_heart_disease": {"snomed": ("53741008", "22298006"), "icd10": ("I25", "I21")},
    "atrial_fibrillation": {"snomed": ("49436004",), "icd10": ("I48",)},
    "chronic_kidney_disease": {"snomed": ("433144002", "431857002"), "icd10": ("N183",)},
    "copd": {"snomed": ("13645005",), "icd10": ("J44",)},
    "stroke_tia": {"snomed": ("230690007", "266257000"), "icd10": ("I63", "G45")},
    "heart_failure": {"snomed": ("84114007",), "icd10": ("I50",)},
    "anxiety_depression": {"snomed": ("35489007",), "icd10": ("F32", "F33")},
    "dementia": {"snomed": ("52448006", "26929004"), "icd10": ("F03", "G30")},
    "cancer": {
        "snomed": ("363346000", "254837009", "363406005"),
        "icd10": ("C50", "C18", "C34", "C61"),
    },
    "psychosis_bipolar": {"snomed": ("58214004", "13746004"), "icd10": ("F20", "F31")},
    "epilepsy": {"snomed": ("84757009",), "icd10": ("G40",)},
    "learning_disability": {"snomed": ("110359009",), "icd10": ("F79",)},
    "hearing_loss": {"snomed": ("15188001",), "icd10": ("H90", "H91")},
    "irritable_bowel": {"snomed": ("10743008",), "icd10": ("K58",)},
    "connective_tissue_disorder": {"snomed": ("69896004", "200936003"), "icd10": ("M06", "M32")},
    "alcohol_problems": {"snomed": ("7200002",), "icd10": ("F10",)},
    "frailty_mild": {"snomed": ("925791000000100",), "icd10": ()},
    "frailty_moderate": {"snomed": ("925831000000107",), "icd10": ()},
    "frailty_severe": {"snomed": ("925861000000102",), "icd10": ()},
    "palliative_care": {"snomed": ("103735009",), "icd10": ()},
    "pregnancy": {"snomed": ("77386006",), "icd10": ()},
}

ICD10_PREFIX = re.compile(r"^[A-Z][0-9]{2}[0-9A-Z]{0,2}$")

# Verhoeff dihedral-group tables, as used by SNOMED CT check digits.
_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def verhoeff_valid(number: str) -> bool:
    """True when the last digit of `number` is its Verhoeff check digit."""
    check = 0
    for position, digit in enumerate(reversed(number)):
        check = _D[check][_P[position % 8][int(digit)]]
    return check == 0


def _folder() -> Any:
    return resources.files("joinedup.population").joinpath("codelists")


def _read_csv() -> tuple[list[str], list[dict[str, str]]]:
    text = _folder().joinpath("phm_conditions.csv").read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return _read_csv()[1]


@pytest.fixture(scope="module")
def meta() -> dict[str, Any]:
    text = _folder().joinpath("phm_conditions.meta.json").read_text(encoding="utf-8")
    return json.loads(text)


def _codes(rows: list[dict[str, str]], group: str, system: str) -> set[str]:
    return {r["code"] for r in rows if r["group"] == group and r["code_system"] == system}


def test_verhoeff_helper_accepts_and_rejects_known_ids() -> None:
    assert verhoeff_valid("38341003")
    assert verhoeff_valid("925791000000100")
    assert not verhoeff_valid("38341004")
    assert not verhoeff_valid("925791000000101")


def test_csv_has_exact_header_and_complete_rows() -> None:
    header, rows = _read_csv()
    assert header == HEADER
    assert rows
    for row in rows:
        assert all(row[column] and row[column].strip() == row[column] for column in HEADER), row
        assert row["code_system"] in {"snomed", "icd10"}, row


def test_only_known_groups_are_present(rows: list[dict[str, str]]) -> None:
    assert {r["group"] for r in rows} == set(ALL_GROUPS)


@pytest.mark.parametrize("group", ALL_GROUPS)
def test_every_group_has_rows(rows: list[dict[str, str]], group: str) -> None:
    assert _codes(rows, group, "snomed"), f"{group} has no SNOMED CT rows"
    if group in SNOMED_ONLY_GROUPS:
        assert not _codes(rows, group, "icd10"), f"{group} should be SNOMED CT only"
    else:
        assert _codes(rows, group, "icd10"), f"{group} has no ICD-10 rows"


def test_snomed_ids_are_well_formed_with_valid_check_digit(rows: list[dict[str, str]]) -> None:
    bad = [
        (r["group"], r["code"])
        for r in rows
        if r["code_system"] == "snomed"
        and not (r["code"].isdigit() and 6 <= len(r["code"]) <= 18 and verhoeff_valid(r["code"]))
    ]
    assert not bad


def test_icd10_prefixes_are_well_formed(rows: list[dict[str, str]]) -> None:
    bad = [
        (r["group"], r["code"])
        for r in rows
        if r["code_system"] == "icd10" and not ICD10_PREFIX.match(r["code"])
    ]
    assert not bad


def test_no_duplicate_rows(rows: list[dict[str, str]]) -> None:
    keys = Counter((r["group"], r["code_system"], r["code"]) for r in rows)
    assert [key for key, count in keys.items() if count > 1] == []


def test_group_sizes_stay_within_the_documented_limit(rows: list[dict[str, str]]) -> None:
    sizes = Counter(r["group"] for r in rows if r["code_system"] == "snomed")
    assert max(sizes.values()) <= 150


def test_sources_and_group_labels_are_documented(
    rows: list[dict[str, str]], meta: dict[str, Any]
) -> None:
    assert meta["name"] == "phm_conditions"
    assert meta["version"] == "2026.11.0"
    assert set(meta["groups"]) == set(ALL_GROUPS)
    for group, info in meta["groups"].items():
        assert info["label"].strip() and info["definition"].strip(), group
    assert {r["source"] for r in rows} <= set(meta["sources"])
    for key, source in meta["sources"].items():
        for field in ("title", "publisher", "url", "version_or_date", "used_for"):
            assert source[field], (key, field)
        assert set(source["used_for"]) <= set(ALL_GROUPS), key
    assert meta["notes"]


def test_row_sources_match_the_groups_each_source_is_used_for(
    rows: list[dict[str, str]], meta: dict[str, Any]
) -> None:
    mismatched = {
        (r["source"], r["group"])
        for r in rows
        if r["group"] not in meta["sources"][r["source"]]["used_for"]
    }
    assert not mismatched


@pytest.mark.parametrize("group", sorted(GENERATOR_CODES))
def test_synthetic_generator_codes_are_in_the_right_group(
    rows: list[dict[str, str]], group: str
) -> None:
    for system, codes in GENERATOR_CODES[group].items():
        missing = set(codes) - _codes(rows, group, system)
        assert not missing, (group, system, missing)


def test_ckd_is_stages_3_to_5_only(rows: list[dict[str, str]]) -> None:
    # 431856006 (CKD stage 2) and the whole N18 category (all stages) are not stage 3-5.
    assert _codes(rows, "chronic_kidney_disease", "icd10") == {"N183", "N184", "N185"}
    assert "431856006" not in _codes(rows, "chronic_kidney_disease", "snomed")


def test_the_generator_writes_only_listed_condition_codes() -> None:
    from joinedup.synth import params

    listed = {(r["code_system"], r["code"]) for r in _read_csv()[1]}
    for condition in params.CONDITIONS:
        if condition.name in {"painful_condition", "constipation"}:
            continue  # defined by prescriptions in the Cambridge score
        for code in condition.snomed:
            assert ("snomed", code) in listed, (condition.name, code)
        for code in condition.icd10:
            assert ("icd10", code) in listed, (condition.name, code)


def test_cancer_icd10_excludes_non_melanoma_skin(rows: list[dict[str, str]]) -> None:
    cancer = _codes(rows, "cancer", "icd10")
    assert "C44" not in cancer
    assert {"C43", "C77", "C78", "C79", "C80", "C97"} <= cancer
    assert all(code.startswith("C") for code in cancer)


def test_segmentation_icd10_choices(rows: list[dict[str, str]]) -> None:
    assert _codes(rows, "secondary_cancer", "icd10") == {"C77", "C78", "C79", "C80"}
    assert _codes(rows, "pregnancy", "icd10") == {"Z33", "Z34", "Z35"}
    assert _codes(rows, "palliative_care", "icd10") == {"Z515"}
    assert _codes(rows, "fall", "icd10") == {f"W{n:02d}" for n in range(20)}
    assert {"F70", "F79", "Q90"} <= _codes(rows, "learning_disability", "icd10")
    assert {"K704", "K72", "K746"} <= _codes(rows, "liver_failure", "icd10")
    assert {"G80", "G82", "G83", "Z89", "Z993"} <= _codes(rows, "physical_disability", "icd10")
