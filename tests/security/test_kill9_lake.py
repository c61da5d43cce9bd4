"""`kill -9` at random points of the jobs that write a lake (issue 14).

The same trial as `test_kill9.py`, on the other store: a lake (a folder of Parquet tables and
the manifest that names each table's current version). After each kill the lake opens and
holds the old tables or the clean run's, table for table and column for column; the same job
then succeeds, leaves exactly what a clean run leaves, and no version, scratch or reader file
of the killed run survives it.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import duckdb
import pytest
from cli_run import joinedup
from test_kill9 import VOLATILE, _copy, _kill_after, _run, _without

pytestmark = pytest.mark.security

PEOPLE = 1_000
SEED = 3
KILLS = 1  # one kill point per job here; test_kill9.py tries two on the DuckDB file
SEED_OF_DELAYS = 20261205
LAKE = "lake"

State = dict[str, object] | None


@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    args: tuple[str, ...]
    start: Path
    clean: Path
    seconds: float
    # Tables a repeated run rightly adds to (a second identical FHIR load is still a load).
    grows: tuple[str, ...] = ()


def state(folder: Path) -> State:
    """What a reader of the lake in `folder` finds: every current table's rows and a checksum
    of each column that is not volatile; None when there is no lake yet."""
    root = folder / LAKE
    manifest_path = root / "_manifest.json"
    if not manifest_path.exists():
        return None
    manifest = json.loads(manifest_path.read_text())
    found: dict[str, object] = {}
    with duckdb.connect() as con:
        for table, entry in sorted(manifest["tables"].items()):
            files = [str(f) for f in sorted((root / table / entry["version"]).glob("*.parquet"))]
            assert files, f"{table}: the manifest names a version with no files"
            (rows,) = con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()  # type: ignore[misc]
            assert rows == entry["rows"], f"{table}: the manifest's row count is not the files'"
            found[f"{table} rows"] = rows
            for column in sorted(c["name"] for c in entry["columns"]):
                if column in VOLATILE:
                    continue
                value = f'"{column}"'
                if column == "parameters":
                    value = f"""json_merge_patch({value}, '{{"load_id": null}}')"""
                found[f"{table}.{column}"] = con.execute(
                    f"SELECT bit_xor(hash({value})) FROM read_parquet(?)",  # noqa: S608 - test's own names
                    [files],
                ).fetchone()[0]  # type: ignore[index]
    return found


def listing(folder: Path) -> list[str]:
    """The lake's files a user would see: each table with how many versions it keeps, and
    whatever sits in its reader and scratch folders (nothing, after a finished run)."""
    root = folder / LAKE
    seen = []
    for p in sorted(root.iterdir()):
        if p.name in ("_readers", "_scratch"):
            seen += [f"{p.name}/{q.name}" for q in sorted(p.iterdir())]
        elif p.is_dir():
            seen.append(f"{p.name}: {len(list(p.iterdir()))} version(s)")
        else:
            seen.append(p.name)
    return seen


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Job]:
    root = tmp_path_factory.mktemp("kill9-lake")
    w = ("-w", LAKE)
    synthed = root / "synthed"
    synthed.mkdir()
    _run(("synth", "--people", str(PEOPLE), "--seed", str(SEED), "--workers", "1", *w), synthed)

    def step(name: str, args: tuple[str, ...], start: Path, grows: tuple[str, ...] = ()) -> Job:
        clean = _copy(start, root / f"clean-{name.replace(' ', '-')}")
        return Job(name, args, start, clean, _run(args, clean), grows)

    phm = step("phm run", ("phm", "run", *w), synthed)
    finance = step("finance run", ("finance", "run", *w), phm.clean)

    # FHIR: a first load of organisations and patients into a new lake, then the load killed.
    fhir = root / "fhir"
    out = joinedup("export", "fhir", "-w", str(synthed / LAKE), "--out", str(fhir),
                   "-t", "Organization", "-t", "Patient", "-t", "Condition",
                   "-t", "Observation", cwd=root)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    first, second = root / "fhir-first", root / "fhir-second"
    first.mkdir()
    second.mkdir()
    for f in fhir.iterdir():
        f.rename((first if f.name.startswith(("Organization", "Patient")) else second) / f.name)
    loaded = root / "fhir-loaded"
    loaded.mkdir()
    _run(("ingest", "fhir", str(first), *w), loaded)
    ingest = step(
        "ingest fhir",
        ("ingest", "fhir", str(second), *w),
        loaded,
        grows=("fhir_load", "fhir_load_quality"),
    )
    return {j.name: j for j in (phm, finance, ingest)}


NAMES = ("phm run", "finance run", "ingest fhir")
CASES = [
    pytest.param(name, point, id=f"{name}-{point}", marks=[pytest.mark.slow] if point else [])
    for name in NAMES
    for point in range(KILLS)
]


@pytest.mark.parametrize(("name", "point"), CASES)
def test_kill_9_leaves_the_old_or_the_new_lake_and_the_next_run_mends_it(
    jobs: dict[str, Job], name: str, point: int, tmp_path: Path
) -> None:
    job = jobs[name]
    old, new = state(job.start), state(job.clean)
    assert old != new, "the job must change something for the test to mean anything"
    rng = random.Random(f"{SEED_OF_DELAYS}:{name}:{point}")
    delay = rng.uniform(0.1, 0.7) * job.seconds
    for attempt in range(3):
        delay /= 2 if attempt else 1
        folder = _copy(job.start, tmp_path / f"run-{attempt}")
        if _kill_after(job.args, folder, delay):
            break
    grown = _without(state(folder), job.grows)
    assert grown in (_without(old, job.grows), _without(new, job.grows)), (
        f"killed at {delay:.1f} s: neither old nor new"
    )
    _run(job.args, folder)
    assert _without(state(folder), job.grows) == _without(new, job.grows), (
        f"killed at {delay:.1f} s, the next run differs from a clean one"
    )
    assert listing(folder) == listing(job.clean), "versions or scratch files left behind"
