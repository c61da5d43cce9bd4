"""`joinedup finance`: need, allocation and what-if, computed into warehouse tables.

Each step reads the warehouse and the settings and returns Arrow tables; `store` writes a
step's tables in one engine transaction, so a failed or interrupted run leaves the previous
tables as they were and a re-run replaces them whole.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
from sqlglot import exp

from joinedup import __version__
from joinedup.disclosure import DisclosurePolicy, apply, restate
from joinedup.errors import ConfigurationError, InputError
from joinedup.finance.allocation import PlaceYear, allocate_year, plan, targets
from joinedup.finance.budgets import (
    delegate,
    place_budget_table,
    pooled_budget_table,
    pooled_budgets,
)
from joinedup.finance.calendar import first_day, last_day, next_year, start_year, year_of
from joinedup.finance.capitation import (
    COST_COMPONENTS,
    POPULATION_COMPONENTS,
    Estimate,
    estimate,
)
from joinedup.finance.config import FinanceConfig, dump_config, parse_config
from joinedup.finance.control_total import (
    Category,
    ControlTotalResult,
    Ledger,
    LedgerRow,
    control_total,
    control_total_tables,
    ledger_table,
    synthetic_ledger,
)
from joinedup.finance.defaults import Collaborative, Organisation, Profile
from joinedup.finance.guarantees import (
    GuaranteeResult,
    MhisResult,
    community_guarantee,
    guarantees_table,
    mhis,
)
from joinedup.finance.money import GBP_TYPE, pence, pounds
from joinedup.finance.need import (
    COMPONENTS,
    Level,
    NeedIndex,
    PracticeNeed,
    from_published,
    indices_within,
)
from joinedup.finance.payment import contract_payment, payments_table
from joinedup.finance.risk_share import outcomes_by_scenario, risk_share_table
from joinedup.finance.sectors import PUBLISHED_COMPONENT_SHARES, SECTORS, split_sectors
from joinedup.finance.whatif import (
    ActivityChange,
    ActivityShift,
    PlaceEffect,
    apply_driver,
    describe,
    place_costs,
)
from joinedup.reference.practices import PracticeRecord
from joinedup.warehouse import Engine
from joinedup.warehouse.analytics.cohort import bigint, col, date_literal, table
from joinedup.warehouse.report import period_of

#: Tables the finance commands write, and what each holds.
FINANCE_TABLES: dict[str, str] = {
    "finance_run": "the run: when, settings, need source, version",
    "finance_practice_need": "weighted population per practice and component",
    "finance_need_index": "need index per practice, PCN and place (and the ICB) per component",
    "finance_cost_curve": "cost per head by age band and sex per component (published)",
    "finance_need_adjustment": "additional need by IMD quintile and conditions (published)",
    "finance_health_inequalities": "deaths under 75 against expected by IMD quintile (published)",
    "finance_allocation": "baseline, target, allocation and head-count split per place and year",
    "finance_sector_allocation": "each place's allocation by sector and year",
    "finance_what_if": "cost, need and allocation effect of each what-if scenario per place",
    "finance_guarantee": "mental health investment standard and community guarantee tests",
    "finance_place_budget": "each place's allocation by sector, delegated and held at system",
    "finance_pooled_budget": "pooled budgets with councils (BCF, Section 75) by partner",
    "finance_payment_line": "blended payment of each contract, line by line with the sum",
    "finance_risk_share": "each party's position under the risk-share agreement per scenario",
    "finance_ledger": "plan and actual by organisation, month and category (imported or synthetic)",
    "finance_control_total": "position, forecast outturn and break-even rule per organisation",
    "finance_variance": "variance to date by organisation and cause",
    "finance_control_total_waterfall": "steps from planned system surplus to forecast outturn",
}


def gbp_column(values: Iterable[int | None]) -> pa.Array:
    return pa.array([None if v is None else pounds(v) for v in values], GBP_TYPE)


# --- need -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """Practices' weighted populations from one source, and what sectors weigh them by."""

    source: Literal["population", "published"]
    practices: list[PracticeNeed]
    component_shares: dict[str, float]
    estimate: Estimate | None = None

    @property
    def icb_code(self) -> str:
        return self.practices[0].icb_code

    def place_totals(self, component: str) -> tuple[dict[str, float], dict[str, float]]:
        """Weighted population of `component` and head count per place."""
        need: dict[str, float] = defaultdict(float)
        heads: dict[str, float] = defaultdict(float)
        for r in self.practices:
            need[r.place_code] += r.weighted[component]
            heads[r.place_code] += r.population
        return dict(need), dict(heads)

    def indices(self, level: Level) -> list[NeedIndex]:
        return indices_within(self.practices, level, self.icb_code)


