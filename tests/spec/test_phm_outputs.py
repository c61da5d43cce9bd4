"""Spec: what population health publishes and lists, on every engine — no look-ahead in the
features, segment counts and transitions without opt-outs, worklists with reasons (and with
opt-outs), the age-band counts behind standardised rates, and the CMS scorer for extracts."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pyarrow as pa
from phm_world import EXTRACT, INDEX, World

from joinedup.population.cms import cms_scores
from joinedup.population.codelists import load_codelists
from joinedup.population.conditions import phm_person
from joinedup.population.config import PhmConfig
from joinedup.population.history import Window, emergency_outcome
from joinedup.population.inequalities import band_counts
from joinedup.population.segmentation import segment_counts, segment_transitions
from joinedup.population.worklists import worklist_evidence, worklist_rows
from joinedup.warehouse.engines import Engine

CODES = load_codelists()


def ago(days: int) -> date:
    return INDEX - timedelta(days=days)


def later(days: int) -> date:
    return INDEX + timedelta(days=days)


def _history(world: World) -> World:
    """Three people with a past: conditions, medicines, measurements and service use."""
    for pid in (1, 2, 3):
        world.person(pid)
    world.dx(1, ago(900), "38341003").dx(1, ago(400), "13645005").rx(
        1, "0301011R0", ago(500), None, 20
    )
    world.bp(1, ago(200), 150, 95).obs(1, ago(100), "egfr", 55).act(
        1, "emergency_admission", ago(50)
    )
    world.dx(2, ago(30), "925831000000107").rx(2, "0106040M0", ago(300), ago(20), 10)
    world.act(2, "gp_consultation", ago(10)).act(3, "ae_attendance", ago(300))
    return world


def _future(world: World) -> World:
    """Everything that happens on or after the index date, for every kind of record."""
    for pid in (1, 2, 3):
        world.dx(pid, INDEX, "52448006").dx(pid, later(30), "C50", "icd10")
        world.dx(pid, later(10), "103735009")
        world.rx(pid, "0106040M0", INDEX, later(300), 11)
        world.obs(pid, later(5), "egfr", 20).bp(pid, later(6), 200, 120)
        world.act(pid, "emergency_admission", INDEX).act(pid, "ae_attendance", later(40))
    world.act(3, "emergency_admission", later(100))
    for row in world.rows["person"]:
        if row["person_id"] == 3:
            row["death_date"] = later(200)
    return world


def _rows(engine: Engine, world: World, query: Any) -> list[dict[str, Any]]:
    world.load(engine)
    return list(engine.execute(query).to_pylist())


def test_no_feature_uses_anything_recorded_on_or_after_the_index_date(engine: Engine) -> None:
    features = phm_person(INDEX, CODES, EXTRACT)
    before = _rows(engine, _history(World()), features)
    after = _rows(engine, _future(_history(World())), features)
    assert before == after
    assert [r["segment"] for r in before] == ["organ_failure", "frailty_dementia", "acutely_ill"]
    # The outcome, and only the outcome, sees the year after the index date.
    outcome = emergency_outcome(Window(INDEX, EXTRACT))
    assert _rows(engine, _history(World()), outcome) == []
    seen = _rows(engine, _future(_history(World())), outcome.order_by("person_id"))
    assert [(r["person_id"], r["next_emergency_admissions"]) for r in seen] == [
        (1, 1),
        (2, 1),
        (3, 2),
    ]


def _load_phm(engine: Engine, name: str, rows: list[dict[str, Any]]) -> None:
    defaults = {
        "national_data_opt_out": False,
        "place_code": "E1",
        "pcn_code": "U1",
        "practice_code": "P1",
        "imd_quintile": 3,
        "imd_decile": 5,
        "ethnic_group": "White",
        "sex": "female",
        "age": 50,
    }
    full = [{**defaults, **r} for r in rows]
    engine.load(name, pa.Table.from_pylist(full))


def test_segment_counts_and_transitions_leave_out_opt_outs(engine: Engine) -> None:
    now = [
        {"person_id": 1, "segment": "healthy", "age": 30, "imd_quintile": 1},
        {"person_id": 2, "segment": "healthy", "age": 70, "imd_quintile": 1},
        {"person_id": 3, "segment": "organ_failure", "age": 80, "place_code": "E2"},
        {"person_id": 4, "segment": "healthy", "national_data_opt_out": True},
        {"person_id": 5, "segment": "long_term_conditions", "age": 10},  # new this year
    ]
    before = [
        {"person_id": 1, "segment": "healthy"},
        {"person_id": 2, "segment": "long_term_conditions"},
        {"person_id": 3, "segment": "long_term_conditions"},
        {"person_id": 4, "segment": "healthy"},
    ]
    _load_phm(engine, "phm_person", now)
    _load_phm(engine, "phm_person_previous", before)
    counts = {
        (r["dimension"], r["group_value"], r["segment"]): r["people_count"]
        for r in engine.execute(segment_counts()).to_pylist()
    }
    assert counts[("system", "all", "healthy")] == 2  # person 4 opted out
    assert counts[("system", "all", "long_term_conditions")] == 1
    assert counts[("place_code", "E2", "organ_failure")] == 1
    assert counts[("age_band", "65-74", "healthy")] == 1
    assert counts[("age_band", "0-17", "long_term_conditions")] == 1
    assert counts[("imd_quintile", "1", "healthy")] == 2
    moves = [
        (r["from_segment"], r["to_segment"], r["people_count"])
        for r in engine.execute(segment_transitions()).to_pylist()
    ]
    assert moves == [  # in segment priority order
        ("long_term_conditions", "organ_failure", 1),
        ("long_term_conditions", "healthy", 1),
        ("healthy", "healthy", 1),
    ]


WORKLISTS = PhmConfig.model_validate(
    {
        "worklists": [
            {
                "id": "high_risk",
                "title": "High risk, 2+ conditions",
                "criteria": [
                    {"field": "risk_tier", "in": ["very_high", "high"]},
                    {"field": "ltc_count", "at_least": 2},
                ],
            },
            {
                "id": "smi_check",
                "title": "SMI without a health check",
                "criteria": [
                    {"field": "psychosis_bipolar", "equals": 1},
                    {"field": "physical_health_check_12m", "equals": 0},
                ],
            },
        ]
    }
).worklists


def test_worklists_list_who_qualifies_with_reasons_including_opt_outs(engine: Engine) -> None:
    base = {"psychosis_bipolar": 0, "bp_recorded_12m": 1, "bmi_recorded_12m": 1}
    people = [
        {**base, "person_id": 1, "ltc_count": 3, "smoking_recorded_12m": 1},
        {**base, "person_id": 2, "ltc_count": 1, "smoking_recorded_12m": 1},
        {**base, "person_id": 3, "ltc_count": 4, "smoking_recorded_12m": 1},
        {
            **base,
            "person_id": 4,
            "ltc_count": 2,
            "psychosis_bipolar": 1,
            "smoking_recorded_12m": 0,
            "national_data_opt_out": True,
        },
    ]
    _load_phm(engine, "phm_person", people)
    engine.load(
        "phm_risk",
        pa.table(
            {
                "person_id": [1, 2, 3, 4],
                "risk_score": [0.4, 0.5, 0.05, 0.3],
                "risk_tier": ["high", "very_high", "low", "high"],
            }
        ),
    )
    World().person(1).person(2).person(3).person(4).load(engine)
    got = [
        (r["worklist_id"], r["person_id"], r["nhs_number"], r["reasons"])
        for r in engine.execute(worklist_rows(WORKLISTS)).to_pylist()
    ]
    assert got == [
        (
            "high_risk",
            1,
            "9000000001",
            "Emergency admission risk high; 3 long-term conditions",
        ),
        (
            "high_risk",
            4,
            "9000000004",
            "Emergency admission risk high; 2 long-term conditions",
        ),
        (
            "smi_check",
            4,
            "9000000004",
            "Schizophrenia, bipolar disorder or other psychosis recorded; No full physical "
            "health check in 12 months (blood pressure, BMI and smoking)",
        ),
    ]


FRAIL_FALLS = PhmConfig.model_validate(
    {
        "worklists": [
            {
                "id": "frail_falls",
                "title": "Frail with a fall, no GP contact",
                "criteria": [
                    {"field": "frailty_level", "at_least": 2},
                    {"field": "fall_6m", "equals": 1},
                    {"field": "prior_gp_6m_count", "at_most": 1},
                    {"field": "raised_bp_days_24m_count", "at_least": 0},
                ],
            }
        ]
    }
).worklists


def test_worklist_reasons_are_plain_english_with_the_dates_and_values(engine: Engine) -> None:
    """Each criterion reads as a clinician would say it, with the person's own value, and the
    date behind it where the person-level table holds one; no field names or operators."""
    base = {
        "psychosis_bipolar": 0, "bp_recorded_12m": 1, "bmi_recorded_12m": 1,
        "smoking_recorded_12m": 1, "ltc_count": 2, "fall_6m": 1, "raised_bp_days_24m_count": 3,
        "latest_systolic_bp": 152.0, "latest_diastolic_bp": 91.0,
    }  # fmt: skip
    people = [
        {**base, "person_id": 1, "frailty_level": 2, "prior_gp_6m_count": 0,
         "last_gp_contact_date": date(2025, 2, 12)},
        {**base, "person_id": 2, "frailty_level": 3, "prior_gp_6m_count": 1,
         "last_gp_contact_date": date(2026, 1, 5)},
        {**base, "person_id": 3, "frailty_level": 1, "prior_gp_6m_count": 0,
         "last_gp_contact_date": None},
    ]  # fmt: skip
    _load_phm(engine, "phm_person", people)
    engine.load(
        "phm_risk",
        pa.table({"person_id": [1, 2, 3], "risk_score": [0.4, 0.5, 0.1],
                  "risk_tier": ["high", "very_high", "low"]}),
    )  # fmt: skip
    world = World().person(1).person(2).person(3)
    # Person 1's fall and frailty codes (an older fall and a later one; the latest is shown);
    # person 2 has none on record here, so the flag is described without a date.
    world.dx(1, date(2025, 6, 1), "1912002").dx(1, date(2026, 2, 12), "161898004")
    world.dx(1, date(2025, 11, 3), "925831000000107").dx(1, date(2026, 5, 1), "1912002")
    world.load(engine)
    evidence = worklist_evidence(CODES, date(2026, 4, 1))
    found = engine.execute(worklist_rows(FRAIL_FALLS, evidence=evidence)).to_pylist()
    got = {r["person_id"]: r["reasons"] for r in found}
    dates = {r["person_id"]: (r["fall_date"], r["frailty_date"]) for r in found}
    assert dates == {1: (date(2026, 2, 12), date(2025, 11, 3)), 2: (None, None)}
    bp = "Raised blood pressure on 3 days in 2 years (latest 152/91 mmHg)"
    assert got == {
        1: "Frailty moderate (coded 03 Nov 2025); Fall recorded 12 Feb 2026; No GP "
        f"consultation in 6 months; last GP consultation 12 Feb 2025; {bp}",
        2: "Frailty severe; Fall recorded in the last 6 months; 1 GP consultations in 6 "
        f"months; last GP consultation 05 Jan 2026; {bp}",
    }
    for text in got.values():
        assert "_" not in text and "(equals" not in text and "at least" not in text


def test_standardisation_counts_by_five_year_band_without_opt_outs(engine: Engine) -> None:
    rows = [
        {"person_id": 1, "age": 3, "ltc_count": 0, "prior_emergency_12m_count": 2, "diabetes": 0},
        {"person_id": 2, "age": 4, "ltc_count": 2, "prior_emergency_12m_count": 0, "diabetes": 1},
        {"person_id": 3, "age": 92, "ltc_count": 3, "prior_emergency_12m_count": 1, "diabetes": 1},
        {
            "person_id": 4,
            "age": 92,
            "ltc_count": 3,
            "prior_emergency_12m_count": 5,
            "diabetes": 1,
            "national_data_opt_out": True,
        },
    ]
    extra = {"hypertension": 0, "copd": 0, "psychosis_bipolar": 0}
    _load_phm(engine, "phm_person", [{**extra, **r} for r in rows])
    _load_phm(engine, "phm_person_previous", [{**extra, **r} for r in rows])
    World().person(1).person(2).person(3, death_date=ago(10)).person(4).load(engine)
    got = {
        (r["measure"], r["age_band"]): (r["events"], r["people"])
        for r in engine.execute(band_counts(INDEX)).to_pylist()
        if r["dimension"] == "system"
    }
    assert got[("emergency_admissions", "0-4")] == (2, 2)
    assert got[("emergency_admissions", "90+")] == (1, 1)
    assert got[("multimorbidity", "0-4")] == (1, 2)
    assert got[("diabetes", "90+")] == (1, 1)
    assert got[("mortality", "90+")] == (1, 1)  # died in the year before the index date
    assert ("mortality", "5-9") not in got


def test_cms_scorer_for_an_extract_of_codes(engine: Engine) -> None:
    engine.load(
        "cms_input",
        pa.table(
            {
                "person_id": ["a", "a", "a", "b", "c", None],
                "code": ["I10", "e11.9", "13645005", " F03 ", "R69", "I10"],
            }
        ),
    )
    got = {r["person_id"]: r for r in engine.execute(cms_scores("cms_input", CODES)).to_pylist()}
    assert sorted(got) == ["a", "b", "c"]
    assert (got["a"]["ltc_count"], got["a"]["cms_general"]) == (3, 2.29)
    assert got["a"]["cms_mortality"] == 50.64
    assert (got["b"]["dementia"], got["b"]["cms_general"]) == (1, 2.5)
    assert (got["c"]["ltc_count"], got["c"]["cms_general"]) == (0, 0.0)


def test_core20plus_flags_and_the_gap_counts(engine: Engine) -> None:
    from joinedup.population.inequalities import gap_counts
    from joinedup.population.pipeline import with_core20plus

    world = World()
    world.person(1, imd_decile=1)  # Core20
    world.person(2, imd_decile=9, ethnic_category="N")  # PLUS: Black ethnic group
    world.person(3, imd_decile=9).dx(3, ago(900), "110359009")  # PLUS: learning disability
    world.person(4, imd_decile=9)  # neither
    for pid in (1, 2, 3, 4):
        world.dx(pid, ago(900), "38341003")  # hypertension
    world.bp(1, ago(30), 130, 80).bp(2, ago(30), 150, 95).bp(3, ago(30), 120, 70)
    world.bp(4, ago(30), 135, 85)
    settings = PhmConfig.model_validate(
        {
            "core20plus5": {
                "plus_groups": [
                    {"name": "Ethnic minority", "ethnic_groups": ["Black", "Asian"]},
                    {"name": "LD", "flags": ["learning_disability"]},
                ]
            }
        }
    )
    flagged = _rows(engine, world, with_core20plus(phm_person(INDEX, CODES, EXTRACT), settings))
    flags = {r["person_id"]: (r["core20"], r["plus_group"], r["core20plus"]) for r in flagged}
    assert flags == {1: (1, 0, 1), 2: (0, 1, 1), 3: (0, 1, 1), 4: (0, 0, 0)}
    engine.materialise("phm_person", with_core20plus(phm_person(INDEX, CODES, EXTRACT), settings))
    counts = {
        (r["indicator_order"], r["core20plus"]): (r["numerator"], r["denominator"])
        for r in engine.execute(gap_counts()).to_pylist()
    }
    # Indicator 4: hypertension controlled (latest BP under 140/90): 2 of 3 Core20PLUS, 1 of 1.
    assert counts[(4, 1)] == (2, 3)
    assert counts[(4, 0)] == (1, 1)
