"""The risk model's seeded sample: keys spread people evenly whatever their ids, seeds give
independent draws, the caps are checked settings, and tier boundaries are `assign_tiers`'s."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from joinedup.errors import InputError
from joinedup.population.config import load_config
from joinedup.population.risk import TIERS, assign_tiers, tier_bounds
from joinedup.population.scoring import PRIME, sample_key_of


def _sample(ids: range, seed: int, cap: int) -> set[int]:
    return set(sorted(ids, key=lambda i: (sample_key_of(i, seed), i))[:cap])


def test_keys_are_in_range_and_fixed_by_id_and_seed() -> None:
    for i in (-(2**63), -1, 0, 1, PRIME, 2**63 - 1):
        key = sample_key_of(i, 20260401)
        assert 0 <= key < PRIME
        assert key == sample_key_of(i, 20260401)
    assert sample_key_of(5, 1) != sample_key_of(5, 2)


def test_a_sample_of_consecutive_ids_is_spread_evenly_over_them() -> None:
    ids = range(1, 100_001)
    chosen = np.array(sorted(_sample(ids, 20260401, 10_000)))
    per_tenth = np.bincount((chosen - 1) // 10_000, minlength=10)
    assert per_tenth.min() > 850 and per_tenth.max() < 1_150, per_tenth
    # Neither odd nor even ids (nor any residue a linear step would favour) dominate.
    assert 4_700 < int((chosen % 2).sum()) < 5_300


def test_two_seeds_draw_nearly_independent_samples() -> None:
    ids = range(1, 20_001)
    first, second = _sample(ids, 7, 2_000), _sample(ids, 8, 2_000)
    # Independent draws of a tenth each share about a hundredth of the population.
    assert 120 < len(first & second) < 300


@pytest.mark.parametrize("n", [0, 1, 99, 1_000, 12_345])
def test_tier_bounds_are_where_assign_tiers_puts_the_boundaries(n: int) -> None:
    shares = (0.005, 0.045, 0.15)
    tiers = assign_tiers(np.linspace(1, 0, n), np.arange(n), shares)
    ends = np.cumsum([int((tiers == t).sum()) for t in TIERS])[:-1]
    assert tier_bounds(shares, n) == tuple(int(e) for e in ends)


def test_sample_caps_are_checked_when_the_settings_are_read(tmp_path: Path) -> None:
    settings = tmp_path / "phm.yaml"
    settings.write_text("risk:\n  max_train_people: 10\n", encoding="utf-8")
    with pytest.raises(InputError, match="max_train_people"):
        load_config(settings)
    assert load_config().risk.max_train_people == 250_000
    assert load_config().risk.max_validation_people == 500_000
