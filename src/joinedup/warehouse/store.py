"""The warehouse file: built whole and swapped in atomically, so no reader ever sees half of one.

A build writes a new DuckDB file in a scratch folder beside the target, loads every canonical
table into it, records its provenance in `build`, checkpoints, and only then renames it over the
old file, which it holds exclusively throughout (refused while a server or a writer has it open).
An interrupted build leaves the old warehouse (or none) and removes its partial file; a killed
one leaves its scratch folder for the next build to remove.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from joinedup import __version__
from joinedup.errors import ConfigurationError
from joinedup.footprint import Footprint
from joinedup.warehouse.engines.base import Engine
from joinedup.warehouse.engines.duckdb import DuckDBEngine
from joinedup.warehouse.engines.spark import SparkEngine
from joinedup.warehouse.lake import MANIFEST, Lake, is_lake, loosen, parquet_rows
from joinedup.warehouse.locks import holding
from joinedup.warehouse.schema import (
    ALL_TABLES,
    AREA,
    BUILD,
    COLLABORATIVE,
    COLLABORATIVE_MEMBER,
    ICS,
    ORGANISATION,
    PCN,
    PLACE,
    POPULATION_TABLES,
    PRACTICE,
    TABLES,
    Table,
    conform,
)
from joinedup.warehouse.scratch import scratch_folder


@dataclass(frozen=True)
class BuildInfo:
    """Provenance of a build, stored in the `build` table."""

    source: str
    people: int
    footprint: str
    history_start: dt.date
    history_end: dt.date
    seed: int | None = None
    parameters: Mapping[str, object] = field(default_factory=dict)
    build_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def table(self) -> pa.Table:
        row = {
            "build_id": self.build_id,
            "source": self.source,
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "joinedup_version": __version__,
            "seed": self.seed,
            "people_count": self.people,
            "footprint": self.footprint,
            "history_start_date": self.history_start,
            "history_end_date": self.history_end,
            "parameters": json.dumps(dict(self.parameters), sort_keys=True, default=str),
        }
        return pa.Table.from_pylist([row], schema=BUILD.arrow_schema())


def footprint_tables(fp: Footprint) -> dict[str, pa.Table]:
    """The footprint as the canonical footprint tables."""

    def table(t: object, rows: list[dict[str, object]]) -> pa.Table:
        schema = TABLES[t.name].arrow_schema()  # type: ignore[attr-defined]
        return pa.Table.from_pylist(rows, schema=schema)

    return {
        ICS.name: table(
            ICS,
            [
                {
                    "ics_code": fp.system.code,
                    "ics_name": fp.system.name,
                    "is_real": fp.system.is_real,
                }
            ],
        ),
        PLACE.name: table(
            PLACE,
            [
                {"place_code": p.code, "place_name": p.name, "profile": p.profile.value}
                for p in fp.places
            ],
        ),
        PCN.name: table(
            PCN,
            [{"pcn_code": p.code, "pcn_name": p.name, "place_code": p.place} for p in fp.pcns],
        ),
        PRACTICE.name: table(
            PRACTICE,
            [
                {
                    "practice_code": p.code,
                    "practice_name": p.name,
                    "place_code": p.place,
                    "pcn_code": p.pcn,
                    "postcode": p.postcode,
                    "latitude": p.latitude,
                    "longitude": p.longitude,
                    "registered_count": p.list_size,
                }
                for p in fp.practices
            ],
        ),
        ORGANISATION.name: table(
            ORGANISATION,
            [
                {
                    "organisation_code": o.code,
                    "organisation_name": o.name,
                    "organisation_type": o.type.value,
                    "place_code": o.place,
                }
                for o in fp.organisations
            ],
        ),
        COLLABORATIVE.name: table(
            COLLABORATIVE,
            [
                {
                    "collaborative_code": c.code,
                    "collaborative_name": c.name,
                    "kind": c.kind.value,
                    "place_code": c.place,
                }
                for c in fp.collaboratives
            ],
        ),
        COLLABORATIVE_MEMBER.name: table(
            COLLABORATIVE_MEMBER,
            [
                {"collaborative_code": c.code, "organisation_code": m}
                for c in fp.collaboratives
                for m in c.members
            ],
        ),
    }


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _empty_or_conformed(table: Table, data: pa.Table | None) -> pa.Table:
    if data is None:
        return table.arrow_schema().empty_table()
    return conform(table, data)


def build_lake(
    root: Path,
    *,
    parts_dir: Path,
    footprint: Footprint,
    info: BuildInfo,
    areas: pa.Table | None = None,
    memory_limit: str = "3GB",
    on_table: Callable[[str], None] | None = None,
    engine: str = "duckdb",
    spark_master: str = "local[*]",
) -> dict[str, int]:
    """`build_warehouse` for a lake: every canonical table written to a new version and made
    current at once (tables other jobs wrote, such as phm_*, are removed: they described the
    population being replaced)."""
    lake = Lake(root)
    counts: dict[str, int] = {}
    with lake.writing(info.build_id) as write:
        for name in lake.manifest().tables:
            write.remove(name)
        writer: Engine = (
            SparkEngine(spark_master)
            if engine == "spark"
            else DuckDBEngine(memory_limit=memory_limit, bulk_load=True)
        )
        try:
            for table in POPULATION_TABLES:
                if on_table is not None:
                    on_table(table.name)
                folder = write.stage(table.name)
                files = sorted((parts_dir / table.name).glob("*.parquet"))
                if files:
                    writer.load_parquet(_PARTS, files)
                    writer.write_parquet(_typed_select(table, writer.dialect), folder)
                    writer.drop(_PARTS)
                else:
                    empty = loosen(table.arrow_schema().empty_table())
                    pq.write_table(empty, folder / "part-0.parquet")
                counts[table.name] = parquet_rows(sorted(folder.glob("*.parquet")))
        finally:
            writer.close()
        small = {
            **footprint_tables(footprint),
            AREA.name: _empty_or_conformed(AREA, areas),
            BUILD.name: info.table(),
        }
        for name, data in small.items():
            typed = loosen(conform(TABLES[name], data))
            pq.write_table(typed, write.stage(name) / "part-00000.parquet")
            counts[name] = typed.num_rows
        write.commit()
    return counts


_PARTS = "synth_parts"


def _typed_select(table: Table, dialect: str) -> exp.Select:
    """The table's columns, by name and cast to their types, from the generated parts."""
    return exp.select(
        *[
            exp.cast(exp.column(c.name), exp.DataType.build(c.type, dialect="duckdb")).as_(c.name)
            for c in table.columns
        ]
    ).from_(_PARTS)


