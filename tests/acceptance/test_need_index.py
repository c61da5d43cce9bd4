"""Need indices from NHS England's 2025/26 practice weighted populations, as its place-based
allocation tool computes them.

The oracle below follows the tool's published steps (nhsengland/ICB_Allocation_Tool_update,
`utils.get_data`, `aggregate` and `get_index`) with pandas, independently of joinedup's code:
read the file, take empty and zero cells as 1, sum each column over a place's practices and over
its ICB's, round each sum half up to a whole number, divide.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd
import pytest

from joinedup.finance.need import COMPONENTS, icb_codes, icb_need, place_need
from joinedup.reference.practices import PRACTICE_FILE_NAME, PracticeRecord, load_practices_from_dir

COLUMNS = ["Population", *COMPONENTS.values()]


@pytest.fixture(scope="module")
def practices(reference_dir: Path) -> list[PracticeRecord]:
    return load_practices_from_dir(reference_dir)


def _tool_sums(frame: pd.DataFrame) -> pd.Series:
    def half_up(x: float) -> float:
        return float(Decimal(str(x)).quantize(Decimal(1), rounding=ROUND_HALF_UP))

    return frame[COLUMNS].sum().map(half_up)


def test_place_indices_equal_nhs_englands_tool_for_every_place_of_every_icb(
    practices: list[PracticeRecord], reference_dir: Path
) -> None:
    data = pd.read_csv(reference_dir / PRACTICE_FILE_NAME).fillna(1).replace(0, 1)
    compared = 0
    for icb, members in data.groupby("ICB"):
        icb_sums = _tool_sums(members)
        ours = {n.code: n for n in place_need(practices, str(icb))}
        assert set(ours) == set(members["LAD"])
        for lad, place in members.groupby("LAD"):
            sums = _tool_sums(place)
            for name, column in COMPONENTS.items():
                tool = (sums[column] / sums["Population"]) / (
                    icb_sums[column] / icb_sums["Population"]
                )
                assert ours[str(lad)].index[name] == pytest.approx(tool, abs=1e-9), (
                    icb, lad, name,
                )  # fmt: skip
                compared += 1
    assert compared == 9 * sum(data.groupby("ICB")["LAD"].nunique())  # every place, component


def test_icb_overall_need_against_england(practices: list[PracticeRecord]) -> None:
    overall = {n.code: n.index["final"] for n in icb_need(practices)}
    assert round(overall["QYG"], 3) == 1.123  # Cheshire and Merseyside
    assert round(overall["QU9"], 3) == 0.881  # Buckinghamshire, Oxfordshire and Berkshire West


def test_unrounded_indices_average_to_one_and_differ_from_the_tool_only_by_rounding(
    practices: list[PracticeRecord],
) -> None:
    """Without the tool's rounding the population-weighted mean of every ICB's place indices is
    exactly 1; the tool's whole-person sums move an index by at most about half a person in
    its place's weighted population or head count (a place of 198 people moves by 0.002)."""
    for icb in icb_codes(practices):
        exact = place_need(practices, icb, rounding="exact")
        members = [p for p in practices if p.icb_code == icb]
        tool = {n.code: n for n in place_need(practices, icb)}
        population = math.fsum(p.population for p in exact)
        for name in COMPONENTS:
            mean = math.fsum(p.population * p.index[name] for p in exact) / population
            assert mean == pytest.approx(1.0, abs=1e-12), (icb, name)
            for p in exact:
                # Each sum moves by at most 0.5, plus 1 per zero the tool reads as 1 (its ICB's
                # sums move too, hence the factor of 3).
                zeros = sum(getattr(r, f"{name}_wp") == 0 for r in members if r.lad_code == p.code)
                top = max(p.index[name], tool[p.code].index[name])
                shift = 3 * (0.5 + zeros)
                bound = top * (shift / max(p.weighted[name], 1) + shift / p.population) + 1e-9
                assert abs(p.index[name] - tool[p.code].index[name]) <= bound, (icb, p.code, name)
