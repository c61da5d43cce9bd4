"""One synthetic build, end to end: world, parallel chunks, warehouse, optional Parquet copy."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from joinedup.errors import ConfigurationError
from joinedup.footprint import Footprint
from joinedup.synth.generator import Progress, generate_parts, measure_calibration
from joinedup.synth.shapes import Area, shapes_for
from joinedup.synth.world import World, build_world
from joinedup.warehouse.locks import holding
from joinedup.warehouse.scratch import scratch_folder
from joinedup.warehouse.store import BuildInfo, build_warehouse, export_parquet

DEFAULT_START = dt.date(2023, 4, 1)  # three NHS financial years: 2023/24 to 2025/26
DEFAULT_YEARS = 3


@dataclass(frozen=True)
class ReferenceShapes:
    """Real small-area shapes for the places of a real footprint, from reference files."""

    areas: Mapping[str, Area]
    ethnicity: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class SynthResult:
    warehouse: Path
    people: int
    seed: int
    rows: dict[str, int]
    seconds: float
    parquet: list[Path]


def synthesise(
    footprint: Footprint,
    *,
    people: int,
    seed: int,
    warehouse: Path,
    parquet_dir: Path | None = None,
    workers: int = 2,
    start: dt.date = DEFAULT_START,
    years: int = DEFAULT_YEARS,
    reference: ReferenceShapes | None = None,
    progress: Progress | None = None,
    on_stage: Callable[[str], None] | None = None,
    engine: str = "duckdb",
    spark_master: str = "local[*]",
) -> SynthResult:
    """Generate `people` (the registered population on the first day of the history, plus the
    babies born during it) with `years` of history, and write the warehouse atomically."""
    if people < 1:
        raise ConfigurationError("--people must be at least 1")
    if years < 1 or years > 10:
        raise ConfigurationError("--years must be between 1 and 10")
    began = time.perf_counter()
    stage = on_stage or (lambda _: None)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    # Held from the start, so a rebuild is refused before any work when a server (or a writer)
    # has the warehouse open, and none can open it until the new one is in place.
    with holding(warehouse):
        stage("calibrating to national rates")
        calibration = measure_calibration(start, years)
        shapes = shapes_for(
            footprint,
            reference.areas if reference else None,
            reference.ethnicity if reference else None,
        )
        world = build_world(footprint, shapes, people=people, seed=seed, start=start, years=years)
        world.calibration = calibration
        end = start.replace(year=start.year + years) - dt.timedelta(days=1)
        info = BuildInfo(
            source="synthetic",
            people=people,
            footprint=footprint.system.name,
            history_start=start,
            history_end=end,
            seed=seed,
            parameters={
                "years": years,
                "footprint_code": footprint.system.code,
                "reference_shapes": reference is not None,
            },
        )
        with scratch_folder(warehouse.parent, "synth-parts") as parts:
            stage("generating people and their history")
            generate_parts(world, parts, workers=workers, progress=progress)
            stage("loading the warehouse")
            rows = build_warehouse(
                warehouse,
                parts_dir=parts,
                footprint=footprint,
                info=info,
                areas=area_table(world),
                engine=engine,
                spark_master=spark_master,
            )
    written: list[Path] = []
    if parquet_dir is not None:
        stage("writing Parquet")
        written = export_parquet(warehouse, parquet_dir)
    return SynthResult(warehouse, people, seed, rows, time.perf_counter() - began, written)


def area_table(world: World) -> pa.Table:
    """The footprint's LSOAs with their place and IMD decile (the `area` table)."""
    places = [
        code
        for code, t in zip(world.place_codes, world.places, strict=True)
        for _ in range(t.n_areas)
    ]
    return pa.table(
        {
            "lsoa_code": pa.array(world.lsoa_codes, pa.string()),
            "place_code": pa.array(places, pa.string()),
            "imd_decile": pa.array(world.lsoa_imd, pa.int16()),
        }
    )