def need_from_population(engine: Engine, config: FinanceConfig) -> Need:
    """Need estimated from the warehouse's population (`finance.capitation`)."""
    fitted = estimate(engine, config.capitation)
    shares = _shares(config, fitted.model.cost_pence)
    return Need("population", fitted.practices, shares, fitted)


def need_from_published(
    engine: Engine, practices: Sequence[PracticeRecord], config: FinanceConfig
) -> Need:
    """Need from NHS England's practice file, for the warehouse's own ICB and PCNs."""
    icb = _first(engine, "ics")["ics_code"]
    pcn_of = {
        r["practice_code"]: r["pcn_code"]
        for r in engine.execute(
            exp.select("practice_code", "pcn_code").from_("practice")
        ).to_pylist()
    }
    mine = [p for p in practices if p.icb_code == icb]
    if not mine:
        raise InputError(
            "--reference-dir",
            f"the practice file has no practices of this warehouse's ICB {icb!r}: published "
            "weights need a footprint built from reference data (joinedup footprint "
            "from-reference)",
        )
    rows = from_published(mine, pcn_of)
    unknown = sorted({r.practice_code for r in rows} - set(pcn_of))
    if unknown:
        raise InputError(
            "--reference-dir",
            f"{len(unknown)} practices of {icb} are not in the warehouse's footprint "
            f"(e.g. {', '.join(unknown[:5])}): rebuild it from the same practice file",
        )
    shares = {c: float(v) for c, v in (config.allocation.sectors.component_shares or {}).items()}
    return Need("published", rows, shares or dict(PUBLISHED_COMPONENT_SHARES))


def _shares(config: FinanceConfig, cost_pence: Mapping[str, float]) -> dict[str, float]:
    configured = config.allocation.sectors.component_shares
    if configured:
        return {c: float(v) for c, v in configured.items()}
    total = math.fsum(cost_pence[c] for c in COST_COMPONENTS)
    return {c: cost_pence[c] / total for c in COST_COMPONENTS} if total else {}


def need_tables(need: Need, policy: DisclosurePolicy) -> dict[str, pa.Table]:
    """finance_practice_need and finance_need_index, and the model tables for population need."""
    components = [
        c for c in (*POPULATION_COMPONENTS, *COMPONENTS) if c in need.practices[0].weighted
    ]
    components = list(dict.fromkeys(components))
    practice = pa.table(
        {
            "practice_code": [r.practice_code for r in need.practices],
            "practice_name": [r.practice_name for r in need.practices],
            "pcn_code": [r.pcn_code for r in need.practices],
            "place_code": [r.place_code for r in need.practices],
            "registered_count": pa.array([r.population for r in need.practices], pa.float64()),
            **{
                f"{c}_wp": pa.array([r.weighted[c] for r in need.practices], pa.float64())
                for c in components
            },
        }
    )
    rows: list[NeedIndex] = []
    for level in ("place", "pcn", "practice"):
        rows += need.indices(level)
    total_pop = math.fsum(r.population for r in need.practices)
    index = pa.table(
        {
            "level": [r.level for r in rows],
            "code": [r.code for r in rows],
            "name": [r.name for r in rows],
            "parent_code": [r.parent_code for r in rows],
            "registered_count": pa.array([r.population for r in rows], pa.float64()),
            "population_share": pa.array([r.population / total_pop for r in rows], pa.float64()),
            **{
                f"{c}_wp": pa.array([r.weighted[c] for r in rows], pa.float64()) for c in components
            },
            **{
                f"{c}_index": pa.array([r.index[c] for r in rows], pa.float64()) for c in components
            },
        }
    )
    out = {"finance_practice_need": practice, "finance_need_index": index}
    if need.estimate is not None:
        out |= model_tables(need.estimate, policy)
    return out


