"""Emergency admission risk: who is most likely to have an emergency admission next year.

Works on one row per person at an index date (features known at that date, outcome in the
following 12 months), built in SQL elsewhere. Fits a gradient-boosted model and an age–sex
comparator, validates both on a later population (temporal validation), writes a model card, and
splits a scored population into risk tiers for direct care prioritisation and planning.
"""

from __future__ import annotations

import itertools
import json
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from importlib import metadata
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from joinedup.disclosure import (
    SUPPRESSED_MARK,
    DisclosurePolicy,
    control_count,
    describe,
    format_count,
)
from joinedup.errors import ConfigurationError

FEATURES: tuple[str, ...] = (
    "age",
    "sex_male",
    "imd_decile",
    "ltc_count",
    "cms_general",
    "prior_ae_12m_count",
    "prior_emergency_12m_count",
    "prior_elective_12m_count",
    "prior_outpatient_12m_count",
    "prior_gp_12m_count",
    "medicines_count",
    "frailty_level",
)
"""Numeric and sex features every table carries; condition flags are added per call."""

OUTCOME_COUNT = "next_emergency_admissions"
PERSON_ID = "person_id"
TIERS: tuple[str, ...] = ("very_high", "high", "moderate", "low")
DEFAULT_TIER_SHARES: tuple[float, float, float] = (0.005, 0.045, 0.15)
CALIBRATION_TOLERANCE = 0.2
TOP_SHARE = 0.2

BASELINE_FEATURES: tuple[str, ...] = ("age", "sex_male")
AGE_BAND_YEARS = 5
AGE_BANDS = 19  # 0-4, 5-9, ..., 85-89, 90+

HYPERPARAMETERS: Mapping[str, Any] = MappingProxyType(
    {
        "loss": "log_loss",
        "max_iter": 200,
        "learning_rate": 0.05,
        "max_leaf_nodes": 15,
        "min_samples_leaf": 200,
        "l2_regularization": 1.0,
        "max_bins": 255,
        "early_stopping": False,
    }
)
"""Gradient boosting settings: fixed iterations (no early stopping) so a seed fixes the fit.

Small trees and a slow learning rate keep every decile's O/E within ±10% from ~100,000 people
and ±1% at ~1 million on synthetic data (about 20 s to fit 30 features on 2 cores); below
~50,000 the lowest decile can drift past ±20%.
"""

ModelKind = Literal["gradient_boosting", "age_sex_baseline"]

INTENDED_USE = (
    "Ranks people registered with the system's practices by their chance of an emergency "
    "hospital admission in the next 12 months, for direct care prioritisation (for example "
    "case-finding for proactive care) and for population planning. It supports, and does not "
    "replace, clinical judgement: it is not for making decisions about an individual on its own."
)
OUTCOME_DEFINITION = (
    "One or more emergency admissions in the 12 months after the index date "
    f"(`{OUTCOME_COUNT}` > 0). The top-20% share counts admissions, not people."
)


def feature_names(condition_columns: Sequence[str]) -> tuple[str, ...]:
    """The model's features: `FEATURES` then the condition flags in the order given.

    Raises ConfigurationError for a repeated name or one that clashes with another column.
    """
    conditions = tuple(condition_columns)
    names = FEATURES + conditions
    reserved = {PERSON_ID, OUTCOME_COUNT}
    clashes = sorted({c for c in conditions if c in FEATURES or c in reserved})
    if clashes:
        raise ConfigurationError(f"condition columns clash with other columns: {clashes}")
    repeated = sorted({c for c in conditions if conditions.count(c) > 1})
    if repeated:
        raise ConfigurationError(f"condition columns repeated: {repeated}")
    return names


def _column(table: pa.Table, name: str, purpose: str) -> NDArray[np.float64]:
    """One column as float64 (nulls become NaN); ConfigurationError naming it when absent."""
    if name not in table.column_names:
        raise ConfigurationError(f"column {name!r} ({purpose}) is missing from the table")
    values = pc.cast(table.column(name), pa.float64()).to_numpy()
    return np.asarray(values, dtype=np.float64)


