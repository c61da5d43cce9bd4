"""Measuring a linkage against the truth: pairwise precision, recall and F1, and the
deterministic baseline (exact given name, family name and birth date) it is judged beside.

These work on test sets held in memory (FEBRL, a synthetic extract's truth), not on a
population: a pair is a frozenset of two record ids. `measure_extracts` scores `joinedup link
dedupe` over the per-organisation extracts `joinedup synth extracts` writes.
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from joinedup.errors import InputError
from joinedup.linkage.extract import read_extract
from joinedup.linkage.model import LinkageSettings
from joinedup.linkage.run import Progress, dedupe
from joinedup.warehouse import Engine

Pair = frozenset[str]


@dataclass(frozen=True)
class Scores:
    """Pairwise agreement of found links with true ones."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        true = self.true_positives + self.false_negatives
        return self.true_positives / true if true else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score(found: set[Pair], truth: set[Pair]) -> Scores:
    """Precision, recall and F1 of the `found` pairs against the `truth`."""
    hits = len(found & truth)
    return Scores(hits, len(found) - hits, len(truth) - hits)


def cluster_pairs(clusters: pa.Table) -> set[Pair]:
    """Every pair of records that share a cluster (`record_id, cluster_id`)."""
    members: dict[object, list[str]] = defaultdict(list)
    for record_id, cluster_id in zip(
        clusters.column("record_id").to_pylist(),
        clusters.column("cluster_id").to_pylist(),
        strict=True,
    ):
        members[cluster_id].append(str(record_id))
    return {frozenset(p) for ids in members.values() for p in combinations(ids, 2)}


def link_pairs(links: pa.Table) -> set[Pair]:
    """The pairs of a pair link (`left_record_id, right_record_id`)."""
    return {
        frozenset((str(a), str(b)))
        for a, b in zip(
            links.column("left_record_id").to_pylist(),
            links.column("right_record_id").to_pylist(),
            strict=True,
        )
    }


_BASELINE_KEY = ("given_name", "family_name", "birth_date")


def _keys(records: pa.Table) -> Iterable[tuple[str, tuple[object, ...]]]:
    columns = [records.column(c).to_pylist() for c in _BASELINE_KEY]
    for record_id, *key in zip(records.column("record_id").to_pylist(), *columns, strict=True):
        if all(v is not None for v in key):
            yield str(record_id), tuple(key)


def baseline_dedupe(records: pa.Table) -> set[Pair]:
    """Deterministic dedupe: records with the same given name, family name and birth date
    (all present, as cleaned by the reader)."""
    groups: dict[tuple[object, ...], list[str]] = defaultdict(list)
    for record_id, key in _keys(records):
        groups[key].append(record_id)
    return {frozenset(p) for ids in groups.values() for p in combinations(ids, 2)}


def baseline_link(left: pa.Table, right: pa.Table) -> set[Pair]:
    """Deterministic link: a left and a right record with the same given name, family name
    and birth date."""
    by_key: dict[tuple[object, ...], list[str]] = defaultdict(list)
    for record_id, key in _keys(left):
        by_key[key].append(record_id)
    return {frozenset((a, b)) for b, key in _keys(right) for a in by_key.get(key, ())}


