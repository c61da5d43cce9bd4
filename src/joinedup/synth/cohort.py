"""People: who they are, where they live, what long-term conditions they have, when they die,
and the babies born during the history. Every step is vectorised over a chunk of people."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from joinedup.synth import params
from joinedup.synth.shapes import AGES, ETHNIC_CODES, male_share_by_age
from joinedup.synth.world import World, age_band

K = len(params.CONDITIONS)
_ANCHORS = np.asarray(params.CONDITION_ANCHOR_AGES, float)
FEMALE, MALE = 0, 1


@dataclass
class Cohort:
    """A chunk of people as parallel arrays (index i is one person)."""

    index: NDArray[np.int64]  # global person index (pseudonymised into person_id on output)
    practice: NDArray[np.int32]
    place: NDArray[np.int32]
    area: NDArray[np.int64]  # index into World.lsoa_codes
    imd: NDArray[np.int16]
    sex: NDArray[np.int8]
    birth_day: NDArray[np.int64]
    ethnicity: NDArray[np.int8]  # index into ETHNIC_CODES
    opt_out: NDArray[np.bool_]
    latent: NDArray[np.float64]
    conditions: NDArray[np.bool_]  # (n, K)
    onset_day: NDArray[np.int64]  # (n, K); meaningful where conditions is True
    frailty: NDArray[np.int8]  # 0 fit / not assessed, 1 mild, 2 moderate, 3 severe
    death_day: NDArray[np.int64]  # NO_DEATH while alive at the end of history
    entry_day: NDArray[np.int64]  # first day in the population (birth for newborns)
    is_newborn: NDArray[np.bool_]
    mother: NDArray[np.int64]  # cohort position of the mother for newborns, -1 otherwise

    def __len__(self) -> int:
        return len(self.index)

    def age_on(self, day: int | NDArray[np.int64]) -> NDArray[np.int64]:
        return ((np.asarray(day) - self.birth_day) // 365.25).astype(np.int64)

    @property
    def condition_count(self) -> NDArray[np.int64]:
        return self.conditions.sum(axis=1).astype(np.int64)


NO_DEATH = np.iinfo(np.int32).max


def _deprivation(imd: NDArray[np.int16], ratio: float | NDArray[np.float64]) -> NDArray[np.float64]:
    """Multiplier moving from sqrt(ratio) in decile 1 to 1/sqrt(ratio) in decile 10."""
    return np.exp(np.log(ratio) * (5.5 - imd) / 9.0)


def _sample_areas_and_ages(
    world: World, place: NDArray[np.int32], practice: NDArray[np.int32], rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Draw (area, age) for each person from their place's table. People of a practice come
    mostly from a catchment around the practice's position in the deprivation-sorted areas,
    so neighbourhoods differ in deprivation as they do in life."""
    n = len(place)
    area = np.empty(n, np.int64)
    age = np.empty(n, np.int64)
    u = rng.random(n)
    local = rng.random(n) < 0.6
    centre = world.practice_position[practice]
    v = np.abs(centre + (u - 0.5) * 0.35)  # reflect at both ends to keep the draw uniform
    v = np.where(v >= 1.0, 2.0 - v - 1e-12, v)
    u = np.where(local, v, u)
    for p in np.unique(place):
        sel = np.flatnonzero(place == p)
        table = world.places[p]
        # u is a quantile of the place's (area, age) distribution ordered by area.
        cell = np.searchsorted(table.cdf, u[sel], side="right")
        cell = np.minimum(cell, len(table.cdf) - 1)
        area[sel] = table.area_offset + cell // AGES
        age[sel] = cell % AGES
    old = age == AGES - 1
    age[old] += np.minimum(rng.geometric(0.28, old.sum()) - 1, 15)  # 90+ spread to 90..105
    return area, age


