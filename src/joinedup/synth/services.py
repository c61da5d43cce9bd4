"""Use of services: GP, A&E, admissions, outpatients, community, mental health, social care and
referral-to-treatment pathways, driven by age, sex, conditions, deprivation and frailty."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from joinedup.synth import params
from joinedup.synth.cohort import MALE, NO_DEATH, Cohort
from joinedup.synth.world import World, age_band

S = len(params.SERVICES)
_ANCHORS = np.asarray(params.SERVICE_ANCHOR_AGES, float)


@dataclass
class Events:
    """Contacts with services as parallel arrays."""

    person: NDArray[np.int64]  # cohort position
    service: NDArray[np.int8]  # index into params.SERVICES
    start_day: NDArray[np.int64]
    end_day: NDArray[np.int64]  # NO_DEATH where not applicable
    los: NDArray[np.int64]  # -1 where not applicable
    specialty: NDArray[np.int16]  # index into SPECIALTY_CODES, -1 where none
    cost_pence: NDArray[np.int64]


SPECIALTY_CODES: list[str] = sorted(
    set(params.EMERGENCY_SPECIALTIES)
    | set(params.ELECTIVE_SPECIALTIES)
    | set(params.OUTPATIENT_SPECIALTIES)
    | {"501", "180"}  # obstetrics (antenatal care) and emergency medicine (A&E)
)
_SPEC_INDEX = {c: i for i, c in enumerate(SPECIALTY_CODES)}


def service_multiplier(c: Cohort, s: int) -> NDArray[np.float64]:
    """Person-level rate multiplier for service `s`, before the gamma heterogeneity."""
    sp = params.SERVICES[s]
    dep = np.exp(np.log(sp.deprivation_ratio) * (5.5 - c.imd) / 9.0)
    log_m = sp.condition_effect * c.condition_count + sp.frailty_effect * np.maximum(
        c.frailty - 1, 0
    )
    extra: dict[str, float] = {}
    if sp.activity_type == "mental_health_contact":
        extra = params.MENTAL_HEALTH_CONDITION_EFFECT
    elif sp.activity_type == "social_care_package":
        extra = params.SOCIAL_CARE_CONDITION_EFFECT
    for name, effect in extra.items():
        log_m = log_m + effect * c.conditions[:, params.CONDITION_INDEX[name]]
    return dep * np.exp(log_m)


def base_rate(s: int, age: NDArray[np.int64], sex: NDArray[np.int8]) -> NDArray[np.float64]:
    sp = params.SERVICES[s]
    rate = np.interp(age, _ANCHORS, np.asarray(sp.rates))
    male = 2 * sp.male_ratio / (1 + sp.male_ratio)
    female = 2 / (1 + sp.male_ratio)
    return rate * np.where(sex == MALE, male, female)


def _pick(weights: dict[str, float], n: int, rng: np.random.Generator) -> NDArray[np.int16]:
    codes = list(weights)
    p = np.asarray(list(weights.values()))
    chosen = rng.choice(len(codes), size=n, p=p / p.sum())
    lookup = np.asarray([_SPEC_INDEX[code] for code in codes], np.int16)
    return lookup[chosen]


def generate_activity(world: World, c: Cohort, rng: np.random.Generator) -> Events:
    """Every contact each person has with services over the history."""
    n = len(c)
    parts: list[Events] = []
    norm = world.calibration.service_norm
    for s, sp in enumerate(params.SERVICES):
        mult = service_multiplier(c, s) * rng.gamma(
            sp.heterogeneity_shape, 1.0 / sp.heterogeneity_shape, n
        )
        persons: list[NDArray[np.int64]] = []
        days: list[NDArray[np.int64]] = []
        for year in range(world.years):
            lo, hi = world.year_bounds(year)
            first = np.maximum(c.entry_day, lo)
            last = np.minimum(c.death_day, hi)  # exclusive
            span = np.maximum(last - first, 0)
            # Age in the middle of the time at risk: a baby's first year is at the infant rate.
            age = np.maximum(c.age_on(first + span // 2), 0)
            rate = base_rate(s, age, c.sex) * mult / norm[year, s, c.sex, age_band(age)]
            count = rng.poisson(rate * span / 365.25)
            who = np.repeat(np.arange(n, dtype=np.int64), count)
            persons.append(who)
            days.append(first[who] + (rng.random(len(who)) * span[who]).astype(np.int64))
        person = np.concatenate(persons)
        start = np.concatenate(days)
        parts.append(_detail(world, c, s, person, start, rng))
    return concat_events(parts)


def _detail(
    world: World,
    c: Cohort,
    s: int,
    person: NDArray[np.int64],
    start: NDArray[np.int64],
    rng: np.random.Generator,
) -> Events:
    """Length of stay, specialty, end date and cost of each contact of service `s`."""
    sp = params.SERVICES[s]
    m = len(person)
    kind = sp.activity_type
    age = np.maximum((start - c.birth_day[person]) // 365, 0)
    los = np.full(m, -1, np.int64)
    end = np.full(m, NO_DEATH, np.int64)
    spec = np.full(m, -1, np.int16)
    unit = sp.unit_cost_gbp
    cost = np.full(m, unit)
    if kind == "emergency_admission":
        zero_day = rng.random(m) < np.interp(age, (0, 40, 70, 90), (0.55, 0.4, 0.22, 0.15))
        mean_los = np.interp(age, (0, 40, 70, 90), (2.0, 3.0, 6.5, 9.5))
        los = np.where(zero_day, 0, rng.geometric(1.0 / mean_los)).astype(np.int64)
        spec = _pick(params.EMERGENCY_SPECIALTIES, m, rng)
        child = age < 16
        spec[child] = _SPEC_INDEX["420"]
        spec[(~child) & (spec == _SPEC_INDEX["420"])] = _SPEC_INDEX["300"]
        spec[(age < 75) & (spec == _SPEC_INDEX["430"])] = _SPEC_INDEX["300"]
        cost = np.where(los == 0, 900.0, unit + params.EXCESS_BED_DAY_GBP * np.maximum(los - 2, 0))
    elif kind == "elective_admission":
        los = 1 + rng.geometric(1 / 2.5, m).astype(np.int64)
        spec = _pick(params.ELECTIVE_SPECIALTIES, m, rng)
        cost = unit + 400.0 * np.maximum(los - 3, 0)
    elif kind == "day_case":
        los = np.zeros(m, np.int64)
        spec = _pick(params.ELECTIVE_SPECIALTIES, m, rng)
    elif kind == "outpatient_attendance":
        spec = _pick(params.OUTPATIENT_SPECIALTIES, m, rng)
        spec[age < 16] = _SPEC_INDEX["420"]
    elif kind == "ae_attendance":
        spec = np.full(m, _SPEC_INDEX["180"], np.int16)
    elif kind == "social_care_package":
        weeks = rng.geometric(1 / 30.0, m).astype(np.int64)
        residential = rng.random(m) < np.where(age >= 85, 0.35, 0.2)
        end_planned = start + weeks * 7
        end = np.minimum(end_planned, c.death_day[person])
        open_ = end > world.end_day
        billed_to = np.minimum(end, world.end_day + 1)
        weekly = np.where(
            residential,
            params.SOCIAL_CARE_WEEKLY_GBP["residential"],
            params.SOCIAL_CARE_WEEKLY_GBP["home_care"],
        )
        cost = weekly * np.maximum(billed_to - start, 1) / 7.0
        end = np.where(open_, NO_DEATH, end)
    if kind in ("emergency_admission", "elective_admission", "day_case"):
        end = np.minimum(start + los, c.death_day[person])
        end = np.where(end > world.end_day, NO_DEATH, end)
        los = np.where(end == NO_DEATH, los, end - start)
        # Specialty cost variation of about +-15%.
        cost = cost * (0.85 + 0.3 * ((spec.astype(np.int64) * 7919) % 100) / 100.0)
    pence = np.round(cost * 100).astype(np.int64)
    return Events(person, np.full(m, s, np.int8), start, end, los, spec, pence)


def concat_events(parts: list[Events]) -> Events:
    return Events(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in Events.__dataclass_fields__)
    )


@dataclass
class Pathways:
    person: NDArray[np.int64]
    specialty: NDArray[np.int16]
    start_day: NDArray[np.int64]
    stop_day: NDArray[np.int64]  # NO_DEATH while waiting
    admitted: NDArray[np.bool_]


def generate_pathways(world: World, c: Cohort, rng: np.random.Generator) -> Pathways:
    """Referral-to-treatment clocks: started through the history (and in the year before it, so
    the waiting list at the start is realistic), each stopping after a lognormal wait."""
    op = params.SERVICE_INDEX["outpatient_attendance"]
    norm = world.calibration.service_norm
    mult = service_multiplier(c, op)
    first = np.maximum(c.entry_day, world.start_day - 365)
    last = np.minimum(c.death_day, world.end_day + 1)
    span = np.maximum(last - first, 0)
    age = np.maximum(c.age_on(world.start_day), 0)
    rate = base_rate(op, age, c.sex) * mult / norm[0, op, c.sex, age_band(age)]
    count = rng.poisson(rate * params.RTT_STARTS_PER_OUTPATIENT * span / 365.25)
    person = np.repeat(np.arange(len(c), dtype=np.int64), count)
    start = first[person] + (rng.random(len(person)) * span[person]).astype(np.int64)
    wait = np.exp(
        np.log(params.RTT_MEDIAN_WAIT_WEEKS * 7)
        + params.RTT_WAIT_SIGMA * rng.standard_normal(len(person))
    ).astype(np.int64)
    stop = start + np.maximum(wait, 1)
    died = c.death_day[person]
    stop = np.where(stop >= died, died, stop)
    stop = np.where(stop > world.end_day, NO_DEATH, stop)
    admitted = (rng.random(len(person)) < params.RTT_ADMITTED_SHARE) & (stop != NO_DEATH)
    admitted &= stop != died
    return Pathways(
        person, _pick(params.ELECTIVE_SPECIALTIES, len(person), rng), start, stop, admitted
    )


__all__ = ["SPECIALTY_CODES", "Events", "Pathways", "generate_activity", "generate_pathways"]
