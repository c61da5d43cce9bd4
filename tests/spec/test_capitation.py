"""Spec: need estimated from the population, on every engine — cost curves by age and sex,
additional need by deprivation and conditions, the health inequalities SMR, and practices'
weighted populations, all hand-worked below (and in docs/finance.md)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from spec_tables import footprint, p, person, table

from joinedup.finance.capitation import estimate
from joinedup.finance.need import indices_within
from joinedup.finance.whatif import ActivityChange, apply_driver
from joinedup.warehouse.engines import Engine
from joinedup.warehouse.schema import ACTIVITY_TYPES

INDEX = date(2025, 4, 1)  # phm_person is on the index date, phm_person_previous a year before
EXTRACT = date(2025, 3, 31)
IN_YEAR = date(2024, 10, 1)

# Registered a year before: (id, age, sex, IMD quintile, LTCs, place, segment, opted out).
PREVIOUS = [
    (1, 30, "female", 1, 0, "E1", "healthy", False),
    (2, 32, "female", 5, 0, "E2", "healthy", False),
    (3, 80, "male", 1, 3, "E1", "frailty_dementia", False),
    (4, 82, "male", 5, 3, "E2", "frailty_dementia", False),
    (5, 31, "female", 1, 0, "E1", "healthy", True),  # opted out: costs must not count
    (6, 60, "male", 1, 1, "E1", "long_term_conditions", False),  # dies under 75
    (9, 62, "male", 5, 1, "E2", "long_term_conditions", False),
]
# Registered on the index date: (id, practice, age, sex, IMD quintile, LTCs, opted out).
NOW = [
    (1, "P1", 31, "female", 1, 0, False),
    (7, "P1", 81, "male", 1, 3, False),
    (5, "P2", 32, "female", 1, 0, True),
    (8, "P2", 33, "female", 5, 0, False),
    (2, "P3", 33, "female", 5, 0, False),
    (4, "P3", 83, "male", 5, 3, False),
]
# Activity in the year: (person, type, £).
ACTIVITY = [
    (1, "emergency_admission", "1000"),
    (2, "outpatient_attendance", "200"),
    (3, "emergency_admission", "3000"),
    (3, "community_contact", "500"),
    (4, "emergency_admission", "1000"),
    (4, "community_contact", "300"),
    (5, "emergency_admission", "10000"),
]


def _load(engine: Engine) -> None:
    footprint(engine)
    engine.load(
        "ics", table("ics", [{"ics_code": "QAA", "ics_name": "Test ICB"}], {"is_real": False})
    )
    previous: dict[str, list[Any]] = {
        "person_id": [], "age": [], "sex": [], "imd_quintile": [], "ltc_count": [],
        "place_code": [], "segment": [], "national_data_opt_out": [],
    }  # fmt: skip
    for pid, age, sex, q, ltc, place, segment, out in PREVIOUS:
        for key, value in zip(previous, (pid, age, sex, q, ltc, place, segment, out), strict=True):
            previous[key].append(value)
    engine.load("phm_person_previous", pa.table(previous))
    now: dict[str, list[Any]] = {
        "person_id": [], "practice_code": [], "age": [], "sex": [], "imd_quintile": [],
        "ltc_count": [], "national_data_opt_out": [], "pregnant": [],
    }  # fmt: skip
    for pid, practice, age, sex, q, ltc, out in NOW:
        row = (pid, practice, age, sex, q, ltc, out, 1 if pid == 2 else 0)
        for key, value in zip(now, row, strict=True):
            now[key].append(value)
    engine.load("phm_person", pa.table(now))
    engine.load(
        "phm_run",
        pa.table({"index_date": pa.array([INDEX], pa.date32()),
                  "extract_date": pa.array([EXTRACT], pa.date32())}),
    )  # fmt: skip
    engine.load(
        "person",
        person(
            *[p(pid, (1960, 1)) for pid in (1, 2, 3, 4, 5, 7, 8, 9)],
            p(6, (1964, 1), "male", died=date(2024, 12, 1)),
        ),
    )
    engine.load(
        "activity",
        table(
            "activity",
            [
                {"activity_id": i, "person_id": pid, "activity_type": kind, "start_date": IN_YEAR,
                 "cost_gbp": Decimal(gbp), "point_of_delivery": ACTIVITY_TYPES[kind]}
                for i, (pid, kind, gbp) in enumerate(ACTIVITY, start=1)
            ] + [
                # Before the year and after it: outside the fitting year, never counted.
                {"activity_id": 90, "person_id": 2, "activity_type": "emergency_admission",
                 "start_date": date(2024, 3, 31), "cost_gbp": Decimal("5000"),
                 "point_of_delivery": "NEL"},
                {"activity_id": 91, "person_id": 2, "activity_type": "emergency_admission",
                 "start_date": INDEX, "cost_gbp": Decimal("5000"), "point_of_delivery": "NEL"},
            ],
            {"end_date": None, "length_of_stay_days": None, "provider_code": "RXX",
             "specialty_code": None},
        ),
    )  # fmt: skip
    engine.load(
        "medication",
        table(
            "medication",
            [{"person_id": 1, "code": "0212000B0", "start_date": date(2024, 6, 1),
              "end_date": date(2024, 11, 30), "issue_count": 6}],
            {"code_system": "bnf", "description": "statin", "is_repeat": True,
             "prescriber_code": "P1"},
        ),
    )  # fmt: skip


@pytest.fixture
def fitted(engine: Engine) -> Any:
    _load(engine)
    return estimate(engine)


def test_cost_curves_are_cost_per_head_by_age_band_and_sex(fitted: Any) -> None:
    ga = fitted.model.curves["general_and_acute"]
    # 30-34 women: £1,000 (person 1) and £200 (person 2) over two people; person 5 opted out.
    assert ga[("30-34", "female")] == pytest.approx(60_000)  # pence per head
    assert ga[("80-84", "male")] == pytest.approx(200_000)  # (£3,000 + £1,000) / 2
    assert ga[("60-64", "male")] == 0
    assert fitted.model.curves["community_services"][("80-84", "male")] == pytest.approx(40_000)
    # Person 1's six issues at £8.60 over the two 30-34 women.
    assert fitted.model.curves["prescribing"][("30-34", "female")] == pytest.approx(2_580)
    # Person 2 is pregnant on the index date: one £4,000 pathway over two.
    assert fitted.model.curves["maternity"][("30-34", "female")] == pytest.approx(200_000)
    assert fitted.model.people == 6


def test_additional_need_is_observed_over_expected_cost_by_deprivation_and_conditions(
    fitted: Any,
) -> None:
    ratio = fitted.model.ratios["general_and_acute"]
    assert ratio[(1, "0")] == pytest.approx(1000 / 600)
    assert ratio[(5, "0")] == pytest.approx(200 / 600)
    assert ratio[(1, "3+")] == pytest.approx(3000 / 2000)
    assert ratio[(5, "3+")] == pytest.approx(1000 / 2000)
    assert ratio[(1, "1")] == 1.0  # nothing expected: no adjustment


def test_health_inequalities_smr_compares_deaths_under_75_with_age_sex_expected(
    fitted: Any,
) -> None:
    # Men 60-64 die at 1 in 2; quintile 1 expected 0.5 and had 1 death, quintile 5 none.
    assert fitted.model.smr[1] == pytest.approx(2.0)
    assert fitted.model.smr[5] == pytest.approx(0.0)


def test_practices_are_weighted_by_the_need_of_todays_list(fitted: Any) -> None:
    wp = {r.practice_code: r.weighted for r in fitted.practices}
    population = {r.practice_code: r.population for r in fitted.practices}
    assert population == {"P1": 2, "P2": 2, "P3": 2}  # opted out counted in list sizes
    # G&A per head: P1 (1,000 + 3,000)/2, P2 200 (opted-in only) , P3 (200 + 1,000)/2;
    # times list sizes 4,000 : 400 : 1,200, scaled to 6 people.
    assert wp["P1"]["general_and_acute"] == pytest.approx(4000 * 6 / 5600)
    assert wp["P2"]["general_and_acute"] == pytest.approx(400 * 6 / 5600)
    assert wp["P3"]["general_and_acute"] == pytest.approx(1200 * 6 / 5600)
    # Community: own model 500 : 0 : 300 scaled to 6, then half own, half G&A.
    assert wp["P1"]["community_services"] == pytest.approx(0.5 * 3.75 + 0.5 * 4000 * 6 / 5600)
    assert wp["P3"]["community_services"] == pytest.approx(0.5 * 2.25 + 0.5 * 1200 * 6 / 5600)
    # Health inequalities: only P1's list lives in quintile 1 (SMR 2).
    assert wp["P1"]["health_inequalities"] == pytest.approx(6.0)
    for component in ("general_and_acute", "community_services", "final"):
        assert sum(w[component] for w in wp.values()) == pytest.approx(6.0)


def test_place_need_index_from_the_population(fitted: Any) -> None:
    index = {n.code: n.index for n in indices_within(fitted.practices, "place", "QAA")}
    assert index["E1"]["general_and_acute"] == pytest.approx((4400 * 6 / 5600 / 4) / 1)
    assert index["E2"]["general_and_acute"] == pytest.approx((1200 * 6 / 5600 / 2) / 1)


def test_a_what_if_refits_need_on_the_changed_activity(fitted: Any) -> None:
    """Halving emergency admissions in place E1 lowers E1's G&A need: person 1's £1,000 and
    person 3's £3,000 become £500 and £1,500, so the 30-34 women's curve is £350 a head."""
    halved = apply_driver(
        fitted.cells,
        ActivityChange(name="half", activity_type="emergency_admission", change="-0.5",
                       place="E1"),
    )  # fmt: skip
    after = fitted.refit(halved)
    assert after.model.curves["general_and_acute"][("30-34", "female")] == pytest.approx(35_000)
    before_e1 = sum(
        r.weighted["general_and_acute"] for r in fitted.practices if r.place_code == "E1"
    )
    after_e1 = sum(r.weighted["general_and_acute"] for r in after.practices if r.place_code == "E1")
    assert after_e1 < before_e1
