"""Spec: the referral-to-treatment waiting list by weeks waited."""

from __future__ import annotations

from datetime import date

from spec_tables import p, person, rows, table

from joinedup.warehouse.analytics import run
from joinedup.warehouse.engines import Engine

REF = date(2024, 3, 31)
COLUMNS = ["weeks_band", "pathways", "share"]


def _load(engine: Engine) -> None:
    engine.load("person", person(p(1, (1980, 1)), p(2, (1980, 1), opted_out=True)))
    pathways = [
        (1, 1, REF, None),  # referred today: 0 weeks
        (2, 1, date(2023, 11, 26), None),  # 126 days: exactly 18 weeks
        (3, 1, date(2023, 11, 27), None),  # 125 days: under 18 weeks
        (4, 1, date(2023, 4, 1), None),  # 365 days: over 52 weeks
        (5, 1, date(2023, 1, 1), date(2024, 2, 1)),  # treated before ref: closed
        (6, 1, date(2023, 1, 1), date(2024, 4, 1)),  # treated after ref: open, 65 weeks
        (7, 1, date(2024, 4, 1), None),  # referred after ref
        (8, 2, date(2024, 1, 1), None),  # opted out, 13 weeks
    ]
    engine.load(
        "rtt_pathway",
        table(
            "rtt_pathway",
            (
                {
                    "pathway_id": i,
                    "person_id": who,
                    "clock_start_date": start,
                    "clock_stop_date": stop,
                    "stop_reason": None if stop is None else "admitted",
                }
                for i, who, start, stop in pathways
            ),
            {"provider_code": "RXX", "specialty_code": "110"},
        ),
    )


def test_rtt_waiting_list(engine: Engine) -> None:
    _load(engine)
    assert rows(run(engine, "rtt_waiting_list", ref_date=REF), COLUMNS) == [
        ("0-18", 2, 0.4),
        ("18-52", 1, 0.2),
        ("52+", 2, 0.4),
    ]


def test_rtt_waiting_list_with_opt_outs(engine: Engine) -> None:
    _load(engine)
    result = run(engine, "rtt_waiting_list", ref_date=REF, exclude_opted_out=False)
    assert rows(result, COLUMNS) == [
        ("0-18", 3, 0.5),
        ("18-52", 1, 0.166667),
        ("52+", 2, 0.333333),
    ]