def _matrix(table: pa.Table, names: Sequence[str]) -> NDArray[np.float64]:
    """The named feature columns as an (n, len(names)) float64 matrix."""
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise ConfigurationError(f"feature column(s) missing from the table: {missing}")
    x = np.empty((table.num_rows, len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        x[:, j] = _column(table, name, "feature")
    return x


def _outcome(table: pa.Table) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Admission counts and the binary outcome (count > 0); checks they are usable."""
    counts = _column(table, OUTCOME_COUNT, "outcome")
    if np.isnan(counts).any():
        raise ConfigurationError(f"column {OUTCOME_COUNT!r} has nulls")
    if (counts < 0).any():
        raise ConfigurationError(f"column {OUTCOME_COUNT!r} has negative counts")
    admissions = counts.astype(np.int64)
    y = (admissions > 0).astype(np.int64)
    if y.sum() == 0:
        raise ConfigurationError(f"no positive outcomes ({OUTCOME_COUNT} > 0) in the table")
    return admissions, y


def _age_sex_cell(table: pa.Table) -> NDArray[np.int64]:
    """Each row's age band × sex cell: 2 × band + sex_male, bands 0-4, 5-9, ..., 85-89, 90+."""
    age = _column(table, "age", "baseline feature")
    male = _column(table, "sex_male", "baseline feature")
    if np.isnan(age).any() or np.isnan(male).any():
        raise ConfigurationError("the age-sex baseline needs age and sex_male without nulls")
    band = np.clip(np.floor(age / AGE_BAND_YEARS), 0, AGE_BANDS - 1).astype(np.int64)
    cells: NDArray[np.int64] = band * 2 + (male > 0).astype(np.int64)
    return cells


@dataclass(frozen=True)
class RiskModel:
    """A fitted risk model and the columns it reads, so any table with them can be scored."""

    kind: ModelKind
    estimator: Any
    features: tuple[str, ...]
    seed: int

    def predict(self, table: pa.Table) -> NDArray[np.float64]:
        """Probability of an emergency admission in the next 12 months, one per row.

        Raises ConfigurationError naming any feature column the table lacks.
        """
        if self.kind == "age_sex_baseline":
            # One indicator per cell: score the 38 cells once, then look each row's cell up.
            cell_p = self.estimator.predict_proba(np.eye(AGE_BANDS * 2))[:, 1]
            p = np.asarray(cell_p, dtype=np.float64)[_age_sex_cell(table)]
        else:
            x = _matrix(table, self.features)
            p = np.asarray(self.estimator.predict_proba(x)[:, 1], dtype=np.float64)
        return p

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The estimator's settings, for the model card."""
        params: dict[str, Any] = self.estimator.get_params()
        return params


def fit_model(table: pa.Table, condition_columns: Sequence[str], *, seed: int = 0) -> RiskModel:
    """Fit the gradient-boosted risk model (`HYPERPARAMETERS`) on a training table.

    Deterministic for a given seed and table; binary flags enter as plain 0/1 features.
    """
    names = feature_names(condition_columns)
    x = _matrix(table, names)
    _, y = _outcome(table)
    if y.min() == 1:
        raise ConfigurationError("every person has the outcome; the model needs both classes")
    estimator = HistGradientBoostingClassifier(**HYPERPARAMETERS, random_state=seed)
    estimator.fit(x, y)
    return RiskModel("gradient_boosting", estimator, names, seed)


def fit_baseline(table: pa.Table, *, seed: int = 0) -> RiskModel:
    """Fit the age–sex comparator: logistic regression on one indicator per age band × sex.

    It reproduces each band–sex cell's observed rate (to within a negligible ridge penalty); a
    cell absent from training gets the intercept alone.
    """
    cell = _age_sex_cell(table)
    _, y = _outcome(table)
    if y.min() == 1:
        raise ConfigurationError("every person has the outcome; the model needs both classes")
    # Fit on cell totals with weights: identical to the person-level fit, and instant.
    n_cells = AGE_BANDS * 2
    people = np.bincount(cell, minlength=n_cells).astype(np.float64)
    events = np.bincount(cell, weights=y.astype(np.float64), minlength=n_cells)
    present = np.flatnonzero(people > 0)
    eye = np.eye(n_cells)[present]
    x = np.vstack([eye, eye])
    target = np.concatenate([np.ones(len(present)), np.zeros(len(present))])
    weight = np.concatenate([events[present], people[present] - events[present]])
    keep = weight > 0
    estimator = LogisticRegression(C=1e4, max_iter=5000, tol=1e-10, random_state=seed)
    estimator.fit(x[keep], target[keep], sample_weight=weight[keep])
    return RiskModel("age_sex_baseline", estimator, BASELINE_FEATURES, seed)


def _descending_order(scores: NDArray[Any], person_id: NDArray[Any]) -> NDArray[np.intp]:
    """Row indices from highest to lowest score, ties by person_id ascending."""
    s = np.asarray(scores, dtype=np.float64)
    ids = np.asarray(person_id)
    if s.ndim != 1 or ids.shape != s.shape:
        raise ConfigurationError("scores and person_id must be 1-D arrays of the same length")
    if np.isnan(s).any():
        raise ConfigurationError("scores contain NaN")
    return np.lexsort((ids, -s))


def _floor_share(share: Decimal, n: int) -> int:
    """floor(share × n), with the share taken as written in decimal (so 0.05 × 1000 = 50)."""
    return int((share * n).to_integral_value(rounding="ROUND_FLOOR"))


@dataclass(frozen=True)
class Decile:
    """One tenth of people ranked by predicted risk (10 = highest), for calibration."""

    decile: int
    people: int
    expected: float
    observed: int

    @property
    def ratio(self) -> float:
        """Observed over expected people with an admission (NaN when nothing was expected)."""
        return self.observed / self.expected if self.expected > 0 else math.nan

    def within(self, tolerance: float = CALIBRATION_TOLERANCE) -> bool:
        """Whether the observed/expected ratio is within 1 ± tolerance."""
        r = self.ratio
        return not math.isnan(r) and 1 - tolerance <= r <= 1 + tolerance


@dataclass(frozen=True)
class Metrics:
    """How well a model's predictions match the outcomes of one population."""

    people: int
    events: int
    admissions: int
    auroc: float
    brier: float
    top20_share: float
    calibration: tuple[Decile, ...]

    @property
    def prevalence(self) -> float:
        """Share of people with one or more emergency admissions."""
        return self.events / self.people

    def calibrated(self, tolerance: float = CALIBRATION_TOLERANCE) -> bool:
        """Whether every decile's observed/expected ratio is within 1 ± tolerance."""
        return all(d.within(tolerance) for d in self.calibration)


def evaluate(
    model: RiskModel, table: pa.Table, scores: NDArray[np.float64] | None = None
) -> Metrics:
    """Score a table with outcomes and measure discrimination, accuracy and calibration.

    Pass `scores` when the table has already been scored by `model`, to save predicting again.
    Deciles and the top 20% rank people by predicted risk with ties broken by person_id.
    Raises ConfigurationError when the outcome column is absent or has no positive outcomes.
    """
    admissions, y = _outcome(table)
    if y.min() == 1:
        raise ConfigurationError("every person has the outcome; AUROC needs both classes")
    p = model.predict(table) if scores is None else np.asarray(scores, dtype=np.float64)
    if len(p) != table.num_rows:
        raise ConfigurationError(f"{len(p)} scores for {table.num_rows} rows")
    if PERSON_ID not in table.column_names:
        raise ConfigurationError(f"column {PERSON_ID!r} (tie-breaker) is missing from the table")
    ids = table.column(PERSON_ID).to_numpy()
    n = len(p)
    order = _descending_order(p, ids)
    decile_of = np.empty(n, dtype=np.int64)
    decile_of[order] = 10 - (np.arange(n) * 10) // n
    people = np.bincount(decile_of, minlength=11)[1:]
    expected = np.bincount(decile_of, weights=p, minlength=11)[1:]
    observed = np.bincount(decile_of, weights=y.astype(np.float64), minlength=11)[1:]
    calibration = tuple(
        Decile(i + 1, int(people[i]), float(expected[i]), int(observed[i])) for i in range(10)
    )
    top = order[: _floor_share(Decimal(str(TOP_SHARE)), n)]
    total = int(admissions.sum())
    return Metrics(
        people=n,
        events=int(y.sum()),
        admissions=total,
        auroc=float(roc_auc_score(y, p)),
        brier=float(np.mean((p - y) ** 2)),
        top20_share=float(admissions[top].sum() / total),
        calibration=calibration,
    )


def _check_shares(shares: Sequence[float]) -> tuple[Decimal, ...]:
    """Tier shares as decimals; ConfigurationError unless positive, one per tier, sum < 1."""
    if len(shares) != len(TIERS) - 1:
        raise ConfigurationError(
            f"tier shares need {len(TIERS) - 1} values ({', '.join(TIERS[:-1])}); got {len(shares)}"
        )
    if any(not math.isfinite(s) or s <= 0 for s in shares):
        raise ConfigurationError(f"tier shares must be positive; got {tuple(shares)}")
    decimals = tuple(Decimal(str(s)) for s in shares)
    if sum(decimals) >= 1:
        raise ConfigurationError(f"tier shares must sum to less than 1; got {tuple(shares)}")
    return decimals


def tier_bounds(shares: Sequence[float], n: int) -> tuple[int, ...]:
    """How many of `n` people ranked by risk fall in each tier or a higher one, for every tier
    but `low`: floor(cumulative share × n), the share taken as written in decimal."""
    bounds = []
    total = Decimal(0)
    for share in _check_shares(shares):
        total += share
        bounds.append(_floor_share(total, n))
    return tuple(bounds)


def _tier_sizes(shares: Sequence[float], n: int) -> tuple[int, ...]:
    """People per tier: boundaries at floor(cumulative share × n); `low` takes the rest."""
    bounds = (0, *tier_bounds(shares, n), n)
    return tuple(b - a for a, b in itertools.pairwise(bounds))


def assign_tiers(
    scores: NDArray[Any],
    person_id: NDArray[Any],
    shares: Sequence[float] = DEFAULT_TIER_SHARES,
) -> NDArray[np.str_]:
    """The tier of each person (`TIERS`): top 0.5% very_high, next 4.5% high, next 15% moderate.

    People are ranked by score descending, ties by person_id ascending; tier boundaries fall at
    floor(cumulative share × n), so the top 0.5 + 4.5 = 5% is floor(0.05 × n) people.
    """
    order = _descending_order(scores, person_id)
    sizes = _tier_sizes(shares, len(order))
    ranked = np.repeat(np.array(TIERS), sizes)
    tiers = np.empty(len(order), dtype="<U9")
    tiers[order] = ranked
    return tiers


@dataclass(frozen=True)
class TierSummary:
    """One tier's configured share, size and score range in a scored population."""

    tier: str
    share: float
    people: int
    min_score: float
    max_score: float


def summarise_tiers(
    scores: NDArray[Any],
    person_id: NDArray[Any],
    shares: Sequence[float] = DEFAULT_TIER_SHARES,
) -> tuple[TierSummary, ...]:
    """Size and score range of each tier, for the model card; `min_score` is the entry threshold."""
    s = np.asarray(scores, dtype=np.float64)
    tiers = assign_tiers(s, person_id, shares)
    decimals = _check_shares(shares)
    configured = [float(d) for d in decimals] + [float(1 - sum(decimals))]
    out = []
    for name, share in zip(TIERS, configured, strict=True):
        members = s[tiers == name]
        out.append(
            TierSummary(
                tier=name,
                share=share,
                people=len(members),
                min_score=float(members.min()) if len(members) else math.nan,
                max_score=float(members.max()) if len(members) else math.nan,
            )
        )
    return tuple(out)


def _n(count: int | float, policy: DisclosurePolicy | None = None) -> str:
    """A count as the card prints it: through disclosure control (the card is published)."""
    return format_count(int(count), policy or DisclosurePolicy())


def _ratio(numerator: int | None, denominator: float, places: int) -> float | None:
    """A published ratio: None when its numerator is suppressed or its denominator is 0."""
    if numerator is None or not denominator > 0:
        return None
    return round(numerator / denominator, places)


def _shown(value: float | None, template: str) -> str:
    """A published figure as the card prints it: "*" where suppressed."""
    return SUPPRESSED_MARK if value is None else template.format(value)


def _outside(count: int) -> str:
    """The calibration verdict in words: how many deciles fall outside ±20%."""
    if count == 0:
        return "within ±20% in every decile"
    return f"outside ±20% in {count} of 10 deciles"


def software_versions() -> tuple[tuple[str, str], ...]:
    """Versions of Python and the libraries that fit and score the model, for the model card."""
    versions = [("python", platform.python_version())]
    for package in ("joinedup", "numpy", "scikit-learn", "scipy", "pyarrow"):
        try:
            versions.append((package, metadata.version(package)))
        except metadata.PackageNotFoundError:
            versions.append((package, "unknown"))
    return tuple(versions)


def _num(value: float, places: int = 6) -> float | None:
    """A float rounded for JSON; None when not finite."""
    return round(value, places) if math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    """Hyperparameter values as plain JSON types (anything else becomes its repr)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _num(value)
    return repr(value)


def _metrics_dict(m: Metrics, policy: DisclosurePolicy) -> dict[str, Any]:
    """The metrics as published: every count disclosure-controlled, and every share or ratio
    of counts (prevalence, top-20% share, O/E) computed from the published counts, so none
    gives a count back more exactly than it is shown; a ratio on a suppressed count is null."""
    people = control_count(m.people, policy)
    events = control_count(m.events, policy)
    admissions = control_count(m.admissions, policy)
    top = control_count(round(m.top20_share * m.admissions), policy)
    return {
        "people": people,
        "events": events,
        "admissions": admissions,
        "prevalence": _ratio(events, people or 0, 4),
        "auroc": _num(m.auroc),
        "brier": _num(m.brier),
        "top20_share": _ratio(top, admissions or 0, 3),
        "calibrated_within_20pct": m.calibrated(),
        "calibration": [
            {
                "decile": d.decile,
                "people": control_count(d.people, policy),
                "expected": _num(d.expected, 1),
                "observed": (observed := control_count(d.observed, policy)),
                "ratio": _ratio(observed, round(d.expected, 1), 2),
            }
            for d in m.calibration
        ],
    }


@dataclass(frozen=True)
class ModelCard:
    """What the risk model is for, how it was built and validated, and how well it did.

    `passes_acceptance` is the release gate: better than age–sex on AUROC and Brier, and every
    validation decile calibrated within ±20%.
    """

    train_index_date: date
    validation_index_date: date
    population: str
    synthetic: bool
    features: tuple[str, ...]
    condition_columns: tuple[str, ...]
    seed: int
    hyperparameters: tuple[tuple[str, Any], ...]
    validation: Metrics
    baseline_validation: Metrics
    train: Metrics | None
    tiers: tuple[TierSummary, ...]
    software: tuple[tuple[str, str], ...]
    intended_use: str = INTENDED_USE
    outcome: str = OUTCOME_DEFINITION
    #: The card is published: its counts, and the ratios built on them, follow this policy.
    policy: DisclosurePolicy = field(default_factory=DisclosurePolicy)

    @property
    def deciles_outside(self) -> int:
        """How many validation deciles have an observed/expected ratio outside ±20%."""
        return sum(not d.within(CALIBRATION_TOLERANCE) for d in self.validation.calibration)

    @property
    def calibration_summary(self) -> str:
        """E.g. "outside ±20% in 7 of 10 deciles" (from the exact counts, for the operator)."""
        return _outside(self.deciles_outside)

    @property
    def calibrated(self) -> bool:
        """Whether every validation decile's observed/expected ratio is within ±20%."""
        return self.validation.calibrated(CALIBRATION_TOLERANCE)

    @property
    def passes_acceptance(self) -> bool:
        """Model beats age–sex on validation AUROC and Brier and is calibrated within ±20%."""
        return (
            self.validation.auroc > self.baseline_validation.auroc
            and self.validation.brier < self.baseline_validation.brier
            and self.calibrated
        )

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-serialisable data: ISO dates, floats rounded to 4–6 places."""
        return {
            "model": "Emergency admission risk, 12 months (gradient boosting)",
            "intended_use": self.intended_use,
            "outcome": self.outcome,
            "population": self.population,
            "synthetic_data": self.synthetic,
            "train_index_date": self.train_index_date.isoformat(),
            "validation_index_date": self.validation_index_date.isoformat(),
            "features": list(self.features),
            "condition_columns": list(self.condition_columns),
            "seed": self.seed,
            "hyperparameters": {k: _jsonable(v) for k, v in self.hyperparameters},
            "metrics": {
                "train": _metrics_dict(self.train, self.policy) if self.train else None,
                "validation": _metrics_dict(self.validation, self.policy),
                "baseline_validation": _metrics_dict(self.baseline_validation, self.policy),
            },
            "calibrated_within_20pct": self.calibrated,
            "passes_acceptance": self.passes_acceptance,
            "tiers": [
                {
                    "tier": t.tier,
                    "share": _num(t.share),
                    "people": control_count(t.people, self.policy),
                    "min_score": _num(t.min_score),
                    "max_score": _num(t.max_score),
                }
                for t in self.tiers
            ],
            "software": dict(self.software),
        }

    def to_json(self) -> str:
        """`to_dict()` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        """The card as a readable Markdown document."""
        v, b, t = self.validation, self.baseline_validation, self.train
        lines = [
            "# Model card: emergency admission risk (12 months)",
            "",
            "## Intended use",
            "",
            self.intended_use,
            "",
            "## Outcome",
            "",
            self.outcome,
            "",
            "## Population and validation design",
            "",
            self.population + (" **The data are synthetic.**" if self.synthetic else ""),
            "",
            f"- Training index date: {self.train_index_date.isoformat()}"
            + (f" ({_n(t.people)} people, prevalence {t.prevalence:.1%})" if t else ""),
            f"- Validation index date: {self.validation_index_date.isoformat()} "
            f"({_n(v.people)} people, prevalence {v.prevalence:.1%})",
            "",
            "Temporal validation: the model is fitted on people at the training index date with "
            "outcomes in the following 12 months, then scored on the population at the later "
            "validation index date using only features known then, and compared with what "
            "happened in the 12 months after it.",
            "",
            "## Features",
            "",
            ", ".join(f"`{f}`" for f in self.features),
            "",
            "Gradient boosting (scikit-learn HistGradientBoostingClassifier), seed "
            f"{self.seed}: "
            + ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters if k in HYPERPARAMETERS)
            + ".",
            "",
            "## Performance",
            "",
        ]
        header = "| Metric | Model (validation) | Age–sex baseline (validation) |"
        rule = "|---|---:|---:|"
        if t:
            header += " Model (training) |"
            rule += "---:|"
        lines += [header, rule]
        for label, attr, fmt in (
            ("AUROC", "auroc", "{:.3f}"),
            ("Brier score", "brier", "{:.4f}"),
            ("Top-20% share of admissions", "top20_share", "{:.1%}"),
        ):
            row = f"| {label} | {fmt.format(getattr(v, attr))} | {fmt.format(getattr(b, attr))} |"
            if t:
                row += f" {fmt.format(getattr(t, attr))} |"
            lines.append(row)
        lines += [
            "",
            "### Calibration by decile of predicted risk (validation, 10 = highest)",
            "",
            "Counts of people here and below pass disclosure control "
            f"({describe(self.policy)}; * where suppressed); O/E is the published observed "
            "count over the expected, and is suppressed with it.",
            "",
            "| Decile | People | Expected | Observed | O/E |",
            "|---:|---:|---:|---:|---:|",
        ]
        published = _metrics_dict(v, self.policy)["calibration"]
        lines += [
            f"| {d['decile']} | {_shown(d['people'], '{:,}')} | {d['expected']:,.1f} "
            f"| {_shown(d['observed'], '{:,}')} | {_shown(d['ratio'], '{:.2f}')} |"
            for d in published
        ]
        # The verdict counts deciles on the exact figures, as acceptance does, but names none:
        # saying whether a decile with a suppressed count is within ±20% would narrow it down.
        verdict = (
            "Every decile's observed/expected ratio is within ±20%."
            if not self.deciles_outside
            else f"Calibration is {self.calibration_summary} (judged on the exact counts; the "
            "table shows the published ones)."
        )
        lines += [
            "",
            verdict,
            "",
            "Acceptance (beats age–sex on AUROC and Brier, calibrated within ±20%): "
            + ("**passed**." if self.passes_acceptance else "**failed**."),
            "",
            "## Risk tiers (validation population)",
            "",
            "People are ranked by predicted risk (ties by person id); tier boundaries fall at "
            "floor(cumulative share × people).",
            "",
            "| Tier | Share | People | Threshold (lowest risk) | Highest risk |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {s.tier} | {s.share:.1%} | {_n(s.people)} | {s.min_score:.4f} | {s.max_score:.4f} |"
            for s in self.tiers
        ]
        lines += [
            "",
            "## Limitations",
            "",
        ]
        if self.synthetic:
            lines.append(
                "- Built and validated on synthetic data: the figures show the method works, "
                "not how the model will perform on real records."
            )
        lines += [
            "- No external validation: only a later population from the same system was used.",
            "- Feature drift: coding, service changes and case-mix shift over time; re-validate "
            "on each new index date before use and refit when calibration falls outside ±20%.",
            "- People who die or leave during the follow-up year without an emergency admission "
            "count as having none if the input table keeps them; admissions missing from the "
            "linked hospital data are not counted.",
            "",
            "## Software",
            "",
            ", ".join(f"{name} {version}" for name, version in self.software),
            "",
        ]
        return "\n".join(lines)


def model_card(
    model: RiskModel,
    *,
    validation: Metrics,
    baseline_validation: Metrics,
    tiers: Sequence[TierSummary],
    train_index_date: date,
    validation_index_date: date,
    population: str,
    synthetic: bool,
    train: Metrics | None = None,
    software: Sequence[tuple[str, str]] | None = None,
    policy: DisclosurePolicy | None = None,
) -> ModelCard:
    """Assemble the model card from the fitted model and its evaluations.

    Condition columns, seed and settings come from the model; `software` defaults to the
    installed versions.
    """
    if validation_index_date <= train_index_date:
        raise ConfigurationError(
            "validation index date must be after the training index date "
            f"({validation_index_date} <= {train_index_date})"
        )
    params = model.hyperparameters
    return ModelCard(
        train_index_date=train_index_date,
        validation_index_date=validation_index_date,
        population=population,
        synthetic=synthetic,
        features=model.features,
        condition_columns=tuple(f for f in model.features if f not in FEATURES),
        seed=model.seed,
        hyperparameters=tuple(sorted(params.items())),
        validation=validation,
        baseline_validation=baseline_validation,
        train=train,
        tiers=tuple(tiers),
        software=tuple(software) if software is not None else software_versions(),
        policy=policy or DisclosurePolicy(),
    )
