"""`joinedup phm run`: every population health output, computed into warehouse tables.

The run computes `phm_person` on three index dates: now (the day after the extract), a year
ago and two years ago. The emergency admission model trains on two years ago (outcome: the
following year) and is validated on a year ago (outcome: the last year), then scores everyone
now. Segment counts, transitions, inequalities and the Core20PLUS5 gap table pass disclosure
control before they are stored; worklists are identifiable and stored for direct care only.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import yaml
from sqlglot import exp

from joinedup import indicators as ind
from joinedup.disclosure import DisclosurePolicy, Nesting, apply, format_count
from joinedup.errors import ConfigurationError, JoinedupError
from joinedup.population import inequalities as ineq
from joinedup.population import risk, scoring
from joinedup.population.codelists import PhmCodeLists, load_codelists
from joinedup.population.conditions import CMS_NAMES, phm_person_steps
from joinedup.population.config import PhmConfig, load_config
from joinedup.population.history import Window, emergency_outcome
from joinedup.population.segmentation import segment_counts, segment_transitions
from joinedup.population.worklists import worklist_evidence, worklist_rows
from joinedup.warehouse import Engine
from joinedup.warehouse.analytics.cohort import col, table
from joinedup.warehouse.report import period_of

#: Tables `phm run` writes, and what each holds.
PHM_TABLES: dict[str, str] = {
    "phm_person": "one row per person registered on the index date (pseudonymous)",
    "phm_person_previous": "the same a year before (for transitions and mortality)",
    "phm_risk": "risk score and tier per person (pseudonymous)",
    "phm_segment_counts": "segment counts by place, PCN, age band, IMD quintile (published)",
    "phm_segment_transitions": "segment a year ago by segment now (published)",
    "phm_risk_tiers": "people by risk tier (published)",
    "phm_inequalities": "age-standardised rates with 95% CIs by group (published)",
    "phm_inequality_index": "slope and relative index of inequality by measure (published)",
    "phm_core20plus5": "Core20PLUS5 gap table (published)",
    "phm_indicator_values": "indicators by area and year, 95% CIs, vs England (published)",
    "phm_worklist": "case-finding worklists (identifiable, direct care only)",
    "phm_run": "the run: dates, settings, code list versions and model card",
}

#: The run's scores before tiers are added: an intermediate (not a `phm_` table), dropped once
#: `phm_risk` is stored.
SCORES_SCRATCH = "risk_score_scratch"


@dataclass
class PhmResult:
    run_id: str
    index_date: date
    card: risk.ModelCard
    rows: dict[str, int] = field(default_factory=dict)


def _extract_date(engine: Engine) -> tuple[date, date, bool]:
    """The history of the latest build (`period_of`, the one reader of the build record)."""
    try:
        period = period_of(engine)
    except JoinedupError as err:
        raise ConfigurationError(str(err)) from err
    return period.start, period.end, period.source == "synthetic"


def _person_snapshot(
    engine: Engine,
    name: str,
    when: date,
    lists: PhmCodeLists,
    extract: date,
    settings: PhmConfig,
) -> None:
    """Materialise `phm_person` on `when` as `name`, in steps that join one per-person
    summary at a time (bounded memory at millions of people), dropping the steps after."""
    steps, finish = phm_person_steps(when, lists, extract, prefix="phm_person_step")
    for step, query in steps:
        engine.materialise(step, query)
    engine.materialise(name, with_core20plus(finish, settings))
    for step, _ in steps:
        engine.drop(step)


def with_core20plus(query: exp.Query, config: PhmConfig) -> exp.Query:
    """`query` (a phm_person select) with core20, plus_group and core20plus columns."""
    q = "q"
    settings = config.core20plus5
    core20 = exp.In(
        this=col("imd_decile", q), expressions=[exp.convert(d) for d in settings.core20_deciles]
    )
    plus_tests: list[exp.Expr] = []
    for group in settings.plus_groups:
        tests: list[exp.Expr] = []
        if group.ethnic_groups:
            tests.append(
                exp.In(
                    this=col("ethnic_group", q),
                    expressions=[exp.convert(g) for g in group.ethnic_groups],
                )
            )
        tests += [exp.EQ(this=col(f, q), expression=exp.convert(1)) for f in group.flags]
        plus_tests.append(exp.or_(*tests))
    plus: exp.Expr = exp.or_(*plus_tests) if plus_tests else exp.false()

    def as_int(test: exp.Expr) -> exp.Expr:
        return exp.cast(
            exp.Case().when(test, exp.convert(1)).else_(exp.convert(0)), exp.DataType.Type.INT
        )

    query.set("order", None)
    return exp.select(
        exp.Column(this=exp.Star(), table=exp.to_identifier(q)),
        as_int(core20).as_("core20"),
        as_int(plus).as_("plus_group"),
        as_int(exp.or_(core20.copy(), plus.copy())).as_("core20plus"),
    ).from_(query.subquery(q))


def _features(source: str, window: Window | None, planning: bool) -> exp.Select:
    """The model's features from a phm_person table (and the outcome after `window`'s index
    date when given); `planning` leaves out people who have opted out."""
    p = "p"
    columns: list[exp.Expr] = [
        col("person_id", p).as_("person_id"),
        *[col(f, p).as_(f) for f in risk.FEATURES if f != "sex_male"],
        exp.cast(
            exp.Case()
            .when(exp.EQ(this=col("sex", p), expression=exp.convert("male")), exp.convert(1))
            .else_(exp.convert(0)),
            exp.DataType.Type.INT,
        ).as_("sex_male"),
        *[col(c, p).as_(c) for c in CMS_NAMES],
    ]
    query = exp.select(*columns).from_(table(source, p))
    if window is not None:
        outcome = emergency_outcome(window)
        count = exp.Coalesce(this=col(risk.OUTCOME_COUNT, "o"), expressions=[exp.Literal.number(0)])
        query = query.select(count.as_(risk.OUTCOME_COUNT)).join(
            outcome.subquery("o"),
            on=exp.EQ(this=col("person_id", p), expression=col("person_id", "o")),
            join_type="LEFT",
        )
    if planning:
        query = query.where(exp.Not(this=col("national_data_opt_out", p)))
    return query


@dataclass(frozen=True)
class Sample:
    """A seeded sample of a population, fetched for fitting or validating the model."""

    rows: pa.Table
    population: int

    def describe(self, policy: DisclosurePolicy) -> str:
        """The sample in words, "a seeded sample of N of M people" or "all M people", its
        counts disclosure-controlled."""
        whole = format_count(self.population, policy)
        if self.rows.num_rows == self.population:
            return f"all {whole} people"
        return f"a seeded sample of {format_count(self.rows.num_rows, policy)} of {whole} people"


def _sample(engine: Engine, features: exp.Select, seed: int, cap: int) -> Sample:
    """At most `cap` rows of `features`, chosen in the engine by `scoring.sample_key`."""
    counted = exp.select(
        exp.cast(exp.Count(this=exp.Star()), exp.DataType.Type.BIGINT).as_("people")
    ).from_(features.copy().subquery("f"))
    population = int(engine.execute(counted).column("people")[0].as_py())
    return Sample(engine.execute(scoring.sampled(features, seed, cap)), population)


def _pcn_places(engine: Engine) -> dict[str, str]:
    """Each PCN's place, for disclosure control across the place → PCN nesting."""
    query = exp.select(
        col("pcn_code", "n").as_("pcn_code"), col("place_code", "n").as_("place_code")
    )
    return {
        r["pcn_code"]: r["place_code"]
        for r in engine.execute(query.from_(table("pcn", "n"))).to_pylist()
    }