def _condition_probability(
    age: NDArray[np.int64],
    sex: NDArray[np.int8],
    imd: NDArray[np.int16],
    latent: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Probability of each condition (n, K), scaled so England's age structure gives the target."""
    ages = np.arange(AGES + 20)
    national = np.asarray(params.NATIONAL_MALE_K, float) + np.asarray(
        params.NATIONAL_FEMALE_K, float
    )
    out = np.empty((len(age), K))
    capped = np.minimum(age, AGES - 1)
    for k, c in enumerate(params.CONDITIONS):
        shape = np.exp(np.interp(ages, _ANCHORS, np.log(np.asarray(c.age_shape) + 1e-6)))
        eligible = np.arange(AGES) >= c.min_age
        level = c.target_prevalence / (
            (shape[:AGES] * national * eligible).sum() / (national * eligible).sum()
        )
        male = 2 * c.male_ratio / (1 + c.male_ratio)
        female = 2 / (1 + c.male_ratio)
        dep = _deprivation(imd, c.deprivation_ratio)
        dep_mean = _deprivation(np.arange(1, 11, dtype=np.int16), c.deprivation_ratio).mean()
        lam = c.latent_loading
        p = (
            level
            * shape[capped]
            * np.where(sex == MALE, male, female)
            * (dep / dep_mean)
            * np.exp(lam * latent - lam * lam / 2)
        )
        out[:, k] = np.minimum(p, 0.95)
    return out


def frailty_score(
    age: NDArray[np.int64],
    count: NDArray[np.int64],
    latent: NDArray[np.float64],
    noise: NDArray[np.float64],
) -> NDArray[np.float64]:
    """An electronic-frailty-index-like score: older, more conditions, worse latent health."""
    return 0.045 * (age - 65) + 0.30 * count + 0.6 * latent + 0.5 * noise


def mortality_multiplier(c: Cohort) -> NDArray[np.float64]:
    weights = np.asarray([cp.mortality_weight for cp in params.CONDITIONS])
    frail = np.asarray([0.0, *params.FRAILTY_MORTALITY_WEIGHT.values()])
    return np.exp(c.conditions.astype(float) @ weights + frail[c.frailty])


def _birth_days(
    world: World, age: NDArray[np.int64], rng: np.random.Generator
) -> NDArray[np.int64]:
    """A birth date that gives exactly `age` completed years on the first day of history."""
    lo = world.start_day - (age + 1) * 365.25 + 1
    return (lo + rng.random(len(age)) * 365.0).astype(np.int64)


def base_cohort(world: World, lo: int, hi: int, rng: np.random.Generator) -> Cohort:
    """People with global index lo..hi-1, as on the first day of the history."""
    n = hi - lo
    practice = world.person_practice[lo:hi]
    place = world.practice_place[practice]
    area, age = _sample_areas_and_ages(world, place, practice, rng)
    imd = world.lsoa_imd[area]
    sex = (rng.random(n) < male_share_by_age()[np.minimum(age, AGES - 1)]).astype(np.int8)
    latent = rng.standard_normal(n)
    ethnicity = _ethnicity(world, place, age, rng)
    cohort = Cohort(
        index=np.arange(lo, hi, dtype=np.int64),
        practice=practice,
        place=place,
        area=area,
        imd=imd,
        sex=sex,
        birth_day=_birth_days(world, age, rng),
        ethnicity=ethnicity,
        opt_out=rng.random(n) < params.NATIONAL_DATA_OPT_OUT_RATE,
        latent=latent,
        conditions=np.zeros((n, K), bool),
        onset_day=np.zeros((n, K), np.int64),
        frailty=np.zeros(n, np.int8),
        death_day=np.full(n, NO_DEATH, np.int64),
        entry_day=np.full(n, world.start_day, np.int64),
        is_newborn=np.zeros(n, bool),
        mother=np.full(n, -1, np.int64),
    )
    assign_conditions(world, cohort, rng)
    return cohort


def _ethnicity(
    world: World, place: NDArray[np.int32], age: NDArray[np.int64], rng: np.random.Generator
) -> NDArray[np.int8]:
    """Ethnic category from the place's mix; younger people are more often of minority groups."""
    n = len(place)
    out = np.zeros(n, np.int8)
    tilt = np.interp(age, (0, 30, 50, 65, 90), (1.35, 1.25, 0.9, 0.5, 0.35))
    u = rng.random(n)
    v = rng.random(n)
    for p in np.unique(place):
        sel = np.flatnonzero(place == p)
        cdf = world.places[p].ethnicity_cdf
        white_british = cdf[0]
        minority = np.clip((1 - white_british) * tilt[sel], 0.0, 0.98)
        is_minority = u[sel] < minority
        pick = np.searchsorted(
            cdf[1:-1], white_british + v[sel] * (1 - white_british), side="right"
        )
        out[sel] = np.where(is_minority, 1 + np.minimum(pick, len(cdf) - 3), 0)
    not_stated = rng.random(n) < params.NOT_STATED_ETHNICITY_RATE
    out[not_stated] = len(ETHNIC_CODES) - 1
    return out


def assign_conditions(world: World, c: Cohort, rng: np.random.Generator) -> None:
    """Long-term conditions as at the end of history, with diagnosis dates, and frailty."""
    n = len(c)
    age_end = c.age_on(world.end_day)
    prob = _condition_probability(np.maximum(age_end, 0), c.sex, c.imd, c.latent)
    prob = np.minimum(prob * world.calibration.prevalence_adjust[None, :], 0.95)
    c.conditions = rng.random((n, K)) < prob
    durations = np.asarray([cp.mean_duration_years for cp in params.CONDITIONS]) * 365.25
    onset = world.end_day - (rng.exponential(1.0, (n, K)) * durations).astype(np.int64)
    c.onset_day = np.maximum(onset, c.birth_day[:, None] + 365)
    assign_frailty(world, c, rng)


def assign_frailty(world: World, c: Cohort, rng: np.random.Generator) -> None:
    age = c.age_on(world.end_day)
    score = frailty_score(age, c.condition_count, c.latent, rng.standard_normal(len(c)))
    t = world.calibration.frailty_thresholds
    level = (score > t[0]).astype(np.int8) + (score > t[1]) + (score > t[2])
    c.frailty = np.where(age >= 65, level, 0).astype(np.int8)


def deaths_in_year(
    world: World, c: Cohort, rng: np.random.Generator, year: int, mult: NDArray[np.float64]
) -> None:
    """Deaths in one history year from ONS mortality rates, raised for the sick and lowered for
    the well so that rates by age and sex still match the national table."""
    male = np.asarray(params.MORTALITY_MALE_PER_100K) / 1e5
    female = np.asarray(params.MORTALITY_FEMALE_PER_100K) / 1e5
    lo, hi = world.year_bounds(year)
    alive = (c.death_day == NO_DEATH) & (c.entry_day < hi)
    age = np.maximum(c.age_on(lo), 0)
    rate = np.where(c.sex == MALE, male[np.minimum(age, 90)], female[np.minimum(age, 90)])
    norm = world.calibration.mortality_norm[year, c.sex, age_band(age)]
    q = np.minimum(rate * mult / norm, 0.9)
    start = np.maximum(c.entry_day, lo)
    exposure = (hi - start) / 365.25
    dies = alive & (rng.random(len(c)) < q * exposure)
    day = start + (rng.random(len(c)) * (hi - start)).astype(np.int64)
    c.death_day = np.where(dies, day, c.death_day)


def apply_deaths(world: World, c: Cohort, rng: np.random.Generator) -> None:
    """Deaths through the whole history; a diagnosis cannot follow death."""
    mult = mortality_multiplier(c)
    for year in range(world.years):
        deaths_in_year(world, c, rng, year, mult)
    died = (c.death_day != NO_DEATH)[:, None]
    c.onset_day = np.where(died, np.minimum(c.onset_day, c.death_day[:, None] - 1), c.onset_day)


def births(world: World, mothers: Cohort, rng: np.random.Generator, index_base: int) -> Cohort:
    """Babies born to the cohort's women during the history, registered at the mother's practice."""
    asfr = np.zeros(120)
    for mother_age, rate in params.FERTILITY_PER_1000.items():
        asfr[mother_age] = rate / 1000.0
    pos: list[NDArray[np.int64]] = []
    days: list[NDArray[np.int64]] = []
    for year in range(world.years):
        lo, hi = world.year_bounds(year)
        age = np.clip(mothers.age_on(lo), 0, 119)
        alive_until = np.minimum(mothers.death_day, hi)
        exposure = np.clip((alive_until - lo) / 365.25, 0, 1)
        p = np.where(mothers.sex == FEMALE, asfr[age], 0.0) * exposure
        born = np.flatnonzero(rng.random(len(mothers)) < p)
        day = lo + (rng.random(len(born)) * np.maximum(alive_until[born] - lo, 1)).astype(np.int64)
        pos.append(born)
        days.append(day)
    mother = np.concatenate(pos)
    birth_day = np.concatenate(days)
    n = len(mother)
    sex = (rng.random(n) < params.MALE_SHARE_AT_BIRTH).astype(np.int8)
    baby = Cohort(
        index=index_base + np.arange(n, dtype=np.int64),
        practice=mothers.practice[mother],
        place=mothers.place[mother],
        area=mothers.area[mother],
        imd=mothers.imd[mother],
        sex=sex,
        birth_day=birth_day,
        ethnicity=mothers.ethnicity[mother],
        opt_out=rng.random(n) < params.NATIONAL_DATA_OPT_OUT_RATE,
        latent=rng.standard_normal(n),
        conditions=np.zeros((n, K), bool),
        onset_day=np.zeros((n, K), np.int64),
        frailty=np.zeros(n, np.int8),
        death_day=np.full(n, NO_DEATH, np.int64),
        entry_day=birth_day,
        is_newborn=np.ones(n, bool),
        mother=mother,
    )
    # Infant mortality: ONS deaths in the first year of life, about 3 per 1,000 births.
    infant = rng.random(n) < 0.003
    baby.death_day = np.where(
        infant,
        np.minimum(birth_day + rng.integers(0, 365, n), world.end_day),
        NO_DEATH,
    )
    return baby


def person_ids(index: NDArray[np.int64]) -> NDArray[np.int64]:
    """Pseudonymous ids: a bijection of the person index on [0, 2^40) that hides the order in
    which people were generated (and so their practice)."""
    mask = (1 << 40) - 1
    return ((index + 1) * 0x9E3779B97 + 0x5BD1E995) & mask


__all__ = [
    "NO_DEATH",
    "Cohort",
    "K",
    "apply_deaths",
    "base_cohort",
    "births",
    "deaths_in_year",
    "frailty_score",
    "person_ids",
]
