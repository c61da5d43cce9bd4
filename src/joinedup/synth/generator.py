"""Generate the population chunk by chunk, in parallel, into Parquet parts of the canonical tables.

Chunks have a fixed size and each has its own random stream derived from (seed, chunk number),
so the same seed gives the same data whatever the number of workers or the machine.
"""

from __future__ import annotations

import datetime as dt
import functools
import multiprocessing as mp
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from joinedup.footprint import Footprint, Pcn, Place, PlaceProfile, Practice, System
from joinedup.synth import columns as col
from joinedup.synth import params
from joinedup.synth import services as svc
from joinedup.synth.cohort import (
    NO_DEATH,
    Cohort,
    K,
    apply_deaths,
    assign_frailty,
    base_cohort,
    births,
    deaths_in_year,
    frailty_score,
    mortality_multiplier,
    person_ids,
)
from joinedup.synth.identity import identity_columns
from joinedup.synth.records import (
    DIAGNOSIS_CODES,
    MEDICINES,
    OBSERVATION_KINDS,
    SETTINGS,
    generate_diagnoses,
    generate_observations,
    generate_prescriptions,
)
from joinedup.synth.services import SPECIALTY_CODES, generate_activity, generate_pathways
from joinedup.synth.shapes import ETHNIC_CODES, shapes_for
from joinedup.synth.world import AGE_BANDS, Calibration, World, age_band, build_world
from joinedup.warehouse.schema import ACTIVITY_TYPES, OBSERVATION_TYPES, TABLES

CHUNK_SIZE = 20_000
Progress = Callable[[int, int], None]


