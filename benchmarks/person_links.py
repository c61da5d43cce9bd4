"""Measurement: what following the master person index costs `Patient/$everything` in the
records store (docs/linkage.md, "Using the index: the records store").

The lookup from a store Patient to the same person's other Patients is a join at read time
(records.store.person_links), not a table kept beside the index; this measures whether that
is cheap enough. A store holds `--people` people, each with a Patient at a practice and one
at a trust (local ids under two identifier systems) and a Condition on each; the index holds
their records and, to make it index-sized, `--filler` more records of other people (two a
person). Then for `--sample` Patients: `RecordStore.linked_patients` alone, and
`RecordStore.everything` of the Patient alone and with its linked Patient (no access filter),
each timed; medians and 95th percentiles in ms. Also what a plain read's access decision
asks of the store about objections to sharing: before objections followed the person, the
Patient's own (`RecordStore.objections`), and now the one statement for it and every Patient
the index links to it (`RecordStore.person_objections`), beside the read itself, with the
process CPU time of each; and a clinician's search for the Patient's Conditions kept to them
with what is withheld, the Patient's own objections only and then the person's, one person in
a hundred having objected at the trust. Last, what a Patient write costs with each Patient's
person kept (store.person_links): the sampled Patients updated one at a time, then every
Patient written again through the bulk load's path, and every Patient's person kept again
(what an index run adds). On SQLite (a file) and, with `--postgresql`,
on a throwaway PostgreSQL cluster (tests/postgres_cluster.py, the tests' settings), with
`ANALYZE` after the load on PostgreSQL.

    .venv/bin/python benchmarks/person_links.py --people 5000 --filler 190000 --postgresql
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
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


def _resources(people: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for n in range(people):
        for side, system in (("g", GP_IDS), ("a", PAS_IDS)):
            pid = f"{side}{n}"
            found.append(
                {
                    "resourceType": "Patient",
                    "id": pid,
                    "identifier": [{"system": system, "value": f"{side.upper()}-{n}"}],
                }
            )
            found.append({"resourceType": "Condition", "id": f"c{pid}",
                          "code": {"coding": [{"system": "http://snomed.info/sct",
                                               "code": "195967001"}]},
                          "subject": {"reference": f"Patient/{pid}"}})  # fmt: skip
    return found


def _objection(pid: str) -> dict[str, Any]:
    """An objection to sharing recorded by the trust (docs/records.md gives its shape)."""
    return {"resourceType": "Consent", "id": f"o{pid}", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{pid}"}, "dateTime": "2026-05-01T09:00:00Z",
            "organization": [{"identifier": {
                "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RXX"}}],
            "policyRule": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
            "provision": {"type": "deny"}}  # fmt: skip


def _index_rows(people: int, filler: int) -> list[dict[str, Any]]:
    rows = []
    for n in range(people):
        for source, local in (("gp", f"G-{n}"), ("acute", f"A-{n}")):
            rows.append({"source": source, "record_id": local, "person_id": f"P{n:09d}",
                         "linked_by": "splink", "match_weight": 12.0,
                         "needs_review": False})  # fmt: skip
    for n in range(filler):
        rows.append({"source": ("gp", "acute")[n % 2], "record_id": f"F-{n}",
                     "person_id": f"Q{n // 2:09d}", "linked_by": "splink",
                     "match_weight": 12.0, "needs_review": False})  # fmt: skip
    return rows


def _timed(work: Callable[[], object], repeat: list[float]) -> None:
    start = time.perf_counter()
    work()
    repeat.append((time.perf_counter() - start) * 1000)


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
    }


def measure(url: str, people: int, filler: int, sample: int) -> dict[str, Any]:
    with RecordStore(url, clock=lambda: NOW) as store:
        # one person in a hundred objected at the trust (on the trust's Patient)
        resources = _resources(people) + [_objection(f"a{n}") for n in range(0, people, 100)]
        start = time.perf_counter()
        for at in range(0, len(resources), 500):
            store.load_chunk(resources[at : at + 500])
        loaded = time.perf_counter() - start
        engine = create_engine(database_url(url))
        rows = _index_rows(people, filler)
        with engine.begin() as conn:
            for at in range(0, len(rows), 10_000):
                conn.execute(insert(mpi_person_index), rows[at : at + 10_000])
            conn.execute(insert(mpi_runs), {"run_at": NOW, "record": "{}"})
        # The person of each Patient kept for these systems (as the first read asking with
        # them would), before the statistics are gathered (code before it had none).
        keep = getattr(store, "keep_people", None)
        if keep is not None:
            keep(SYSTEMS)
        if engine.dialect.name == "postgresql":
            # Statistics, as autovacuum would gather soon after a bulk load: without them the
            # planner guesses, and an autovacuum ANALYZE during the run can change the plans
            # between samples. SQLite keeps none unless asked, as the store leaves it.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
        engine.dispose()
        chosen = random.Random(42).sample(range(people), sample)
        chosen[:3] = [0, 100, 200]  # three whose person objected at the trust
        lookup: list[float] = []
        alone: list[float] = []
        linked: list[float] = []
        read: list[float] = []
        own: list[float] = []
        person: list[float] = []
        cpu = {"own": 0.0, "person": 0.0, "search_own": 0.0, "search_person": 0.0}
        searched: dict[str, list[float]] = {"own": [], "person": []}
        practice = frozenset({"A11111"})
        types = {"Patient": None, "Condition": None}
        for n in chosen:
            pid = f"g{n}"
            found: list[Any] = []
            _timed(lambda pid=pid, found=found: found.extend(store.linked_patients(pid, SYSTEMS)),
                   lookup)  # fmt: skip
            if [p.patient_id for p in found] != [f"a{n}"]:
                raise SystemExit(f"Patient g{n}: linked {found}, not a{n}")
            _timed(lambda pid=pid: store.everything(pid, types), alone)
            also = [p.patient_id for p in found]
            _timed(lambda pid=pid, also=also: store.everything(pid, types, also=also), linked)
            _timed(lambda pid=pid: store.read("Patient", pid), read)
            began = time.process_time()
            _timed(lambda pid=pid: store.objections(pid), own)
            cpu["own"] += time.process_time() - began
            began = time.process_time()
            _timed(lambda pid=pid: store.person_objections(pid, SYSTEMS), person)
            cpu["person"] += time.process_time() - began
            # a clinician's search for the Patient's Conditions, kept to them with what is
            # withheld: the Patient's own objections only, then the person's too
            for how, sources in (("own", None), ("person", tuple(sorted(SYSTEMS.items())))):
                scope = Permitted([("Patient", [("_id", pid)])], Withholding(practice,
                                  person_sources=sources))  # fmt: skip
                page: list[Any] = []
                began = time.process_time()
                _timed(lambda pid=pid, scope=scope, page=page: page.append(store.search(
                    "Condition", {"patient": f"Patient/{pid}"}, patients_of=scope)),
                    searched[how])  # fmt: skip
                cpu[f"search_{how}"] += time.process_time() - began
                expected = 0 if how == "person" and n % 100 == 0 else 1
                if page[0].total != expected:
                    raise SystemExit(f"Patient g{n}: {how} search found {page[0].total}")
        # What keeping each Patient's person costs a write: one Patient updated at a time,
        # then every Patient written again in chunks of 500 (the bulk load's path).
        wrote: list[float] = []
        began = time.process_time()
        for n in chosen:
            patient = {"resourceType": "Patient", "id": f"g{n}", "active": True,
                       "identifier": [{"system": GP_IDS, "value": f"G-{n}"}]}  # fmt: skip
            _timed(lambda patient=patient: store.update(patient), wrote)
        cpu["write"] = time.process_time() - began
        again = [{**r, "active": False} for r in resources if r["resourceType"] == "Patient"]
        start = time.perf_counter()
        for at in range(0, len(again), 500):
            store.load_chunk(again[at : at + 500])
        reloaded = time.perf_counter() - start
        # and what an index run adds: every Patient's person kept again
        refresh = getattr(store, "refresh_person_links", None)
        start = time.perf_counter()
        if refresh is not None:
            refresh()
        rebuilt = time.perf_counter() - start if refresh is not None else None
        return {
            "people_rebuilt_s": None if rebuilt is None else round(rebuilt, 2),
            "patient_update": _summary(wrote),
            "patient_update_cpu_ms": round(cpu["write"] * 1000 / sample, 2),
            "patients_rewritten_s": round(reloaded, 2),
            "resources": len(resources),
            "index_records": len(rows),
            "load_s": round(loaded, 1),
            "lookup": _summary(lookup),
            "everything_alone": _summary(alone),
            "everything_linked": _summary(linked),
            "read": _summary(read),
            "objections_own": _summary(own),
            "objections_person": _summary(person),
            "search_own_objections": _summary(searched["own"]),
            "search_person_objections": _summary(searched["person"]),
            "objections_own_cpu_ms": round(cpu["own"] * 1000 / sample, 2),
            "objections_person_cpu_ms": round(cpu["person"] * 1000 / sample, 2),
            "search_own_objections_cpu_ms": round(cpu["search_own"] * 1000 / sample, 2),
            "search_person_objections_cpu_ms": round(cpu["search_person"] * 1000 / sample, 2),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--filler", type=int, default=190_000)
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--postgresql", action="store_true")
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    results: dict[str, Any] = {"load_before": load}
    results |= measured_on_both(
        "person_links",
        lambda url: measure(url, args.people, args.filler, args.sample),
        postgresql=args.postgresql,
    )
    results["load_after"] = Path("/proc/loadavg").read_text().split()[:3] if load else []
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
