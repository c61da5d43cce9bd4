"""Scale benchmarks: how `joinedup` commands grow with the population, and Spark against DuckDB.

- scale_curve: for each size (millions of people, `--scale-sizes`), `joinedup synth`, then
  `joinedup phm run` and `joinedup finance run` on the DuckDB file, then `joinedup warehouse
  copy` of it to a lake; wall seconds and peak memory of each command's whole process tree, the
  rows of every table, the bytes of the DuckDB file and of the lake's Parquet, and the load
  average around each command (the machine is shared). phm run's time is set against linear
  growth from the first size, and its peak memory at 5 million against the 6 GB target.
- spark_vs_duckdb_pipeline: `joinedup phm run` on one lake of 1 million people with
  `--engine duckdb`, then `--engine spark --spark-master local[2]`; seconds and peak memory of
  each (the Spark JVM is a child of the command, so its memory is counted).

Every command runs as a user would run it, in a process of its own; its memory is sampled from
/proc every 0.1 s over the command and all its descendants.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import joinedup
from joinedup.warehouse import open_engine
from joinedup.warehouse.engines import default_memory_limit, machine_memory
from joinedup.warehouse.lake import Lake

TARGET_PHM_PEAK_GB_AT_5M = 6.0
SEED = 1
SPARK_MASTER = "local[2]"


@dataclass(frozen=True)
class Measured:
    """One command's wall seconds, peak memory of its process tree and load around it."""

    seconds: float
    peak_bytes: int
    load_before: float
    load_after: float

    def __str__(self) -> str:
        return (
            f"{self.seconds:.1f} s, peak {self.peak_bytes / 1e9:.2f} GB (load {self.load_before})"
        )

    def as_detail(self) -> dict[str, float]:
        return {
            "seconds": round(self.seconds, 2),
            "peak_memory_gb": round(self.peak_bytes / 1e9, 3),
            "load_1m_before": self.load_before,
            "load_1m_after": self.load_after,
        }


