"""`joinedup finance need-index` and the run on published weights, as a user runs them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from cli_run import joinedup


def test_need_index_for_a_real_icb_writes_every_place(reference_dir: Path, tmp_path: Path) -> None:
    result = joinedup(
        "finance", "need-index", "--reference-dir", str(reference_dir), "--icb", "QYG",
        "-o", "need.csv", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "need.csv").open()))
    assert {r["name"] for r in rows} >= {"Liverpool", "Wirral", "Knowsley"}
    wirral = next(r for r in rows if r["name"] == "Wirral")
    assert round(float(wirral["final_index"]), 3) == 1.127


def test_an_unknown_icb_is_refused_with_the_reason(reference_dir: Path, tmp_path: Path) -> None:
    result = joinedup(
        "finance", "need-index", "--reference-dir", str(reference_dir), "--icb", "XXX",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    assert "no practices in ICB 'XXX'" in result.stderr + result.stdout


def test_allocation_from_published_weights_follows_nhs_englands_final_wp(
    reference_dir: Path, tmp_path: Path
) -> None:
    """A warehouse built from Cheshire and Merseyside's practices: `finance run
    --reference-dir` shares each year's pot by the published Final WP of each place."""
    import duckdb

    from joinedup.reference.practices import load_practices_from_dir

    built = joinedup(
        "synth", "--reference-dir", str(reference_dir), "--icb", "QYG", "--people", "20000",
        "-w", "qyg.duckdb", cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    ran = joinedup(
        "finance", "run", "--reference-dir", str(reference_dir), "-w", "qyg.duckdb",
        cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    practices = [p for p in load_practices_from_dir(reference_dir) if p.icb_code == "QYG"]
    wp = {p.lad_code: 0.0 for p in practices}
    for p in practices:
        wp[p.lad_code] += p.final_wp
    with duckdb.connect(str(tmp_path / "qyg.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT place_code, target_gbp, sum(target_gbp) OVER () FROM finance_allocation "
            "WHERE financial_year = '2026/27'"
        ).fetchall()
        source = con.execute("SELECT need_source FROM finance_run").fetchall()
    assert source == [("published",)]
    assert len(rows) == 9
    for place, target, total in rows:
        assert float(target / total) == pytest.approx(wp[place] / sum(wp.values()), abs=1e-9)
