"""A clock for the records store's tests that moves on a fixed step each time it is read, so
every instant a store writes is known exactly (and the same in two stores given two clocks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """Reads START plus one step, then two steps, and so on."""

    def __init__(self, step: timedelta = timedelta(seconds=1)) -> None:
        self.now = START
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now
