"""The records benchmark's floor (benchmarks/records.py) is the store's own work: on PostgreSQL,
the statements it runs for each request find exactly what RecordStore.read and
RecordStore.search find, deleted resources left out, so the API's latency is compared with the
same queries and not with easier ones."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import psycopg

from joinedup.records import RecordStore, Update

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
PATIENTS = [("p1", "9990000018"), ("p2", "9990000026")]


def _benchmark() -> Any:
    sys.path.insert(0, str(BENCHMARKS))  # records.py imports its neighbour api.py
    try:
        spec = importlib.util.spec_from_file_location(
            "records_benchmark", BENCHMARKS / "records.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def _patient(pid: str, nhs: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient", "id": pid, "identifier": [{"system": NHS, "value": nhs}],
        "gender": "female", "birthDate": "1970-01-01",
    }  # fmt: skip


def _condition(cid: str, pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
    }  # fmt: skip


def _observation(oid: str, pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": oid, "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "271649006"}]},
    }  # fmt: skip


def test_the_floor_finds_what_the_store_finds(postgresql_server: Any) -> None:
    bench = _benchmark()
    name = f"bench_floor_{os.getpid()}"
    url = postgresql_server.create_database(name)
    written = [
        *(_patient(pid, nhs) for pid, nhs in PATIENTS),
        _condition("c1", "p1"), _condition("c2", "p1"), _condition("c3", "p1"),
        _condition("c4", "p2"), _observation("o1", "p2"), _observation("o2", "p2"),
    ]  # fmt: skip
    with RecordStore(url) as store:
        store.transaction([Update(r) for r in written])
        store.delete("Condition", "c3")
        store.delete("Observation", "o2")
        expected = {}
        for pid, nhs in PATIENTS:
            for label, query in (
                ("Patient?identifier", ("Patient", {"identifier": f"{NHS}|{nhs}"})),
                ("Condition?patient", ("Condition", {"patient": f"Patient/{pid}"})),
                ("Observation?patient", ("Observation", {"patient": f"Patient/{pid}"})),
            ):
                page = store.search(*query)
                expected[pid, label] = (page.total, [r["id"] for r in page.resources])
            expected[pid, "Patient/{id}"] = (1, [store.read("Patient", pid)["id"]])
    # what a user of the API would see for these patients
    assert expected["p1", "Condition?patient"] == (2, ["c1", "c2"])
    assert expected["p2", "Observation?patient"] == (1, ["o1"])
    assert expected["p2", "Patient?identifier"] == (1, ["p2"])

    cycle = bench.sql_requests(PATIENTS)
    assert len(cycle) == len(PATIENTS) * len(bench.QUERIES)
    server = postgresql_server
    conninfo = f"host={server.socket_dir} port={server.port} user={server.superuser} dbname={name}"
    found = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for (label, kind, statements), pid in zip(
            cycle, [pid for pid, _ in PATIENTS for _ in bench.QUERIES], strict=True
        ):
            rows: list[list[Any]] = []
            for statement in statements:
                if bench.needed(statement, rows[-1] if rows else None):
                    rows.append(conn.execute(statement[0], statement[1]).fetchall())
            if kind == "read":
                found[pid, label] = (1, [json.loads(rows[0][0][3])["id"]])
            else:
                # the page first; its count only when the page is full (never, at this size)
                assert len(rows) == 1
                found[pid, label] = (len(rows[0]), [json.loads(b)["id"] for (b,) in rows[0]])
    assert found == expected
    # A full page is followed by its count, as the store's search does.
    page, count = bench.sql_requests(PATIENTS)[2][2]
    assert bench.needed(count, [("row",)] * 50) and not bench.needed(count, [("row",)] * 49)
    assert bench.needed(page, None)
