"""Spec: condition rules, the Cambridge Multimorbidity Score and Bridges to Health segments, on
every engine, from hand-made records. Index date 1 April 2025; each expectation is worked from
the rules in docs/population.md."""

from __future__ import annotations

import operator
from datetime import date, timedelta
from typing import Any

import pytest
from phm_world import EXTRACT, INDEX, World

from joinedup.population.codelists import load_codelists
from joinedup.population.conditions import CMS_CONDITIONS, phm_person, phm_person_steps
from joinedup.warehouse.engines import Engine

CODES = load_codelists()
WEIGHTS = {c.name: (c.general, c.mortality) for c in CMS_CONDITIONS}
LAXATIVE = "0106040M0"  # macrogol, BNF 1.6
ANTIDEPRESSANT = "0403030Q0"  # sertraline, BNF 4.3
INHALER = "0301011R0"  # salbutamol, BNF 3.1
ANALGESIC = "0407010F0"  # co-codamol, BNF 4.7.1
ANTIEPILEPTIC = "0408010AE"  # levetiracetam, BNF 4.8.1


def ago(days: int) -> date:
    return INDEX - timedelta(days=days)


def people(engine: Engine, world: World) -> dict[int, dict[str, Any]]:
    world.load(engine)
    result = engine.execute(phm_person(INDEX, CODES, EXTRACT))
    return {r["person_id"]: r for r in result.to_pylist()}


def test_cancer_counts_only_when_first_recorded_within_five_years(engine: Engine) -> None:
    world = World()
    for pid in (1, 2, 3):
        world.person(pid)
    world.dx(1, ago(2 * 365), "C50", "icd10")  # new two years ago: counts
    world.dx(2, ago(6 * 365), "C50", "icd10").dx(2, ago(30), "C50", "icd10")  # first 6 years ago
    world.dx(3, INDEX, "C50", "icd10")  # on the index date: not yet known
    got = people(engine, world)
    assert [got[i]["cancer"] for i in (1, 2, 3)] == [1, 0, 0]


def test_ckd_from_a_code_or_two_low_egfr_results_90_days_apart(engine: Engine) -> None:
    world = World()
    for pid in range(1, 6):
        world.person(pid)
    world.dx(1, ago(1000), "433144002")  # CKD stage 3 code
    world.obs(2, ago(200), "egfr", 52).obs(2, ago(50), "egfr", 48)  # 150 days apart: CKD
    world.obs(3, ago(80), "egfr", 52).obs(3, ago(20), "egfr", 48)  # 60 days apart: not yet
    world.obs(4, ago(300), "egfr", 40).obs(4, ago(200), "egfr", 45).obs(4, ago(10), "egfr", 75)
    world.obs(5, ago(400), "egfr", 25).obs(5, ago(100), "egfr", 28)  # stage 4: organ failure
    got = people(engine, world)
    assert [got[i]["chronic_kidney_disease"] for i in range(1, 6)] == [1, 1, 0, 0, 1]
    assert [got[i]["ckd_stage_4_5"] for i in range(1, 6)] == [0, 0, 0, 0, 1]
    assert got[5]["segment"] == "organ_failure"


