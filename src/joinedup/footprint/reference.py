"""Build the footprint of a real ICB from NHS England's practice-level weighted populations.

Places are the local authority districts the ICB's practices sit in. The file carries no PCN
codes, so neighbourhoods of about 40,000 people are formed per place from practice locations by
recursive bisection: split the practices along the longer side of their bounding box so that the
population on each side matches the number of neighbourhoods wanted there, and repeat. The result
is deterministic and compact, but it is not the real PCN map: the footprint's notes say so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from joinedup.errors import InputError
from joinedup.footprint.model import (
    Footprint,
    Organisation,
    OrganisationType,
    Pcn,
    Place,
    PlaceProfile,
    Practice,
    System,
)
from joinedup.reference.practices import PRACTICE_FILE_NAME, PracticeRecord

NEIGHBOURHOOD_TARGET = 40_000
NEIGHBOURHOOD_MIN = 30_000
NEIGHBOURHOOD_MAX = 50_000


@dataclass(frozen=True, slots=True)
class IcbSummary:
    """One ICB in the practice file: what `joinedup footprint list-icbs` shows."""

    icb_code: str
    icb_name: str
    practice_count: int
    population: float


def icb_codes(practices: Iterable[PracticeRecord]) -> list[str]:
    """The ICB codes present in the practice file, sorted."""
    return sorted({p.icb_code for p in practices})


def icb_summaries(practices: Iterable[PracticeRecord]) -> list[IcbSummary]:
    """Each ICB's name, practice count and projected population, sorted by code."""
    names: dict[str, str] = {}
    counts: dict[str, int] = defaultdict(int)
    population: dict[str, float] = defaultdict(float)
    for p in practices:
        names.setdefault(p.icb_code, p.icb_name)
        counts[p.icb_code] += 1
        population[p.icb_code] += p.population
    return [IcbSummary(code, names[code], counts[code], population[code]) for code in sorted(names)]


def footprint_from_reference(
    practices: Sequence[PracticeRecord],
    icb_code: str,
    *,
    neighbourhood_size: int = NEIGHBOURHOOD_TARGET,
) -> Footprint:
    """The footprint of ICB `icb_code`: its practices, places (districts) and neighbourhoods.

    List sizes are NHS England's projected `Population` rounded to whole people (at least 1).
    Neighbourhoods stand in for PCNs: each place gets round(population / neighbourhood_size)
    of them (at least one), formed by location.
    """
    code = icb_code.strip().upper()
    mine = sorted(
        (p for p in practices if p.icb_code.upper() == code), key=lambda p: p.practice_code
    )
    if not mine:
        known = icb_codes(practices)
        raise InputError(
            f"ICB {icb_code!r}",
            "no practices for this ICB in the practice file; valid codes include "
            f"{', '.join(known[:8])}{' …' if len(known) > 8 else ''} "
            "(`joinedup footprint list-icbs` lists them all)",
        )
    if neighbourhood_size <= 0:
        raise InputError("neighbourhood_size", "must be a positive number of people")

    by_place: dict[str, list[PracticeRecord]] = defaultdict(list)
    for p in mine:
        by_place[p.lad_code].append(p)

    places: list[Place] = []
    pcns: list[Pcn] = []
    out_practices: list[Practice] = []
    raised: list[str] = []
    for lad_code in sorted(by_place, key=lambda c: (by_place[c][0].ltla_name, c)):
        members = by_place[lad_code]
        ltla_name = members[0].ltla_name
        try:
            place = Place(code=lad_code, name=ltla_name, profile=PlaceProfile.REFERENCE)
        except ValidationError as err:
            raise InputError(f"LAD {lad_code!r}", _first(err)) from err
        places.append(place)
        groups = neighbourhoods(members, neighbourhood_size)
        for n, group in enumerate(groups, start=1):
            pcn_code = f"{lad_code}-N{n:02d}"
            pcns.append(Pcn(code=pcn_code, name=f"{ltla_name} neighbourhood {n}", place=lad_code))
            for p in sorted(group, key=lambda p: p.practice_code):
                list_size = max(1, round(p.population))
                if list_size != round(p.population):
                    raised.append(p.practice_code)
                try:
                    practice = Practice(
                        code=p.practice_code,
                        name=p.practice_name,
                        place=lad_code,
                        pcn=pcn_code,
                        postcode=p.postcode,
                        latitude=p.latitude,
                        longitude=p.longitude,
                        list_size=list_size,
                    )
                except ValidationError as err:
                    raise InputError(f"practice {p.practice_code}", _first(err)) from err
                out_practices.append(practice)

    icb_name = mine[0].icb_name
    organisations = [Organisation(code=code, name=icb_name, type=OrganisationType.ICB)]
    organisations += [
        Organisation(
            code=f"LA-{place.code}",
            name=f"{place.name} (local authority)",
            type=OrganisationType.LOCAL_AUTHORITY,
            place=place.code,
        )
        for place in places
    ]
    footprint = Footprint.parse(
        {
            "system": System(code=code, name=icb_name, is_real=True),
            "places": places,
            "pcns": pcns,
            "practices": out_practices,
            "organisations": organisations,
        },
        source=f"footprint of ICB {code}",
    )
    notes = _notes(footprint, neighbourhood_size, raised)
    return footprint.model_copy(update={"notes": notes})


