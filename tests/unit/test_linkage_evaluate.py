"""Scoring linkage against a truth file: true pairs, concatenated extracts, pairwise scores."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from joinedup.errors import InputError
from joinedup.linkage.evaluate import (
    cluster_pairs,
    concatenate_extracts,
    read_truth,
    score,
    score_clusters,
    truth_pairs,
)


def test_true_pairs_are_every_pair_of_one_persons_records(tmp_path: Path) -> None:
    path = tmp_path / "truth.csv"
    path.write_text(
        "system,record_id,person_key\ngp,G1,p1\nacute,A1,p1\nacute,A2,p1\ngp,G2,p2\n",
        encoding="utf-8",
    )
    pairs = truth_pairs(read_truth(path))
    assert pairs == {
        frozenset(("gp:G1", "acute:A1")),
        frozenset(("gp:G1", "acute:A2")),
        frozenset(("acute:A1", "acute:A2")),
    }
    found = {frozenset(("gp:G1", "acute:A1")), frozenset(("gp:G1", "gp:G2"))}
    scores = score(found, pairs)
    assert (scores.precision, scores.recall) == (0.5, 1 / 3)


def test_a_truth_file_without_person_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "truth.csv"
    path.write_text("system,record_id\ngp,G1\n", encoding="utf-8")
    with pytest.raises(InputError, match="person_key"):
        read_truth(path)


def test_concatenated_extracts_prefix_each_record_id_with_its_system(tmp_path: Path) -> None:
    (tmp_path / "gp.csv").write_text("record_id,given_name\nG1,Ann\n", encoding="utf-8")
    (tmp_path / "acute.csv").write_text("record_id,given_name\nA1,Anne\n", encoding="utf-8")
    out = concatenate_extracts(tmp_path, ["gp", "acute"], tmp_path / "all.csv")
    assert out.read_text(encoding="utf-8") == "record_id,given_name\ngp:G1,Ann\nacute:A1,Anne\n"
    (tmp_path / "mental_health.csv").write_text("record_id,sex\nM1,F\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"mental_health\.csv header"):
        concatenate_extracts(tmp_path, ["gp", "mental_health"], tmp_path / "all.csv")


def test_scores_counted_from_cluster_sizes_equal_scores_of_listed_pairs(tmp_path: Path) -> None:
    path = tmp_path / "truth.csv"
    rows = [("gp", f"G{i}", f"p{i // 3}") for i in range(30)]
    rows += [("acute", f"A{i}", f"p{i // 2}") for i in range(20)]
    path.write_text(
        "system,record_id,person_key\n" + "".join(f"{s},{r},{p}\n" for s, r, p in rows),
        encoding="utf-8",
    )
    truth = read_truth(path)
    ids = [f"{s}:{r}" for s, r, _ in rows]
    clusters = pa.table({"record_id": ids, "cluster_id": [f"c{i % 7}" for i in range(len(ids))]})
    expected = score(cluster_pairs(clusters), truth_pairs(truth))
    assert score_clusters(clusters, truth) == expected
    assert expected.true_positives > 0 and expected.false_positives > 0
