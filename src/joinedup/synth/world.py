"""Everything a chunk of the synthetic population needs to know about the system it lives in.

A `World` is built once per run from the footprint and the place shapes, then handed to every
worker; chunks only read it. Dates are whole days since 1970-01-01, as Arrow's date32.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from joinedup.footprint import Footprint, OrganisationType
from joinedup.synth import params
from joinedup.synth.shapes import AGES, PlaceShape, allocate

EPOCH = dt.date(1970, 1, 1)
#: A postcode district (outward code): A9, A99, AA9, AA99, A9A or AA9A.
_DISTRICT = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")
#: Outward codes for practices with no postcode (the fictional footprints): area ZZ is no real
#: postal area, and ZZ99 is left to the NHS pseudo-postcodes (no fixed abode, born abroad).
FICTIONAL_AREA = "ZZ"
_FICTIONAL_DISTRICTS = 98


def to_days(day: dt.date) -> int:
    return (day - EPOCH).days


@dataclass(frozen=True)
class PlaceTables:
    """Sampling tables for one place, flattened so one searchsorted draws (area, age)."""

    cdf: NDArray[np.float64]  # cumulative over area-major (area, age) cells
    area_offset: int  # index of this place's first area in World.lsoa_codes
    n_areas: int
    ethnicity_cdf: NDArray[np.float64]


@dataclass
class Calibration:
    """Constants measured once on a national-shaped sample so that rates by age and sex match
    England however sick or healthy a place is, in every year of the history."""

    years: int = 1
    #: mean service multiplier among the living by year, service, sex (0 female, 1 male) and
    #: five-year age band.
    service_norm: NDArray[np.float64] = field(default_factory=lambda: np.ones((1, 1, 2, 19)))
    #: mean mortality multiplier among the living by year, sex and five-year age band.
    mortality_norm: NDArray[np.float64] = field(default_factory=lambda: np.ones((1, 2, 19)))
    #: frailty score thresholds for mild, moderate and severe among people 65+.
    frailty_thresholds: NDArray[np.float64] = field(
        default_factory=lambda: np.array([np.inf, np.inf, np.inf])
    )
    #: factor on each condition's probability so that prevalence among survivors at the end of
    #: the history (not among everyone at the start) meets its target.
    prevalence_adjust: NDArray[np.float64] = field(default_factory=lambda: np.ones(1))


@dataclass
class World:
    footprint_name: str
    seed: int
    people: int
    start_day: int
    end_day: int  # last day of the history (inclusive)
    practice_codes: list[str]
    practice_place: NDArray[np.int32]  # place index of each practice
    practice_position: NDArray[np.float64]  # 0..1 position of a practice within its place
    place_codes: list[str]
    places: list[PlaceTables]
    lsoa_codes: list[str]
    lsoa_imd: NDArray[np.int16]
    #: provider organisation code for each place (rows) and activity type (columns).
    providers: list[list[str]]
    provider_codes: list[str]
    #: practice index of each person in the base population (global, in person index order).
    person_practice: NDArray[np.int32]
    #: postcode district (outward code) of each practice, where its patients live.
    practice_district: list[str] = field(default_factory=list)
    calibration: Calibration = field(default_factory=Calibration)

    @property
    def years(self) -> int:
        return round((self.end_day + 1 - self.start_day) / 365.25)

    def year_bounds(self, year: int) -> tuple[int, int]:
        """First day and first day after the end of history year `year` (0-based)."""
        start = dt.date(1970, 1, 1) + dt.timedelta(days=self.start_day)
        a = start.replace(year=start.year + year)
        b = start.replace(year=start.year + year + 1)
        return to_days(a), min(to_days(b), self.end_day + 1)


def build_world(
    footprint: Footprint,
    shapes: dict[str, PlaceShape],
    *,
    people: int,
    seed: int,
    start: dt.date,
    years: int,
) -> World:
    """Assemble the world for a run: who is registered where, and where each place's people live."""
    place_codes = [p.code for p in footprint.places]
    place_index = {c: i for i, c in enumerate(place_codes)}
    practices = footprint.practices
    practice_place = np.asarray([place_index[p.place] for p in practices], np.int32)
    position = np.zeros(len(practices))
    for pi in range(len(place_codes)):
        members = np.flatnonzero(practice_place == pi)
        position[members] = (np.arange(len(members)) + 0.5) / max(len(members), 1)

    counts = allocate(people, np.asarray([p.list_size for p in practices], float))
    person_practice = np.repeat(np.arange(len(practices), dtype=np.int32), counts)

    lsoa_codes: list[str] = []
    imd: list[NDArray[np.int16]] = []
    tables: list[PlaceTables] = []
    for code in place_codes:
        shape = shapes[code]
        area = shape.areas
        order = np.argsort(area.imd_deciles, kind="stable")  # deprived first: catchment gradient
        cells = area.age_counts[order].ravel()
        cdf = np.cumsum(cells) / cells.sum()
        tables.append(
            PlaceTables(
                cdf=cdf,
                area_offset=len(lsoa_codes),
                n_areas=len(order),
                ethnicity_cdf=np.cumsum(shape.ethnicity) / shape.ethnicity.sum(),
            )
        )
        lsoa_codes.extend(str(c) for c in area.lsoa_codes[order])
        imd.append(area.imd_deciles[order])

    providers, provider_codes = _providers(footprint, place_codes)
    end = start.replace(year=start.year + years) - dt.timedelta(days=1)
    return World(
        footprint_name=footprint.system.name,
        seed=seed,
        people=people,
        start_day=to_days(start),
        end_day=to_days(end),
        practice_codes=[p.code for p in practices],
        practice_place=practice_place,
        practice_position=position,
        place_codes=place_codes,
        places=tables,
        lsoa_codes=lsoa_codes,
        lsoa_imd=np.concatenate(imd).astype(np.int16),
        providers=providers,
        provider_codes=provider_codes,
        person_practice=person_practice,
        practice_district=practice_districts(footprint),
    )


