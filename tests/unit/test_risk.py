"""Emergency admission risk: the model against the age–sex baseline, calibration, tiers, card."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from joinedup.errors import ConfigurationError
from joinedup.population.risk import (
    FEATURES,
    TIERS,
    Metrics,
    ModelCard,
    RiskModel,
    assign_tiers,
    evaluate,
    feature_names,
    fit_baseline,
    fit_model,
    model_card,
    summarise_tiers,
)

CONDITIONS = ("hypertension", "diabetes", "copd")
PEOPLE = 100_000


def synthetic_population(seed: int, n: int = PEOPLE, first_id: int = 1) -> pa.Table:
    """People at an index date whose true risk is logistic in age, ltc_count and prior emergencies.

    The other features are noise correlated with those three, as in real records.
    """
    rng = np.random.default_rng(seed)
    age = np.minimum(rng.gamma(2.2, 19.0, n), 104).astype(np.int64)
    sex_male = rng.integers(0, 2, n)
    ltc_count = rng.poisson(0.2 + 0.025 * age)
    prior_emergency = rng.poisson(0.05 + 0.04 * ltc_count)
    logit = -3.4 + 0.02 * age + 0.35 * ltc_count + 0.9 * prior_emergency
    risk = 1 / (1 + np.exp(-logit))
    admitted = rng.random(n) < risk
    admissions = np.where(admitted, 1 + rng.poisson(2.0 * risk), 0)
    columns: dict[str, np.ndarray] = {
        "person_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "age": age,
        "sex_male": sex_male,
        "imd_decile": rng.integers(1, 11, n),
        "ltc_count": ltc_count,
        "cms_general": ltc_count * 0.8 + rng.gamma(1.0, 0.5, n),
        "prior_ae_12m_count": rng.poisson(0.2 + prior_emergency),
        "prior_emergency_12m_count": prior_emergency,
        "prior_elective_12m_count": rng.poisson(0.1 + 0.05 * ltc_count),
        "prior_outpatient_12m_count": rng.poisson(0.5 + 0.5 * ltc_count),
        "prior_gp_12m_count": rng.poisson(2 + 1.5 * ltc_count),
        "medicines_count": rng.poisson(0.8 * ltc_count),
        "frailty_level": np.minimum(rng.poisson(np.maximum(age - 60, 0) / 25), 3),
    }
    for k, name in enumerate(CONDITIONS):
        columns[name] = (rng.random(n) < 0.2 * ltc_count / (1 + k + ltc_count)).astype(np.int64)
    columns["next_emergency_admissions"] = admissions
    return pa.table(columns)


@pytest.fixture(scope="module")
def train() -> pa.Table:
    return synthetic_population(seed=2023)


@pytest.fixture(scope="module")
def validation() -> pa.Table:
    """A later population: a fresh draw from the same truth, with new people."""
    return synthetic_population(seed=2024, first_id=10_000_001)


@pytest.fixture(scope="module")
def model(train: pa.Table) -> RiskModel:
    return fit_model(train, CONDITIONS, seed=0)


@pytest.fixture(scope="module")
def baseline(train: pa.Table) -> RiskModel:
    return fit_baseline(train)


@pytest.fixture(scope="module")
def metrics(model: RiskModel, baseline: RiskModel, validation: pa.Table) -> tuple[Metrics, Metrics]:
    return evaluate(model, validation), evaluate(baseline, validation)


@pytest.fixture(scope="module")
def card(
    model: RiskModel,
    train: pa.Table,
    validation: pa.Table,
    metrics: tuple[Metrics, Metrics],
) -> ModelCard:
    scores = model.predict(validation)
    ids = validation.column("person_id").to_numpy()
    return model_card(
        model,
        validation=metrics[0],
        baseline_validation=metrics[1],
        train=evaluate(model, train),
        tiers=summarise_tiers(scores, ids),
        train_index_date=date(2023, 4, 1),
        validation_index_date=date(2024, 4, 1),
        population="Synthetic registered population of 100,000 people.",
        synthetic=True,
    )


def test_feature_names_are_the_fixed_features_then_conditions() -> None:
    assert feature_names(CONDITIONS) == (*FEATURES, *CONDITIONS)
    with pytest.raises(ConfigurationError, match="age"):
        feature_names(["age"])


def test_model_beats_the_age_sex_baseline(metrics: tuple[Metrics, Metrics]) -> None:
    ours, base = metrics
    assert ours.auroc > base.auroc + 0.02
    assert ours.brier < base.brier
    assert ours.people == PEOPLE
    assert 0 < ours.events <= ours.admissions
    assert ours.prevalence == pytest.approx(ours.events / PEOPLE)


def test_validation_deciles_are_calibrated_within_20_percent(
    metrics: tuple[Metrics, Metrics],
) -> None:
    deciles = metrics[0].calibration
    assert [d.decile for d in deciles] == list(range(1, 11))
    assert sum(d.people for d in deciles) == PEOPLE
    assert all(d.people in (PEOPLE // 10, PEOPLE // 10 + 1) for d in deciles)
    assert sum(d.observed for d in deciles) == metrics[0].events
    assert all(0.8 <= d.ratio <= 1.2 for d in deciles), [round(d.ratio, 3) for d in deciles]
    assert deciles[-1].expected > deciles[0].expected
    assert metrics[0].calibrated()


def test_top_fifth_takes_a_bigger_share_of_admissions_than_with_age_sex(
    metrics: tuple[Metrics, Metrics],
) -> None:
    ours, base = metrics
    assert 0 < base.top20_share < ours.top20_share < 1


def test_baseline_reproduces_each_age_sex_cells_rate(baseline: RiskModel, train: pa.Table) -> None:
    p = baseline.predict(train)
    age = train.column("age").to_numpy()
    male = train.column("sex_male").to_numpy()
    admitted = train.column("next_emergency_admissions").to_numpy() > 0
    cell = (np.minimum(age // 5, 18) == 14) & (male == 1)  # men aged 70-74
    assert np.unique(p[cell]).size == 1
    assert p[cell][0] == pytest.approx(admitted[cell].mean(), abs=1e-4)
    assert p[age >= 90].size and np.unique(p[(age >= 90) & (male == 0)]).size == 1


def test_tiers_have_the_configured_sizes_and_the_highest_scores(
    model: RiskModel, validation: pa.Table
) -> None:
    scores = model.predict(validation)
    ids = validation.column("person_id").to_numpy()
    tiers = assign_tiers(scores, ids)
    sizes = {t: int((tiers == t).sum()) for t in TIERS}
    assert sizes == {"very_high": 500, "high": 4500, "moderate": 15000, "low": 80000}
    assert scores[tiers == "very_high"].min() >= scores[tiers == "high"].max()
    assert scores[tiers == "high"].min() >= scores[tiers == "moderate"].max()
    assert scores[tiers == "very_high"].min() >= np.sort(scores)[-500]

    odd = assign_tiers(scores[:999], ids[:999], shares=(0.01, 0.04, 0.1))
    # floor(0.01 × 999) = 9, floor(0.05 × 999) = 49, floor(0.15 × 999) = 149
    assert [int((odd == t).sum()) for t in TIERS] == [9, 40, 100, 850]


def test_tied_scores_are_broken_by_person_id() -> None:
    scores = np.full(200, 0.1)
    ids = np.arange(200, 0, -1)
    tiers = assign_tiers(scores, ids)
    assert set(ids[tiers == "very_high"]) == {1}
    assert set(ids[tiers == "high"]) == set(range(2, 11))


@pytest.mark.parametrize(
    "shares",
    [(0.5, 0.3, 0.2), (0.0, 0.1, 0.2), (-0.1, 0.1, 0.2), (0.1, 0.2), (0.6, 0.3, 0.15)],
)
def test_bad_tier_shares_are_refused(shares: tuple[float, ...]) -> None:
    with pytest.raises(ConfigurationError, match="tier shares"):
        assign_tiers(np.zeros(10), np.arange(10), shares=shares)


def test_same_seed_gives_identical_predictions(
    model: RiskModel, train: pa.Table, validation: pa.Table
) -> None:
    small = train.slice(0, 10_000)
    first = fit_model(small, CONDITIONS, seed=3).predict(validation)
    second = fit_model(small, CONDITIONS, seed=3).predict(validation)
    np.testing.assert_array_equal(first, second)


def test_a_missing_feature_is_named(model: RiskModel, validation: pa.Table) -> None:
    without = validation.drop_columns(["prior_gp_12m_count"])
    with pytest.raises(ConfigurationError, match="prior_gp_12m_count"):
        model.predict(without)
    with pytest.raises(ConfigurationError, match="diabetes"):
        fit_model(validation.drop_columns(["diabetes"]), CONDITIONS)


def test_scoring_the_current_population_needs_no_outcome(
    model: RiskModel, validation: pa.Table
) -> None:
    current = validation.drop_columns(["next_emergency_admissions"])
    p = model.predict(current)
    assert p.shape == (PEOPLE,)
    assert np.all((p > 0) & (p < 1))
    with pytest.raises(ConfigurationError, match="next_emergency_admissions"):
        evaluate(model, current)


def test_evaluation_needs_positive_outcomes(model: RiskModel, validation: pa.Table) -> None:
    none = validation.set_column(
        validation.schema.get_field_index("next_emergency_admissions"),
        "next_emergency_admissions",
        pa.array(np.zeros(PEOPLE, dtype=np.int64)),
    )
    with pytest.raises(ConfigurationError, match="no positive outcomes"):
        evaluate(model, none)


def test_model_card_is_json_and_readable(card: ModelCard) -> None:
    data = json.loads(json.dumps(card.to_dict(), allow_nan=False))
    assert data["train_index_date"] == "2023-04-01"
    assert data["validation_index_date"] == "2024-04-01"
    assert data["condition_columns"] == list(CONDITIONS)
    assert len(data["metrics"]["validation"]["calibration"]) == 10
    assert [t["people"] for t in data["tiers"]] == [500, 4500, 15000, 80000]
    assert card.passes_acceptance
    assert data["passes_acceptance"] is True

    text = card.to_markdown()
    assert "| Metric | Model (validation) | Age–sex baseline (validation) |" in text
    assert "| AUROC |" in text
    assert "| Brier score |" in text
    assert "| Top-20% share of admissions |" in text
    assert "Every decile's observed/expected ratio is within ±20%." in text
    assert "synthetic" in text.lower()
    assert "not for making decisions about an individual on its own" in text


def test_acceptance_fails_when_the_baseline_is_as_good(card: ModelCard) -> None:
    same = model_card(
        _as_model(card),
        validation=card.validation,
        baseline_validation=card.validation,
        tiers=card.tiers,
        train_index_date=card.train_index_date,
        validation_index_date=card.validation_index_date,
        population=card.population,
        synthetic=True,
        software=card.software,
    )
    assert not same.passes_acceptance
    assert "**failed**" in same.to_markdown()


def _as_model(card: ModelCard) -> RiskModel:
    """A stand-in model carrying the card's features (the card only reads its metadata)."""

    class _Estimator:
        def get_params(self) -> dict[str, object]:
            return dict(card.hyperparameters)

    return RiskModel("gradient_boosting", _Estimator(), card.features, card.seed)
