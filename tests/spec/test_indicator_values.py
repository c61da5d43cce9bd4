"""Spec: indicator values on every engine equal a plain-Python computation on a tiny world:
numerator and denominator per practice, PCN, place and system for each year (opt-outs left
out, ages as defined, deaths in the period only), the value and 95% interval of
`population.stats`, and each area compared with England and with its parent."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from joinedup.disclosure import DisclosurePolicy
from joinedup.indicators import (
    EnglandValue,
    Period,
    compare,
    indicator_values,
    parse_definitions,
    statistic,
)
from joinedup.warehouse.engines import Engine

INDEX = date(2025, 4, 1)
#: No suppression or rounding: published figures are then the exact ones (to one decimal).
OPEN = DisclosurePolicy(suppress_below=1, round_to=1, secondary_suppression=False)

DEFINITIONS = parse_definitions(
    [
        {
            "id": "diabetes_17", "title": "Diabetes (17+)",
            "numerator": {"words": "with diabetes", "counts": "people",
                          "where": [{"column": "diabetes", "op": "=", "value": 1}]},
            "denominator": {"words": "registered, 17+", "counts": "people"},
            "min_age": 17, "unit": "per cent", "method": "crude", "ci_method": "wilson",
            "polarity": "unknown", "period_type": "point", "source": "test",
        },
        {
            "id": "emergency_crude", "title": "Emergency admissions per 1,000",
            "numerator": {"words": "admissions", "counts": "events",
                          "sum_of": "prior_emergency_12m_count"},
            "denominator": {"words": "registered", "counts": "people"},
            "unit": "per 1,000", "method": "crude", "ci_method": "byars",
            "polarity": "lower is better", "period_type": "year", "source": "test",
        },
        {
            "id": "emergency_dsr", "title": "Emergency admissions DSR",
            "numerator": {"words": "admissions", "counts": "events",
                          "sum_of": "prior_emergency_12m_count"},
            "denominator": {"words": "registered", "counts": "people"},
            "unit": "per 100,000", "method": "dsr", "ci_method": "dobson",
            "polarity": "lower is better", "period_type": "year", "source": "test",
        },
        {
            "id": "deaths_u75", "title": "Deaths under 75",
            "numerator": {"words": "deaths", "counts": "deaths"},
            "denominator": {"words": "registered at the start, under 75", "counts": "people"},
            "population": "start", "max_age": 74, "unit": "per 100,000", "method": "dsr",
            "ci_method": "dobson", "polarity": "lower is better", "period_type": "year",
            "source": "test",
        },
    ],
    "spec",
)  # fmt: skip

PRACTICES = {"P1": "U1", "P2": "U2", "P3": "U3", "P4": "U3"}
PCNS = {"U1": "E1", "U2": "E1", "U3": "E2"}
PERIOD = Period(date(2024, 4, 1), date(2025, 3, 31), "snap_now", "snap_before")
ENGLAND = [
    EnglandValue("diabetes_17", "2023-24", 9.0, None, None, "test"),
    EnglandValue("emergency_crude", PERIOD.label, 1500.0, None, None, "same period"),
    EnglandValue("emergency_crude", "2019-20", 100.0, None, None, "older"),
]


def _people() -> list[dict[str, Any]]:
    """People in the current snapshot (their ages a year before are one less)."""
    rows = []
    for pid in range(1, 121):
        practice = f"P{pid % 4 + 1}"
        rows.append(
            {
                "person_id": pid,
                "age": (pid * 7) % 95,
                "practice_code": practice,
                "pcn_code": PRACTICES[practice],
                "place_code": PCNS[PRACTICES[practice]],
                "national_data_opt_out": pid % 13 == 0,
                "diabetes": int(pid % 5 == 0),
                "prior_emergency_12m_count": pid % 3,
            }
        )
    return rows


def _deaths() -> dict[int, date]:
    """Deaths in the period (every ninth person) and one after it (person 1)."""
    deaths = {pid: date(2024, 10, 1) for pid in range(9, 121, 9)}
    deaths[1] = date(2025, 6, 1)
    return deaths


def _load(engine: Engine) -> None:
    now = _people()
    before = [r | {"age": max(r["age"] - 1, 0), "prior_emergency_12m_count": 0} for r in now]
    engine.load("snap_now", pa.Table.from_pylist(now))
    engine.load("snap_before", pa.Table.from_pylist(before))
    deaths = _deaths()
    engine.load(
        "person",
        pa.table(
            {
                "person_id": [r["person_id"] for r in now],
                "death_date": pa.array([deaths.get(r["person_id"]) for r in now], pa.date32()),
            }
        ),
    )
    engine.load("ics", pa.table({"ics_code": ["QX1"], "ics_name": ["Test ICS"]}))
    engine.load("place", pa.table({"place_code": ["E1", "E2"], "place_name": ["North", "South"]}))
    engine.load("pcn", pa.table({"pcn_code": list(PCNS), "pcn_name": [f"PCN {c}" for c in PCNS]}))
    engine.load(
        "practice",
        pa.table({"practice_code": list(PRACTICES), "practice_name": list(PRACTICES)}),
    )


def _area(row: dict[str, Any], level: str) -> str:
    return {"system": "QX1", "place": row["place_code"], "pcn": row["pcn_code"]}.get(
        level, row["practice_code"]
    )


def _reference(indicator_id: str, level: str, code: str) -> tuple[np.ndarray, np.ndarray]:
    """Numerator and denominator by ESP 2013 band, computed person by person."""
    numerator, denominator = np.zeros(19), np.zeros(19)
    start = DEFINITIONS.get(indicator_id).population == "start"
    deaths = _deaths()
    for r in _people():
        age = max(r["age"] - 1, 0) if start else r["age"]
        if r["national_data_opt_out"] or _area(r, level) != code:
            continue
        band = min(age // 5, 18)
        if indicator_id == "diabetes_17" and age >= 17:
            denominator[band] += 1
            numerator[band] += r["diabetes"]
        elif indicator_id.startswith("emergency"):
            denominator[band] += 1
            numerator[band] += r["prior_emergency_12m_count"]
        elif indicator_id == "deaths_u75" and age <= 74:
            denominator[band] += 1
            died = deaths.get(r["person_id"])
            numerator[band] += int(
                died is not None and PERIOD.start_date <= died <= PERIOD.end_date
            )
    return numerator, denominator


def _rows(engine: Engine, policy: DisclosurePolicy = OPEN) -> list[dict[str, Any]]:
    _load(engine)
    table = indicator_values(
        engine, [PERIOD], definitions=DEFINITIONS, england=ENGLAND, policy=policy
    )
    return table.to_pylist()


def _keyed(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["indicator_id"], r["level"], r["area_code"]): r for r in rows}


def test_values_equal_a_person_by_person_computation(engine: Engine) -> None:
    rows = _keyed(_rows(engine))
    areas = {
        "system": ["QX1"],
        "place": ["E1", "E2"],
        "pcn": list(PCNS),
        "practice": list(PRACTICES),
    }
    assert len(rows) == len(DEFINITIONS) * sum(len(v) for v in areas.values())
    for indicator in DEFINITIONS:
        for level, codes in areas.items():
            for code in codes:
                row = rows[(indicator.id, level, code)]
                numerator, denominator = _reference(indicator.id, level, code)
                assert (row["numerator_count"], row["denominator_count"]) == (
                    numerator.sum(),
                    denominator.sum(),
                ), (indicator.id, level, code)
                expected = statistic(indicator, numerator, denominator)
                got = (row["value"], row["lower"], row["upper"])
                assert got == pytest.approx(
                    tuple(round(x, 1) for x in (expected.value, expected.lower, expected.upper))
                ), (indicator.id, level, code)
                assert row["period"] == "2024-04-01/2025-03-31"
                assert row["period_end_date"] == date(2025, 3, 31)


def test_hand_counted_figures(engine: Engine) -> None:
    rows = _keyed(_rows(engine))
    system = rows[("deaths_u75", "system", "QX1")]
    # Every ninth of persons 1-120 dies in the period (13 people); of them 27, 54, 81 and 108
    # were 75+ a year before (ages (7 * pid) % 95 - 1 of 93, 92, 91, 90) and 117 opted out.
    assert system["numerator_count"] == 13 - 4 - 1
    assert rows[("diabetes_17", "practice", "P1")]["denominator_count"] == sum(
        1 for pid in range(4, 121, 4) if (pid * 7) % 95 >= 17 and pid % 13
    )
    assert rows[("emergency_crude", "place", "E2")]["area_name"] == "South"
    assert rows[("emergency_crude", "pcn", "U3")]["parent_code"] == "E2"
    assert rows[("emergency_crude", "system", "QX1")]["parent_code"] is None


def test_each_area_is_compared_with_england_and_its_parent(engine: Engine) -> None:
    rows = _keyed(_rows(engine))
    parent_level = {"place": "system", "pcn": "place", "practice": "pcn"}
    for (indicator_id, level, _code), row in rows.items():
        polarity = DEFINITIONS.get(indicator_id).polarity
        if indicator_id == "emergency_crude":  # the same period's value, not the older one
            assert (row["england_value"], row["england_period"]) == (1500.0, PERIOD.label)
            assert row["england_source"] == "same period"
        elif indicator_id == "diabetes_17":  # the latest there is, with its own period
            assert (row["england_value"], row["england_period"]) == (9.0, "2023-24")
        else:
            assert row["england_value"] is None and row["england_comparison"] is None
        assert row["england_comparison"] == compare(
            row["value"], row["lower"], row["upper"], row["england_value"], polarity
        )
        if level == "system":
            assert row["parent_value"] is None and row["parent_comparison"] is None
            continue
        parent = rows[(indicator_id, parent_level[level], row["parent_code"])]
        assert (row["parent_value"], row["parent_lower"], row["parent_upper"]) == (
            parent["value"],
            parent["lower"],
            parent["upper"],
        )
        assert row["parent_comparison"] == compare(
            row["value"], row["lower"], row["upper"], parent["value"], polarity
        )
    assert rows[("emergency_crude", "system", "QX1")]["england_comparison"] == "better"
    assert rows[("diabetes_17", "system", "QX1")]["england_comparison"] in (
        "higher",
        "similar",
        "lower",
    )


def test_published_values_are_controlled_and_restated(engine: Engine) -> None:
    rows = _rows(engine, DisclosurePolicy())
    for r in rows:
        for name in ("numerator_count", "denominator_count"):
            count = r[name]
            assert count is None or ((count == 0 or count >= 8) and count % 5 == 0), r
        if r["numerator_count"] is None or r["denominator_count"] is None:
            assert r["value"] is None and r["value_suppressed"], r
    diabetes = _keyed(rows)[("diabetes_17", "system", "QX1")]
    indicator = DEFINITIONS.get("diabetes_17")
    restated = statistic(
        indicator,
        np.array([diabetes["numerator_count"]]),
        np.array([diabetes["denominator_count"]]),
    )
    assert diabetes["value"] == round(restated.value, 1)
