"""Measuring a linkage against the truth: pairwise precision, recall and F1, and the
deterministic baseline (exact given name, family name and birth date) it is judged beside.

These work on test sets held in memory (FEBRL, a synthetic extract's truth), not on a
population: a pair is a frozenset of two record ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations

import pyarrow as pa

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