def district(postcode: str | None) -> str | None:
    """The postcode district (outward code) of a full postcode, or None when it is no valid UK
    postcode: "CH41 5LH" and "ch415lh" give "CH41"."""
    if not postcode:
        return None
    compact = re.sub(r"\s+", "", postcode).upper()
    outward, inward = compact[:-3], compact[-3:]
    valid_inward = len(inward) == 3 and inward[0].isdigit() and inward[1:].isalpha()
    return outward if valid_inward and _DISTRICT.match(outward) else None


def practice_districts(footprint: Footprint) -> list[str]:
    """Each practice's postcode district: from its own postcode, else from another practice of
    its PCN, else a fictional `ZZn` district shared by the PCN (the built-in footprint has no
    postcodes)."""
    own = [district(p.postcode) for p in footprint.practices]
    by_pcn: dict[str, str] = {}
    for practice, found in zip(footprint.practices, own, strict=True):
        if found is not None:
            by_pcn.setdefault(practice.pcn, found)
    pcn_number = {pcn.code: i for i, pcn in enumerate(footprint.pcns)}
    return [
        found
        or by_pcn.get(practice.pcn)
        or f"{FICTIONAL_AREA}{pcn_number[practice.pcn] % _FICTIONAL_DISTRICTS + 1}"
        for practice, found in zip(footprint.practices, own, strict=True)
    ]


_SERVICE_PROVIDER: dict[str, tuple[OrganisationType, ...]] = {
    "gp_consultation": (),  # the person's practice
    "ae_attendance": (OrganisationType.ACUTE_TRUST,),
    "emergency_admission": (OrganisationType.ACUTE_TRUST,),
    "elective_admission": (OrganisationType.ACUTE_TRUST,),
    "day_case": (OrganisationType.ACUTE_TRUST,),
    "outpatient_attendance": (OrganisationType.ACUTE_TRUST,),
    "community_contact": (OrganisationType.COMMUNITY_TRUST, OrganisationType.ACUTE_TRUST),
    "mental_health_contact": (OrganisationType.MENTAL_HEALTH_TRUST,),
    "social_care_package": (OrganisationType.LOCAL_AUTHORITY,),
}


def _providers(footprint: Footprint, place_codes: list[str]) -> tuple[list[list[str]], list[str]]:
    """Pick the provider of each service in each place: one serving that place if any, else
    one serving the whole system, else the ICB itself (reference footprints list no trusts)."""
    fallback = footprint.system.code
    table: list[list[str]] = []
    for place in place_codes:
        row: list[str] = []
        for service in params.SERVICES:
            kinds = _SERVICE_PROVIDER[service.activity_type]
            choice = ""
            for kind in kinds:
                local = [o.code for o in footprint.organisations_of(kind) if o.place == place]
                anywhere = [o.code for o in footprint.organisations_of(kind)]
                if local or anywhere:
                    choice = (local or anywhere)[place_codes.index(place) % len(local or anywhere)]
                    break
            row.append(choice or fallback)
        table.append(row)
    codes = sorted({c for row in table for c in row})
    return table, codes


AGE_BANDS = 19  # five-year bands 0-4 .. 85-89, 90+


def age_band(age: NDArray[np.int64]) -> NDArray[np.int64]:
    return np.minimum(age // 5, AGE_BANDS - 1)


__all__ = ["AGES", "World", "allocate", "build_world"]
