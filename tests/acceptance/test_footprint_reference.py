"""A real ICB's footprint from NHS England's practice-level weighted populations (2025/26)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from joinedup.errors import InputError
from joinedup.footprint import Footprint, footprint_from_reference
from joinedup.reference import (
    PRACTICE_FILE_NAME,
    PracticeRecord,
    find_practice_file,
    load_practices,
    load_practices_from_dir,
)

CHESHIRE_AND_MERSEYSIDE_PLACES = {
    "Cheshire East",
    "Cheshire West and Chester",
    "Halton",
    "Knowsley",
    "Liverpool",
    "St. Helens",
    "Sefton",
    "Warrington",
    "Wirral",
}


@pytest.fixture(scope="module")
def practices(reference_dir: Path) -> list[PracticeRecord]:
    return load_practices_from_dir(reference_dir)


@pytest.fixture(scope="module")
def qyg(practices: list[PracticeRecord]) -> Footprint:
    return footprint_from_reference(practices, "QYG")


@pytest.mark.reference
def test_practice_file_loads_every_practice(practices: list[PracticeRecord]) -> None:
    assert len(practices) == 6_348
    assert len({p.icb_code for p in practices}) == 42
    # Each weighted population column redistributes the national population, it adds none.
    population = sum(p.population for p in practices)
    assert sum(p.final_wp for p in practices) == pytest.approx(population, rel=1e-6)
    assert sum(p.mental_health_wp for p in practices) == pytest.approx(population, rel=1e-6)


@pytest.mark.reference
def test_cheshire_and_merseyside_places_and_practices(qyg: Footprint) -> None:
    assert qyg.system.name == "NHS Cheshire and Merseyside ICB"
    assert {p.name for p in qyg.places} == CHESHIRE_AND_MERSEYSIDE_PLACES
    assert len(qyg.places) == 9
    assert len(qyg.practices) == 347


@pytest.mark.reference
def test_population_is_the_files_total(qyg: Footprint, practices: list[PracticeRecord]) -> None:
    expected = sum(p.population for p in practices if p.icb_code == "QYG")
    assert 2_700_000 < expected < 2_900_000
    # List sizes are rounded per practice: at most half a person each away from the file.
    assert abs(qyg.population - expected) <= 0.5 * len(qyg.practices)


@pytest.mark.reference
def test_neighbourhoods_are_30_to_50k(qyg: Footprint) -> None:
    sizes = list(qyg.pcn_population().values())
    inside = sum(30_000 <= s <= 50_000 for s in sizes)
    assert inside >= 0.9 * len(sizes)
    assert any("no PCN codes" in note for note in qyg.notes)


@pytest.mark.reference
def test_every_practice_is_in_exactly_one_neighbourhood(
    qyg: Footprint, practices: list[PracticeRecord]
) -> None:
    wanted = sorted(p.practice_code for p in practices if p.icb_code == "QYG")
    assert sorted(p.code for p in qyg.practices) == wanted  # each listed once
    pcn_codes = {p.code for p in qyg.pcns}
    assert {p.pcn for p in qyg.practices} == pcn_codes  # every PCN used, none unknown


@pytest.mark.reference
def test_unknown_icb_is_refused_helpfully(practices: list[PracticeRecord]) -> None:
    with pytest.raises(InputError) as caught:
        footprint_from_reference(practices, "QQQ")
    message = str(caught.value)
    assert "'QQQ'" in message
    assert "QE1" in message and "list-icbs" in message


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _small_file(reference_dir: Path, rows: int = 3) -> tuple[list[str], list[list[str]]]:
    with find_practice_file(reference_dir).open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [next(reader) for _ in range(rows)]


@pytest.mark.reference
def test_missing_column_is_named(reference_dir: Path, tmp_path: Path) -> None:
    header, rows = _small_file(reference_dir)
    drop = header.index("Population")
    bad = _write_csv(
        tmp_path / PRACTICE_FILE_NAME,
        [c for i, c in enumerate(header) if i != drop],
        [[v for i, v in enumerate(r) if i != drop] for r in rows],
    )
    with pytest.raises(InputError, match="missing column 'Population'") as caught:
        load_practices(bad)
    assert str(bad) in caught.value.where


@pytest.mark.reference
def test_non_numeric_population_is_named_with_its_line(reference_dir: Path, tmp_path: Path) -> None:
    header, rows = _small_file(reference_dir)
    rows[1][header.index("Population")] = "lots"
    bad = _write_csv(tmp_path / PRACTICE_FILE_NAME, header, rows)
    with pytest.raises(InputError, match=r":3: column 'Population': 'lots' is not a number"):
        load_practices(bad)


def test_missing_practice_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=re.escape(f"no {PRACTICE_FILE_NAME} here")):
        find_practice_file(tmp_path)
    with pytest.raises(InputError, match="reference directory not found"):
        find_practice_file(tmp_path / "absent")
