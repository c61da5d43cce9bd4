"""`joinedup finance need-index` as a user runs it."""

from __future__ import annotations

import csv
from pathlib import Path

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
