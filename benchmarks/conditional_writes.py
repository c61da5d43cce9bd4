"""Measurement: what the lock on a conditional write's criteria costs one uncontended
conditional create (docs/records.md, "Writes"; docs/benchmarks.md).

`--calls` conditional creates by NHS number (`If-None-Exist: identifier=...|N`) through
`RecordStore.create`, one writer, in two kinds: a new NHS number each call (no match: the
Patient is created) and one already stored (the match is returned). Each kind runs with the
criteria lock and without it (`RecordStore._lock_criteria` made a no-op, which is the store
before the lock), alternating in `--rounds` rounds so the machine's load falls on both alike;
the medians over rounds of wall and process CPU per call, in ms, and their ratio. The CPU is
this process's only: PostgreSQL's own work for the lock (one more statement) shows in the
wall time. On SQLite (a file) and, with `--postgresql`, a throwaway PostgreSQL cluster
(tests/postgres_cluster.py, the tests' settings).

    .venv/bin/python benchmarks/conditional_writes.py --calls 300 --postgresql
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from joinedup.fhir.validate import NHS_NUMBER_SYSTEM, is_valid_nhs_number  # noqa: E402
from joinedup.records import RecordStore  # noqa: E402
from postgres_cluster import measured_on_both  # noqa: E402


def _nhs_numbers() -> Iterator[str]:
    candidates = (f"97{n:08d}" for n in itertools.count(1))
    return (c for c in candidates if is_valid_nhs_number(c))


def _patient(nhs_number: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}],
        "name": [{"family": "Bench", "given": ["Mark"]}],
        "gender": "unknown",
        "birthDate": "1970-01-01",
    }


def _timed(store: RecordStore, numbers: list[str]) -> tuple[float, float]:
    """Wall and CPU ms per conditional create of each of `numbers`."""
    wall, cpu = time.perf_counter(), time.process_time()
    for number in numbers:
        store.create(_patient(number), if_none_exist=f"identifier={NHS_NUMBER_SYSTEM}|{number}")
    count = len(numbers)
    return (
        (time.perf_counter() - wall) * 1000 / count,
        (time.process_time() - cpu) * 1000 / count,
    )


def measure(url: str, calls: int, rounds: int) -> dict[str, Any]:
    fresh = _nhs_numbers()
    figures: dict[str, dict[str, list[float]]] = {}
    with RecordStore(url) as store:
        locking = store._lock_criteria
        stored = [next(fresh) for _ in range(calls)]
        _timed(store, stored)  # stored once, and the connections warmed
        for _ in range(rounds):
            for locked in (True, False):
                store._lock_criteria = locking if locked else (lambda *_: None)  # type: ignore[method-assign]
                name = "locked" if locked else "unlocked"
                for kind, numbers in (
                    ("creates", [next(fresh) for _ in range(calls)]),
                    ("matches", stored),
                ):
                    wall, cpu = _timed(store, numbers)
                    found = figures.setdefault(f"{kind}_{name}", {"wall": [], "cpu": []})
                    found["wall"].append(wall)
                    found["cpu"].append(cpu)
        store._lock_criteria = locking  # type: ignore[method-assign]
    result: dict[str, Any] = {}
    for key, found in figures.items():
        result[key] = {
            "wall_ms": round(statistics.median(found["wall"]), 3),
            "cpu_ms": round(statistics.median(found["cpu"]), 3),
        }
    for kind in ("creates", "matches"):
        locked, unlocked = result[f"{kind}_locked"], result[f"{kind}_unlocked"]
        result[f"{kind}_wall_ratio"] = round(locked["wall_ms"] / unlocked["wall_ms"], 3)
        result[f"{kind}_cpu_ratio"] = round(locked["cpu_ms"] / unlocked["cpu_ms"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgresql", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"load_before": Path("/proc/loadavg").read_text().split()[:3]}
    results |= measured_on_both(
        "conditional_writes",
        lambda url: measure(url, args.calls, args.rounds),
        postgresql=args.postgresql,
    )
    results["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
