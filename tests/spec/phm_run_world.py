"""A small random population that `joinedup phm run` can run on end to end: a few hundred
people over four years with conditions, medicines and service use (emergency admissions more
likely with age and conditions, so the risk model has something to learn), and a build record
covering the history."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from phm_world import EXTRACT, World
from spec_tables import table

from joinedup.warehouse.engines import Engine

#: First day of the history: four whole years before the extract date (the model needs three).
HISTORY_START = date(2021, 4, 1)
_DAYS = (EXTRACT - HISTORY_START).days
#: Diagnoses (code system, code) that count towards conditions and segments.
_DX = (
    ("snomed", "38341003"),  # hypertension
    ("snomed", "13645005"),  # COPD
    ("snomed", "52448006"),  # dementia
    ("snomed", "103735009"),  # palliative care
    ("icd10", "I50"),  # heart failure
    ("icd10", "N184"),  # chronic kidney disease stage 4
    ("snomed", "35489007"),  # depression
    ("snomed", "1912002"),  # fall
)
_MEDICINES = ("0106040M0", "0403030Q0", "0301011R0", "0407010F0")


def random_world(people: int, seed: int) -> World:
    """`people` people (ids 1..people) drawn with `seed`, their records spread over the
    history; about one in twenty has opted out."""
    rng = np.random.default_rng(seed)
    world = World()
    for pid in range(1, people + 1):
        born = int(rng.integers(1925, 2021))
        world.person(
            pid,
            birth_year=born,
            birth_month=int(rng.integers(1, 13)),
            sex=str(rng.choice(["female", "male"])),
            imd_decile=int(rng.integers(1, 11)),
            ethnic_category=str(rng.choice(["A", "D", "H", "M", "S"])),
            practice_code=str(rng.choice(["P1", "P2", "P3"])),
            national_data_opt_out=bool(rng.random() < 0.05),
        )
        age = 2025 - born
        conditions = int(rng.poisson(age / 30))
        for _ in range(conditions):
            system, code = _DX[int(rng.integers(len(_DX)))]
            world.dx(pid, _day(rng), code, system)
        if conditions and rng.random() < 0.5:
            start = _day(rng)
            world.rx(pid, str(rng.choice(_MEDICINES)), start, None, int(rng.integers(1, 30)))
        for kind, rate in (
            ("emergency_admission", 0.02 + 0.004 * age / 10 + 0.08 * conditions),
            ("ae_attendance", 0.2 + 0.05 * conditions),
            ("gp_consultation", 2.0 + conditions),
            ("outpatient_attendance", 0.5 + 0.3 * conditions),
        ):
            for _ in range(int(rng.poisson(rate * _DAYS / 365))):
                world.act(pid, kind, _day(rng))
    return world


def _day(rng: np.random.Generator) -> date:
    return HISTORY_START + timedelta(days=int(rng.integers(0, _DAYS + 1)))


def load_run_world(engine: Engine, world: World) -> None:
    """Load `world` and a build record covering its history into `engine`."""
    world.load(engine)
    build = {
        "build_id": "b1",
        "source": "synthetic",
        "built_at": "2025-04-02T00:00:00+00:00",
        "joinedup_version": "0",
        "seed": 1,
        "people": len(world.rows["person"]),
        "footprint": "spec",
        "history_start_date": HISTORY_START,
        "history_end_date": EXTRACT,
        "parameters": "{}",
    }
    engine.load("build", table("build", [build], {}))
