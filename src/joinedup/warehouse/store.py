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

from joinedup import __version__
from joinedup.footprint import Footprint
from joinedup.warehouse.engines.duckdb import DuckDBEngine
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
            "people": self.people,
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
                    "list_size": p.list_size,
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


def build_warehouse(
    path: Path,
    *,
    parts_dir: Path,
    footprint: Footprint,
    info: BuildInfo,
    areas: pa.Table | None = None,
    memory_limit: str = "3GB",
    on_table: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Create the warehouse at `path` from Parquet parts (`parts_dir/<table>/*.parquet`), the
    footprint and its LSOAs (`areas`), replacing any existing file only once the new one is
    complete. Returns row counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with holding(path), scratch_folder(path.parent, f"{path.name}.building") as scratch:
        tmp = scratch / path.name
        engine = DuckDBEngine(tmp, memory_limit=memory_limit, bulk_load=True)
        try:
            for table in ALL_TABLES:
                engine.create(table)
            for table in POPULATION_TABLES:
                if on_table is not None:
                    on_table(table.name)
                files = sorted((parts_dir / table.name).glob("*.parquet"))
                if files:
                    engine.append_parquet(table.name, files)
                counts[table.name] = engine.count(table.name)
            for name, data in footprint_tables(footprint).items():
                engine.append(name, conform(TABLES[name], data))
                counts[name] = data.num_rows
            if areas is not None:
                engine.append(AREA.name, conform(AREA, areas))
                counts[AREA.name] = areas.num_rows
            engine.append(BUILD.name, info.table())
            engine.checkpoint()
        finally:
            engine.close()
        # A write-ahead log a killed writer left beside the old file belongs to that file:
        # DuckDB refuses to open the new one beside it ("WAL does not match database file").
        # Held exclusively, the old file has no writer, so the log can go before the swap.
        path.with_name(path.name + ".wal").unlink(missing_ok=True)
        tmp.replace(path)
        _remove(path.with_name(path.name + ".wal.unused"))
    return counts


def export_parquet(warehouse: Path, out_dir: Path) -> list[Path]:
    """Write every canonical table of a warehouse to `out_dir/<table>.parquet` (for Spark)."""
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