def model_tables(fitted: Estimate, policy: DisclosurePolicy) -> dict[str, pa.Table]:
    """The need model's curves, ratios and SMR, disclosure-controlled."""
    m = fitted.model
    curve_rows = [
        {
            "component": c,
            "age_band": band,
            "sex": sex,
            "people_count": m.curve_people[(band, sex)],
            "cost_per_head_gbp": Decimal(repr(round(value / 100, 2))).quantize(Decimal("0.01")),
        }
        for c in COST_COMPONENTS
        for (band, sex), value in sorted(
            m.curves[c].items(), key=lambda kv: (_band(kv[0][0]), kv[0][1])
        )
    ]
    curves = pa.Table.from_pylist(
        curve_rows,
        schema=pa.schema(
            [("component", pa.string()), ("age_band", pa.string()), ("sex", pa.string()),
             ("people_count", pa.int64()), ("cost_per_head_gbp", GBP_TYPE)]
        ),
    )  # fmt: skip
    ratio_rows = [
        {
            "component": c,
            "imd_quintile": q,
            "ltc_band": band,
            "people_count": m.ratio_people[(q, band)],
            "ratio": value,
        }
        for c in COST_COMPONENTS
        for (q, band), value in sorted(m.ratios[c].items())
    ]
    ratios = pa.Table.from_pylist(
        ratio_rows,
        schema=pa.schema(
            [("component", pa.string()), ("imd_quintile", pa.int32()), ("ltc_band", pa.string()),
             ("people_count", pa.int64()), ("ratio", pa.float64())]
        ),
    )  # fmt: skip
    hi = pa.Table.from_pylist(
        [
            {
                "imd_quintile": q,
                "people_count": n,
                "deaths_count": d,
                "expected_deaths_count": e,
                "smr": m.smr[q],
            }
            for q, (d, e, n) in sorted(m.smr_deaths.items())
        ],
        schema=pa.schema(
            [("imd_quintile", pa.int32()), ("people_count", pa.int64()),
             ("deaths_count", pa.int64()), ("expected_deaths_count", pa.float64()),
             ("smr", pa.float64())]
        ),
    )  # fmt: skip
    return {
        "finance_cost_curve": apply(
            curves, policy, counts=["people_count"],
            rates={"cost_per_head_gbp": ("people_count",)}, group_by=["component"],
        ),
        "finance_need_adjustment": apply(
            ratios, policy, counts=["people_count"], rates={"ratio": ("people_count",)},
            group_by=["component"],
        ),
        # The SMR is restated on the published deaths: an exact SMR times the expected deaths
        # (both published) would give the exact deaths back.
        "finance_health_inequalities": restate(
            hi,
            apply(
                hi, policy, counts=["people_count", "deaths_count"],
                rates={"expected_deaths_count": ("people_count",),
                       "smr": ("deaths_count", "people_count")},
            ),
            {"smr": ("deaths_count", None)},
            digits=2,
        ),
    }  # fmt: skip


def _band(label: str) -> int:
    return int(label.rstrip("+").split("-")[0])


# --- allocation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Allocation:
    """The allocation path and each place's sectors in every year."""

    path: list[PlaceYear]
    sectors: dict[tuple[str, str], dict[str, int]]  # (year, place) -> sector -> pence
    baseline_year: str
    baseline: dict[str, int]
    place_names: dict[str, str]
    indices: dict[str, dict[str, float]]  # place -> component -> index

    def years(self) -> list[str]:
        return list(dict.fromkeys(r.year for r in self.path))

    def place_allocation(self, year: str) -> dict[str, int]:
        return {r.place_code: r.allocation_pence for r in self.path if r.year == year}

    def total(self, year: str) -> int:
        if year == self.baseline_year:
            return sum(self.baseline.values())
        return sum(self.place_allocation(year).values())


