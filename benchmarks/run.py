"""`make bench`: measure joinedup against its targets and peers, write benchmarks/results.json.

- synth_people_per_s: 1 million people with three years of history through the CLI, as a
  ratio to the target of 1 million in 60 s (16,700 people/s); peak memory of the whole process
  tree (main process and workers) sampled from /proc, against the 4 GB target.
- synth_scaling: time(1m) / time(100k), against 10 (perfectly linear); target <= 11.
- engine_duckdb_vs_spark: the same canonical aggregation on both engines over one export.
- charlson_vs_comorbidipy: the Charlson index on 1 million people's codes on joinedup (DuckDB)
  against comorbidipy 0.5.0 (about 5 minutes of the run).
- phm_pipeline_1m_s: the whole `joinedup phm run` (conditions and segments on three index
  dates, the risk model fitted and validated, inequalities, worklists) on the 1 million person
  warehouse, DuckDB, against the 120 s target.
- finance_run_1m_s: the whole `joinedup finance run` (need estimated from the population,
  allocation, guarantees, budgets, payments, control total, risk share, three what-ifs) on the
  same warehouse after population health, as a ratio to the population health run it builds
  on (same data, same run).
- views_resources_per_s, views_vs_fhir4ds, views_vs_raw_json_scan: SQL-on-FHIR views over the
  FHIR export of 100,000 synthetic people (see fhir_views.py).
- api_p95_ms: p95 latency of the dashboard's main JSON API routes, `joinedup serve` over the
  default demo (1.2 million people, seed 42; built here unless --api-warehouse names one) under
  50 concurrent clients for 60 s on loopback, against the 200 ms target; also throughput, errors,
  p50/p99, per-route p95 and the CPU time of client and server (see api.py).

- audit_page_check_300k_ms: the audit page's check of the keyed audit chain at 300,000 entries,
  against 100 ms; also the full check run once at each start (see audit.py).

`--only NAME ...` runs only those benchmarks (synth, phm, finance, engines, views, charlson, api,
audit; phm, finance and views bring in the synth run they need) and merges their results into
--out, keeping the other benchmarks' entries already there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from joinedup.warehouse import export_parquet, open_engine
from joinedup.warehouse.report import period_of

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from api import bench_api, build_demo  # noqa: E402
from audit import bench_audit  # noqa: E402
from charlson import bench_charlson_vs_comorbidipy  # noqa: E402
from engine import bench_engine_duckdb_vs_spark  # noqa: E402
from fhir_views import bench_fhir_views  # noqa: E402

TARGET_PEOPLE_PER_S = 1_000_000 / 60
TARGET_PEAK_GB = 4.0
TARGET_PHM_S = 120.0
BENCHES = ("synth", "phm", "finance", "engines", "views", "charlson", "api", "audit")
NEEDS = {"phm": {"synth"}, "finance": {"phm"}, "views": {"synth"}}


def selected(only: list[str] | None) -> set[str]:
    """The benchmarks to run: those named (default all) and what they need."""
    chosen = set(only or BENCHES)
    while True:
        more = set().union(*(NEEDS.get(name, set()) for name in chosen)) - chosen
        if not more:
            return chosen
        chosen |= more


def _tree_rss_bytes(root: int) -> int:
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


def timed_synth(people: int, warehouse: Path, parquet: Path | None = None) -> tuple[float, int]:
    """Run `joinedup synth` as a user would; return wall seconds and peak tree memory."""
    cmd = [
        str(Path(sys.executable).with_name("joinedup")),
        "synth",
        "--people",
        str(people),
        "--seed",
        "1",
        "--warehouse",
        str(warehouse),
        "--workers",
        "2",
    ]
    if parquet is not None:
        cmd += ["--parquet", str(parquet)]
    peak = 0
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_bytes(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if code != 0:
        raise RuntimeError(f"joinedup synth --people {people} failed with exit code {code}")
    return seconds, peak


def bench_synth(workdir: Path, big: int, small: int) -> list[dict[str, Any]]:
    t_small, _ = timed_synth(small, workdir / "small.duckdb")
    t_big, peak = timed_synth(big, workdir / "big.duckdb")
    rate = big / t_big
    return [
        {
            "name": "synth_seconds_1m" if big == 1_000_000 else f"synth_seconds_{big}",
            "value": t_big,
            "unit": "s",
        },
        {
            "name": "synth_people_per_s",
            "value": rate,
            "unit": "people/s",
            "baseline_name": "target_1m_in_60s",
            "baseline_value": TARGET_PEOPLE_PER_S,
            "ratio": rate / TARGET_PEOPLE_PER_S,
        },
        {
            "name": "synth_peak_memory_gb",
            "value": peak / 1e9,
            "unit": "GB",
            "baseline_name": "target_4gb",
            "baseline_value": TARGET_PEAK_GB,
            "ratio": peak / 1e9 / TARGET_PEAK_GB,
        },
        {
            "name": "synth_scaling",
            "value": t_big / t_small,
            "unit": f"time({big:,})/time({small:,})",
            "baseline_name": "linear",
            "baseline_value": big / small,
            "ratio": (t_big / t_small) / (big / small),
        },
    ]


def bench_phm(warehouse: Path, people: int) -> list[dict[str, Any]]:
    """Time the whole population health run on a warehouse synthesised for the benchmark."""
    from joinedup.population.pipeline import run_phm

    with open_engine("duckdb", warehouse=warehouse, read_only=False) as engine:
        began = time.perf_counter()
        result = run_phm(engine)
        seconds = time.perf_counter() - began
    card = result.card
    return [
        {
            "name": "phm_pipeline_1m_s" if people == 1_000_000 else f"phm_pipeline_{people}_s",
            "value": seconds,
            "unit": "s",
            "baseline_name": "target_120s",
            "baseline_value": TARGET_PHM_S,
            "ratio": seconds / TARGET_PHM_S,
            "detail": {
                "auroc": card.validation.auroc,
                "auroc_age_sex": card.baseline_validation.auroc,
                "brier": card.validation.brier,
                "brier_age_sex": card.baseline_validation.brier,
                "passes_acceptance": card.passes_acceptance,
            },
        }
    ]


def bench_finance(warehouse: Path, people: int, phm_seconds: float) -> list[dict[str, Any]]:
    """Time every finance step on the population health warehouse, with default settings."""
    from joinedup.finance.defaults import default_config
    from joinedup.finance.pipeline import run_all, warehouse_profile

    with open_engine("duckdb", warehouse=warehouse, read_only=False) as engine:
        began = time.perf_counter()
        rows = run_all(engine, default_config(warehouse_profile(engine)))
        seconds = time.perf_counter() - began
    return [
        {
            "name": "finance_run_1m_s" if people == 1_000_000 else f"finance_run_{people}_s",
            "value": seconds,
            "unit": "s",
            "baseline_name": "phm_pipeline_same_run",
            "baseline_value": phm_seconds,
            "ratio": seconds / phm_seconds,
            "detail": {"tables": len(rows)},
        }
    ]


def bench_engines(workdir: Path, people: int) -> list[dict[str, Any]]:
    warehouse = workdir / "engines.duckdb"
    timed_synth(people, warehouse)
    parquet = workdir / "parquet"
    export_parquet(warehouse, parquet)
    with open_engine("duckdb", warehouse=warehouse) as engine:
        end = period_of(engine).end
        rows = engine.count("activity")
    return bench_engine_duckdb_vs_spark(parquet, end, rows)


def show(results: list[dict[str, Any]]) -> None:
    table = Table(title="joinedup benchmarks", show_edge=False)
    for col in ("name", "value", "unit", "baseline", "baseline value", "ratio"):
        table.add_column(col, justify="left" if col in ("name", "unit", "baseline") else "right")
    for r in results:
        table.add_row(
            r["name"],
            f"{r['value']:,.3f}",
            r["unit"],
            r.get("baseline_name", ""),
            f"{r['baseline_value']:,.3f}" if "baseline_value" in r else "",
            f"{r['ratio']:.3f}" if "ratio" in r else "",
        )
    Console(width=160).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--engine-people", type=int, default=200_000)
    parser.add_argument("--charlson-people", type=int, default=1_000_000)
    parser.add_argument(
        "--only", nargs="+", choices=BENCHES, metavar="NAME",
        help=f"run only these benchmarks ({', '.join(BENCHES)})",
    )  # fmt: skip
    parser.add_argument(
        "--api-warehouse", type=Path,
        help="an existing default demo warehouse for api_p95_ms (skips building one)",
    )  # fmt: skip
    parser.add_argument("--api-duration", type=float, default=60.0)
    parser.add_argument("--api-clients", type=int, default=50)
    args = parser.parse_args()
    run = selected(args.only)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="joinedup-bench-") as tmp:
        work = Path(tmp)
        if "synth" in run:
            results += bench_synth(work, args.people, args.small)
        if "phm" in run:
            results += bench_phm(work / "big.duckdb", args.people)
        if "finance" in run:
            phm_seconds = next(r["value"] for r in results if r["name"].startswith("phm_"))
            results += bench_finance(work / "big.duckdb", args.people, phm_seconds)
        if "engines" in run:
            results += bench_engines(work, args.engine_people)
        if "views" in run:
            results += bench_fhir_views(work / "small.duckdb", work)
        if "api" in run:
            demo = args.api_warehouse
            if demo is None:
                demo = work / "demo.duckdb"
                build_demo(demo, work / "demo-outputs")
            results += bench_api(demo, clients=args.api_clients, duration=args.api_duration)
        if "audit" in run:
            results += bench_audit(work)
    if "charlson" in run:
        results += bench_charlson_vs_comorbidipy(args.charlson_people)
    if args.only and args.out.is_file():
        names = {r["name"] for r in results}
        kept = [
            r for r in json.loads(args.out.read_text(encoding="utf-8")) if r["name"] not in names
        ]
        results = kept + results
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    show(results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