def _first(err: ValidationError) -> str:
    """The first problem pydantic found, as 'field: reason'."""
    first = err.errors()[0]
    field = ".".join(str(x) for x in first["loc"])
    return f"{field}: {first['msg']}" if field else first["msg"]


def neighbourhoods(
    practices: Sequence[PracticeRecord], size: int = NEIGHBOURHOOD_TARGET
) -> list[list[PracticeRecord]]:
    """Split a place's practices into compact groups of about `size` people each.

    Tries round(population / size) groups and its neighbours, keeping the count that leaves
    fewest groups outside 30–50k; each split is a recursive bisection followed by moving single
    practices between neighbouring groups while that brings groups into range.
    """
    points = _points(practices)
    ideal = sum(pt.weight for pt in points) / size
    candidates = sorted({max(1, math.floor(ideal)), max(1, round(ideal)), max(1, math.ceil(ideal))})
    best: tuple[tuple[int, float, float], list[list[_Point]]] | None = None
    for k in candidates:
        groups = _refine(_bisect(points, min(k, len(points))))
        sizes = [sum(pt.weight for pt in g) for g in groups]
        score = (
            sum(_excess(s) > 0 for s in sizes),
            sum(_excess(s) for s in sizes),
            abs(k - ideal),
        )
        if best is None or score < best[0]:
            best = (score, groups)
    chosen = best[1] if best is not None else [points]
    # Number neighbourhoods north to south, then west to east, so codes read like a map.
    chosen.sort(key=lambda g: (-round(_centre(g)[1], 2), _centre(g)[0]))
    return [[pt.practice for pt in g] for g in chosen]


@dataclass(frozen=True, slots=True)
class _Point:
    practice: PracticeRecord
    x: float  # east-west, in latitude degrees' length so both axes compare
    y: float  # latitude
    weight: float


def _points(practices: Sequence[PracticeRecord]) -> list[_Point]:
    located = [p for p in practices if p.latitude is not None and p.longitude is not None]
    total = sum(p.population for p in located) or 1.0
    mean_lat = sum((p.latitude or 0.0) * p.population for p in located) / total
    mean_lon = sum((p.longitude or 0.0) * p.population for p in located) / total
    scale = math.cos(math.radians(mean_lat))
    return [
        _Point(
            practice=p,
            x=(p.longitude if p.longitude is not None else mean_lon) * scale,
            y=p.latitude if p.latitude is not None else mean_lat,
            weight=p.population,
        )
        for p in practices
    ]


def _excess(size: float) -> float:
    """How far a neighbourhood's population lies outside 30–50k (0 inside)."""
    return max(0.0, NEIGHBOURHOOD_MIN - size, size - NEIGHBOURHOOD_MAX)


def _bisect(points: list[_Point], k: int) -> list[list[_Point]]:
    if k <= 1 or len(points) <= 1:
        return [points]
    k_left = k // 2
    width = max(pt.x for pt in points) - min(pt.x for pt in points)
    height = max(pt.y for pt in points) - min(pt.y for pt in points)
    axes = ("x", "y") if width >= height else ("y", "x")
    best_score, best_cut, best_order = math.inf, 0, points
    for rank, axis in enumerate(axes):
        ordered = sorted(points, key=lambda pt: (getattr(pt, axis), pt.practice.practice_code))
        cut, error = _cut(ordered, k_left, k - k_left)
        # Prefer the longer axis (compact neighbourhoods) unless the other balances better.
        score = error + rank * 0.05
        if score < best_score:
            best_score, best_cut, best_order = score, cut, ordered
    return _bisect(best_order[:best_cut], k_left) + _bisect(best_order[best_cut:], k - k_left)


