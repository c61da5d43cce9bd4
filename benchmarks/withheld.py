"""Measurement: what withholding by objections to sharing costs a clinician's search as the
store's objections grow (docs/records.md, "Consent and sensitive categories").

A store holds `--people` people, each with a Patient at a practice (`g<n>`) and a Condition;
the master person index links each to a record at a trust. Then, in three stages, people
object at the trust: for each, the trust's Patient (`a<n>`) and an objection to sharing on it
recorded by the trust, which follows the person to the practice's Patient. After each stage
(`--objections`, 50, 5,000 and 50,000 in all by default), a user of the practice (another
organisation than the one that recorded the objections) searches `--sample` Patients'
Conditions, kept to that Patient with what is withheld following the person index
(`Withholding(person_sources=...)`, as `Policy.scope` gives): half of them people who
objected (nothing found), half who did not (their one Condition). Each search is timed
through the store (`RecordStore.search`, wall clock) with this process's CPU time; medians
and 95th percentiles in ms. On SQLite (a file) and, with `--postgresql`, on a throwaway
PostgreSQL cluster (tests/postgres_cluster.py), `ANALYZE`d after each stage.

Only what every version of the store has is used, so the same script measures the code
before a change (`PYTHONPATH=/path/to/old/src`):

    .venv/bin/python benchmarks/withheld.py --people 60000 --postgresql
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from joinedup.records import RecordStore  # noqa: E402
from joinedup.records.store import database_url  # noqa: E402
from joinedup.records.store.person_index import mpi_person_index, mpi_runs  # noqa: E402
from joinedup.records.store.withholding import Permitted, Withholding  # noqa: E402
from postgres_cluster import measured_on_both  # noqa: E402

GP_IDS = "https://gp.example.org/patient-id"
PAS_IDS = "https://trust.example.org/pas-number"
SYSTEMS = {"gp": GP_IDS, "acute": PAS_IDS}
NOW = datetime(2026, 6, 1, tzinfo=UTC)
PRACTICE = frozenset({"A11111"})


def _people(people: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for n in range(people):
        found.append({"resourceType": "Patient", "id": f"g{n}",
                      "identifier": [{"system": GP_IDS, "value": f"G-{n}"}]})  # fmt: skip
        found.append({"resourceType": "Condition", "id": f"c{n}",
                      "code": {"coding": [{"system": "http://snomed.info/sct",
                                           "code": "195967001"}]},
                      "subject": {"reference": f"Patient/g{n}"}})  # fmt: skip
    return found


def _objecting(n: int) -> list[dict[str, Any]]:
    """Person n's Patient at the trust and their objection to sharing recorded there."""
    pid = f"a{n}"
    return [
        {"resourceType": "Patient", "id": pid,
         "identifier": [{"system": PAS_IDS, "value": f"A-{n}"}]},
        {"resourceType": "Consent", "id": f"o{n}", "status": "active",
         "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                               "code": "patient-privacy"}]},
         "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
         "patient": {"reference": f"Patient/{pid}"}, "dateTime": "2026-05-01T09:00:00Z",
         "organization": [{"identifier": {
             "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RXX"}}],
         "policyRule": {"coding": [{
             "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
         "provision": {"type": "deny"}},
    ]  # fmt: skip


def _load(store: RecordStore, resources: list[dict[str, Any]]) -> tuple[float, float]:
    """Wall and this process's CPU seconds to load `resources` in chunks of 500."""
    start, start_cpu = time.perf_counter(), time.process_time()
    for at in range(0, len(resources), 500):
        store.load_chunk(resources[at : at + 500])
    return time.perf_counter() - start, time.process_time() - start_cpu


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
    }


def _analyse(url: str) -> None:
    engine = create_engine(database_url(url))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    engine.dispose()


def measure(url: str, people: int, stages: list[int], sample: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with RecordStore(url, clock=lambda: NOW) as store:
        results["load_people_s"] = round(_load(store, _people(people))[0], 1)
        rows = [
            {"source": source, "record_id": f"{prefix}-{n}", "person_id": f"P{n:09d}",
             "linked_by": "splink", "match_weight": 12.0, "needs_review": False}
            for n in range(people) for source, prefix in (("gp", "G"), ("acute", "A"))
        ]  # fmt: skip
        engine = create_engine(database_url(url))
        with engine.begin() as conn:
            for at in range(0, len(rows), 10_000):
                conn.execute(insert(mpi_person_index), rows[at : at + 10_000])
            conn.execute(insert(mpi_runs), {"run_at": NOW, "record": "{}"})
        engine.dispose()
        store.keep_people(SYSTEMS)
        store.refresh_person_links()
        sources = tuple(sorted(SYSTEMS.items()))
        done = 0
        for objections in stages:
            added = [r for n in range(done, objections) for r in _objecting(n)]
            loaded, loaded_cpu = _load(store, added)
            done = objections
            _analyse(url)
            pick = random.Random(objections)
            chosen = [pick.randrange(objections) for _ in range(sample // 2)]
            chosen += [pick.randrange(objections, people) for _ in range(sample - len(chosen))]
            times: list[float] = []
            cpu = 0.0
            for n in chosen:
                pid = f"g{n}"
                scope = Permitted([("Patient", [("_id", pid)])],
                                  Withholding(PRACTICE, person_sources=sources))  # fmt: skip
                began_cpu, began = time.process_time(), time.perf_counter()
                page = store.search("Condition", {"patient": f"Patient/{pid}"}, patients_of=scope)
                times.append((time.perf_counter() - began) * 1000)
                cpu += time.process_time() - began_cpu
                expected = 0 if n < objections else 1
                if page.total != expected:
                    raise SystemExit(f"{objections} objections: Patient {pid} found {page.total}")
            results[str(objections)] = {
                "load_objections_s": round(loaded, 1),
                "load_objections_cpu_s": round(loaded_cpu, 1),
                "search": _summary(times),
                "search_cpu_ms": round(cpu * 1000 / len(chosen), 3),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=60_000)
    parser.add_argument("--objections", default="50,5000,50000",
                        help="objections in all after each stage, comma-separated")  # fmt: skip
    parser.add_argument("--sample", type=int, default=400)
    parser.add_argument("--postgresql", action="store_true")
    args = parser.parse_args()
    stages = sorted(int(s) for s in args.objections.split(","))
    if not stages or stages[0] < 1 or stages[-1] >= args.people:
        parser.error("--objections: each from 1 to fewer than --people")
    load = Path("/proc/loadavg").read_text().split()[:3]
    results: dict[str, Any] = {"load_before": load}
    results |= measured_on_both(
        "withheld",
        lambda url: measure(url, args.people, stages, args.sample),
        postgresql=args.postgresql,
    )
    results["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
