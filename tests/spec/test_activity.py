"""Spec: activity counts, costs and bed days, and rates per 1,000 by age band."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from spec_tables import activity, p, person, rows

from joinedup.errors import ConfigurationError
from joinedup.warehouse.analytics import BROAD_BANDS, activity_summary, run
from joinedup.warehouse.engines import Engine

START, END = date(2023, 1, 1), date(2023, 12, 31)
SUMMARY = ["activity_type", "point_of_delivery", "events", "cost_gbp", "bed_days"]
RATES = ["activity_type", "age_band", "events", "people", "rate_per_1000"]


def _summary_data(engine: Engine) -> None:
    engine.load("person", person(p(1, (1980, 1)), p(2, (1980, 1), opted_out=True)))
    engine.load(
        "activity",
        activity(
            (1, 1, "emergency_admission", START, Decimal("1000.25"), 3),
            (2, 1, "emergency_admission", END, Decimal("500.50"), 0),
            (3, 1, "gp_consultation", date(2023, 6, 1), Decimal("42.00"), None),
            (4, 1, "gp_consultation", date(2024, 1, 1), Decimal("42.00"), None),  # after
            (5, 2, "emergency_admission", date(2023, 3, 1), Decimal("2000.00"), 10),
            (6, 1, "outpatient_attendance", date(2022, 12, 31), Decimal("150.00"), None),
        ),
    )


def test_activity_summary(engine: Engine) -> None:
    _summary_data(engine)
    result = run(engine, "activity_summary", start_date=START, end_date=END)
    assert rows(result, SUMMARY) == [
        ("emergency_admission", "NEL", 2, Decimal("1500.75"), 3),
        ("gp_consultation", "GP", 1, Decimal("42.00"), 0),
    ]


def test_activity_summary_with_opt_outs(engine: Engine) -> None:
    _summary_data(engine)
    result = run(
        engine, "activity_summary", start_date=START, end_date=END, exclude_opted_out=False
    )
    assert rows(result, SUMMARY) == [
        ("emergency_admission", "NEL", 3, Decimal("3500.75"), 13),
        ("gp_consultation", "GP", 1, Decimal("42.00"), 0),
    ]


def test_activity_rates_band_events_at_event_and_people_at_mid_period(engine: Engine) -> None:
    # The middle of 2023 is 2 July.
    engine.load(
        "person",
        person(
            p(1, (2005, 8)),  # 17 at mid-period, 18 by September
            p(2, (1990, 1)),
            p(3, (1950, 1), died=date(2023, 3, 1)),  # dead by mid-period
            p(4, (1948, 1)),  # 75
            p(5, (1985, 1), opted_out=True),
            p(6, (1995, 5)),
            p(7, (1990, 1)),
        ),
    )
    engine.load(
        "activity",
        activity(
            (1, 1, "emergency_admission", date(2023, 3, 1), Decimal("1"), 1),
            (2, 1, "emergency_admission", date(2023, 9, 1), Decimal("1"), 1),
            (3, 2, "emergency_admission", date(2023, 5, 5), Decimal("1"), 1),
            (4, 2, "ae_attendance", date(2023, 5, 5), Decimal("1"), None),
            (5, 3, "emergency_admission", date(2023, 2, 1), Decimal("1"), 1),
            (6, 5, "emergency_admission", date(2023, 6, 1), Decimal("1"), 1),
        ),
    )
    result = run(engine, "activity_rates", start_date=START, end_date=END, bands=BROAD_BANDS)
    assert rows(result, RATES) == [
        ("ae_attendance", "0-17", 0, 1, 0.0),
        ("ae_attendance", "18-64", 1, 3, 333.3333),
        ("ae_attendance", "65-74", 0, 0, None),
        ("ae_attendance", "75-84", 0, 1, 0.0),
        ("emergency_admission", "0-17", 1, 1, 1000.0),
        ("emergency_admission", "18-64", 2, 3, 666.6667),
        ("emergency_admission", "65-74", 1, 0, None),
        ("emergency_admission", "75-84", 0, 1, 0.0),
    ]


def test_a_period_must_not_end_before_it_starts() -> None:
    with pytest.raises(ConfigurationError, match="before it starts"):
        activity_summary(END, START)
