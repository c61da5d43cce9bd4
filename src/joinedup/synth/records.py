"""Clinical records consistent with each person's conditions: coded diagnoses in primary and
secondary care, observations (blood pressure, BMI, eGFR, HbA1c, smoking) and prescribing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from joinedup.synth import params
from joinedup.synth.cohort import NO_DEATH, Cohort, K
from joinedup.synth.services import SPECIALTY_CODES, Events
from joinedup.synth.world import World
from joinedup.warehouse.schema import CARE_SETTINGS

CI = params.CONDITION_INDEX

# Diagnosis code vocabulary: every code the generator can write, with its system.
_ELECTIVE_PRIMARY = {
    "110": "M171",
    "130": "H259",
    "100": "K409",
    "301": "K573",
    "101": "N40",
    "120": "J350",
    "502": "N920",
    "330": "L570",
}
DIAGNOSIS_CODES: list[tuple[str, str]] = sorted(
    {("snomed", s) for c in params.CONDITIONS for s in c.snomed}
    | {("icd10", s) for c in params.CONDITIONS for s in c.icd10}
    | {("snomed", s) for s in params.FRAILTY_CODES.values()}
    | {("snomed", params.PREGNANCY_SNOMED), ("snomed", params.PALLIATIVE_SNOMED)}
    | {("snomed", params.FALL_SNOMED), ("icd10", params.FALL_ICD10)}
    | {("icd10", params.DELIVERY_ICD10)}
    | {("icd10", s) for s in params.EMERGENCY_PRIMARY_DIAGNOSES}
    | {("icd10", s) for s in _ELECTIVE_PRIMARY.values()}
)
_CODE_INDEX = {code: i for i, code in enumerate(DIAGNOSIS_CODES)}
SETTINGS = list(CARE_SETTINGS)


@dataclass
class Diagnoses:
    person: NDArray[np.int64]
    day: NDArray[np.int64]
    code: NDArray[np.int32]  # index into DIAGNOSIS_CODES
    setting: NDArray[np.int8]  # index into SETTINGS
    secondary: NDArray[np.bool_]  # recorded by the provider of the contact, not the practice
    event: NDArray[np.int64]  # activity row of a secondary-care record, -1 otherwise


def _codes(system: str, codes: tuple[str, ...]) -> NDArray[np.int32]:
    return np.asarray([_CODE_INDEX[(system, c)] for c in codes], np.int32)


def generate_diagnoses(
    world: World, c: Cohort, events: Events, rng: np.random.Generator
) -> Diagnoses:
    out: list[tuple[NDArray[np.int64], ...]] = []

    def add(
        person: NDArray[np.int64],
        day: NDArray[np.int64],
        code: NDArray[np.int32],
        setting: int,
        event: NDArray[np.int64] | None = None,
    ) -> None:
        ev = np.full(len(person), -1, np.int64) if event is None else event
        out.append((person, day, code.astype(np.int64), np.full(len(person), setting), ev))

    # Primary care: one SNOMED code per condition at first diagnosis.
    who, k = np.nonzero(c.conditions)
    choice = rng.random(len(who))
    for cond in range(K):
        sel = k == cond
        codes = _codes("snomed", params.CONDITIONS[cond].snomed)
        pick = codes[(choice[sel] * len(codes)).astype(np.int64)]
        add(who[sel], c.onset_day[who[sel], cond], pick, 0)
    # Frailty coded in primary care within the last two years of life in the history.
    for level, name in enumerate(params.FRAILTY_CODES, start=1):
        frail = np.flatnonzero(c.frailty == level)
        last = np.minimum(c.death_day[frail] - 1, world.end_day)
        day = last - rng.integers(0, 730, len(frail))
        add(
            frail,
            day,
            np.full(len(frail), _CODE_INDEX[("snomed", params.FRAILTY_CODES[name])], np.int32),
            0,
        )
    # Palliative care coding before a share of deaths.
    dead = np.flatnonzero((c.death_day != NO_DEATH) & ~c.is_newborn)
    pall = dead[rng.random(len(dead)) < params.PALLIATIVE_SHARE_OF_DEATHS]
    day = np.maximum(c.death_day[pall] - rng.integers(14, 200, len(pall)), c.entry_day[pall])
    add(
        pall,
        day,
        np.full(len(pall), _CODE_INDEX[("snomed", params.PALLIATIVE_SNOMED)], np.int32),
        0,
    )
    # Pregnancy (primary care) and delivery (hospital) for each mother.
    babies = np.flatnonzero(c.is_newborn)
    mothers = c.mother[babies]
    preg_day = np.maximum(
        c.birth_day[babies] - rng.integers(200, 260, len(babies)), world.start_day - 280
    )
    add(
        mothers,
        preg_day,
        np.full(len(mothers), _CODE_INDEX[("snomed", params.PREGNANCY_SNOMED)], np.int32),
        0,
    )
    add(
        mothers,
        c.birth_day[babies],
        np.full(len(mothers), _CODE_INDEX[("icd10", params.DELIVERY_ICD10)], np.int32),
        1,
    )

    # Secondary care: each admission's primary diagnosis plus the person's known conditions.
    kinds = [s.activity_type for s in params.SERVICES]
    emergency = np.flatnonzero(events.service == kinds.index("emergency_admission"))
    planned = np.flatnonzero(
        (events.service == kinds.index("elective_admission"))
        | (events.service == kinds.index("day_case"))
    )
    prim = list(params.EMERGENCY_PRIMARY_DIAGNOSES)
    p = np.asarray(list(params.EMERGENCY_PRIMARY_DIAGNOSES.values()))
    pick = rng.choice(len(prim), size=len(emergency), p=p / p.sum())
    add(
        events.person[emergency],
        events.start_day[emergency],
        _codes("icd10", tuple(prim))[pick],
        1,
        emergency,
    )
    spec_code = np.asarray(SPECIALTY_CODES)[events.specialty[planned]]
    by_specialty = {sp: _CODE_INDEX[("icd10", icd)] for sp, icd in _ELECTIVE_PRIMARY.items()}
    fallback = _CODE_INDEX[("icd10", "K409")]
    elective = np.asarray([by_specialty.get(str(sp), fallback) for sp in spec_code], np.int32)
    add(events.person[planned], events.start_day[planned], elective, 1, planned)
    admissions = np.concatenate([emergency, planned])
    adm_person = events.person[admissions]
    known = c.conditions[adm_person] & (
        c.onset_day[adm_person] <= events.start_day[admissions, None]
    )
    row, k = np.nonzero(known)
    first_icd = np.asarray(
        [_CODE_INDEX[("icd10", cp.icd10[0])] for cp in params.CONDITIONS], np.int32
    )
    add(adm_person[row], events.start_day[admissions[row]], first_icd[k], 1, admissions[row])

    # Falls (drawn last so the draws above are the same with or without them).
    hip = emergency[pick == prim.index(params.HIP_FRACTURE_ICD10)]
    w19 = np.full(len(hip), _CODE_INDEX[("icd10", params.FALL_ICD10)], np.int32)
    add(events.person[hip], events.start_day[hip], w19, 1, hip)
    for level, name in enumerate(params.FALLS_CODED_PER_YEAR_BY_FRAILTY, start=1):
        frail = np.flatnonzero(c.frailty == level)
        first = np.maximum(c.entry_day[frail], world.start_day)
        last = np.minimum(c.death_day[frail], world.end_day)
        span = np.maximum(last - first, 0)
        falls = rng.poisson(params.FALLS_CODED_PER_YEAR_BY_FRAILTY[name] * span / 365.25)
        who = np.repeat(frail, falls)
        day = np.repeat(first, falls) + (rng.random(len(who)) * np.repeat(span, falls)).astype(
            np.int64
        )
        add(who, day, np.full(len(who), _CODE_INDEX[("snomed", params.FALL_SNOMED)], np.int32), 0)
    # Palliative care for some still alive at the end of the history.
    serious = (
        (c.frailty == 3)
        | c.conditions[:, params.CONDITION_INDEX["cancer"]]
        | c.conditions[:, params.CONDITION_INDEX["heart_failure"]]
    )
    alive = (c.death_day > world.end_day) & serious & (c.age_on(world.end_day) >= 65)
    near_end = np.flatnonzero(alive & (rng.random(len(c)) < params.PALLIATIVE_SHARE_ALIVE_AT_END))
    day = np.maximum(world.end_day - rng.integers(14, 200, len(near_end)), c.entry_day[near_end])
    add(
        near_end,
        day,
        np.full(len(near_end), _CODE_INDEX[("snomed", params.PALLIATIVE_SNOMED)], np.int32),
        0,
    )

    person, day, code, setting, event = (np.concatenate(col) for col in zip(*out, strict=True))
    keep = (day <= world.end_day) & (day >= c.birth_day[person])
    return Diagnoses(
        person[keep],
        day[keep],
        code[keep].astype(np.int32),
        setting[keep].astype(np.int8),
        setting[keep] != 0,
        event[keep],
    )


@dataclass
class Observations:
    person: NDArray[np.int64]
    day: NDArray[np.int64]
    kind: NDArray[np.int8]  # index into OBSERVATION_KINDS
    value: NDArray[np.float64]  # NaN for smoking status
    smoking: NDArray[np.int8]  # index into SMOKING_STATUSES, -1 for numeric observations


OBSERVATION_KINDS = list(params.OBSERVATION_CODES)
SMOKING_STATUSES = list(params.SMOKING_VALUE_CODES)


def generate_observations(world: World, c: Cohort, rng: np.random.Generator) -> Observations:
    """Measurements through the history; values follow the person's diagnoses (and a share of
    people have raised blood pressure with no hypertension diagnosis, for case-finding)."""
    n = len(c)
    has = c.conditions
    hyp = has[:, CI["hypertension"]]
    diab = has[:, CI["diabetes"]]
    ckd = has[:, CI["chronic_kidney_disease"]]
    cvd = (
        has[:, CI["coronary_heart_disease"]]
        | has[:, CI["stroke_tia"]]
        | has[:, CI["heart_failure"]]
    )
    # Annual physical health checks reach most, not all, people with severe mental illness
    # (NHS England SMI physical health check statistics, 2023/24: about 60%, approximate).
    smi_check = has[:, CI["severe_mental_illness"]] & (rng.random(n) < params.SMI_CHECK_SHARE)
    age0 = np.maximum(c.age_on(world.start_day), 0)
    adult = age0 >= 18
    hidden_hyp = (
        (~hyp) & (age0 >= 40) & (rng.random(n) < params.UNDIAGNOSED_HYPERTENSION_RATE_40_PLUS)
    )
    dep = (5.5 - c.imd) / 4.5
    smoke_u = rng.random(n)
    current_p = (
        params.ADULT_SMOKING_RATE * np.exp(0.35 * dep) * np.where(has[:, CI["copd"]], 2.0, 1.0)
    )
    smoking = np.where(
        smoke_u < current_p, 0, np.where(smoke_u < current_p + params.ADULT_EX_SMOKING_RATE, 1, 2)
    )
    bmi_mean = 27.0 + 4.0 * diab + 1.2 * dep + np.interp(age0, (18, 50, 80), (-2.5, 0.5, -0.5))

    persons: list[NDArray[np.int64]] = []
    days: list[NDArray[np.int64]] = []
    kinds: list[NDArray[np.int8]] = []
    values: list[NDArray[np.float64]] = []
    smk: list[NDArray[np.int8]] = []

    def emit(
        who: NDArray[np.int64],
        day: NDArray[np.int64],
        kind: str,
        value: NDArray[np.float64],
        s: NDArray[np.int8] | None = None,
    ) -> None:
        persons.append(who)
        days.append(day)
        kinds.append(np.full(len(who), OBSERVATION_KINDS.index(kind), np.int8))
        values.append(value)
        smk.append(np.full(len(who), -1, np.int8) if s is None else s)

    for year in range(world.years):
        lo, hi = world.year_bounds(year)
        first = np.maximum(c.entry_day, lo)
        last = np.minimum(c.death_day, hi)
        present = last > first
        age = age0 + year

        def when(
            who: NDArray[np.int64], first: NDArray[np.int64] = first, last: NDArray[np.int64] = last
        ) -> NDArray[np.int64]:
            return first[who] + (rng.random(len(who)) * (last[who] - first[who])).astype(np.int64)

        # Blood pressure.
        p_bp = np.where(
            hyp | diab | ckd | cvd | smi_check,
            0.85,
            np.where(age >= 40, 0.3, np.where(adult, 0.08, 0.0)),
        )
        who = np.flatnonzero(present & (rng.random(n) < p_bp))
        sys_mean = (
            118 + 0.45 * np.maximum(age[who] - 40, -20) + 12 * hyp[who] + 24 * hidden_hyp[who]
        )
        sbp = np.clip(sys_mean + 12 * rng.standard_normal(len(who)), 80, 230).round()
        dbp = np.clip(0.45 * sbp + 20 + 6 * rng.standard_normal(len(who)), 40, 130).round()
        day = when(who)
        emit(who, day, "systolic_bp", sbp)
        emit(who, day, "diastolic_bp", dbp)
        # BMI.
        p_bmi = np.where(diab | smi_check, 0.9, np.where(adult, 0.25, 0.02))
        who = np.flatnonzero(present & (rng.random(n) < p_bmi) & (age >= 16))
        emit(
            who,
            when(who),
            "bmi",
            np.clip(bmi_mean[who] + 4.8 * rng.standard_normal(len(who)), 14, 70).round(1),
        )
        # eGFR: people with CKD have two readings under 60 a year.
        for repeat in range(2):
            p_egfr = np.where(
                ckd,
                0.95,
                np.where(
                    repeat == 0, np.where(diab | hyp, 0.8, np.where(age >= 50, 0.15, 0.0)), 0.0
                ),
            )
            who = np.flatnonzero(present & (rng.random(n) < p_egfr) & adult)
            healthy = np.clip(
                105 - 0.6 * np.maximum(age[who] - 30, 0) + 10 * rng.standard_normal(len(who)),
                61,
                140,
            )
            impaired = np.clip(45 + 8 * rng.standard_normal(len(who)), 8, 59)
            emit(who, when(who), "egfr", np.where(ckd[who], impaired, healthy).round())
        # HbA1c.
        p_a1c = np.where(diab, 0.9, np.where(age >= 40, 0.1, 0.0))
        who = np.flatnonzero(present & (rng.random(n) < p_a1c))
        a1c = np.where(
            diab[who],
            np.clip(58 + 12 * rng.standard_normal(len(who)), 48, 130),
            np.clip(37 + 4 * rng.standard_normal(len(who)), 20, 47),
        )
        emit(who, when(who), "hba1c", a1c.round())
        # Smoking status.
        who = np.flatnonzero(present & adult & (rng.random(n) < np.where(smi_check, 0.9, 0.35)))
        emit(
            who,
            when(who),
            "smoking_status",
            np.full(len(who), np.nan),
            smoking[who].astype(np.int8),
        )

    return Observations(
        np.concatenate(persons),
        np.concatenate(days),
        np.concatenate(kinds),
        np.concatenate(values),
        np.concatenate(smk),
    )


@dataclass
class Prescriptions:
    person: NDArray[np.int64]
    medicine: NDArray[np.int32]  # index into MEDICINES
    start_day: NDArray[np.int64]
    end_day: NDArray[np.int64]  # NO_DEATH while being issued
    issues: NDArray[np.int64]
    repeat: NDArray[np.bool_]


MEDICINES: list[tuple[str, str]] = sorted(
    {m for c in params.CONDITIONS for m in c.medicines} | set(params.ACUTE_MEDICINES)
)
_MED_INDEX = {code: i for i, (code, _) in enumerate(MEDICINES)}


def generate_prescriptions(world: World, c: Cohort, rng: np.random.Generator) -> Prescriptions:
    """Repeat medicines for treated conditions (a person on two conditions' statin gets one
    course) and acute courses through the history."""
    persons: list[NDArray[np.int64]] = []
    meds: list[NDArray[np.int64]] = []
    starts: list[NDArray[np.int64]] = []
    for k, cond in enumerate(params.CONDITIONS):
        who = np.flatnonzero(c.conditions[:, k] & (rng.random(len(c)) < 0.85))
        for code, _ in cond.medicines:
            persons.append(who)
            meds.append(np.full(len(who), _MED_INDEX[code]))
            starts.append(c.onset_day[who, k] + rng.integers(0, 60, len(who)))
    person = np.concatenate(persons)
    med = np.concatenate(meds)
    start = np.concatenate(starts)
    # One course per person and medicine: keep the earliest start.
    key = person * len(MEDICINES) + med
    order = np.lexsort((start, key))
    first = np.ones(len(order), bool)
    first[1:] = key[order][1:] != key[order][:-1]
    keep = order[first]
    person, med, start = person[keep], med[keep], start[keep]
    valid = start <= np.minimum(c.death_day[person] - 1, world.end_day)
    person, med, start = person[valid], med[valid], start[valid]
    end = np.where(c.death_day[person] <= world.end_day, c.death_day[person], NO_DEATH)
    stop = np.where(end == NO_DEATH, world.end_day, end)
    issues = np.maximum(1, (stop - start) // 28)
    repeat = np.ones(len(person), bool)

    # Acute courses: one issue, seven days.
    span = np.maximum(
        np.minimum(c.death_day, world.end_day + 1) - np.maximum(c.entry_day, world.start_day), 0
    )
    count = rng.poisson(params.ACUTE_PRESCRIPTION_RATE * span / 365.25)
    a_person = np.repeat(np.arange(len(c), dtype=np.int64), count)
    a_start = np.maximum(c.entry_day, world.start_day)[a_person] + (
        rng.random(len(a_person)) * span[a_person]
    ).astype(np.int64)
    acute = np.asarray([_MED_INDEX[code] for code, _ in params.ACUTE_MEDICINES])
    a_med = acute[rng.integers(0, len(acute), len(a_person))]
    a_end = np.minimum(a_start + 7, world.end_day)
    return Prescriptions(
        np.concatenate([person, a_person]),
        np.concatenate([med, a_med]).astype(np.int32),
        np.concatenate([start, a_start]),
        np.concatenate([end, a_end]),
        np.concatenate([issues, np.ones(len(a_person), np.int64)]),
        np.concatenate([repeat, np.zeros(len(a_person), bool)]),
    )


__all__ = [
    "DIAGNOSIS_CODES",
    "MEDICINES",
    "OBSERVATION_KINDS",
    "SETTINGS",
    "SMOKING_STATUSES",
    "generate_diagnoses",
    "generate_observations",
    "generate_prescriptions",
]