def allocate(need: Need, config: FinanceConfig) -> Allocation:
    """Targets from need, the pace-of-change path from the baselines, and sector splits."""
    settings = config.allocation
    place_need, heads = need.place_totals(settings.need_component)
    baseline = {k: pence(v) for k, v in settings.baselines_gbp.items()}
    unknown = sorted(set(baseline) ^ set(place_need))
    if unknown:
        raise InputError(
            "allocation.baselines_gbp",
            f"places differ from the need's places: {', '.join(unknown)}",
        )
    years = [(y.year, pence(y.total_gbp)) for y in settings.years]
    path = plan(years, baseline, place_need, heads, settings.pace.policy())
    place_index = {n.code: n.index for n in need.indices("place")}
    names = {n.code: n.name for n in need.indices("place")}
    sectors: dict[tuple[str, str], dict[str, int]] = {}
    for year, amounts in [(settings.baseline_year, baseline)] + [
        (y, {r.place_code: r.allocation_pence for r in path if r.year == y}) for y, _ in years
    ]:
        for place, amount in amounts.items():
            sectors[(year, place)] = split_sectors(
                amount, place_index[place], need.component_shares, settings.sectors
            )
    return Allocation(path, sectors, settings.baseline_year, baseline, names, place_index)


def allocation_tables(result: Allocation) -> dict[str, pa.Table]:
    path = result.path
    allocation = pa.table(
        {
            "financial_year": [r.year for r in path],
            "place_code": [r.place_code for r in path],
            "place_name": [result.place_names.get(r.place_code, r.place_code) for r in path],
            "baseline_gbp": gbp_column(r.baseline_pence for r in path),
            "target_gbp": gbp_column(r.target_pence for r in path),
            "allocation_gbp": gbp_column(r.allocation_pence for r in path),
            "head_count_gbp": gbp_column(r.head_count_pence for r in path),
            "distance_from_target": pa.array([float(r.distance_from_target) for r in path]),
            "growth": pa.array([float(r.growth) for r in path]),
        }
    )
    keys = sorted(result.sectors, key=lambda k: (start_year(k[0]), k[1]))
    sector_rows = [(y, p, s, result.sectors[(y, p)].get(s, 0)) for y, p in keys for s in SECTORS]
    sectors = pa.table(
        {
            "financial_year": [r[0] for r in sector_rows],
            "place_code": [r[1] for r in sector_rows],
            "sector": [r[2] for r in sector_rows],
            "allocation_gbp": gbp_column(r[3] for r in sector_rows),
        }
    )
    return {"finance_allocation": allocation, "finance_sector_allocation": sectors}


# --- guarantees and budgets -----------------------------------------------------------------


def guarantee_tables(result: Allocation, config: FinanceConfig) -> dict[str, pa.Table]:
    """MHIS and the community guarantee against allocation growth, delegated place budgets and
    pooled budgets, for the settings that have them."""
    tables: dict[str, pa.Table] = {}
    years = [result.baseline_year, *result.years()]
    tests: list[MhisResult | GuaranteeResult] = []
    if config.mhis is not None:
        year = config.mhis.year
        before = years[years.index(year) - 1]
        tests.append(mhis(config.mhis, result.total(before), result.total(year)))
    if config.community_guarantee is not None:
        year = config.community_guarantee.year
        before = years[years.index(year) - 1]
        tests.append(
            community_guarantee(
                config.community_guarantee, result.total(before), result.total(year)
            )
        )
    if tests:
        tables["finance_guarantee"] = guarantees_table(tests)
    budget_year = config.budget_year()
    sectors = {p: s for (y, p), s in result.sectors.items() if y == budget_year}
    if config.delegation is not None:
        budgets = delegate(sectors, config.delegation, result.place_names)
        tables["finance_place_budget"] = _with_year(place_budget_table(budgets), budget_year)
    if config.pooled_budgets is not None and config.pooled_budgets.pools:
        pools = pooled_budgets(config.pooled_budgets, sectors, result.place_names)
        tables["finance_pooled_budget"] = _with_year(pooled_budget_table(pools), budget_year)
    return tables


