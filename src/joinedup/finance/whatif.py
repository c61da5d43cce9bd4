"""What-if: change a driver of cost and see what it does to each place's cost and allocation.

A scenario changes the activity behind the need model, for everyone or for the people of one
place or one Bridges to Health segment (as they were at the start of the fitting year):

- `change`: an activity type's volume (and so cost) changes by a share, e.g. emergency
  admissions -10%;
- `shift`: a share of one activity type moves to another, e.g. 20% of outpatient attendances
  to community contacts, each moved contact costed at the receiving service's unit cost (the
  data's average unless given).

The need model is refitted on the changed activity and every practice reweighted; the effect
per place is the change in its modelled cost, in its target and in its first-year allocation
under the configured pace of change. Targets move because need is relative: a place whose
people use less gets a smaller share of the same total.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, model_validator

from joinedup.finance.capitation import Cell, Estimate, component_cost
from joinedup.finance.money import pence
from joinedup.finance.schema import FinanceModel, Pounds, Rate
from joinedup.population.conditions import SEGMENTS
from joinedup.warehouse.schema import ACTIVITY_TYPES

#: Each activity type in words (plural), for scenario descriptions and forms.
ACTIVITY_LABELS: dict[str, str] = {
    "gp_consultation": "GP consultations",
    "ae_attendance": "A&E attendances",
    "emergency_admission": "emergency admissions",
    "elective_admission": "elective admissions",
    "day_case": "day cases",
    "outpatient_attendance": "outpatient attendances",
    "community_contact": "community contacts",
    "mental_health_contact": "mental health contacts",
    "social_care_package": "social care packages",
}
#: Each Bridges to Health segment in words.
SEGMENT_LABELS: dict[str, str] = {s.key: s.label for s in SEGMENTS}


def _known(kind: str, where: str) -> None:
    if kind not in ACTIVITY_TYPES:
        raise ValueError(
            f"{where}: unknown activity type {kind!r}; known: {', '.join(ACTIVITY_TYPES)}"
        )


class _Driver(FinanceModel):
    name: str = Field(min_length=1)
    place: str | None = Field(None, description="Only the people of this place.")
    segment: str | None = Field(None, description="Only the people of this segment.")


class ActivityChange(_Driver):
    """An activity type's volume changes by `change` (-0.1 is 10% fewer)."""

    kind: Literal["change"] = "change"
    activity_type: str
    change: Rate = Field(gt=-1, le=10)

    @model_validator(mode="after")
    def _check(self) -> ActivityChange:
        _known(self.activity_type, "activity_type")
        return self


class ActivityShift(_Driver):
    """A share of one activity type moves to another."""

    kind: Literal["shift"] = "shift"
    from_activity: str
    to_activity: str
    share: Rate = Field(gt=0, le=1)
    unit_cost_gbp: Pounds | None = Field(
        None, description="Cost of each moved contact; default the data's average."
    )

    @model_validator(mode="after")
    def _check(self) -> ActivityShift:
        _known(self.from_activity, "from_activity")
        _known(self.to_activity, "to_activity")
        if self.from_activity == self.to_activity:
            raise ValueError("from_activity and to_activity must differ")
        if self.unit_cost_gbp is not None and self.unit_cost_gbp < 0:
            raise ValueError("unit_cost_gbp cannot be negative")
        return self


Driver = Annotated[ActivityChange | ActivityShift, Field(discriminator="kind")]


def _matches(cell: Cell, driver: ActivityChange | ActivityShift) -> bool:
    return (driver.place is None or cell.place_code == driver.place) and (
        driver.segment is None or cell.segment == driver.segment
    )


def _unit_cost(cells: Sequence[Cell], kind: str) -> float:
    count = math.fsum(c.activity_count[kind] for c in cells)
    return math.fsum(c.activity_pence[kind] for c in cells) / count if count else 0.0


def apply_driver(cells: Sequence[Cell], driver: ActivityChange | ActivityShift) -> list[Cell]:
    """The cells with the driver applied to the matching ones (counts may become fractional)."""
    if isinstance(driver, ActivityShift):
        price = (
            float(pence(driver.unit_cost_gbp))
            if driver.unit_cost_gbp is not None
            else _unit_cost(cells, driver.to_activity)
        )
    out = []
    for cell in cells:
        if not _matches(cell, driver):
            out.append(cell)
            continue
        count, cost = dict(cell.activity_count), dict(cell.activity_pence)
        if isinstance(driver, ActivityChange):
            factor = 1 + float(driver.change)
            count[driver.activity_type] *= factor
            cost[driver.activity_type] *= factor
        else:
            share = float(driver.share)
            moved = count[driver.from_activity] * share
            count[driver.from_activity] -= moved
            cost[driver.from_activity] *= 1 - share
            count[driver.to_activity] += moved
            cost[driver.to_activity] += moved * price
        out.append(replace(cell, activity_count=count, activity_pence=cost))
    return out


@dataclass(frozen=True)
class PlaceEffect:
    """What a scenario does to one place."""

    scenario: str
    place_code: str
    place_name: str
    baseline_cost_pence: int
    scenario_cost_pence: int
    baseline_index: float
    scenario_index: float
    baseline_target_pence: int
    scenario_target_pence: int
    baseline_allocation_pence: int
    scenario_allocation_pence: int


def people_in_scope(cells: Sequence[Cell], driver: ActivityChange | ActivityShift) -> int:
    """How many people a driver changes the activity of (its place and segment)."""
    return sum(cell.people for cell in cells if _matches(cell, driver))


def place_costs(cells: Sequence[Cell], estimate: Estimate) -> dict[str, float]:
    """Modelled NHS cost (pence) of each place's people over the fitting year."""
    total: dict[str, float] = defaultdict(float)
    for cell in cells:
        total[cell.place_code] += math.fsum(component_cost(cell, estimate.settings).values())
    return dict(total)


def _percent(share: Decimal) -> str:
    text = f"{abs(Decimal(share)) * 100:.1f}"
    return text.removesuffix(".0") + "%"


def describe(
    driver: ActivityChange | ActivityShift, place_names: Mapping[str, str] | None = None
) -> str:
    """A driver in words, for tables, pages and the report: "10% fewer emergency admissions,
    for the people of Riverside City". Places are named from `place_names` (their code when
    not given), segments and activity types always in words."""
    place = (place_names or {}).get(driver.place, driver.place) if driver.place else None
    segment = None
    if driver.segment:
        segment = SEGMENT_LABELS.get(driver.segment, driver.segment.replace("_", " "))
    if place and segment:
        scope = f", for the people of {place} in the segment \u201c{segment}\u201d"
    elif place:
        scope = f", for the people of {place}"
    elif segment:
        scope = f", for people in the segment \u201c{segment}\u201d"
    else:
        scope = ", for everyone"

    def label(kind: str) -> str:
        return ACTIVITY_LABELS.get(kind, kind.replace("_", " "))

    if isinstance(driver, ActivityChange):
        change = Decimal(driver.change)
        way = "fewer" if change < 0 else "more"
        what = f"{_percent(change)} {way} {label(driver.activity_type)}"
    else:
        what = (
            f"{_percent(Decimal(driver.share))} of {label(driver.from_activity)} moved to "
            f"{label(driver.to_activity)}"
        )
    return what + scope