def copy_warehouse(
    source: Path, target: Path, *, on_table: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Copy every current table from a DuckDB file to a lake, or from a lake to a DuckDB
    file; the target is replaced whole and at once. Returns rows per table."""
    if is_lake(source) == is_lake(target):
        kind = "lakes" if is_lake(source) else "DuckDB files"
        raise ConfigurationError(
            f"both {source} and {target} are {kind}: copy from a .duckdb file to a lake "
            "(a folder) or back"
        )
    if is_lake(source):
        return _lake_to_file(Lake(source), target, on_table)
    return _file_to_lake(source, Lake(target), on_table)


def _file_to_lake(
    source: Path, lake: Lake, on_table: Callable[[str], None] | None
) -> dict[str, int]:
    counts: dict[str, int] = {}
    engine = DuckDBEngine(source, read_only=True)
    try:
        names = engine.table_names()
        with lake.writing() as write:
            for name in lake.manifest().tables:
                if name not in names:
                    write.remove(name)
            for name in names:
                if on_table is not None:
                    on_table(name)
                folder = write.stage(name)
                engine.export_parquet(name, folder / "part-00000.parquet")
                counts[name] = parquet_rows([folder / "part-00000.parquet"])
            write.commit()
    finally:
        engine.close()
    return counts


def _lake_to_file(
    lake: Lake, target: Path, on_table: Callable[[str], None] | None
) -> dict[str, int]:
    if not lake.exists():
        raise ConfigurationError(f"no lake at {lake.root} (no {MANIFEST})")
    target.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    manifest = lake.manifest()
    with (
        lake.pinned(manifest),
        holding(target),
        scratch_folder(target.parent, f"{target.name}.copying") as scratch,
    ):
        tmp = scratch / target.name
        engine = DuckDBEngine(tmp, bulk_load=True)
        try:
            for name, entry in manifest.tables.items():
                if on_table is not None:
                    on_table(name)
                files = lake.files(entry)
                if name in TABLES:
                    engine.create(TABLES[name])
                    engine.insert_parquet(name, TABLES[name].column_names, files)
                else:
                    engine.load_parquet(name, files)
                counts[name] = engine.count(name)
            engine.checkpoint()
        finally:
            engine.close()
        target.with_name(target.name + ".wal").unlink(missing_ok=True)
        tmp.replace(target)
    return counts


def build_warehouse(
    path: Path,
    *,
    parts_dir: Path,
    footprint: Footprint,
    info: BuildInfo,
    areas: pa.Table | None = None,
    memory_limit: str = "3GB",
    on_table: Callable[[str], None] | None = None,
    engine: str = "duckdb",
    spark_master: str = "local[*]",
) -> dict[str, int]:
    """Create the warehouse at `path` from Parquet parts (`parts_dir/<table>/*.parquet`), the
    footprint and its LSOAs (`areas`), replacing any existing file only once the new one is
    complete. A `path` that is a lake (a folder) is built by `build_lake`. Returns row
    counts."""
    if is_lake(path):
        return build_lake(
            path,
            parts_dir=parts_dir,
            footprint=footprint,
            info=info,
            areas=areas,
            memory_limit=memory_limit,
            on_table=on_table,
            engine=engine,
            spark_master=spark_master,
        )
    if engine != "duckdb":
        raise ConfigurationError(
            f"the {engine} engine writes a lake, not a DuckDB file ({path}): give --warehouse "
            "a folder"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with holding(path), scratch_folder(path.parent, f"{path.name}.building") as scratch:
        tmp = scratch / path.name
        duck = DuckDBEngine(tmp, memory_limit=memory_limit, bulk_load=True)
        try:
            for table in ALL_TABLES:
                duck.create(table)
            for table in POPULATION_TABLES:
                if on_table is not None:
                    on_table(table.name)
                files = sorted((parts_dir / table.name).glob("*.parquet"))
                if files:
                    duck.insert_parquet(table.name, table.column_names, files)
                counts[table.name] = duck.count(table.name)
            for name, data in footprint_tables(footprint).items():
                duck.append(name, conform(TABLES[name], data))
                counts[name] = data.num_rows
            if areas is not None:
                duck.append(AREA.name, conform(AREA, areas))
                counts[AREA.name] = areas.num_rows
            duck.append(BUILD.name, info.table())
            duck.checkpoint()
        finally:
            duck.close()
        # A write-ahead log a killed writer left beside the old file belongs to that file:
        # DuckDB refuses to open the new one beside it ("WAL does not match database file").
        # Held exclusively, the old file has no writer, so the log can go before the swap.
        path.with_name(path.name + ".wal").unlink(missing_ok=True)
        tmp.replace(path)
        _remove(path.with_name(path.name + ".wal.unused"))
    return counts


def export_parquet(warehouse: Path, out_dir: Path) -> list[Path]:
    """Write every canonical table of a warehouse to `out_dir/<table>.parquet` (for Spark)."""
    if is_lake(warehouse):
        raise ConfigurationError(
            f"{warehouse} is a lake: its tables are Parquet already (one folder per table, "
            "the current version named in _manifest.json)"
        )
    written: list[Path] = []
    engine = DuckDBEngine(warehouse, read_only=True)
    try:
        have = set(engine.table_names())
        for table in ALL_TABLES:
            if table.name in have:
                target = out_dir / f"{table.name}.parquet"
                engine.export_parquet(table.name, target)
                written.append(target)
    finally:
        engine.close()
    return written
