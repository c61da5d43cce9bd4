"""Need indices from NHS England's 2025/26 practice weighted populations, as its place-based
allocation tool computes them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from joinedup.finance.need import COMPONENTS, icb_codes, icb_need, place_need
from joinedup.reference.practices import PracticeRecord, load_practices_from_dir


@pytest.fixture(scope="module")
def practices(reference_dir: Path) -> list[PracticeRecord]:
    return load_practices_from_dir(reference_dir)


def test_icb_overall_need_against_england(practices: list[PracticeRecord]) -> None:
    overall = {n.code: n.index["final"] for n in icb_need(practices)}
    assert round(overall["QYG"], 3) == 1.123  # Cheshire and Merseyside
    assert round(overall["QU9"], 3) == 0.881  # Buckinghamshire, Oxfordshire and Berkshire West


def test_place_indices_of_every_icb_average_to_one(practices: list[PracticeRecord]) -> None:
    """Weights redistribute need within an ICB: the population-weighted mean of its places'
    indices is exactly 1 for every component, and each index is WP per head over the ICB's."""
    for icb in icb_codes(practices):
        places = place_need(practices, icb)
        population = math.fsum(p.population for p in places)
        for name in COMPONENTS:
            mean = math.fsum(p.population * p.index[name] for p in places) / population
            assert mean == pytest.approx(1.0, abs=1e-12), (icb, name)
        members = [p for p in practices if p.icb_code == icb]
        icb_rate = math.fsum(p.final_wp for p in members) / math.fsum(p.population for p in members)
        for place in places:
            in_place = [p for p in members if p.lad_code == place.code]
            rate = math.fsum(p.final_wp for p in in_place) / math.fsum(
                p.population for p in in_place
            )
            assert place.index["final"] == pytest.approx(rate / icb_rate, rel=1e-12)
