"""Measurement: the master person index built in the engine, and written to the records store
as a difference (docs/linkage.md, "The index at scale").

A synthetic run: `--records` source records, five a person (one in each of five systems),
each person's records joined by a chain of four links (so 800,000 links at 1,000,000
records; one in five by NHS number, the rest Splink at 0.99) and one person in a hundred with
an uncertain pair (0.7) to the next person's GP record (the review queue). Then a re-run with
a small change: `--new` new records (people of one record) and `--rewired` links dropped (each
a split).

- build: `build_index` on DuckDB, the first run and the re-run with the first as its previous
  index; wall seconds, and the process's peak memory (the whole script's, so the build's peak
  is at most that);
- store (with `--store`, at `--store-records`, default 200,000): the first run's index written
  to an empty records store (every row), read back, then the re-run written as a difference;
  seconds and rows written, on SQLite and, with `--postgresql`, on a throwaway PostgreSQL
  cluster (the tests' settings: fsync off).

    .venv/bin/python benchmarks/person_index.py --records 1000000
    .venv/bin/python benchmarks/person_index.py --records 0 --store --postgresql
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from joinedup.linkage.mpi import (  # noqa: E402
    PAIRS_SCHEMA,
    RECORDS_SCHEMA,
    MasterPersonIndex,
    PreviousIndex,
    build_index,
)
from joinedup.records import PersonIndexStore  # noqa: E402
from joinedup.warehouse import Engine, open_empty_engine  # noqa: E402
from postgres_cluster import measured_on_both  # noqa: E402

SYSTEMS = ("gp", "acute", "community", "mental_health", "social_care")
FIRST = datetime(2026, 12, 1, tzinfo=UTC)
SECOND = FIRST + timedelta(days=1)


def _ids(system: str, people: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(pa.scalar(system[:2]), pc.cast(people, pa.string()), "")


def world(records: int, new: int = 0, rewired: int = 0) -> tuple[pa.Table, pa.Table]:
    """The run's records and pairs (see the module's docstring); `new` and `rewired` make the
    re-run's."""
    people = pa.array(range(records // len(SYSTEMS)), pa.int64())
    tables = [
        pa.table([pa.array([s] * len(people)), _ids(s, people)], schema=RECORDS_SCHEMA)
        for s in SYSTEMS
    ]
    if new:
        extra = pa.array(range(len(people), len(people) + new), pa.int64())
        tables.append(pa.table([pa.array(["gp"] * new), _ids("gp", extra)], schema=RECORDS_SCHEMA))
    links = []
    for left, right in itertools.pairwise(SYSTEMS):
        keep = people if left != "gp" else people[rewired:]  # the first `rewired` split
        nhs = pc.equal(pc.bit_wise_and(keep, pa.scalar(4, pa.int64())), 0)  # some by NHS number
        n = len(keep)
        links.append(
            pa.table(
                {
                    "left_source": pa.array([left] * n),
                    "left_record_id": _ids(left, keep),
                    "right_source": pa.array([right] * n),
                    "right_record_id": _ids(right, keep),
                    "match_probability": pa.array([0.99] * n, pa.float64()),
                    "match_weight": pa.array([12.5] * n, pa.float64()),
                    "matched_by": pc.if_else(nhs, "nhs_number", "splink"),
                    "evidence": pa.array(["Exact match on birth_date; postcode differs"] * n),
                },
                schema=PAIRS_SCHEMA,
            )
        )
    doubtful = pc.filter(people, pc.equal(pc.remainder(people, 100), 7))
    n = len(doubtful)
    links.append(
        pa.table(
            {
                "left_source": pa.array(["gp"] * n),
                "left_record_id": _ids("gp", doubtful),
                "right_source": pa.array(["acute"] * n),
                "right_record_id": _ids("acute", pc.add(doubtful, 1)),
                "match_probability": pa.array([0.7] * n, pa.float64()),
                "match_weight": pa.array([1.2] * n, pa.float64()),
                "matched_by": pa.array(["splink"] * n),
                "evidence": pa.array(["Exact match on family_name; birth_date differs"] * n),
            },
            schema=PAIRS_SCHEMA,
        )
    )
    return pa.concat_tables(tables), pa.concat_tables(links)


def _peak_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2)


def _build(
    engine: Engine, tables: tuple[pa.Table, pa.Table], previous: PreviousIndex | None, at: datetime
) -> tuple[MasterPersonIndex, float]:
    started = time.perf_counter()
    index = build_index(engine, *tables, threshold=0.9, previous=previous, run_at=at)
    return index, round(time.perf_counter() - started, 2)


def measure_build(records: int, new: int, rewired: int) -> dict[str, Any]:
    first_world = world(records)
    second_world = world(records, new, rewired)
    with open_empty_engine("duckdb") as engine:
        first, first_s = _build(engine, first_world, None, FIRST)
        previous = PreviousIndex(first.entries, first.history, first.decisions)
        second, second_s = _build(engine, second_world, previous, SECOND)
    return {
        "records": first.summary.records,
        "links": first.links.num_rows,
        "people": first.summary.people,
        "first_build_s": first_s,
        "rerun_build_s": second_s,
        "rerun": {k: v for k, v in vars(second.summary).items() if v},
        "peak_memory_gb": _peak_gb(),
    }


def measure_store(url: str, records: int, new: int, rewired: int) -> dict[str, Any]:
    with open_empty_engine("duckdb") as engine, PersonIndexStore(url) as store:
        first, _ = _build(engine, world(records), None, FIRST)
        started = time.perf_counter()
        written = store.write_index(engine, first, None, {"run_at": FIRST.isoformat()})
        whole = time.perf_counter() - started
        started = time.perf_counter()
        previous = store.read_previous()
        read = time.perf_counter() - started
        second, _ = _build(engine, world(records, new, rewired), previous, SECOND)
        started = time.perf_counter()
        changed = store.write_index(engine, second, previous, {"run_at": SECOND.isoformat()})
        difference = time.perf_counter() - started
    return {
        "records": first.summary.records,
        "links": first.links.num_rows,
        "queued": first.review.num_rows,
        "first_write_s": round(whole, 2),
        "first_rows_written": written.rows(),
        "read_previous_s": round(read, 2),
        "rerun_write_s": round(difference, 2),
        "rerun_rows_written": changed.rows(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--rewired", type=int, default=20)
    parser.add_argument("--store", action="store_true")
    parser.add_argument("--store-records", type=int, default=200_000)
    parser.add_argument("--postgresql", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"load_before": Path("/proc/loadavg").read_text().split()[:3]}
    if args.records:
        results["build"] = measure_build(args.records, args.new, args.rewired)
    if args.store:
        results |= measured_on_both(
            "person_index",
            lambda url: measure_store(url, args.store_records, args.new, args.rewired),
            postgresql=args.postgresql,
        )
    results["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