def _with_year(data: pa.Table, year: str) -> pa.Table:
    return data.add_column(0, "financial_year", pa.array([year] * data.num_rows, pa.string()))


# --- what-if --------------------------------------------------------------------------------


def what_if(
    need: Need, config: FinanceConfig, drivers: Sequence[ActivityChange | ActivityShift]
) -> list[PlaceEffect]:
    """Each driver's effect per place: modelled cost, need index, target and first-year
    allocation, against the baseline model."""
    fitted = need.estimate
    if fitted is None:
        raise ConfigurationError(
            "what-if changes the activity behind need estimated from the population; it does "
            "not apply to published weights"
        )
    settings = config.allocation
    first_total = pence(settings.years[0].total_gbp)
    baseline = {k: pence(v) for k, v in settings.baselines_gbp.items()}
    policy = settings.pace.policy()
    component = settings.need_component
    known_places = {r.place_code for r in need.practices}

    def outcome(
        practices: Sequence[PracticeNeed],
    ) -> tuple[dict[str, int], dict[str, int], dict[str, float]]:
        wp: dict[str, float] = defaultdict(float)
        for r in practices:
            wp[r.place_code] += r.weighted[component]
        target = targets(first_total, wp)
        allocation = allocate_year(first_total, baseline, target, policy)
        index = {
            n.code: n.index[component] for n in indices_within(practices, "place", need.icb_code)
        }
        return target, allocation, index

    base_target, base_allocation, base_index = outcome(fitted.practices)
    base_cost = place_costs(fitted.cells, fitted)
    names = {r.place_code: r.place_name for r in fitted.practices}
    effects: list[PlaceEffect] = []
    for driver in drivers:
        if driver.place is not None and driver.place not in known_places:
            raise InputError(
                f"what_if {driver.name!r}",
                f"unknown place {driver.place!r}; the footprint has "
                + ", ".join(sorted(known_places)),
            )
        cells = apply_driver(fitted.cells, driver)
        changed = fitted.refit(cells)
        target, allocation, index = outcome(changed.practices)
        cost = place_costs(cells, fitted)
        effects += [
            PlaceEffect(
                scenario=driver.name,
                place_code=place,
                place_name=names.get(place, place),
                baseline_cost_pence=round(base_cost.get(place, 0.0)),
                scenario_cost_pence=round(cost.get(place, 0.0)),
                baseline_index=base_index[place],
                scenario_index=index[place],
                baseline_target_pence=base_target[place],
                scenario_target_pence=target[place],
                baseline_allocation_pence=base_allocation[place],
                scenario_allocation_pence=allocation[place],
            )
            for place in sorted(base_target)
        ]
    return effects


def what_if_table(
    effects: Sequence[PlaceEffect], drivers: Sequence[ActivityChange | ActivityShift], year: str
) -> pa.Table:
    names = {e.place_code: e.place_name for e in effects}
    described = {d.name: describe(d, names) for d in drivers}
    return pa.table(
        {
            "scenario": [e.scenario for e in effects],
            "description": [described.get(e.scenario, "") for e in effects],
            "financial_year": [year] * len(effects),
            "place_code": [e.place_code for e in effects],
            "place_name": [e.place_name for e in effects],
            "baseline_cost_gbp": gbp_column(e.baseline_cost_pence for e in effects),
            "scenario_cost_gbp": gbp_column(e.scenario_cost_pence for e in effects),
            "cost_change_gbp": gbp_column(
                e.scenario_cost_pence - e.baseline_cost_pence for e in effects
            ),
            "baseline_index": pa.array([e.baseline_index for e in effects], pa.float64()),
            "scenario_index": pa.array([e.scenario_index for e in effects], pa.float64()),
            "baseline_target_gbp": gbp_column(e.baseline_target_pence for e in effects),
            "scenario_target_gbp": gbp_column(e.scenario_target_pence for e in effects),
            "target_change_gbp": gbp_column(
                e.scenario_target_pence - e.baseline_target_pence for e in effects
            ),
            "allocation_change_gbp": gbp_column(
                e.scenario_allocation_pence - e.baseline_allocation_pence for e in effects
            ),
        }
    )


