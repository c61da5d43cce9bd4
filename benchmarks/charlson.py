"""Benchmark: the Charlson index on 1 million people's ICD-10 codes, joinedup vs comorbidipy.

Both score the same seeded input (about 3 codes per person, half from the Quan 2005 code list).
joinedup runs on DuckDB in memory from an Arrow table (median of three after a warm-up, loading
included); comorbidipy 0.5.0 runs in its own virtual environment and reports the time of its
`comorbidity()` call alone, on a DataFrame already in memory. comorbidipy takes about 4.6
minutes on 1 million people on 2 cores. Scores must agree (allowing the documented AIDS/HIV
weight) before any time is reported.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from joinedup.population import charlson_codelist, score_table
from joinedup.warehouse.engines import DuckDBEngine

ROOT = Path(__file__).resolve().parents[1]
COMORBIDIPY_PYTHON = ROOT / ".venv-comorbidipy" / "bin" / "python"
RUNNER = ROOT / "benchmarks" / "comorbidipy_runner.py"


def charlson_input(people: int, seed: int = 7) -> pa.Table:
    """(id, code, age) rows: 1 to 5 codes a person, half from the code list, half not."""
    rng = np.random.default_rng(seed)
    per_person = rng.integers(1, 6, size=people)
    ids = np.repeat(np.arange(1, people + 1, dtype=np.int64), per_person)
    n = ids.size
    prefixes = np.array([p for _, p in charlson_codelist().rows])
    listed = np.char.add(
        prefixes[rng.integers(0, prefixes.size, size=n)],
        rng.integers(0, 10, size=n).astype(str),
    )
    letters = np.array(list("ABDHLMNRSTZ"))
    other = np.char.add(
        letters[rng.integers(0, letters.size, size=n)],
        np.char.zfill(rng.integers(0, 1000, size=n).astype(str), 3),
    )
    codes = np.where(rng.random(n) < 0.5, listed, other)
    ages = rng.integers(0, 101, size=people)[ids - 1]
    return pa.table({"id": ids, "code": codes.astype(object), "age": ages})


def _joinedup_seconds(data: pa.Table, repeats: int = 3) -> tuple[float, pa.Table]:
    renamed = data.rename_columns(["person_id", "code", "age"])
    with DuckDBEngine() as engine:
        result = score_table(engine, renamed, age=True)  # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            result = score_table(engine, renamed, age=True)
            times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _comorbidipy_seconds(data: pa.Table, workdir: Path) -> tuple[float, pa.Table]:
    source, out = workdir / "codes.csv", workdir / "comorbidipy.csv"
    pacsv.write_csv(data, source)
    done = subprocess.run(
        [str(COMORBIDIPY_PYTHON), str(RUNNER), str(source), str(out), "--weighting", "quan"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"comorbidipy runner failed: {done.stderr[-2000:]}")
    seconds = float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    return seconds, pacsv.read_csv(out)


def bench_charlson_vs_comorbidipy(people: int = 1_000_000) -> list[dict[str, Any]]:
    """Time the Charlson index on `people` people's codes on joinedup (DuckDB) and comorbidipy."""
    if not COMORBIDIPY_PYTHON.exists():
        raise RuntimeError(f"{COMORBIDIPY_PYTHON} missing: run `make comorbidipy-venv`")
    data = charlson_input(people)
    ours_s, ours = _joinedup_seconds(data)
    with tempfile.TemporaryDirectory(prefix="joinedup-charlson-") as tmp:
        theirs_s, theirs = _comorbidipy_seconds(data, Path(tmp))
    # Agreement first: Quan 2011 gives AIDS/HIV 4 where comorbidipy 0.5.0 gives 2.
    expected = pc.add(
        pc.cast(theirs.column("comorbidity_score"), pa.int64()),
        pc.multiply(pc.cast(theirs.column("aids"), pa.int64()), 2),
    )
    got = pc.cast(ours.column("charlson_score"), pa.int64())
    if ours.num_rows != theirs.num_rows or not got.equals(expected):
        raise RuntimeError("joinedup and comorbidipy disagree on the benchmark input")
    return [
        {
            "name": "charlson_vs_comorbidipy"
            + ("" if people == 1_000_000 else f"_{people // 1000}k_people"),
            "value": ours_s,
            "unit": f"s for {people:,} people ({data.num_rows:,} codes)",
            "baseline_name": "comorbidipy_0.5.0",
            "baseline_value": theirs_s,
            "ratio": theirs_s / ours_s,
        },
    ]
