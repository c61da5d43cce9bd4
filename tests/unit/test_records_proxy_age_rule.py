"""The age rule for a parent's or guardian's proxy access (records.proxy_age): the birthday
it ends on, 29 February in a year without one, birth dates of a year or a month only, and the
relationships it does not apply to."""

from __future__ import annotations

from datetime import date

import pytest

from joinedup.records.proxy_age import birthday, earliest_birth_date, proxy_age_end


@pytest.mark.parametrize(
    ("born", "age", "on"),
    [
        (date(2010, 6, 2), 16, date(2026, 6, 2)),
        (date(2012, 2, 29), 13, date(2025, 2, 28)),  # 2025 has no 29 February: the 28th
        (date(2008, 2, 29), 16, date(2024, 2, 29)),  # 2024 has one
        (date(2084, 2, 29), 16, date(2100, 2, 28)),  # 2100 is not a leap year
    ],
)
def test_the_birthday_an_age_is_reached_on(born: date, age: int, on: date) -> None:
    assert birthday(born, age) == on


@pytest.mark.parametrize(
    ("value", "earliest"),
    [
        ("2010-06-02", date(2010, 6, 2)),
        ("2010-06", date(2010, 6, 1)),  # the earliest it can mean: access ends no later
        ("2010", date(2010, 1, 1)),
        ("2010-02-30", None),
        ("02/06/2010", None),
        (None, None),
        (20100602, None),
    ],
)
def test_a_birth_date_is_read_as_its_earliest_day(value: object, earliest: date | None) -> None:
    assert earliest_birth_date(value) == earliest


def test_the_day_before_the_birthday_is_the_last() -> None:
    end = proxy_age_end("c1", {"birthDate": "2010-06-02"}, "parent")
    assert end is not None and end.last_day == date(2026, 6, 1)
    assert end.in_force(date(2026, 6, 1)) and not end.in_force(date(2026, 6, 2))
    nobody = proxy_age_end("c2", {"resourceType": "Patient"}, "guardian")
    assert nobody is not None and not nobody.in_force(date(1900, 1, 1))
    assert "has no birthDate" in nobody.refusal()
    for relationship in ("carer", "attorney"):
        assert proxy_age_end("c1", {"birthDate": "2010-06-02"}, relationship) is None