def tree_rss_bytes(root: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        pid = int(fields["Pid"].strip())
        children.setdefault(int(fields["PPid"].strip()), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def joinedup_cli() -> str:
    """The `joinedup` command installed beside this interpreter."""
    return str(Path(sys.executable).with_name("joinedup"))


def run_measured(cmd: Sequence[str]) -> Measured:
    """Run a command to the end, sampling its process tree's memory; fail if it fails."""
    peak = 0
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        last = (stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(
            f"{' '.join([Path(cmd[0]).name, *cmd[1:]])} failed with exit code "
            f"{proc.returncode} after {seconds:.0f} s (peak {peak / 1e9:.2f} GB, load "
            f"{load_before:.1f} before): {last[0][:300]}"
        )
    return Measured(seconds, peak, round(load_before, 2), round(os.getloadavg()[0], 2))


def synth_cmd(people: int, warehouse: Path, parquet: Path | None = None) -> list[str]:
    cmd = [joinedup_cli(), "synth", "--people", str(people), "--seed", str(SEED)]
    cmd += ["--warehouse", str(warehouse), "--workers", "2"]
    return cmd + (["--parquet", str(parquet)] if parquet is not None else [])


def label(people: int) -> str:
    """250000 -> 250k, 1000000 -> 1m, 1500000 -> 1500k: short, exact, safe in a result name."""
    if people % 1_000_000 == 0:
        return f"{people // 1_000_000}m"
    if people % 1_000 == 0:
        return f"{people // 1_000}k"
    return str(people)


def parse_sizes(text: str) -> list[int]:
    """'0.25,1,2,5' (millions of people) -> [250000, 1000000, 2000000, 5000000]."""
    sizes = []
    for part in text.split(","):
        try:
            millions = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--scale-sizes: {part!r} is not a number of millions"
            ) from None
        if millions <= 0:
            raise argparse.ArgumentTypeError(f"{part!r} must be more than 0")
        sizes.append(round(millions * 1_000_000))
    if sizes != sorted(set(sizes)):
        raise argparse.ArgumentTypeError(
            f"--scale-sizes: {text!r} must be increasing, without repeats"
        )
    return sizes


def code_measured() -> dict[str, Any]:
    """Which joinedup source ran: its folder, its commit and the files in src/ that differ."""
    src = Path(joinedup.__file__).resolve().parent
    found: dict[str, Any] = {"source": str(src)}
    try:
        found["commit"] = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        found["uncommitted_in_src"] = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--", "."],
            capture_output=True, text=True, check=True,
        ).stdout.split("\n")[:-1]  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pass  # not a git checkout (an unpacked archive): the folder says which code it is
    return found


def duckdb_memory_limit() -> str:
    """The memory limit the measured commands give DuckDB: JOINEDUP_MEMORY_LIMIT if set (the
    CLI reads it), else the product's default for this machine."""
    return os.environ.get("JOINEDUP_MEMORY_LIMIT") or default_memory_limit()


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {message}", flush=True)


def duckdb_rows(warehouse: Path) -> dict[str, int]:
    with open_engine("duckdb", warehouse=warehouse) as engine:
        return {name: engine.count(name) for name in sorted(engine.table_names())}


def lake_bytes(root: Path) -> dict[str, int]:
    """Bytes of each current table's Parquet files in a lake."""
    lake = Lake(root)
    return {
        name: sum(f.stat().st_size for f in lake.files(entry))
        for name, entry in sorted(lake.manifest().tables.items())
    }


@dataclass(frozen=True)
class Built:
    """A DuckDB warehouse built (or reused) for a size, and how its build went."""

    path: Path
    synth: Measured | None
    reused_from: str | None = None
    bytes_after_synth: int | None = None


def synthesised(people: int, folder: Path) -> Built:
    """The warehouse of `people` in `folder`: kept from an earlier build there, or built now.

    A build's measurements are kept beside it (`.synth.json`, written only once synth has
    succeeded), so a later run can measure phm run again without building again.
    """
    path = folder / f"scale-{label(people)}.duckdb"
    record = path.with_suffix(".synth.json")
    if path.is_file() and record.is_file():
        kept = json.loads(record.read_text(encoding="utf-8"))
        synth = Measured(**kept["synth"])
        progress(f"{label(people)}: reusing {path} (synth {synth}, built {kept['built_at']})")
        return Built(path, synth, f"{path}, built {kept['built_at']}", kept["bytes"])
    progress(f"{label(people)}: synth")
    synth = run_measured(synth_cmd(people, path))
    progress(f"{label(people)}: synth {synth}")
    size = path.stat().st_size
    built_at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    kept = {"synth": asdict(synth), "bytes": size, "built_at": built_at}
    record.write_text(json.dumps(kept) + "\n", encoding="utf-8")
    return Built(path, synth, None, size)


def _scale_point(
    people: int, built: Built, workdir: Path, keep_lake: bool
) -> tuple[dict[str, Any], Path | None]:
    name = label(people)
    file_after_synth = built.bytes_after_synth
    rows = duckdb_rows(built.path)
    progress(f"{name}: phm run on DuckDB")
    phm = run_measured([joinedup_cli(), "phm", "run", "--warehouse", str(built.path)])
    progress(f"{name}: phm run {phm}")
    progress(f"{name}: finance run on DuckDB")
    finance = run_measured([joinedup_cli(), "finance", "run", "--warehouse", str(built.path)])
    progress(f"{name}: finance run {finance}")
    file_after_runs = built.path.stat().st_size
    lake = workdir / f"lake-{name}"
    progress(f"{name}: warehouse copy to a lake")
    copy = run_measured([joinedup_cli(), "warehouse", "copy", str(built.path), str(lake)])
    progress(f"{name}: warehouse copy {copy}")
    parquet = lake_bytes(lake)
    outputs = {t: n for t, n in duckdb_rows(built.path).items() if t not in rows}
    point = {
        "people": people,
        "synth": built.synth.as_detail() if built.synth else None,
        "synth_reused_from": built.reused_from,
        "phm_run": phm.as_detail(),
        "duckdb_memory_limit": duckdb_memory_limit(),
        "finance_run": finance.as_detail(),
        "warehouse_copy_to_lake": copy.as_detail(),
        "canonical_rows": rows,
        "output_rows": outputs,
        "duckdb_file_bytes_after_synth": file_after_synth,
        "duckdb_file_bytes_after_phm_and_finance": file_after_runs,
        "lake_parquet_bytes": parquet,
        "lake_parquet_bytes_total": sum(parquet.values()),
    }
    if not keep_lake:
        shutil.rmtree(lake)
        return point, None
    return point, lake


def bench_scale_curve(
    workdir: Path,
    sizes: Sequence[int],
    prebuilt: dict[int, Built] | None = None,
    keep_lake_of: int | None = None,
    keep_in: Path | None = None,
) -> tuple[list[dict[str, Any]], Path | None]:
    """`phm run` (and synth, finance run, copy to a lake) at each size; the kept lake, if any.

    Without `keep_in`, each size's warehouse and lake are deleted once measured (disk is finite
    at 5 million), except a warehouse in `prebuilt` (another benchmark's) and the lake of
    `keep_lake_of` people, kept for `bench_spark_vs_duckdb_pipeline`. With it, warehouses are
    kept in that folder and reused from it.
    """
    code = code_measured()
    progress(f"scale curve at {', '.join(label(n) for n in sizes)} people; code {code}")
    prebuilt = prebuilt or {}
    points: list[dict[str, Any]] = []
    kept: Path | None = None
    for people in sizes:
        built = prebuilt.get(people) or synthesised(people, keep_in or workdir)
        point, lake = _scale_point(people, built, workdir, keep_lake=people == keep_lake_of)
        kept = lake or kept
        if keep_in is None and people not in prebuilt:
            built.path.unlink()
            built.path.with_suffix(".synth.json").unlink()
        points.append(point)
    return _scale_results(points, code), kept


def _scale_results(points: list[dict[str, Any]], code: dict[str, Any]) -> list[dict[str, Any]]:
    first = points[0]
    n0, t0 = first["people"], first["phm_run"]["seconds"]
    results: list[dict[str, Any]] = []
    for p in points:
        n, t = p["people"], p["phm_run"]["seconds"]
        linear = t0 * n / n0
        results.append(
            {
                "name": f"scale_phm_run_{label(n)}_s",
                "value": t,
                "unit": "s",
                "baseline_name": f"linear_from_{label(n0)}",
                "baseline_value": linear,
                # = (time(N) / time(N0)) / (N / N0): 1 is linear, below 1 better than linear.
                "ratio": t / linear,
                "detail": {
                    **p,
                    "time_ratio": t / t0,
                    "people_ratio": n / n0,
                    "code": code,
                },
            }
        )
        peak_gb = p["phm_run"]["peak_memory_gb"]
        memory: dict[str, Any] = {
            "name": f"scale_phm_run_{label(n)}_peak_memory_gb",
            "value": peak_gb,
            "unit": "GB",
            "detail": {
                "load_1m_before": p["phm_run"]["load_1m_before"],
                "duckdb_memory_limit": p.get("duckdb_memory_limit"),
            },
        }
        if n == 5_000_000:
            memory |= {
                "baseline_name": "target_6gb_at_5m",
                "baseline_value": TARGET_PHM_PEAK_GB_AT_5M,
                "ratio": peak_gb / TARGET_PHM_PEAK_GB_AT_5M,
            }
        results.append(memory)
    return results


def build_lake(workdir: Path, people: int, duckdb_file: Path | None) -> Path:
    """A lake of `people`: a copy of `duckdb_file` if given, else synthesised and copied."""
    lake = workdir / f"lake-{label(people)}"
    source = duckdb_file
    if source is None:
        source = workdir / f"lake-source-{label(people)}.duckdb"
        progress(f"spark_vs_duckdb_pipeline: synth {label(people)} people")
        run_measured(synth_cmd(people, source))
    progress(f"spark_vs_duckdb_pipeline: warehouse copy {source.name} to a lake")
    run_measured([joinedup_cli(), "warehouse", "copy", str(source), str(lake)])
    if duckdb_file is None:
        source.unlink()
    return lake


def bench_spark_vs_duckdb_pipeline(lake: Path, people: int) -> list[dict[str, Any]]:
    """`phm run` on one lake with DuckDB, then with Spark local[2]; seconds and peak memory."""
    code = code_measured()
    runs: dict[str, Measured] = {}
    for engine in ("duckdb", "spark"):
        cmd = [joinedup_cli(), "phm", "run", "--warehouse", str(lake), "--engine", engine]
        if engine == "spark":
            cmd += ["--spark-master", SPARK_MASTER]
        progress(f"spark_vs_duckdb_pipeline: phm run --engine {engine} on the lake")
        runs[engine] = run_measured(cmd)
        progress(f"  {engine}: {runs[engine]}")
    duck, spark = runs["duckdb"], runs["spark"]
    detail = {
        "people": people,
        "duckdb": duck.as_detail(),
        "spark_local2": spark.as_detail(),
        # What the engine gives a local driver by default: a quarter of RAM, at least 2 GB.
        "spark_driver_memory": f"{max(2048, machine_memory() // 2**22)}m (the engine's default)",
        "code": code,
    }
    return [
        {
            "name": "spark_vs_duckdb_pipeline",
            "value": duck.seconds,
            "unit": "s",
            "baseline_name": "spark_local2_phm_run",
            "baseline_value": spark.seconds,
            "ratio": spark.seconds / duck.seconds,
            "detail": detail,
        },
        {
            "name": "spark_vs_duckdb_pipeline_peak_memory_gb",
            "value": duck.peak_bytes / 1e9,
            "unit": "GB",
            "baseline_name": "spark_local2_peak_memory_gb",
            "baseline_value": spark.peak_bytes / 1e9,
            "ratio": spark.peak_bytes / duck.peak_bytes,
        },
    ]


if __name__ == "__main__":
    # Build (and measure) warehouses ahead: `benchmarks/scale.py FOLDER 0.25,1,2,5`, then
    # `benchmarks/run.py --only scale_curve --scale-sizes 0.25,1,2,5 --scale-keep FOLDER`.
    parser = argparse.ArgumentParser(description="build the scale curve's warehouses ahead")
    parser.add_argument("folder", type=Path)
    parser.add_argument("sizes", type=parse_sizes, help="millions of people, e.g. 0.25,1,2,5")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        synthesised(n, args.folder)