def last_run_settings(engine: Engine) -> FinanceConfig:
    """The settings of the warehouse's last finance run (finance_run.settings_yaml): a what-if
    asked of a served warehouse runs on the settings behind the figures it shows."""
    if "finance_run" not in engine.table_names():
        raise ConfigurationError("the warehouse has no finance run: run `joinedup finance run`")
    runs = engine.execute(exp.select("run_at", "settings_yaml").from_("finance_run")).to_pylist()
    if not runs:
        raise ConfigurationError("the warehouse's finance_run table is empty: run it again")
    last = max(runs, key=lambda r: str(r["run_at"]))
    return parse_config(str(last["settings_yaml"] or ""), "finance_run.settings_yaml")


# --- storing --------------------------------------------------------------------------------


def _first(engine: Engine, name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = engine.execute(
        exp.select("*").from_(table(name)).limit(1)
    ).to_pylist()
    if not rows:
        raise ConfigurationError(f"the warehouse has no {name} table rows: build it first")
    return rows[0]


def footprint_names(engine: Engine) -> tuple[dict[str, str], dict[str, str]]:
    """Place and organisation codes of the warehouse's footprint, with their names, in code
    order: settings made from them (baselines, pools, budgets) must not follow the order an
    engine happens to read rows in."""
    places = {
        r["place_code"]: r["place_name"]
        for r in engine.execute(
            exp.select("place_code", "place_name").from_("place").order_by("place_code")
        ).to_pylist()
    }
    orgs = {
        r["organisation_code"]: r["organisation_name"]
        for r in engine.execute(
            exp.select("organisation_code", "organisation_name")
            .from_("organisation")
            .order_by("organisation_code")
        ).to_pylist()
    }
    return places, orgs


def warehouse_profile(engine: Engine) -> Profile:
    """The footprint and today's registered population per place, for default settings."""
    places, _ = footprint_names(engine)
    # People registered today when population health has run, else the footprint's list sizes
    # (a BIGINT on every engine: DuckDB's sum of integers is a HUGEINT).
    if "phm_person" in engine.table_names():
        counted = exp.select("place_code", bigint(exp.Count(this=exp.Star())).as_("people")).from_(
            "phm_person"
        )
    else:
        counted = exp.select(
            "place_code", bigint(exp.Sum(this=exp.column("registered_count"))).as_("people")
        ).from_("practice")
    rows = engine.execute(counted.group_by("place_code")).to_pylist()
    population = {r["place_code"]: int(r["people"]) for r in rows if r["place_code"] in places}
    orgs = organisations(engine)
    members: dict[str, list[str]] = defaultdict(list)
    for r in engine.execute(
        exp.select("collaborative_code", "organisation_code")
        .from_("collaborative_member")
        .order_by("collaborative_code", "organisation_code")
    ).to_pylist():
        members[r["collaborative_code"]].append(r["organisation_code"])
    collaboratives = tuple(
        Collaborative(
            r["collaborative_code"], r["collaborative_name"], r["place_code"],
            tuple(members.get(r["collaborative_code"], [])),
        )
        for r in engine.execute(
            exp.select("collaborative_code", "collaborative_name", "place_code")
            .from_("collaborative")
            .order_by("collaborative_code")
        ).to_pylist()
    )  # fmt: skip
    return Profile(
        places, population, orgs, provider_costs(engine), collaboratives,
        full_year_activity(engine),
    )  # fmt: skip


def organisations(engine: Engine) -> tuple[Organisation, ...]:
    """The footprint's organisations with their kind and place, in code order."""
    return tuple(
        Organisation(
            r["organisation_code"], r["organisation_name"], r["organisation_type"], r["place_code"]
        )
        for r in engine.execute(
            exp.select("organisation_code", "organisation_name", "organisation_type", "place_code")
            .from_("organisation")
            .order_by("organisation_code")
        ).to_pylist()
    )


def provider_costs(engine: Engine) -> dict[str, int]:
    """Each provider's activity cost (pence) in the last year of the warehouse."""
    end = period_of(engine).end
    start = end.replace(year=end.year - 1) + timedelta(days=1)
    a = "a"
    rows = engine.execute(
        exp.select(
            col("provider_code", a).as_("provider_code"),
            # Rounded before the cast: DuckDB rounds a decimal cast to an integer, Spark cuts it.
            bigint(
                exp.Round(
                    this=exp.Sum(
                        this=exp.Mul(this=col("cost_gbp", a), expression=exp.Literal.number(100))
                    )
                )
            ).as_("pence"),
        )
        .from_(table("activity", a))
        .where(
            exp.and_(
                exp.GTE(this=col("start_date", a), expression=date_literal(start)),
                exp.LTE(this=col("start_date", a), expression=date_literal(end)),
                col("provider_code", a).is_(exp.null()).not_(),
            )
        )
        .group_by(col("provider_code", a))
    ).to_pylist()
    return {r["provider_code"]: int(r["pence"] or 0) for r in rows}


def activity_counts(engine: Engine, year: str) -> dict[str, dict[str, int]]:
    """Activity by provider and point of delivery starting in financial year `year`: what a
    contract pays for (every patient treated, opt-outs included: payment is not planning)."""
    a = "a"
    start = col("start_date", a)
    rows = engine.execute(
        exp.select(
            col("provider_code", a).as_("provider_code"),
            col("point_of_delivery", a).as_("pod"),
            exp.cast(exp.Count(this=exp.Star()), exp.DataType.Type.BIGINT).as_("n"),
        )
        .from_(table("activity", a))
        .where(
            exp.and_(
                exp.GTE(this=start, expression=date_literal(first_day(year))),
                exp.LTE(this=start.copy(), expression=date_literal(last_day(year))),
                col("provider_code", a).is_(exp.null()).not_(),
            )
        )
        .group_by(col("provider_code", a), col("point_of_delivery", a))
    ).to_pylist()
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows:
        out[r["provider_code"]][r["pod"]] = int(r["n"])
    return dict(out)


def full_year_activity(engine: Engine) -> dict[str, dict[str, dict[str, int]]]:
    """Activity counts of every financial year the warehouse holds in full."""
    period = period_of(engine)
    first, last = period.start, period.end
    out = {}
    year = year_of(first)
    while last_day(year) <= last:
        if first_day(year) >= first:
            out[year] = activity_counts(engine, year)
        year = next_year(year)
    return out


# --- payments -------------------------------------------------------------------------------


def payment_tables(engine: Engine, config: FinanceConfig) -> dict[str, pa.Table]:
    """Each configured contract paid for its year's warehouse activity (finance_payment_line)."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    payments = []
    for contract in config.contracts:
        if contract.year not in counts:
            counts[contract.year] = activity_counts(engine, contract.year)
        actual = counts[contract.year].get(contract.provider_code, {})
        payments.append(contract_payment(contract, actual))
    return {"finance_payment_line": payments_table(payments)} if payments else {}


# --- risk share -----------------------------------------------------------------------------


def risk_share_tables(config: FinanceConfig) -> pa.Table:
    """The agreement applied to every scenario in the settings (finance_risk_share)."""
    settings = config.risk_share
    if settings is None:
        raise ConfigurationError("the settings have no risk_share section")
    return risk_share_table(outcomes_by_scenario(settings.agreement, settings.scenarios))


# --- control total --------------------------------------------------------------------------


def stored_ledger(engine: Engine, names: Mapping[str, str]) -> Ledger | None:
    """The ledger last imported into the warehouse, if any."""
    if "finance_ledger" not in engine.table_names():
        return None
    rows = engine.execute(exp.select("*").from_("finance_ledger")).to_pylist()
    if not rows:
        return None
    return Ledger(
        tuple(
            LedgerRow(
                r["organisation_code"], r["financial_year"], int(r["month"]),
                Category(r["category"]), pence(r["plan_gbp"]),
                None if r["actual_gbp"] is None else pence(r["actual_gbp"]),
            )
            for r in rows
        ),
        names,
    )  # fmt: skip


def control_total_step(
    engine: Engine, config: FinanceConfig, ledger: Ledger | None = None
) -> tuple[ControlTotalResult, dict[str, pa.Table]]:
    """The control total from `ledger` (an import), else the warehouse's stored ledger, else a
    synthetic one made from the settings; its tables include the ledger used."""
    settings = config.control_total
    if settings is None:
        raise ConfigurationError("the settings have no control_total section")
    orgs = organisations(engine)
    names = {o.code: o.name for o in orgs}
    used = ledger or stored_ledger(engine, names)
    if used is None or settings.year not in used.years:
        used = synthetic_ledger(
            [(o.code, o.name, o.kind) for o in orgs],
            settings.year,
            settings.months_reported,
            settings.seed,
            {k: pence(v) for k, v in settings.scale_gbp.items()},
        )
    result = control_total(used, settings.year, settings.rules, settings.forecast_method)
    return result, {"finance_ledger": ledger_table(used), **control_total_tables(result)}


def run_table(config: FinanceConfig, need_source: str, steps: Sequence[str]) -> pa.Table:
    return pa.table(
        {
            "run_id": [uuid.uuid4().hex[:12]],
            "run_at": [datetime.now(UTC).isoformat(timespec="seconds")],
            "joinedup_version": [__version__],
            "need_source": [need_source],
            "steps": [json.dumps(list(steps))],
            "settings_yaml": [dump_config(config)],
        }
    )


def store(engine: Engine, tables: Mapping[str, pa.Table]) -> dict[str, int]:
    """Write `tables` in one transaction: all of them or none."""
    with engine.transaction():
        for name, data in tables.items():
            engine.load(name, data)
    return {name: data.num_rows for name, data in tables.items()}


def run_all(
    engine: Engine,
    config: FinanceConfig,
    *,
    published: Sequence[PracticeRecord] | None = None,
    ledger: Ledger | None = None,
    policy: DisclosurePolicy | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Every finance step into the warehouse, all or nothing: need (from the population, or
    from `published` weights), allocation to places and sectors, and the what-if scenarios.
    Returns rows written per table."""
    stage = on_stage or (lambda _: None)
    sdc = policy or DisclosurePolicy()
    stage("need" + (" from published weights" if published is not None else " from the population"))
    need = (
        need_from_published(engine, published, config)
        if published is not None
        else need_from_population(engine, config)
    )
    tables = need_tables(need, sdc)
    stage("allocation to places and sectors")
    allocation = allocate(need, config)
    tables |= allocation_tables(allocation)
    steps = ["need", "allocation"]
    stage("guarantees, delegated and pooled budgets")
    found = guarantee_tables(allocation, config)
    if found:
        tables |= found
        steps.append("guarantees")
    if config.what_if and need.estimate is not None:
        stage(f"what-if: {len(config.what_if)} scenarios")
        effects = what_if(need, config, config.what_if)
        year = config.allocation.years[0].year
        tables["finance_what_if"] = what_if_table(effects, config.what_if, year)
        steps.append("what_if")
    if config.contracts:
        stage(f"payments: {len(config.contracts)} contracts")
        tables |= payment_tables(engine, config)
        steps.append("payments")
    if config.risk_share is not None:
        stage(f"risk share: {len(config.risk_share.scenarios)} scenarios")
        tables["finance_risk_share"] = risk_share_tables(config)
        steps.append("risk_share")
    if config.control_total is not None:
        stage(f"control total {config.control_total.year}")
        tables |= control_total_step(engine, config, ledger)[1]
        steps.append("control_total")
    tables["finance_run"] = run_table(config, need.source, steps)
    return store(engine, tables)


__all__ = [
    "FINANCE_TABLES",
    "Allocation",
    "Need",
    "allocate",
    "allocation_tables",
    "footprint_names",
    "last_run_settings",
    "need_from_population",
    "need_from_published",
    "need_tables",
    "run_all",
    "run_table",
    "store",
    "what_if",
    "what_if_table",
]
