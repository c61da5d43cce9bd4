"""Date search on each database agrees with the same rules written in plain Python: every
prefix over resources with dates of every precision, with and without offsets, and Periods
with open ends."""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from joinedup.records import RecordStore
from joinedup.records.parameters import EARLIEST, LATEST, date_range

PREFIXES = ["", "eq", "ne", "lt", "le", "gt", "ge", "sa", "eb"]


def _date(rng: random.Random) -> str:
    year = rng.choice([2022, 2023, 2024])
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    hour, minute, second = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    zone = rng.choice(["Z", "+01:00", "-05:00", "+00:00"])
    return rng.choice(
        [
            f"{year}",
            f"{year}-{month:02d}",
            f"{year}-{month:02d}-{day:02d}",
            f"{year}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{zone}",
            f"{year}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.5{zone}",
        ]
    )


def _matches(prefix: str, have: tuple[datetime, datetime], want: tuple[datetime, datetime]) -> bool:
    (low, high), (w_low, w_high) = have, want
    return {
        "eq": w_low <= low and high <= w_high,
        "ne": not (w_low <= low and high <= w_high),
        "lt": low < w_low,
        "le": low < w_high,
        "gt": high > w_high,
        "ge": high > w_low,
        "sa": low >= w_high,
        "eb": high <= w_low,
    }[prefix or "eq"]


def test_date_search_agrees_with_the_rules_in_python(records_url: str) -> None:
    rng = random.Random(16)
    ranges: dict[str, tuple[datetime, datetime]] = {}
    with RecordStore(records_url) as store:
        for n in range(40):
            if n % 4 == 0:
                start, end = sorted([_date(rng), _date(rng)], key=lambda d: date_range(d)[0])
                period = {"start": start, "end": end} if n % 8 else {"start": start}
                if n % 12 == 4:
                    period = {"end": end}
                low = date_range(period["start"])[0] if "start" in period else EARLIEST
                high = date_range(period["end"])[1] if "end" in period else LATEST
                if high <= low:
                    continue
                element = {"effectivePeriod": period}
            else:
                when = _date(rng)
                low, high = date_range(when)
                element = {"effectiveDateTime": when}
            made = store.create(
                {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **element}
            )
            ranges[made.resource_id] = (low, high)
        for _ in range(120):
            prefix, value = rng.choice(PREFIXES), _date(rng)
            expected = {
                rid for rid, have in ranges.items() if _matches(prefix, have, date_range(value))
            }
            page = store.search("Observation", {"date": prefix + value, "_count": "1000"})
            assert {r["id"] for r in page.resources} == expected, f"date={prefix}{value}"


@pytest.mark.parametrize("value", ["2023-02-30", "2023-13", "ge", "eq2023-01-01T25:00:00Z"])
def test_a_date_that_is_not_a_date_is_refused(records_url: str, value: str) -> None:
    from joinedup.records import InvalidSearchError

    with RecordStore(records_url) as store, pytest.raises(InvalidSearchError, match="date:"):
        store.search("Observation", {"date": value})
