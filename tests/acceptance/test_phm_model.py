"""Acceptance: on the default demo population (`make demo`: the Riverside and Coast footprint,
1.2 million people, seed 42) the emergency admission model beats the age-sex baseline on AUROC
and Brier and is calibrated within ±20% in every decile of the later validation year."""

from __future__ import annotations

import pytest
from demo import DemoWarehouse

from joinedup.population.pipeline import PhmResult

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(demo_warehouse: DemoWarehouse) -> PhmResult:
    return demo_warehouse.phm


def test_the_model_beats_the_age_sex_baseline(demo_run: PhmResult) -> None:
    card = demo_run.card
    assert card.validation.auroc > card.baseline_validation.auroc + 0.02
    assert card.validation.brier < card.baseline_validation.brier
    assert card.validation.top20_share > card.baseline_validation.top20_share


def test_every_validation_decile_is_calibrated_within_20_percent(demo_run: PhmResult) -> None:
    ratios = [d.ratio for d in demo_run.card.validation.calibration]
    assert len(ratios) == 10
    assert all(0.8 <= r <= 1.2 for r in ratios), ratios
    assert demo_run.card.passes_acceptance


def test_the_model_card_is_complete(demo_run: PhmResult) -> None:
    text = demo_run.card.to_markdown()
    for heading in ("Intended use", "Calibration by decile", "Risk tiers", "Limitations"):
        assert heading in text
    assert demo_run.card.validation_index_date > demo_run.card.train_index_date