def test_prescription_rules_count_issues_in_the_last_year(engine: Engine) -> None:
    world = World()
    for pid in range(1, 8):
        world.person(pid)
    # 12 issues over 336 days, all in the last year: constipation.
    world.rx(1, LAXATIVE, ago(340), ago(5), 12)
    # 12 issues over two years ending 300 days ago: 65 of 731 days in the window -> 1 issue.
    world.rx(2, LAXATIVE, ago(1030), ago(300), 12)
    # Asthma code, inhaler in the last year: asthma. Code but no inhaler: not asthma.
    world.dx(3, ago(3000), "195967001").rx(3, INHALER, ago(100), None, 4)
    world.dx(4, ago(3000), "195967001")
    # Depression coded 3 years ago with 4+ antidepressant issues this year; or coded recently.
    world.dx(5, ago(1100), "35489007").rx(5, ANTIDEPRESSANT, ago(200), ago(30), 6)
    world.dx(6, ago(1100), "35489007")
    # Antiepileptics without epilepsy: painful condition; with an epilepsy code: epilepsy.
    world.rx(7, ANTIEPILEPTIC, ago(300), ago(10), 10)
    got = people(engine, world)
    assert [got[i]["constipation"] for i in (1, 2)] == [1, 0]
    assert [got[i]["asthma"] for i in (3, 4)] == [1, 0]
    assert [got[i]["anxiety_depression"] for i in (5, 6)] == [1, 0]
    assert (got[7]["painful_condition"], got[7]["epilepsy"]) == (1, 0)
    assert got[1]["laxatives_issues_count"] == 12
    assert got[2]["laxatives_issues_count"] == 1


def test_epilepsy_needs_treatment_and_then_is_not_pain(engine: Engine) -> None:
    world = World().person(1).person(2)
    world.dx(1, ago(4000), "84757009").rx(1, ANTIEPILEPTIC, ago(300), ago(10), 10)
    world.dx(2, ago(4000), "84757009")  # coded, untreated this year
    got = people(engine, world)
    assert (got[1]["epilepsy"], got[1]["painful_condition"]) == (1, 0)
    assert got[2]["epilepsy"] == 0


def test_cambridge_score_sums_the_published_weights(engine: Engine) -> None:
    world = World().person(1).person(2)
    world.dx(1, ago(900), "I10", "icd10").dx(1, ago(800), "E11", "icd10").dx(
        1, ago(5), "J44", "icd10"
    )
    got = people(engine, world)
    names = ("hypertension", "diabetes", "copd")
    assert all(got[1][n] == 1 for n in names)
    assert got[1]["ltc_count"] == 3
    assert got[1]["cms_general"] == pytest.approx(sum(WEIGHTS[n][0] for n in names) / 100)
    assert got[1]["cms_general"] == pytest.approx(0.08 + 0.75 + 1.46)
    assert got[1]["cms_mortality"] == pytest.approx(-2.09 + 10.23 + 42.50)
    assert (got[2]["ltc_count"], got[2]["cms_general"]) == (0, 0.0)


def test_only_people_alive_and_registered_on_the_index_date(engine: Engine) -> None:
    world = World()
    world.person(1)
    world.person(2, death_date=ago(10))
    world.person(3, registered=False)
    world.person(4, birth_year=2025, birth_month=6)  # not born yet
    world.person(5, national_data_opt_out=True)  # kept, flagged: worklists need them
    got = people(engine, world)
    assert sorted(got) == [1, 5]
    assert got[5]["national_data_opt_out"] is True


def test_segments_follow_the_priority_order_with_the_rule_that_placed_each(
    engine: Engine,
) -> None:
    world = World()
    for pid in range(1, 11):
        world.person(pid)
    world.dx(1, ago(60), "103735009").dx(1, ago(900), "52448006")  # palliative + dementia
    world.dx(2, ago(900), "52448006").dx(2, ago(900), "13645005")  # dementia + COPD
    world.dx(3, ago(900), "13645005").dx(3, ago(900), "38341003")  # COPD + hypertension
    world.dx(4, ago(900), "110359009").dx(4, ago(900), "38341003")  # LD + hypertension
    world.dx(5, ago(900), "38341003")  # hypertension only
    world.dx(6, ago(100), "77386006")  # pregnant
    world.person(7, birth_year=2024, birth_month=10)  # infant (second row for 7 ignored)
    world.act(8, "emergency_admission", ago(40))
    world.act(9, "emergency_admission", ago(400))  # more than a year ago
    world.dx(10, ago(30), "925861000000102")  # severe frailty
    world.rows["person"] = [
        r for r in world.rows["person"] if not (r["person_id"] == 7 and "birth_year" not in r)
    ]
    got = people(engine, world)
    expected = {
        1: ("short_decline", "palliative care code in the last 12 months"),
        2: ("frailty_dementia", "dementia"),
        3: ("organ_failure", "COPD"),
        4: ("disability", "learning disability"),
        5: ("long_term_conditions", "long-term condition (Cambridge list)"),
        6: ("maternal_infant", "pregnancy coded in the last 9 months"),
        7: ("maternal_infant", "infant under 1"),
        8: ("acutely_ill", "emergency admission in the last 12 months"),
        9: ("healthy", "none of the above"),
        10: ("frailty_dementia", "severe frailty"),
    }
    assert {i: (got[i]["segment"], got[i]["segment_rule"]) for i in expected} == expected


