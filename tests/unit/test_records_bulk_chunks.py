"""The bulk load's chunk path (`RecordStore.load_chunk`, one multi-row statement a table), on
SQLite and PostgreSQL: it leaves the store as writing the same resources one at a time through
`RecordStore.transaction` does (versions, history, search results, outcomes and problems); a
chunk that fails, or whose process is killed, half-way through its statements leaves nothing
of itself; a re-run writes nothing new."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from joinedup.records import RecordStore, Update
from joinedup.records.bulk import load
from joinedup.records.errors import (
    InvalidResourceError,
    ResourceNotFoundError,
    TransactionFailedError,
)
from postgres_cluster import PostgresServer
from ticking_clock import Clock

NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"


def _nhs(seed: int) -> str:
    """A ten-digit number passing Modulus 11, different for each seed."""
    while True:
        digits = [int(d) for d in f"{900000000 + seed:09d}"]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)
        seed += 100_000


def patient(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"p{n}",
        "identifier": [{"system": NHS, "value": _nhs(n)}],
        "name": [{"family": f"Family{n}", "given": ["Ann"]}],
        "gender": "female" if n % 2 else "male",
        "birthDate": f"19{50 + n % 40}-0{1 + n % 9}-1{n % 10}",
        **extra,
    }


def observation(n: int, subject: int, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                  "observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": SNOMED, "code": "271649006"}]},
        "subject": {"reference": f"Patient/p{subject}"},
        "effectiveDateTime": f"2025-0{1 + n % 9}-0{1 + n % 9}T10:00:00Z",
        "valueQuantity": {"value": 120 + n, "unit": "mmHg"},
        **extra,
    }  # fmt: skip


def feed() -> list[dict[str, Any]]:
    """A first load: patients and their observations, one patient given twice (a later
    line with other content is its next version) and once more the same (unchanged)."""
    given: list[dict[str, Any]] = []
    for n in range(12):
        given.append(patient(n))
        given.extend(observation(n * 3 + k, n) for k in range(3))
    given.append(patient(4, gender="other"))
    given.append(patient(4, gender="other"))
    return given


def second_feed() -> list[dict[str, Any]]:
    """A later load over the first: some unchanged, some changed, some new, one deleted
    resource brought back, one patient twice."""
    return [
        patient(1),
        patient(2, gender="unknown"),
        observation(3, 1, status="amended"),
        patient(20),
        observation(99, 20),
        patient(7),  # deleted between the loads
        patient(2, gender="unknown", birthDate="1990-01-01"),
    ]


def _slow(store: RecordStore, given: list[dict[str, Any]], size: int) -> list[Any]:
    outcomes: list[Any] = []
    for start in range(0, len(given), size):
        chunk = given[start : start + size]
        outcomes += store.transaction([Update(r, if_changed=True) for r in chunk])
    return outcomes


def _fast(store: RecordStore, given: list[dict[str, Any]], size: int) -> list[Any]:
    outcomes: list[Any] = []
    for start in range(0, len(given), size):
        outcomes += store.load_chunk(given[start : start + size])
    return outcomes


def _state(store: RecordStore) -> dict[str, Any]:
    """Everything a reader sees: each resource's history (versions, instants, bodies), and
    the answers of searches over every kind of index table."""
    found: dict[str, Any] = {}
    for kind in ("Patient", "Observation"):
        ids = {r["id"] for r in store.search(kind, {"_count": "1000"}).resources}
        if kind == "Patient":  # the deleted ones too
            ids |= {f"p{n}" for n in range(25)}
        for rid in sorted(ids):
            try:
                found[f"{kind}/{rid}"] = [
                    (h.version_id, h.last_updated, h.deleted, h.resource)
                    for h in store.history(kind, rid)
                ]
            except ResourceNotFoundError:
                found[f"{kind}/{rid}"] = None
    searches = [
        ("Patient", {"identifier": f"{NHS}|{_nhs(3)}"}),
        ("Patient", {"name": "family4"}),
        ("Patient", {"gender": "other"}),
        ("Patient", {"gender": "male"}),
        ("Patient", {"birthdate": "lt1960-01-01"}),
        ("Observation", {"status": "final"}),
        ("Patient", {"birthdate": "ge1970-01-01"}),
        ("Observation", {"_sort": "-date"}),
        ("Observation", {"patient": "Patient/p1"}),
        ("Observation", {"date": "ge2025-05-01", "code": f"{SNOMED}|271649006"}),
        ("Observation", {"status": "amended"}),
        ("Patient", {"_sort": "-_lastUpdated"}),
    ]
    for kind, query in searches:
        page = store.search(kind, {**query, "_count": "1000"})
        found[f"{kind}?{sorted(query.items())}"] = (page.total, [r["id"] for r in page.resources])
    return found


def test_a_chunk_leaves_the_store_as_one_update_at_a_time_does(
    records_url: str, tmp_path: Path
) -> None:
    other = str(tmp_path / "slow.sqlite")
    with (
        RecordStore(records_url, clock=Clock()) as fast,
        RecordStore(other, clock=Clock()) as slow,
    ):
        got = _fast(fast, feed(), 10), _slow(slow, feed(), 10)
        assert got[0] == got[1]
        for store in (fast, slow):
            store.delete("Patient", "p7")
        got = _fast(fast, second_feed(), 4), _slow(slow, second_feed(), 4)
        assert got[0] == got[1]
        assert [(o.created, o.changed, o.version_id) for o in got[0]] == [
            (False, False, 1), (False, True, 2), (False, True, 2), (True, True, 1),
            (True, True, 1), (True, True, 3), (False, True, 3),
        ]  # fmt: skip
        state = _state(fast)
        assert state == _state(slow)
    assert state["Patient/p4"][0][3]["gender"] == "other"
    assert [v[0] for v in state["Patient/p4"]] == [2, 1]  # the third line was unchanged
    assert state["Patient?[('gender', 'other')]"] == (1, ["p4"])
    assert "p2" not in state["Patient?[('gender', 'male')]"][1]  # its old index rows went
    assert state["Observation?[('patient', 'Patient/p1')]"] == (3, ["o3", "o4", "o5"])


def test_an_invalid_resource_is_left_out_with_the_same_problem(records_url: str) -> None:
    given = [patient(1), patient(2, gender="bloke"), {"resourceType": "Patient"}, patient(3)]
    given.append(observation(1, 1, status="guessed", valueQuantity={"value": "high"}))
    with RecordStore(records_url, clock=Clock()) as store:
        outcomes = store.load_chunk(given)
        problems = [str(o) for o in outcomes if isinstance(o, InvalidResourceError)]
        assert [type(o).__name__ for o in outcomes] == [
            "Outcome", "InvalidResourceError", "InvalidResourceError", "Outcome",
            "InvalidResourceError",
        ]  # fmt: skip
        assert sorted(r["id"] for r in store.current_resources()) == ["p1", "p3"]
        # The slow path's messages, one failure at a time, are the same.
        for index in (1, 2, 4):
            with pytest.raises(TransactionFailedError) as failed:
                store.transaction([Update(given[index], if_changed=True)])
            assert str(failed.value.cause) in problems
    assert problems[0].startswith("Patient/p2: ") and "Patient.gender" in problems[0]
    assert "Patient.id: an update needs the resource's id" in problems[1]
    assert "Observation.status" in problems[2] and "Observation.valueQuantity" in problems[2]


# A load in its own process, chunks of 5, that stops after the version rows of its second
# chunk are sent (inside that chunk's transaction): by raising, or by waiting to be killed.
_LOADER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import joinedup.records.store as records_store
    from joinedup.records import RecordStore
    from joinedup.records.bulk import load

    url, source, how = sys.argv[1:4]
    store = RecordStore(url)
    seen = []
    sent = records_store.insert_rows

    def _after(conn, table, rows):  # the rows are sent (INSERT, or COPY on PostgreSQL)
        sent(conn, table, rows)
        if table.name == "resource_versions":
            seen.append(rows)
            if len(seen) == 2:
                if how == "raise":
                    raise RuntimeError("failed half-way through a chunk")
                print("mid-chunk", flush=True)
                time.sleep(120)

    records_store.insert_rows = _after
    load(store, [Path(source)], chunk_size=5)
    """
)


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_chunk_stopped_half_way_leaves_nothing_and_a_rerun_completes(
    records_url: str, tmp_path: Path, how: str
) -> None:
    source = tmp_path / "feed.ndjson"
    given = [patient(n) for n in range(12)]
    source.write_text("".join(json.dumps(r) + "\n" for r in given))
    loader = subprocess.Popen(
        [sys.executable, "-c", _LOADER, records_url, str(source), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert loader.stdout is not None and loader.stderr is not None
    try:
        if how == "kill":
            assert loader.stdout.readline().strip() == "mid-chunk"
            os.kill(loader.pid, signal.SIGKILL)
        loader.wait(timeout=60)
    finally:
        if loader.poll() is None:
            loader.kill()
    if how == "raise":
        assert loader.returncode != 0
        assert "failed half-way through a chunk" in loader.stderr.read()
    else:
        assert loader.returncode == -signal.SIGKILL
    first = {f"p{n}" for n in range(5)}
    with RecordStore(records_url) as store:
        assert {r["id"] for r in store.current_resources()} == first
        assert store.search("Patient", {"identifier": f"{NHS}|{_nhs(6)}"}).total == 0
        assert store.search("Patient", {"name": "family3"}).total == 1
        assert store.search("Patient", {"name": "family7"}).total == 0
        assert store.search("Patient", {"gender": "male"}).total == 3  # p0, p2, p4
        assert store.type_history("Patient", count=100)[0] == 5  # no version of chunk 2
        for n in (5, 9):
            with pytest.raises(ResourceNotFoundError):
                store.history("Patient", f"p{n}")
        again = load(store, [source], chunk_size=5)
        assert (again.created, again.updated, again.unchanged) == (7, 0, 5)
        assert store.type_history("Patient", count=100)[0] == 12
        assert store.search("Patient", {"gender": "male"}).total == 6
        rerun = load(store, [source], chunk_size=5)
        assert (rerun.created, rerun.updated, rerun.unchanged) == (0, 0, 12)
        assert store.type_history("Patient", count=100)[0] == 12


def test_a_chunk_another_writer_got_to_first_is_written_one_at_a_time(
    postgresql_server: PostgresServer, tmp_path: Path
) -> None:
    """PostgreSQL (SQLite lets one writer at a time): another writer creates one of the
    chunk's resources after the chunk read the current versions, so the chunk's multi-row
    insert conflicts; the chunk is then written one resource at a time, on top of it."""
    url = postgresql_server.create_database(f"records_bulk_race_{os.getpid()}")
    source = tmp_path / "feed.ndjson"
    source.write_text("".join(json.dumps(patient(n)) + "\n" for n in range(5)))
    with RecordStore(url) as other:
        calls: list[datetime] = []

        def racing_clock() -> datetime:
            if not calls:  # inside the chunk's transaction, after its read
                other.update(patient(3, gender="other"))
            calls.append(datetime.now(UTC))
            return calls[-1]

        with RecordStore(url, clock=racing_clock) as store:
            result = load(store, [source], chunk_size=5)
            assert (result.created, result.updated, result.unchanged) == (4, 1, 0)
            history = store.history("Patient", "p3")
            assert [(h.version_id, h.resource and h.resource["gender"]) for h in history] == [
                (2, "female"),
                (1, "other"),
            ]
            assert store.type_history("Patient", count=100)[0] == 6
            assert store.search("Patient", {"gender": "other"}).total == 0


def test_validating_in_worker_processes_gives_the_same_store_and_messages(
    records_url: str, tmp_path: Path
) -> None:
    """`load(validation_workers=2)` (each chunk validated in two worker processes while the
    one before it is written) leaves the store and reports the problems, file, line and
    element, as validating in the loader does; a line the same as the version before it is
    unchanged, not re-judged."""
    source = tmp_path / "feed.ndjson"
    given = [*feed(), patient(20, gender="bloke"), patient(21, birthDate="2020-02-30")]
    given += [observation(21, 1, status="guessed", valueQuantity={"value": "high"})]
    given += [patient(n) for n in range(30, 42)]
    source.write_text("".join(json.dumps(r) + "\n" for r in given) + "not json\n")
    other = str(tmp_path / "inline.sqlite")
    results = []
    with (
        RecordStore(records_url, clock=Clock()) as pooled,
        RecordStore(other, clock=Clock()) as inline,
    ):
        for store, workers in ((pooled, 2), (inline, 0)):
            results.append(load(store, [source], chunk_size=4, validation_workers=workers))
        assert _state(pooled) == _state(inline)
    first, first_inline = results
    assert first == first_inline
    counts = first.read, first.created, first.updated, first.unchanged, len(first.invalid)
    assert counts == (66, 60, 1, 1, 4)
    assert [m.split(": ")[:2] for m in first.invalid] == [
        [f"{source}, line 51", "Patient/p20"],
        [f"{source}, line 52", "Patient/p21"],
        [f"{source}, line 53", "Observation/o21"],
        [f"{source}, line 66", "not JSON (Expecting value)"],
    ]
    assert "Patient.gender" in first.invalid[0] and "Patient.birthDate" in first.invalid[1]
