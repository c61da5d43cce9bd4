"""Measurement: what a plain Patient write costs through the records store
(docs/records.md, "Whom objections withhold, kept as rows"): `--writes` new Patients written
one at a time (`RecordStore.update`, each its own transaction), then each updated once, with
no identifier systems mapping's people kept and then with one kept (as the API keeps its
`JOINEDUP_RECORDS_INDEX_SOURCES` mapping), on a SQLite file and, with `--postgresql`, on a
throwaway PostgreSQL cluster (tests/postgres_cluster.py). Medians and 95th percentiles of the
wall time in µs, and this process's CPU time a write (PostgreSQL's own is in the wall time,
not the CPU).

Only what every version of the store has is used, so the same script measures the code
before a change (`PYTHONPATH=/path/to/old/src`):

    .venv/bin/python benchmarks/patient_writes.py --writes 400 --postgresql
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from joinedup.records import RecordStore  # noqa: E402
from postgres_cluster import measured_on_both  # noqa: E402

GP_IDS = "https://gp.example.org/patient-id"
SYSTEMS = {"gp": GP_IDS}
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _patient(pid: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}],
            "identifier": [{"system": GP_IDS, "value": pid.upper()}]}  # fmt: skip


def _writes(store: RecordStore, prefix: str, count: int, family: str) -> dict[str, float]:
    times: list[float] = []
    cpu = 0.0
    for n in range(count):
        patient = _patient(f"{prefix}{n}", family)
        began_cpu, began = time.process_time(), time.perf_counter()
        store.update(patient)
        times.append((time.perf_counter() - began) * 1e6)
        cpu += time.process_time() - began_cpu
    ordered = sorted(times)
    return {
        "median_us": round(statistics.median(ordered), 1),
        "p95_us": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        "cpu_us": round(cpu * 1e6 / count, 1),
    }


def measure(url: str, count: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with RecordStore(url, clock=lambda: NOW) as store:
        # a warm-up, so the first statements' compiling and the pool's connecting are not
        # counted
        _writes(store, "w", 50, "Warm")
        for kept in ("none kept", "one kept"):
            if kept == "one kept":
                store.keep_people(SYSTEMS)
            prefix = "p" if kept == "none kept" else "q"
            results[kept] = {
                "create": _writes(store, prefix, count, "Smith"),
                "update": _writes(store, prefix, count, "Jones"),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=400, help="Patients written each way")
    parser.add_argument("--postgresql", action="store_true", help="PostgreSQL too")
    args = parser.parse_args()
    if args.writes < 1:
        parser.error("--writes: at least 1")
    results: dict[str, Any] = {"load_before": Path("/proc/loadavg").read_text().split()[:3]}
    results |= measured_on_both(
        "patient_writes", lambda url: measure(url, args.writes), postgresql=args.postgresql
    )
    results["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
