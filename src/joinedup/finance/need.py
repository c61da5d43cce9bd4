"""Need indices from weighted populations, as NHS England's place-based allocation tool
computes them.

A weighted population (WP) redistributes a head count by need: each component's WP sums to
the population it was built for. The need index of an area within a larger one is its WP per
head over the larger area's WP per head:

    index(area) = (WP_area / population_area) / (WP_parent / population_parent)

per component and overall: practices, PCNs and places (local authority districts) within their
ICB, and an ICB within England. The population-weighted mean of the parts' indices is 1.

Weighted populations come from two sources with the same downstream code (`PracticeNeed`):
NHS England's published practice file (`from_published`), or estimated from the warehouse's own
population (`finance.capitation`).

**Rounding.** NHS England's tool (nhsengland/ICB_Allocation_Tool_update, `utils.py`) reads the
practice file with empty and zero values taken as 1, sums each column over the practices of an
area, rounds each sum half up to a whole person, and only then divides. `rounding="tool"` does
exactly that, so its indices equal the tool's to floating-point precision; `rounding="exact"`
sums the values as published (`math.fsum`, so the result does not depend on row order).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from joinedup.errors import InputError
from joinedup.reference.practices import WEIGHTED_POPULATION_COLUMNS, PracticeRecord

#: Components by the name joinedup uses, with the practice file's column.
COMPONENTS: dict[str, str] = {
    attr.removesuffix("_wp"): column for attr, column in WEIGHTED_POPULATION_COLUMNS.items()
}

Level = Literal["practice", "pcn", "place", "icb"]
Rounding = Literal["tool", "exact"]
LEVELS: tuple[Level, ...] = ("practice", "pcn", "place", "icb")


@dataclass(frozen=True)
class PracticeNeed:
    """One practice's population and weighted population per component, from either source."""

    practice_code: str
    practice_name: str
    pcn_code: str | None
    place_code: str
    place_name: str
    icb_code: str
    icb_name: str
    population: float
    weighted: Mapping[str, float]


@dataclass(frozen=True)
class NeedIndex:
    """One area's population, weighted populations and need indices against its parent."""

    level: str  # practice, pcn, place or icb
    code: str
    name: str
    parent_code: str
    population: float
    weighted: dict[str, float]
    index: dict[str, float]


def from_published(
    practices: Iterable[PracticeRecord], pcn_of: Mapping[str, str] | None = None
) -> list[PracticeNeed]:
    """Practice rows from NHS England's file. PCNs come from `pcn_of` (practice code -> PCN
    code, e.g. a footprint's) when given, else from the file's own PCN column."""
    rows = []
    for p in practices:
        pcn = (pcn_of or {}).get(p.practice_code, p.pcn_code)
        rows.append(
            PracticeNeed(
                practice_code=p.practice_code,
                practice_name=p.practice_name,
                pcn_code=pcn,
                place_code=p.lad_code,
                place_name=p.ltla_name,
                icb_code=p.icb_code,
                icb_name=p.icb_name,
                population=p.population,
                weighted={name: getattr(p, f"{name}_wp") for name in COMPONENTS},
            )
        )
    return rows


def _half_up(value: float) -> float:
    return float(Decimal(repr(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _sums(
    rows: Sequence[PracticeNeed], components: Sequence[str], rounding: Rounding
) -> tuple[float, dict[str, float]]:
    if rounding == "tool":

        def total(values: Iterable[float]) -> float:
            return _half_up(math.fsum(v if v and not math.isnan(v) else 1.0 for v in values))

    else:

        def total(values: Iterable[float]) -> float:
            return math.fsum(values)

    population = total(r.population for r in rows)
    weighted = {c: total(r.weighted[c] for r in rows) for c in components}
    return population, weighted


def _indices(
    population: float,
    weighted: dict[str, float],
    parent_pop: float,
    parent: dict[str, float],
) -> dict[str, float]:
    return {
        name: (weighted[name] / population) / (parent[name] / parent_pop)
        if population > 0 and parent[name] > 0
        else math.nan
        for name in weighted
    }


def components_of(rows: Sequence[PracticeNeed]) -> list[str]:
    """The components every row has, in the order of the first row."""
    if not rows:
        return []
    shared = set.intersection(*(set(r.weighted) for r in rows))
    return [c for c in rows[0].weighted if c in shared]


_KEYS: dict[Level, Callable[[PracticeNeed], tuple[str, str]]] = {
    "practice": lambda r: (r.practice_code, r.practice_name),
    "pcn": lambda r: (r.pcn_code or "", r.pcn_code or ""),
    "place": lambda r: (r.place_code, r.place_name),
    "icb": lambda r: (r.icb_code, r.icb_name),
}


def indices_within(
    rows: Sequence[PracticeNeed],
    level: Level,
    parent_code: str,
    *,
    rounding: Rounding = "exact",
    names: Mapping[str, str] | None = None,
) -> list[NeedIndex]:
    """The need index of every area at `level` of `rows` against all of `rows` (the parent)."""
    if level == "pcn" and any(r.pcn_code is None for r in rows):
        raise InputError(
            "--level pcn",
            "the practices have no PCN codes: give a footprint file that assigns them",
        )
    components = components_of(rows)
    parent_pop, parent_wp = _sums(rows, components, rounding)
    groups: dict[str, list[PracticeNeed]] = defaultdict(list)
    label: dict[str, str] = {}
    for r in rows:
        code, name = _KEYS[level](r)
        groups[code].append(r)
        label.setdefault(code, (names or {}).get(code, name))
    out = []
    for code in sorted(groups):
        pop, wp = _sums(groups[code], components, rounding)
        out.append(
            NeedIndex(
                level, code, label[code], parent_code, pop, wp,
                _indices(pop, wp, parent_pop, parent_wp),
            )
        )  # fmt: skip
    return out


def icb_codes(rows: Iterable[PracticeNeed | PracticeRecord]) -> dict[str, str]:
    return {r.icb_code: r.icb_name for r in rows}


def _members(rows: Sequence[PracticeNeed], icb: str) -> list[PracticeNeed]:
    members = [r for r in rows if r.icb_code == icb]
    if not members:
        known = ", ".join(sorted(icb_codes(rows)))
        raise InputError("--icb", f"no practices in ICB {icb!r}; the file has {known}")
    return members


def need_within_icb(
    rows: Sequence[PracticeNeed],
    icb: str,
    level: Level = "place",
    *,
    rounding: Rounding = "exact",
    names: Mapping[str, str] | None = None,
) -> list[NeedIndex]:
    """The need index of every practice, PCN or place of `icb` against the ICB."""
    if level == "icb":
        raise InputError("--level", "an ICB's index is against England: use icb_need")
    return indices_within(_members(rows, icb), level, icb, rounding=rounding, names=names)


def place_need(
    practices: Sequence[PracticeRecord], icb: str, *, rounding: Rounding = "tool"
) -> list[NeedIndex]:
    """The need index of every place (local authority district) of `icb` against the ICB, from
    NHS England's file, rounded as its tool rounds by default."""
    return need_within_icb(from_published(practices), icb, "place", rounding=rounding)


def icb_need(
    practices: Sequence[PracticeRecord], *, rounding: Rounding = "tool"
) -> list[NeedIndex]:
    """The need index of every ICB against England."""
    return indices_within(from_published(practices), "icb", "England", rounding=rounding)
