"""Acceptance: a synthetic Cheshire and Merseyside built from the public reference files looks
like the real ICB (practice list sizes, its places' real small areas and their deprivation)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

PEOPLE = 30_000
PLACES = {
    "Cheshire East", "Cheshire West and Chester", "Halton", "Knowsley", "Liverpool",
    "St. Helens", "Sefton", "Warrington", "Wirral",
}  # fmt: skip

pytestmark = [pytest.mark.reference, pytest.mark.slow]


@pytest.fixture(scope="module")
def warehouse(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`joinedup synth --reference-dir DIR --icb QYG --people 30000 --seed 3`, as a user runs it."""
    folder = tmp_path_factory.mktemp("qyg")
    path = folder / "tmp" / "qyg.duckdb"
    exe = shutil.which("joinedup", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-c", "from joinedup.cli import main; main()"]
    run = subprocess.run(
        [*command, "synth", "--reference-dir", str(reference_dir), "--icb", "QYG",
         "--people", str(PEOPLE), "--seed", "3", "--warehouse", str(path), "--workers", "2"],
        check=False, cwd=folder, capture_output=True, text=True, timeout=300,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return path


@pytest.fixture(scope="module")
def con(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        yield connection


def _practice_population_by_place(reference_dir: Path) -> dict[str, float]:
    """The practice file's registered Population of QYG's practices, summed by place (LTLA)."""
    totals: dict[str, float] = defaultdict(float)
    path = reference_dir / "gp_practice_weighted_populations_2025_26.csv"
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["ICB"] == "QYG":
                totals[row["LTLA"]] += float(row["Population"])
    return dict(totals)


def test_people_per_place_follow_practice_list_sizes(
    con: duckdb.DuckDBPyConnection, reference_dir: Path
) -> None:
    expected = _practice_population_by_place(reference_dir)
    assert set(expected) == PLACES
    # People registered on the first day of the history, by the place of their practice then.
    rows = con.execute(
        """
        SELECT pl.place_name, count(DISTINCT r.person_id)
        FROM registration r
        JOIN build b ON r.start_date <= b.history_start_date
            AND (r.end_date IS NULL OR r.end_date >= b.history_start_date)
        JOIN practice pr ON pr.practice_code = r.practice_code
        JOIN place pl ON pl.place_code = pr.place_code
        GROUP BY ALL
        """
    ).fetchall()
    got = dict(rows)
    assert set(got) == PLACES
    assert sum(got.values()) == PEOPLE
    total = sum(expected.values())
    off = {
        place: (100 * got[place] / PEOPLE, 100 * expected[place] / total)
        for place in PLACES
        if abs(got[place] / PEOPLE - expected[place] / total) > 0.015
    }
    assert not off, f"place shares (synthetic %, practice file %) more than 1.5 points off: {off}"


def _liverpool_lsoas(reference_dir: Path) -> set[str]:
    path = reference_dir / "population_mid2020_lsoa11.csv"
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return {
            row["lsoa11_code"]
            for row in csv.DictReader(handle)
            if row["lsoa11_name"].startswith("Liverpool ")
        }


def test_liverpool_people_live_in_real_liverpool_lsoas(
    con: duckdb.DuckDBPyConnection, reference_dir: Path
) -> None:
    codes = {
        code
        for (code,) in con.execute(
            """
            SELECT DISTINCT p.lsoa_code FROM person p
            JOIN practice pr USING (practice_code)
            JOIN place pl USING (place_code)
            WHERE pl.place_name = 'Liverpool'
            """
        ).fetchall()
    }
    real = _liverpool_lsoas(reference_dir)
    assert len(real) > 250  # Liverpool has about 300 LSOAs
    assert len(codes) > 100  # people are spread over many of them, not one
    assert all(code.startswith("E01") for code in codes)
    strangers = sorted(codes - real)
    assert not strangers, f"{len(strangers)} LSOAs outside Liverpool, e.g. {strangers[:5]}"


def test_knowsley_is_more_deprived_than_cheshire_east(con: duckdb.DuckDBPyConnection) -> None:
    mean = dict(
        con.execute(
            """
            SELECT pl.place_name, avg(p.imd_decile) FROM person p
            JOIN practice pr USING (practice_code)
            JOIN place pl USING (place_code)
            WHERE pl.place_name IN ('Knowsley', 'Cheshire East')
            GROUP BY ALL
            """
        ).fetchall()
    )
    assert mean["Knowsley"] < mean["Cheshire East"]
    # IMD 2019: Knowsley is among the most deprived districts in England, Cheshire East not.
    assert mean["Knowsley"] < 4
    assert mean["Cheshire East"] > 6


def test_imd_deciles_are_the_real_ones_of_each_lsoa(
    con: duckdb.DuckDBPyConnection, reference_dir: Path
) -> None:
    imd: dict[str, int] = {}
    with (reference_dir / "imd2019_lsoa11.csv").open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            imd[row["lsoa11_code"]] = int(float(row["IMD_decile"]))
    pairs = con.execute("SELECT DISTINCT lsoa_code, imd_decile FROM person").fetchall()
    wrong = [(code, decile, imd.get(code)) for code, decile in pairs if imd.get(code) != decile]
    assert not wrong, f"{len(wrong)} LSOAs with the wrong IMD decile, e.g. {wrong[:5]}"
