"""`joinedup score charlson` end to end, from a shell; and the Charlson distribution through
`joinedup warehouse run`."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _joinedup(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("joinedup", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-c", "from joinedup.cli import main; main()"]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [*command, *args], check=False, cwd=cwd, env=env, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_scores_a_csv_with_its_own_column_names(tmp_path: Path) -> None:
    lines = ["patient,icd,years", "007,I21.0,55", "007,k70.4,55", "12,E11.2,80", "12,E119,80"]
    _write(tmp_path / "in.csv", "\n".join([*lines, "3,R69,30"]) + "\n")
    run = _joinedup("score", "charlson", "in.csv", "-o", "out.csv", "--id-col", "patient",
                    "--code-col", "icd", "--age-col", "years", "--weighting", "charlson",
                    cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as handle:
        rows = {r["patient"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"007", "12", "3"}  # ids kept as written
    assert (rows["007"]["charlson_score"], rows["007"]["charlson_age_adjusted"]) == ("4", "5")
    assert rows["12"]["diabetes_without_complications"] == "1"
    assert (rows["12"]["charlson_score"], rows["12"]["charlson_age_adjusted"]) == ("2", "6")
    assert (rows["3"]["charlson_score"], rows["3"]["charlson_age_adjusted"]) == ("0", "0")
    assert not list(tmp_path.glob("*.tmp"))


def test_an_age_column_is_used_without_being_named(tmp_path: Path) -> None:
    _write(tmp_path / "in.csv", "id,code,age\n1,C78,72\n")
    run = _joinedup("score", "charlson", "in.csv", "-o", "out.csv", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert (row["charlson_score"], row["charlson_age_adjusted"]) == ("6", "9")


def test_without_ages_the_adjusted_score_is_empty(tmp_path: Path) -> None:
    _write(tmp_path / "in.csv", "id,code\n1,C78\n")
    run = _joinedup("score", "charlson", "in.csv", "-o", "out.csv", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert (row["charlson_score"], row["charlson_age_adjusted"]) == ("6", "")


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("id,code\n1,I21\n", ("--age-col", "age"), "in.csv: missing column 'age'"),
        ("person,code\n1,I21\n", (), "in.csv: missing column 'id'"),
        ("", (), "in.csv: empty file"),
        ("id,code\n", (), "in.csv: no rows"),
        ("id,code\n1,I21\n", ("--weighting", "elixhauser"), "--weighting: 'elixhauser'"),
    ],
)
def test_bad_input_is_one_line_naming_the_file_or_option(
    tmp_path: Path, content: str, args: tuple[str, ...], message: str
) -> None:
    _write(tmp_path / "in.csv", content)
    run = _joinedup("score", "charlson", "in.csv", "-o", "out.csv", *args, cwd=tmp_path)
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()


def test_help_says_the_output_is_not_disclosure_controlled(tmp_path: Path) -> None:
    run = _joinedup("score", "charlson", "--help", cwd=tmp_path)
    assert run.returncode == 0
    assert "no disclosure control" in " ".join(run.stdout.split())