def test_latest_frailty_code_sets_the_level(engine: Engine) -> None:
    world = World().person(1).person(2).person(3)
    world.dx(1, ago(600), "925861000000102").dx(1, ago(100), "925791000000100")  # severe, then mild
    world.dx(2, ago(100), "925831000000107").dx(2, ago(100), "925791000000100")  # same day: worse
    got = people(engine, world)
    assert [got[i]["frailty_level"] for i in (1, 2, 3)] == [1, 2, 0]


def test_service_use_and_blood_pressure_before_the_index_date(engine: Engine) -> None:
    world = World().person(1)
    world.act(1, "ae_attendance", ago(10)).act(1, "ae_attendance", ago(300))
    world.act(1, "ae_attendance", ago(400))  # outside the year
    world.act(1, "gp_consultation", ago(200)).act(1, "day_case", ago(20))
    world.bp(1, ago(500), 150, 85).bp(1, ago(100), 145, 95).bp(1, ago(800), 170, 100)
    world.bp(1, ago(10), 128, 78)
    got = people(engine, world)[1]
    assert (
        got["prior_ae_12m_count"],
        got["prior_elective_12m_count"],
        got["prior_gp_12m_count"],
    ) == (2, 1, 1)
    assert got["prior_gp_6m_count"] == 0
    assert got["last_gp_contact_date"] == ago(200)
    assert got["raised_bp_days_24m_count"] == 2  # 800 days ago is outside the two years
    assert (got["latest_systolic_bp"], got["latest_diastolic_bp"]) == (128, 78)


def test_the_stepwise_build_gives_the_same_people_as_the_one_query(engine: Engine) -> None:
    # phm run builds phm_person one summary join at a time to bound memory at millions of
    # people; every column of every row must be what the single query gives.
    world = World()
    for pid in range(1, 7):
        world.person(pid)
    world.dx(1, ago(1000), "433144002").obs(1, ago(200), "egfr", 25).obs(1, ago(50), "egfr", 28)
    world.rx(2, LAXATIVE, ago(340), ago(5), 12).rx(2, ANTIDEPRESSANT, ago(100), None, 4)
    world.bp(2, ago(30), 165, 95)
    world.act(3, "ae_attendance", ago(20)).act(3, "emergency_admission", ago(60))
    world.act(3, "gp_consultation", ago(5))
    world.dx(4, ago(90), "C50", "icd10").rx(4, ANALGESIC, ago(200), ago(10), 6)
    world.act(4, "outpatient_attendance", ago(9))
    world.load(engine)
    single = engine.execute(phm_person(INDEX, CODES, EXTRACT)).to_pylist()
    steps, finish = phm_person_steps(INDEX, CODES, EXTRACT, prefix="test_person_step")
    assert [name for name, _ in steps] == [f"test_person_step_{n}" for n in (1, 2, 3, 4)]
    for name, query in steps:
        engine.materialise(name, query)
    stepwise = engine.execute(finish).to_pylist()
    for name, _ in steps:
        engine.drop(name)
    key = operator.itemgetter("person_id")
    assert sorted(stepwise, key=key) == sorted(single, key=key)
    assert len(single) == 6 and any(r["prior_ae_12m_count"] for r in single)