def _cut(ordered: list[_Point], k_left: int, k_right: int) -> tuple[int, float]:
    """Index splitting `ordered` so each side's population fits its number of groups.

    The error is the left side's miss as a fraction of the population per group; each side
    keeps at least as many practices as groups it must make.
    """
    total = sum(pt.weight for pt in ordered)
    per_group = total / (k_left + k_right) or 1.0
    target = per_group * k_left
    best_index, best_error = k_left, math.inf
    running = 0.0
    for i in range(1, len(ordered)):
        running += ordered[i - 1].weight
        if i < k_left or len(ordered) - i < k_right:
            continue
        error = abs(running - target) / per_group
        if error < best_error:
            best_index, best_error = i, error
    return best_index, best_error


def _refine(groups: list[list[_Point]], neighbours: int = 3) -> list[list[_Point]]:
    """Move single practices between nearby groups while that shrinks the total excess.

    Bisection balances populations only as finely as practice sizes allow; one move from a
    neighbouring group often brings a neighbourhood inside 30–50k. Deterministic: the best
    move (then the shortest) is taken each round.
    """
    groups = [list(g) for g in groups]
    for _ in range(10 * len(groups)):
        sizes = [sum(pt.weight for pt in g) for g in groups]
        centres = [_centre(g) for g in groups]
        best: tuple[float, float, int, int, int] | None = None
        for a, size_a in enumerate(sizes):
            if _excess(size_a) == 0:
                continue
            near = sorted(
                (b for b in range(len(groups)) if b != a),
                key=lambda b: _distance(centres[a], centres[b]),
            )[:neighbours]
            for b in near:
                donor, taker = (a, b) if size_a > NEIGHBOURHOOD_MAX else (b, a)
                if len(groups[donor]) <= 1:
                    continue
                before = _excess(sizes[donor]) + _excess(sizes[taker])
                for i, pt in enumerate(groups[donor]):
                    after = _excess(sizes[donor] - pt.weight) + _excess(sizes[taker] + pt.weight)
                    gain = before - after
                    if gain <= 0:
                        continue
                    dist = _distance((pt.x, pt.y), centres[taker])
                    if best is None or (-gain, dist) < (best[0], best[1]):
                        best = (-gain, dist, donor, taker, i)
        if best is None:
            break
        _, _, donor, taker, i = best
        groups[taker].append(groups[donor].pop(i))
    return groups


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _centre(group: list[_Point]) -> tuple[float, float]:
    return (sum(pt.x for pt in group) / len(group), sum(pt.y for pt in group) / len(group))


def _notes(footprint: Footprint, neighbourhood_size: int, raised: list[str]) -> list[str]:
    notes = [
        f"Built from NHS England's practice-level weighted populations ({PRACTICE_FILE_NAME}); "
        "list sizes are its projected registered Population, rounded.",
        "The practice file has no PCN codes: neighbourhoods standing in for PCNs were formed "
        f"by location, about {neighbourhood_size:,} people each within every place "
        "(local authority district); they are not the real PCNs.",
        "NHS trusts and provider collaboratives are not in the practice file: organisations are "
        "the ICB and one local authority per place; add trusts by editing the file.",
    ]
    place_names = {p.code: p.name for p in footprint.places}
    pcn_place = {p.code: p.place for p in footprint.pcns}
    odd = [
        f"{code} ({place_names[pcn_place[code]]}) {size:,}"
        for code, size in footprint.pcn_population().items()
        if not NEIGHBOURHOOD_MIN <= size <= NEIGHBOURHOOD_MAX
    ]
    if odd:
        notes.append(
            f"Neighbourhoods outside {NEIGHBOURHOOD_MIN:,}–{NEIGHBOURHOOD_MAX:,} people "
            f"(a small place or a large practice): {len(odd)} of {len(footprint.pcns)}, "
            f"{'; '.join(odd)}."
        )
    if raised:
        notes.append(
            f"{len(raised)} practice(s) with a projected population under 0.5 were given a "
            f"list size of 1: {', '.join(raised)}."
        )
    return notes