def segment_nesting(pcn_places: dict[str, str]) -> list[Nesting]:
    """How segment counts add up, segment by segment: every breakdown (place, PCN, age band,
    IMD quintile) to the system row, and each PCN to its place."""
    to_system = [
        Nesting("dimension", "group_value", child, "system", "all", within=("segment",))
        for child in ("place_code", "pcn_code", "age_band", "imd_quintile")
    ]
    return [*to_system, ineq.pcn_nesting(pcn_places, "segment")]


def _store(engine: Engine, name: str, data: pa.Table, rows: dict[str, int]) -> None:
    engine.load(name, data)
    rows[name] = data.num_rows


def _all_or_nothing(run: Callable[..., PhmResult]) -> Callable[..., PhmResult]:
    """Run inside one engine transaction, so an error or interruption leaves the previous
    run's tables as they were."""

    @functools.wraps(run)
    def wrapped(engine: Engine, **kwargs: Any) -> PhmResult:
        with engine.transaction():
            return run(engine, **kwargs)

    return wrapped


@_all_or_nothing
def run_phm(
    engine: Engine,
    *,
    config: PhmConfig | None = None,
    codes: PhmCodeLists | None = None,
    policy: DisclosurePolicy | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> PhmResult:
    """Compute every population health output into `engine`'s warehouse tables, all or
    nothing."""
    settings = config or load_config()
    lists = codes or load_codelists()
    sdc = policy or DisclosurePolicy()
    stage = on_stage or (lambda _: None)
    start, extract, synthetic = _extract_date(engine)
    now = extract + timedelta(days=1)
    year_ago = now - timedelta(days=365)
    two_years_ago = year_ago - timedelta(days=365)
    if two_years_ago - timedelta(days=365) < start - timedelta(days=1):
        raise ConfigurationError(
            f"the risk model needs three years of history; the warehouse has {start} to {extract}"
        )
    rows: dict[str, int] = {}

    stage(f"conditions and segments on {now} and {year_ago}")
    for name, when in (("phm_person", now), ("phm_person_previous", year_ago)):
        _person_snapshot(engine, name, when, lists, extract, settings)
        rows[name] = engine.count(name)
    stage(f"risk model: training on {two_years_ago}, validating on {year_ago}")
    _person_snapshot(engine, "phm_person_train", two_years_ago, lists, extract, settings)
    seed = settings.risk.seed
    # Different draws for fitting and validating: the same seed would pick largely the same
    # people in both years.
    train = _sample(
        engine,
        _features("phm_person_train", Window(two_years_ago, extract), True),
        seed,
        settings.risk.max_train_people,
    )
    # Indicators for each year while all three snapshots exist (each year's start is the next).
    stage("indicators by area and year: 95% CIs, England and parent comparisons, trends")
    snapshots = ("phm_person", "phm_person_previous", "phm_person_train")
    _store(engine, ind.TABLE, ind.published_values(engine, now, snapshots, sdc), rows)
    engine.drop("phm_person_train")
    stage(f"risk model: fitting, and validating on {year_ago}")
    validation = _sample(
        engine,
        _features("phm_person_previous", Window(year_ago, extract), True),
        seed + 1,
        settings.risk.max_validation_people,
    )
    model = risk.fit_model(train.rows, CMS_NAMES, seed=seed)
    baseline = risk.fit_baseline(train.rows, seed=seed)
    val_scores = model.predict(validation.rows)
    summary = risk.summarise_tiers(
        val_scores, validation.rows.column("person_id").to_numpy(), settings.risk.tier_shares
    )
    card = risk.model_card(
        model,
        validation=risk.evaluate(model, validation.rows, val_scores),
        baseline_validation=risk.evaluate(baseline, validation.rows),
        train=risk.evaluate(model, train.rows),
        tiers=summary,
        train_index_date=two_years_ago,
        validation_index_date=year_ago,
        population=(
            f"People registered on {year_ago}, opt-outs excluded: validated on "
            f"{validation.describe(sdc)}; trained on {train.describe(sdc)} registered on "
            f"{two_years_ago} (samples chosen from person_id and seed {seed})."
        ),
        synthetic=synthetic,
        policy=sdc,
    )
    # The samples are done with: free them before the population-sized steps, so the process
    # holds only DuckDB's pool and the model while scoring.
    del train, validation, val_scores
    stage("scoring the population and assigning risk tiers")
    engine.map_batches(
        SCORES_SCRATCH,
        _features("phm_person", None, False),
        scoring.scorer(model),
        scoring.SCORES_SCHEMA,
    )
    scored = engine.count(SCORES_SCRATCH)
    engine.materialise(
        "phm_risk", scoring.tiered(SCORES_SCRATCH, settings.risk.tier_shares, scored)
    )
    engine.drop(SCORES_SCRATCH)
    rows["phm_risk"] = scored
    opted_in = exp.Not(this=col("national_data_opt_out", "p"))
    tier_counts = engine.execute(
        exp.select(
            col("risk_tier", "r").as_("risk_tier"),
            exp.cast(exp.Count(this=exp.Star()), exp.DataType.Type.BIGINT).as_("people_count"),
        )
        .from_(table("phm_risk", "r"))
        .join(
            table("phm_person", "p"),
            on=exp.EQ(this=col("person_id", "r"), expression=col("person_id", "p")),
        )
        .where(opted_in)
        .group_by(col("risk_tier", "r"))
    )
    order = {t: i for i, t in enumerate(risk.TIERS)}
    tier_rows = sorted(tier_counts.to_pylist(), key=lambda r: order[r["risk_tier"]])
    _store(
        engine,
        "phm_risk_tiers",
        apply(pa.Table.from_pylist(tier_rows), sdc, counts=["people_count"]),
        rows,
    )

    stage("segment counts and transitions")
    counts = engine.execute(segment_counts())
    pcn_places = _pcn_places(engine)
    _store(
        engine,
        "phm_segment_counts",
        apply(
            counts,
            sdc,
            counts=["people_count"],
            group_by=["dimension", "group_value"],
            nested=segment_nesting(pcn_places),
        ),
        rows,
    )
    moves = engine.execute(segment_transitions())
    _store(
        engine,
        "phm_segment_transitions",
        apply(moves, sdc, counts=["people_count"], group_by=["from_segment"]),
        rows,
    )

    stage("inequalities: age-standardised rates, slope index, Core20PLUS5")
    published = ineq.publish_rates(engine.execute(ineq.band_counts(now)), now, sdc, pcn_places)
    # The slope index is fitted to the published rates, so it too rests on published figures.
    _store(engine, "phm_inequality_index", ineq.slope_index(published), rows)
    _store(engine, "phm_inequalities", published, rows)
    gaps = ineq.publish_gaps(engine.execute(ineq.gap_counts()), sdc)
    _store(engine, "phm_core20plus5", gaps, rows)

    stage("case-finding worklists")
    if settings.worklists:
        evidence = worklist_evidence(lists, now)
        engine.materialise("phm_worklist", worklist_rows(settings.worklists, evidence=evidence))
        rows["phm_worklist"] = engine.count("phm_worklist")
    else:
        engine.drop("phm_worklist")

    run_id = uuid.uuid4().hex[:12]
    run = pa.table(
        {
            "run_id": [run_id],
            "run_at": [datetime.now(UTC).isoformat(timespec="seconds")],
            "index_date": pa.array([now], pa.date32()),
            "validation_index_date": pa.array([year_ago], pa.date32()),
            "train_index_date": pa.array([two_years_ago], pa.date32()),
            "extract_date": pa.array([extract], pa.date32()),
            "settings_yaml": [yaml.safe_dump(settings.model_dump(by_alias=True), sort_keys=False)],
            "codelist_versions": [json.dumps(lists.versions())],
            "disclosure_policy": [json.dumps(sdc.model_dump())],
            "model_card_json": [card.to_json()],
            "model_card_markdown": [card.to_markdown()],
            "passes_acceptance": [card.passes_acceptance],
        }
    )
    _store(engine, "phm_run", run, rows)
    return PhmResult(run_id, now, card, rows)