# --- Calibration on a national-shaped sample ----------------------------------------------------
def england_footprint(people: int = 60_000) -> Footprint:
    """One place shaped like England (national ages, every IMD decile equally): the footprint
    calibration constants are measured on and `synth calibrate` compares against targets."""
    return Footprint(
        system=System(code="ENG", name="England-shaped calibration system"),
        places=[Place(code="E92000001", name="England", profile=PlaceProfile.MIXED_TOWN)],
        pcns=[Pcn(code="ENG-N01", name="England neighbourhood", place="E92000001")],
        practices=[
            Practice(
                code=f"ENG{i:03d}",
                name=f"Calibration practice {i}",
                place="E92000001",
                pcn="ENG-N01",
                list_size=max(1, people // 10),
            )
            for i in range(10)
        ],
        notes=["Synthetic calibration footprint shaped like England."],
    )


CALIBRATION_SAMPLE = 250_000


@functools.lru_cache(maxsize=4)
def measure_calibration(
    start: dt.date, years: int, people: int = CALIBRATION_SAMPLE
) -> Calibration:
    """Normalising constants from a fixed national sample (seed 0, independent of the run).

    Two passes: the first measures how much deaths during the history thin each condition's
    prevalence, the second regenerates with that corrected and records, year by year, the mean
    mortality and service multipliers among the living (the sick die first, so survivors get
    healthier and the constants change from year to year). Multipliers are heavy-tailed, so the
    sample is large (a quarter of a million people, about 3 s); results are cached per process
    and must not be modified."""
    fp = england_footprint()
    world = build_world(fp, shapes_for(fp), people=people, seed=0, start=start, years=years)
    adjust = np.ones(K)
    targets = np.asarray([c.target_prevalence for c in params.CONDITIONS])
    min_age = np.asarray([c.min_age for c in params.CONDITIONS])
    calib = Calibration()
    for _ in range(2):
        calib = Calibration(
            years=years,
            service_norm=np.ones((years, svc.S, 2, AGE_BANDS)),
            mortality_norm=np.ones((years, 2, AGE_BANDS)),
            prevalence_adjust=adjust,
        )
        world.calibration = calib
        rng = np.random.default_rng(np.random.SeedSequence([0, 999_999]))
        c = base_cohort(world, 0, world.people, rng)
        age = np.maximum(c.age_on(world.end_day), 0)
        score = frailty_score(age, c.condition_count, c.latent, rng.standard_normal(len(c)))
        # eFI shares among 65+: mild or worse 50%, moderate or worse 15%, severe 3%.
        calib.frailty_thresholds = np.quantile(score[age >= 65], [0.50, 0.85, 0.97])
        assign_frailty(world, c, rng)
        mortality = mortality_multiplier(c)
        service = [svc.service_multiplier(c, s) for s in range(svc.S)]
        for year in range(years):
            lo, hi = world.year_bounds(year)
            alive = c.death_day == NO_DEATH
            band = age_band(np.maximum(c.age_on(lo), 0))[alive]
            sex = c.sex[alive]
            calib.mortality_norm[year] = _group_mean(mortality[alive], sex, band)
            deaths_in_year(world, c, rng, year, mortality)
            # Services are used per person-year: the sick die sooner and contribute less time.
            last = np.minimum(c.death_day[alive], hi)
            exposure = (last - lo) / (hi - lo)
            mid_age = ((lo + (last - lo) // 2 - c.birth_day[alive]) // 365.25).astype(np.int64)
            mid_band = age_band(np.maximum(mid_age, 0))
            for s in range(svc.S):
                calib.service_norm[year, s] = _group_mean(
                    service[s][alive], sex, mid_band, exposure
                )
        alive = c.death_day == NO_DEATH
        eligible = alive[:, None] & (age[:, None] >= min_age[None, :])
        observed = (c.conditions & eligible).sum(axis=0) / np.maximum(eligible.sum(axis=0), 1)
        adjust = adjust * np.clip(targets / np.maximum(observed, 1e-6), 0.8, 1.5)
    return calib


def _group_mean(
    values: NDArray[np.float64],
    sex: NDArray[np.int8],
    band: NDArray[np.int64],
    weights: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Mean of `values` by sex and age band (1 where a group has too few people to tell)."""
    w = np.ones(len(values)) if weights is None else weights
    out = np.ones((2, AGE_BANDS))
    for s in (0, 1):
        for b in range(AGE_BANDS):
            sel = (sex == s) & (band == b)
            if sel.sum() >= 20 and w[sel].sum() > 0:
                out[s, b] = float(np.average(values[sel], weights=w[sel]))
    return out


# --- One chunk ------------------------------------------------------------------------------------
def _cohort(world: World, chunk: int) -> tuple[Cohort, np.random.Generator]:
    rng = np.random.default_rng(np.random.SeedSequence([world.seed, chunk]))
    lo = chunk * CHUNK_SIZE
    hi = min(lo + CHUNK_SIZE, world.people)
    people = base_cohort(world, lo, hi, rng)
    apply_deaths(world, people, rng)
    babies = births(world, people, rng, index_base=world.people + lo)
    return _concat(people, babies), rng


def _concat(a: Cohort, b: Cohort) -> Cohort:
    fields = Cohort.__dataclass_fields__
    return Cohort(**{f: np.concatenate([getattr(a, f), getattr(b, f)]) for f in fields})


def _days_to_year_month(days: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    months = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return months // 12 + 1970, months % 12 + 1


def nhs_numbers(index: NDArray[np.int64]) -> NDArray[np.int64]:
    """Valid (Modulus 11) NHS numbers in the 999 test range, then 998, 997 ... for large runs.
    Numbers starting with 9 are never issued to real patients in England."""
    need = int(index.max()) + 1 if len(index) else 0
    # The table of valid numbers is built once per worker for a block of a million people, not
    # once per chunk: its prefix does not depend on the block size, so results are the same.
    block = 1 << 20
    return _valid_nhs_numbers(-(-need // block) * block)[index]


@functools.lru_cache(maxsize=2)
def _valid_nhs_numbers(count: int) -> NDArray[np.int64]:
    """The first valid test NHS numbers, at least `count` of them, in a fixed order."""
    candidates = np.arange(int(count * 1.15) + 100, dtype=np.int64)
    prefix = 999 - candidates // 1_000_000
    body = prefix * 1_000_000 + candidates % 1_000_000  # nine digits
    digits = np.stack([(body // 10 ** (8 - i)) % 10 for i in range(9)], axis=1)
    total = (digits * np.arange(10, 1, -1)).sum(axis=1)
    check = 11 - total % 11
    check = np.where(check == 11, 0, check)
    numbers: NDArray[np.int64] = (body * 10 + check)[check != 10]
    return numbers


def chunk_tables(world: World, chunk: int) -> dict[str, pa.Table]:
    """The canonical tables for one chunk of people."""
    c, rng = _cohort(world, chunk)
    n = len(c)
    pid = person_ids(c.index)
    events = generate_activity(world, c, rng)
    pathways = generate_pathways(world, c, rng)
    diagnoses = generate_diagnoses(world, c, events, rng)
    obs = generate_observations(world, c, rng)
    rx = generate_prescriptions(world, c, rng)

    died = c.death_day != NO_DEATH
    by, bm = _days_to_year_month(c.birth_day)
    org_labels = world.practice_codes + world.provider_codes
    provider_index = np.asarray(
        [
            [len(world.practice_codes) + world.provider_codes.index(code) for code in row]
            for row in world.providers
        ],
        np.int32,
    )

    # Registration: a few people moved between practices of their place during the history.
    moved = (~c.is_newborn) & (rng.random(n) < params.PRACTICE_MOVE_RATE_PER_YEAR * world.years)
    span = np.maximum(np.minimum(c.death_day, world.end_day) - world.start_day, 1)
    move_day = world.start_day + 1 + (rng.random(n) * span).astype(np.int64)
    moved &= move_day < np.minimum(c.death_day, world.end_day)
    draw = rng.integers(0, 1 << 30, n)
    previous = c.practice.copy()
    for p in np.unique(c.place):
        sel = np.flatnonzero(c.place == p)
        members = np.flatnonzero(world.practice_place == p).astype(np.int32)
        idx = draw[sel] % len(members)
        before = members[idx]
        # A move is to another practice of the place (none where the place has only one).
        same = before == c.practice[sel]
        before[same] = members[(idx[same] + 1) % len(members)]
        previous[sel] = before
    moved &= previous != c.practice
    reg_start = np.where(
        c.is_newborn,
        c.birth_day + 14,
        np.maximum(
            c.birth_day, world.start_day - (rng.exponential(12.0, n) * 365.25).astype(np.int64)
        ),
    )
    reg_start = np.minimum(reg_start, np.maximum(c.death_day - 1, c.birth_day))
    m = np.flatnonzero(moved)
    reg_person = np.concatenate([np.arange(n), m])
    reg_practice = np.concatenate([np.where(moved, previous, c.practice), c.practice[m]])
    reg_from = np.concatenate([reg_start, move_day[m]])
    reg_to = np.concatenate([np.where(moved, move_day - 1, c.death_day), c.death_day[m]])

    activity_kinds = list(ACTIVITY_TYPES)
    pods = [ACTIVITY_TYPES[s.activity_type] for s in params.SERVICES]
    svc_kind = np.asarray([activity_kinds.index(s.activity_type) for s in params.SERVICES])
    gp = events.service == params.SERVICE_INDEX["gp_consultation"]
    ev_org = np.where(
        gp, c.practice[events.person], provider_index[c.place[events.person], events.service]
    )
    no_end = events.end_day == NO_DEATH
    id_base = np.int64(chunk) << 34

    diag_system = np.asarray([0 if s == "snomed" else 1 for s, _ in DIAGNOSIS_CODES], np.int32)
    acute = params.SERVICE_INDEX["emergency_admission"]
    diag_org = np.where(
        diagnoses.secondary,
        provider_index[c.place[diagnoses.person], acute],
        c.practice[diagnoses.person],
    )

    open_rtt = pathways.stop_day == NO_DEATH
    obs_numeric = OBSERVATION_KINDS.index("smoking_status") != obs.kind
    units = list(OBSERVATION_TYPES.values())
    rx_open = rx.end_day == NO_DEATH

    tables = {
        "person": pa.table(
            {
                "person_id": pid,
                "birth_year": col.ints(by, pa.int16()),
                "birth_month": col.ints(bm, pa.int16()),
                "sex": col.coded(c.sex, ["female", "male"]),
                "ethnic_category": col.coded(c.ethnicity, list(ETHNIC_CODES)),
                "lsoa_code": col.coded(c.area, world.lsoa_codes),
                "imd_decile": col.ints(c.imd, pa.int16()),
                "practice_code": col.coded(c.practice, world.practice_codes),
                "death_date": col.dates(c.death_day, ~died),
                "national_data_opt_out": pa.array(c.opt_out),
            }
        ),
        "identity": pa.table(
            {
                "person_id": pid,
                "nhs_number": pc.cast(pa.array(nhs_numbers(c.index)), pa.string()),
                "source_system": col.constant("synthetic", n),
                "source_id": pc.cast(pa.array(pid), pa.string()),
                **identity_columns(c, world.practice_district, world.seed, chunk),
            }
        ),
        "registration": pa.table(
            {
                "person_id": pid[reg_person],
                "practice_code": col.coded(reg_practice, world.practice_codes),
                "start_date": col.dates(reg_from),
                "end_date": col.dates(reg_to, reg_to == NO_DEATH),
            }
        ),
        "diagnosis": pa.table(
            {
                "person_id": pid[diagnoses.person],
                "diagnosis_date": col.dates(diagnoses.day),
                "code_system": col.coded(diag_system[diagnoses.code], ["snomed", "icd10"]),
                "code": col.coded(diagnoses.code, [code for _, code in DIAGNOSIS_CODES]),
                "setting": col.coded(diagnoses.setting, SETTINGS),
                "organisation_code": col.coded(diag_org, org_labels),
            }
        ),
        "activity": pa.table(
            {
                "activity_id": id_base + np.arange(len(events.person), dtype=np.int64),
                "person_id": pid[events.person],
                "activity_type": col.coded(svc_kind[events.service], activity_kinds),
                "start_date": col.dates(events.start_day),
                "end_date": col.dates(events.end_day, no_end),
                "length_of_stay_days": col.ints(events.los, pa.int32(), events.los < 0),
                "provider_code": col.coded(ev_org, org_labels),
                "specialty_code": col.coded(
                    np.maximum(events.specialty, 0), SPECIALTY_CODES, events.specialty < 0
                ),
                "point_of_delivery": col.coded(events.service, pods),
                "cost_gbp": col.pence_to_gbp(events.cost_pence),
            }
        ),
        "medication": pa.table(
            {
                "person_id": pid[rx.person],
                "code_system": col.constant("bnf", len(rx.person)),
                "code": col.coded(rx.medicine, [code for code, _ in MEDICINES]),
                "description": col.coded(rx.medicine, [name for _, name in MEDICINES]),
                "start_date": col.dates(rx.start_day),
                "end_date": col.dates(rx.end_day, rx_open),
                "issue_count": col.ints(rx.issues, pa.int32()),
                "is_repeat": pa.array(rx.repeat),
                "prescriber_code": col.coded(c.practice[rx.person], world.practice_codes),
            }
        ),
        "observation": pa.table(
            {
                "person_id": pid[obs.person],
                "observation_date": col.dates(obs.day),
                "observation_type": col.coded(obs.kind, OBSERVATION_KINDS),
                "code": col.coded(obs.kind, list(params.OBSERVATION_CODES.values())),
                "value": pa.array(obs.value, pa.float64(), mask=~obs_numeric),
                "unit": col.coded(obs.kind, units),
                "value_code": col.coded(
                    np.maximum(obs.smoking, 0),
                    list(params.SMOKING_VALUE_CODES.values()),
                    obs.smoking < 0,
                ),
            }
        ),
        "rtt_pathway": pa.table(
            {
                "pathway_id": id_base + np.arange(len(pathways.person), dtype=np.int64),
                "person_id": pid[pathways.person],
                "provider_code": col.coded(
                    provider_index[
                        c.place[pathways.person], params.SERVICE_INDEX["elective_admission"]
                    ],
                    org_labels,
                ),
                "specialty_code": col.coded(pathways.specialty, SPECIALTY_CODES),
                "clock_start_date": col.dates(pathways.start_day),
                "clock_stop_date": col.dates(pathways.stop_day, open_rtt),
                "stop_reason": col.coded(
                    np.where(pathways.admitted, 0, 1), ["admitted", "non_admitted"], open_rtt
                ),
            }
        ),
    }
    for name, table in tables.items():
        if table.column_names != TABLES[name].column_names:
            raise RuntimeError(f"synthetic {name} columns drifted from the canonical schema")
    return tables


# --- Parallel run ---------------------------------------------------------------------------
_WORLD: World | None = None


def _init_worker(world: World) -> None:
    global _WORLD  # noqa: PLW0603 - one read-only world per worker process
    _WORLD = world


def _write_chunk(chunk: int, out_dir: str) -> tuple[int, dict[str, int]]:
    world = _WORLD
    if world is None:
        raise RuntimeError("worker was not initialised")
    tables = chunk_tables(world, chunk)
    counts: dict[str, int] = {}
    for name, table in tables.items():
        folder = Path(out_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"part-{chunk:05d}.parquet", compression="snappy")
        counts[name] = table.num_rows
    return chunk, counts


def generate_parts(
    world: World, out_dir: Path, *, workers: int = 2, progress: Progress | None = None
) -> dict[str, int]:
    """Write every chunk's tables under `out_dir/<table>/part-NNNNN.parquet`; returns row counts."""
    chunks = (world.people + CHUNK_SIZE - 1) // CHUNK_SIZE
    totals: dict[str, int] = {}
    done_people = 0

    def record(chunk: int, counts: dict[str, int]) -> None:
        nonlocal done_people
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        done_people += min(CHUNK_SIZE, world.people - chunk * CHUNK_SIZE)
        if progress is not None:
            progress(done_people, world.people)

    if workers <= 1 or chunks == 1:
        _init_worker(world)
        for chunk in range(chunks):
            record(*_write_chunk(chunk, str(out_dir)))
        return totals
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(world,)
    ) as pool:
        pending: set[Future[tuple[int, dict[str, int]]]] = set()
        queue = iter(range(chunks))
        for chunk in queue:
            pending.add(pool.submit(_write_chunk, chunk, str(out_dir)))
            if len(pending) >= workers * 2:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                record(*fut.result())
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(_write_chunk, nxt, str(out_dir)))
    return totals
