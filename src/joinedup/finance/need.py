"""Need indices from weighted populations, as NHS England's place-based allocation tool
computes them.

A weighted population (WP) redistributes a head count by need: each component's WP sums to
England's population. The need index of an area within a larger one is its WP per head over
the larger area's WP per head:

    index(place) = (WP_place / population_place) / (WP_ICB / population_ICB)

per component and overall, for places (local authority districts) within an ICB, and for an
ICB within England. The population-weighted mean of the indices of the parts is 1 exactly.
Sums use `math.fsum`, so results do not depend on the order practices are read in.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from joinedup.errors import InputError
from joinedup.reference.practices import WEIGHTED_POPULATION_COLUMNS, PracticeRecord

#: Components by the name joinedup uses, with the practice file's column.
COMPONENTS: dict[str, str] = {
    attr.removesuffix("_wp"): column for attr, column in WEIGHTED_POPULATION_COLUMNS.items()
}


@dataclass(frozen=True)
class NeedIndex:
    """One area's population, weighted populations and need indices against its parent."""

    level: str  # "place" or "icb"
    code: str
    name: str
    parent_code: str
    population: float
    weighted: dict[str, float]
    index: dict[str, float]


def _sums(practices: Iterable[PracticeRecord]) -> tuple[float, dict[str, float]]:
    rows = list(practices)
    population = math.fsum(p.population for p in rows)
    weighted = {name: math.fsum(getattr(p, f"{name}_wp") for p in rows) for name in COMPONENTS}
    return population, weighted


def _indices(
    population: float, weighted: dict[str, float], parent_pop: float, parent: dict[str, float]
) -> dict[str, float]:
    return {
        name: (weighted[name] / population) / (parent[name] / parent_pop)
        if population > 0 and parent[name] > 0
        else math.nan
        for name in COMPONENTS
    }


def icb_codes(practices: Sequence[PracticeRecord]) -> dict[str, str]:
    return {p.icb_code: p.icb_name for p in practices}


def _by_area(
    level: str, members: Sequence[PracticeRecord], parent: str, *, icb_level: bool
) -> list[NeedIndex]:
    """The need index of each area (LAD, or ICB) of `members` against all of `members`."""
    parent_pop, parent_wp = _sums(members)
    groups: dict[str, list[PracticeRecord]] = defaultdict(list)
    for p in members:
        groups[p.icb_code if icb_level else p.lad_code].append(p)
    out = []
    for code in sorted(groups):
        first = groups[code][0]
        pop, wp = _sums(groups[code])
        name = first.icb_name if icb_level else first.ltla_name
        out.append(
            NeedIndex(level, code, name, parent, pop, wp, _indices(pop, wp, parent_pop, parent_wp))
        )
    return out


def place_need(practices: Sequence[PracticeRecord], icb: str) -> list[NeedIndex]:
    """The need index of every place (local authority district) of `icb` against the ICB."""
    members = [p for p in practices if p.icb_code == icb]
    if not members:
        known = ", ".join(sorted(icb_codes(practices)))
        raise InputError("--icb", f"no practices in ICB {icb!r}; the file has {known}")
    return _by_area("place", members, icb, icb_level=False)


def icb_need(practices: Sequence[PracticeRecord]) -> list[NeedIndex]:
    """The need index of every ICB against England."""
    return _by_area("icb", practices, "England", icb_level=True)