def read_truth(path: Path) -> pa.Table:
    """A truth file (`system, record_id, person_key`: which person each source record is),
    as `joinedup synth extracts` writes it apart from the extracts."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"system", "record_id", "person_key"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{path} header", f"no {', '.join(sorted(missing))} column")
        rows = list(reader)
    return pa.table(
        {name: pa.array([r[name] for r in rows], pa.string()) for name in _TRUTH_COLUMNS}
    )


_TRUTH_COLUMNS = ("system", "record_id", "person_key")


def truth_pairs(truth: pa.Table) -> set[Pair]:
    """Every pair of records of one person, each named `system:record_id` (as
    `concatenate_extracts` names them)."""
    members: dict[str, list[str]] = defaultdict(list)
    for system, record_id, person in zip(
        *(truth.column(c).to_pylist() for c in _TRUTH_COLUMNS), strict=True
    ):
        members[person].append(f"{system}:{record_id}")
    return {frozenset(p) for ids in members.values() for p in combinations(ids, 2)}


def concatenate_extracts(folder: Path, systems: Iterable[str], out: Path) -> Path:
    """Write the extracts `folder/<system>.csv` as one extract at `out`, each record_id
    prefixed by its system and a colon (unique across systems). Every extract must have the
    same header."""
    header: list[str] | None = None
    with out.open("w", newline="", encoding="utf-8") as target:
        writer = csv.writer(target, lineterminator="\n")
        for system in systems:
            path = folder / f"{system}.csv"
            with path.open(newline="", encoding="utf-8") as source:
                reader = csv.reader(source)
                own = next(reader, None)
                if own is None or "record_id" not in own:
                    raise InputError(f"{path} header", "no record_id column")
                if header is None:
                    header = own
                    writer.writerow(header)
                elif own != header:
                    raise InputError(f"{path} header", f"columns differ from {header}")
                at = own.index("record_id")
                for row in reader:
                    if row:
                        row[at] = f"{system}:{row[at]}"
                        writer.writerow(row)
    return out


def _pairs_within(table: pa.Table, keys: list[str]) -> int:
    counts = table.group_by(keys).aggregate([([], "count_all")]).column("count_all")
    n = pc.cast(counts, pa.int64())
    return int(pc.sum(pc.divide(pc.multiply(n, pc.subtract(n, 1)), 2)).as_py() or 0)


def score_clusters(clusters: pa.Table, truth: pa.Table) -> Scores:
    """Pairwise scores of `clusters` (`record_id, cluster_id`, record ids named
    `system:record_id`) against the `truth`, counted from cluster and person sizes rather
    than by listing pairs, so a million records score in a second or two."""
    named = pc.binary_join_element_wise(truth.column("system"), truth.column("record_id"), ":")
    person = pa.table({"record_id": named, "person_key": truth.column("person_key")})
    joined = clusters.select(["record_id", "cluster_id"]).join(person, "record_id")
    if joined.num_rows != clusters.num_rows:
        raise InputError("truth", f"{clusters.num_rows - joined.num_rows} clustered records "
                         "have no row in the truth file")  # fmt: skip
    hits = _pairs_within(joined, ["cluster_id", "person_key"])
    found = _pairs_within(joined, ["cluster_id"])
    true = _pairs_within(person, ["person_key"])
    return Scores(hits, found - hits, true - hits)


@dataclass(frozen=True)
class ExtractsMeasured:
    """Linkage of per-organisation extracts against their truth, beside the baseline."""

    records: int
    true_pairs: int
    splink: Scores
    baseline: Scores
    seconds: float


def measure_extracts(
    engine: Engine,
    folder: Path,
    truth: Path,
    settings: LinkageSettings | None = None,
    progress: Progress | None = None,
) -> ExtractsMeasured:
    """Dedupe the extracts in `folder` (one `<system>.csv` for each system the `truth` file
    names) concatenated, as `joinedup link dedupe` would, and score the clusters and the
    deterministic baseline (exact given name, family name and birth date) against the truth."""
    truth_table = read_truth(truth)
    systems = list(dict.fromkeys(truth_table.column("system").to_pylist()))
    combined = concatenate_extracts(folder, systems, folder / "all_systems.csv")
    extract = read_extract(combined)
    began = time.perf_counter()
    clusters = dedupe(engine, extract, settings, progress or (lambda _: None))
    seconds = time.perf_counter() - began
    true = truth_pairs(truth_table)
    return ExtractsMeasured(
        records=len(extract),
        true_pairs=len(true),
        splink=score_clusters(clusters, truth_table),
        baseline=score(baseline_dedupe(extract.records), true),
        seconds=seconds,
    )
