"""Weighted capitation estimated from the warehouse's own population.

NHS England weights each practice's list for need with national models; an ICS can do the same
from its own records, so that need follows its own population. The method, in
`docs/finance.md` with the figures of the demo ICS:

1. **Cost per person per component** over the year before the index date (the day after the
   extract), for everyone registered a year before it: general and acute (A&E, emergency and
   elective admissions, day cases, outpatients), community services, mental health and primary
   medical care from the activity's costs; prescribing from the issues in the year times a cost
   per item; maternity from pregnancies coded times a pathway price. Attributes (age, sex, IMD
   quintile, long-term conditions) are those a year before: the year's cost is predicted from
   what was known at its start, as NHS England's models do.
2. **Age-sex cost curve** per component: cost per head by five-year age band and sex.
3. **Additional need**: per component, observed over curve-expected cost in each cell of IMD
   quintile by long-term condition band (0, 1, 2, 3+ of the Cambridge conditions).
4. **Health inequalities**: the standardised mortality ratio under 75 of each IMD quintile
   (indirect age-sex standardisation), the stand-in for NHS England's avoidable mortality.
5. **Weighted populations**: each practice's list today weighted by curve x additional need
   (per component) or by the SMR (health inequalities), scaled so that every component sums to
   the system's population. Community services are half their own model and half general and
   acute, as NHS England's formula does. The overall weighted population combines the core
   components by their share of the modelled cost, with the health inequalities component
   given a configurable weight; primary medical care stands apart, as its own allocation does.

People with a national data opt-out never inform the weights: cost curves, ratios and the SMR
are fitted without them, and a practice's need per head is measured on its opted-in patients.
They are counted in list sizes, which are published head counts, not records. The heavy work
(one row per person) runs in the engine; Python sees only cells of at most a few thousand rows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from pydantic import Field, model_validator
from sqlglot import exp

from joinedup.errors import ConfigurationError
from joinedup.finance.money import pence
from joinedup.finance.need import PracticeNeed
from joinedup.finance.schema import FinanceModel, Pounds, Rate
from joinedup.population.history import Window, issues_in_window
from joinedup.warehouse import Engine
from joinedup.warehouse.analytics.cohort import (
    FIVE_YEAR_BANDS,
    age_band,
    band_labels,
    bigint,
    col,
    count_if,
    date_literal,
    table,
)
from joinedup.warehouse.schema import ACTIVITY_TYPES

#: Components estimated from the population, in the order tables show them.
POPULATION_COMPONENTS: tuple[str, ...] = (
    "general_and_acute", "community_services", "mental_health", "maternity",
    "health_inequalities", "prescribing", "final", "primary_medical_care",
)  # fmt: skip
#: Components with a cost model of their own (community services before its G&A half).
COST_COMPONENTS: tuple[str, ...] = (
    "general_and_acute", "community_services", "mental_health", "maternity", "prescribing",
    "primary_medical_care",
)  # fmt: skip
#: The components the overall (core) weighted population combines, health inequalities aside.
CORE_COMPONENTS: tuple[str, ...] = (
    "general_and_acute", "community_services", "mental_health", "maternity", "prescribing",
)  # fmt: skip
LTC_BANDS: tuple[str, ...] = ("0", "1", "2", "3+")
AGE_BANDS: tuple[str, ...] = tuple(band_labels(FIVE_YEAR_BANDS))
UNKNOWN_QUINTILE = 0


class CapitationSettings(FinanceModel):
    """How need is estimated from the population. Prices are approximate national figures;
    replace them with local ones where known."""

    activity_components: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "general_and_acute": [
                "ae_attendance",
                "emergency_admission",
                "elective_admission",
                "day_case",
                "outpatient_attendance",
            ],
            "community_services": ["community_contact"],
            "mental_health": ["mental_health_contact"],
            "primary_medical_care": ["gp_consultation"],
        },
        description="Activity types costed into each component (social care is the local "
        "authority's, not the NHS allocation's).",
    )
    #: NHSBSA Prescription Cost Analysis, England 2023/24: about 1.2 billion items at about
    #: £10 billion net ingredient cost (approximate).
    prescription_item_gbp: Pounds = Field(Decimal("8.60"), gt=0)
    #: NHS Payment Scheme maternity pathway: antenatal, delivery and postnatal (approximate).
    maternity_pathway_gbp: Pounds = Field(Decimal("4000.00"), gt=0)
    community_own_share: Rate = Field(
        Decimal("0.5"), ge=0, le=1, description="Share of community need from its own model."
    )
    #: Weight of the health inequalities component in the overall weighted population. A least
    #: squares fit of NHS England's 2025/26 Final WP on its components gives it about 5.1%.
    health_inequalities_weight: Rate = Field(Decimal("0.05"), ge=0, lt=1)
    health_inequalities_age_limit: int = Field(75, gt=0, le=120)

    @model_validator(mode="after")
    def _known_activity(self) -> CapitationSettings:
        for component, kinds in self.activity_components.items():
            if component not in COST_COMPONENTS or component in ("maternity", "prescribing"):
                allowed = "general_and_acute, community_services, mental_health, "
                raise ValueError(
                    f"activity_components.{component}: not an activity-costed component "
                    f"(use {allowed}primary_medical_care)"
                )
            unknown = sorted(set(kinds) - set(ACTIVITY_TYPES))
            if unknown:
                raise ValueError(
                    f"activity_components.{component}: unknown activity type(s) "
                    f"{', '.join(unknown)}; known: {', '.join(ACTIVITY_TYPES)}"
                )
        seen: dict[str, str] = {}
        for component, kinds in self.activity_components.items():
            for kind in kinds:
                if kind in seen:
                    raise ValueError(
                        f"activity_components: {kind} is in both {seen[kind]} and {component}"
                    )
                seen[kind] = component
        return self


@dataclass(frozen=True)
class Cell:
    """People of one age band, sex, IMD quintile, LTC band, place and segment a year before the
    index date, with what they used in the year after."""

    age_band: str
    sex: str
    imd_quintile: int
    ltc_band: str
    place_code: str
    segment: str
    people: int
    deaths_under_limit: int
    pregnancies: int
    prescription_issues: int
    activity_count: Mapping[str, float]
    activity_pence: Mapping[str, float]


@dataclass(frozen=True)
class NeedModel:
    """The fitted need model: curves, additional-need ratios, the SMR and component shares."""

    index_date: date
    curves: dict[str, dict[tuple[str, str], float]]  # component -> (age band, sex) -> pence/head
    curve_people: dict[tuple[str, str], int]
    ratios: dict[str, dict[tuple[int, str], float]]  # component -> (quintile, ltc band) -> ratio
    ratio_people: dict[tuple[int, str], int]
    smr: dict[int, float]
    smr_deaths: dict[int, tuple[int, float, int]]  # quintile -> (deaths, expected, people)
    shares: dict[str, float]  # overall weights of the core components and health inequalities
    cost_pence: dict[str, float]  # modelled cost per component in the fitting year
    people: int


@dataclass(frozen=True)
class PopulationCell:
    practice_code: str
    age_band: str
    sex: str
    imd_quintile: int
    ltc_band: str
    opted_out: bool
    people: int


@dataclass(frozen=True)
class Estimate:
    """Practices' weighted populations and the model behind them."""

    model: NeedModel
    practices: list[PracticeNeed]
    cells: list[Cell] = field(repr=False)
    population: list[PopulationCell] = field(repr=False)
    settings: CapitationSettings = field(default_factory=CapitationSettings)

    def refit(self, cells: Sequence[Cell]) -> Estimate:
        """The same population weighted by a model fitted on other cells (a what-if's)."""
        model = fit(cells, self.settings, self.model.index_date)
        practices = weighted_populations(model, self.population, self.practices, self.settings)
        return Estimate(model, practices, list(cells), self.population, self.settings)


# --- the engine part: cells --------------------------------------------------------------------


def _ltc_band(count: exp.Expr) -> exp.Expr:
    case = exp.Case()
    for n in (3, 2, 1):
        label = LTC_BANDS[n]
        case = case.when(
            exp.GTE(this=count.copy(), expression=exp.Literal.number(n)), exp.convert(label)
        )
    return case.else_(exp.convert("0"))


def _quintile(column: exp.Expr) -> exp.Expr:
    return exp.cast(
        exp.Coalesce(this=column, expressions=[exp.Literal.number(UNKNOWN_QUINTILE)]),
        exp.DataType.Type.INT,
    )


def _eq(column: exp.Expr, value: str) -> exp.Expr:
    return exp.EQ(this=column, expression=exp.convert(value))


def _on(left: str, right: str) -> exp.Expr:
    return exp.EQ(this=col("person_id", left), expression=col("person_id", right))


def _zero(value: exp.Expr) -> exp.Expr:
    return exp.Coalesce(this=value, expressions=[exp.Literal.number(0)])


def cell_query(index_date: date, extract_date: date, settings: CapitationSettings) -> exp.Select:
    """Cells of the people registered a year before `index_date` (phm_person_previous, opted
    out left out) with their activity, prescribing, pregnancies and deaths in the year to it."""
    window = Window(index_date, extract_date)
    start, end = date_literal(window.year_ago), date_literal(index_date)
    a, m, p, n, d = "a", "m", "p", "n", "d"
    kinds = list(ACTIVITY_TYPES)
    in_year = exp.and_(
        exp.GTE(this=col("start_date", a), expression=start),
        exp.LT(this=col("start_date", a), expression=end),
    )
    pence_of = bigint(
        exp.Round(this=exp.Mul(this=col("cost_gbp", a), expression=exp.Literal.number(100)))
    )
    activity = (
        exp.select(
            col("person_id", a).as_("person_id"),
            *[count_if(_eq(col("activity_type", a), k)).as_(f"{k}_count") for k in kinds],
            *[
                bigint(
                    _zero(
                        exp.Sum(
                            this=exp.Case()
                            .when(_eq(col("activity_type", a), k), pence_of.copy())
                            .else_(exp.Literal.number(0))
                        )
                    )
                ).as_(f"{k}_pence")
                for k in kinds
            ],
        )
        .from_(table("activity", a))
        .where(in_year)
        .group_by(col("person_id", a))
    )
    issues, in_window = issues_in_window(window, m)
    medicines = (
        exp.select(
            col("person_id", m).as_("person_id"),
            bigint(exp.Sum(this=issues)).as_("issues"),
        )
        .from_(table("medication", m))
        .where(*in_window)
        .group_by(col("person_id", m))
    )
    death = col("death_date", d)
    died = exp.and_(
        exp.GTE(this=death, expression=start.copy()),
        exp.LT(this=death.copy(), expression=end.copy()),
        exp.LT(
            this=col("age", p),
            expression=exp.Literal.number(settings.health_inequalities_age_limit),
        ),
    )
    keys = [
        age_band(col("age", p), FIVE_YEAR_BANDS),
        col("sex", p),
        _quintile(col("imd_quintile", p)),
        _ltc_band(col("ltc_count", p)),
        col("place_code", p),
        col("segment", p),
    ]
    names = ["age_band", "sex", "imd_quintile", "ltc_band", "place_code", "segment"]
    return (
        exp.select(
            *[k.copy().as_(name) for k, name in zip(keys, names, strict=True)],
            bigint(exp.Count(this=exp.Star())).as_("people"),
            count_if(died).as_("deaths_under_limit"),
            bigint(_zero(exp.Sum(this=col("pregnant", n)))).as_("pregnancies"),
            bigint(_zero(exp.Sum(this=col("issues", m)))).as_("prescription_issues"),
            *[bigint(_zero(exp.Sum(this=col(f"{k}_count", a)))).as_(f"{k}_count") for k in kinds],
            *[bigint(_zero(exp.Sum(this=col(f"{k}_pence", a)))).as_(f"{k}_pence") for k in kinds],
        )
        .from_(table("phm_person_previous", p))
        .join(activity.subquery(a), on=_on(p, a), join_type="LEFT")
        .join(medicines.subquery(m), on=_on(p, m), join_type="LEFT")
        .join(table("phm_person", n), on=_on(p, n), join_type="LEFT")
        .join(table("person", d), on=_on(p, d), join_type="LEFT")
        .where(exp.Not(this=col("national_data_opt_out", p)))
        .group_by(*keys)
    )


def population_query() -> exp.Select:
    """Today's registered population (phm_person) by practice and the model's cells."""
    p = "p"
    keys = [
        col("practice_code", p),
        age_band(col("age", p), FIVE_YEAR_BANDS),
        col("sex", p),
        _quintile(col("imd_quintile", p)),
        _ltc_band(col("ltc_count", p)),
        col("national_data_opt_out", p),
    ]
    names = ["practice_code", "age_band", "sex", "imd_quintile", "ltc_band", "opted_out"]
    return (
        exp.select(
            *[k.copy().as_(name) for k, name in zip(keys, names, strict=True)],
            bigint(exp.Count(this=exp.Star())).as_("people"),
        )
        .from_(table("phm_person", p))
        .group_by(*keys)
    )


def read_cells(rows: Iterable[Mapping[str, Any]]) -> list[Cell]:
    out = []
    for r in rows:
        out.append(
            Cell(
                age_band=str(r["age_band"]),
                sex=str(r["sex"]),
                imd_quintile=int(r["imd_quintile"]),
                ltc_band=str(r["ltc_band"]),
                place_code=str(r["place_code"]),
                segment=str(r["segment"]),
                people=int(r["people"]),
                deaths_under_limit=int(r["deaths_under_limit"]),
                pregnancies=int(r["pregnancies"]),
                prescription_issues=int(r["prescription_issues"]),
                activity_count={k: float(r[f"{k}_count"]) for k in ACTIVITY_TYPES},
                activity_pence={k: float(r[f"{k}_pence"]) for k in ACTIVITY_TYPES},
            )
        )
    return sorted(
        out, key=lambda c: (c.place_code, c.segment, c.age_band, c.sex, c.imd_quintile, c.ltc_band)
    )


# --- the model ---------------------------------------------------------------------------------


def component_cost(cell: Cell, settings: CapitationSettings) -> dict[str, float]:
    """The cell's modelled cost per component, in pence."""
    cost = {
        c: math.fsum(cell.activity_pence[k] for k in settings.activity_components.get(c, []))
        for c in COST_COMPONENTS
    }
    cost["prescribing"] = cell.prescription_issues * float(pence(settings.prescription_item_gbp))
    cost["maternity"] = cell.pregnancies * float(pence(settings.maternity_pathway_gbp))
    return cost


def fit(cells: Sequence[Cell], settings: CapitationSettings, index_date: date) -> NeedModel:
    """Curves, additional-need ratios, SMR and overall shares from the cells."""
    people = sum(c.people for c in cells)
    if people == 0:
        raise ConfigurationError(
            "no opted-in people registered a year before the index date: run joinedup phm run "
            "on a warehouse with at least two years of history"
        )
    costs = [component_cost(c, settings) for c in cells]
    curve_people: dict[tuple[str, str], int] = defaultdict(int)
    curve_cost: dict[str, dict[tuple[str, str], float]] = {
        c: defaultdict(float) for c in COST_COMPONENTS
    }
    for cell, cost in zip(cells, costs, strict=True):
        key = (cell.age_band, cell.sex)
        curve_people[key] += cell.people
        for c in COST_COMPONENTS:
            curve_cost[c][key] += cost[c]
    curves = {
        c: {k: curve_cost[c][k] / n for k, n in curve_people.items() if n > 0}
        for c in COST_COMPONENTS
    }
    ratio_people: dict[tuple[int, str], int] = defaultdict(int)
    observed: dict[str, dict[tuple[int, str], float]] = {
        c: defaultdict(float) for c in COST_COMPONENTS
    }
    expected: dict[str, dict[tuple[int, str], float]] = {
        c: defaultdict(float) for c in COST_COMPONENTS
    }
    for cell, cost in zip(cells, costs, strict=True):
        cell_key = (cell.imd_quintile, cell.ltc_band)
        ratio_people[cell_key] += cell.people
        for c in COST_COMPONENTS:
            observed[c][cell_key] += cost[c]
            expected[c][cell_key] += cell.people * curves[c][(cell.age_band, cell.sex)]
    ratios = {
        c: {k: observed[c][k] / e if (e := expected[c][k]) > 0 else 1.0 for k in ratio_people}
        for c in COST_COMPONENTS
    }
    smr, smr_deaths = _smr(cells)
    total_cost = {c: math.fsum(cost[c] for cost in costs) for c in COST_COMPONENTS}
    core = math.fsum(total_cost[c] for c in CORE_COMPONENTS)
    weight = float(settings.health_inequalities_weight)
    shares = {
        c: (1 - weight) * (total_cost[c] / core if core > 0 else 1 / len(CORE_COMPONENTS))
        for c in CORE_COMPONENTS
    }
    shares["health_inequalities"] = weight
    return NeedModel(
        index_date=index_date,
        curves=curves,
        curve_people=dict(curve_people),
        ratios=ratios,
        ratio_people=dict(ratio_people),
        smr=smr,
        smr_deaths=smr_deaths,
        shares=shares,
        cost_pence=total_cost,
        people=people,
    )


def _smr(cells: Sequence[Cell]) -> tuple[dict[int, float], dict[int, tuple[int, float, int]]]:
    """Deaths under the age limit against the age-sex expected, per IMD quintile."""
    people: dict[tuple[str, str], int] = defaultdict(int)
    deaths: dict[tuple[str, str], int] = defaultdict(int)
    for c in cells:
        people[(c.age_band, c.sex)] += c.people
        deaths[(c.age_band, c.sex)] += c.deaths_under_limit
    rate = {k: deaths[k] / n for k, n in people.items() if n > 0}
    seen: dict[int, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    for c in cells:
        row = seen[c.imd_quintile]
        row[0] += c.deaths_under_limit
        row[1] += c.people * rate[(c.age_band, c.sex)]
        row[2] += c.people
    smr = {q: (d / e if e > 0 else 1.0) for q, (d, e, _) in seen.items()}
    return smr, {q: (int(d), e, int(n)) for q, (d, e, n) in seen.items()}


def _mean(values: Mapping[Any, float], weights: Mapping[Any, int]) -> float:
    total = sum(weights.values())
    return (
        math.fsum(values[k] * weights[k] for k in values if k in weights) / total if total else 0.0
    )


def weighted_populations(
    model: NeedModel,
    population: Sequence[PopulationCell],
    practices: Sequence[PracticeNeed],
    settings: CapitationSettings,
) -> list[PracticeNeed]:
    """Each practice's weighted population per component from today's list.

    `practices` give each practice's codes and names (their `weighted` is ignored). A practice's
    need per head is the mean over its opted-in patients of curve x ratio (or the SMR); times its
    whole list, then scaled so every component sums to the system's population.
    """
    by_practice: dict[str, list[PopulationCell]] = defaultdict(list)
    for cell in population:
        by_practice[cell.practice_code].append(cell)
    fallback = {c: _mean(model.curves[c], model.curve_people) for c in COST_COMPONENTS}
    raw: dict[str, dict[str, float]] = {}
    heads: dict[str, float] = {}
    for practice in practices:
        cells = by_practice.get(practice.practice_code, [])
        everyone = sum(c.people for c in cells)
        opted_in = [c for c in cells if not c.opted_out]
        counted = sum(c.people for c in opted_in)
        heads[practice.practice_code] = float(everyone)
        per_head: dict[str, float] = {}
        for c in COST_COMPONENTS:
            need = math.fsum(
                cell.people
                * model.curves[c].get((cell.age_band, cell.sex), fallback[c])
                * model.ratios[c].get((cell.imd_quintile, cell.ltc_band), 1.0)
                for cell in opted_in
            )
            per_head[c] = need / counted if counted else fallback[c]
        smr = math.fsum(cell.people * model.smr.get(cell.imd_quintile, 1.0) for cell in opted_in)
        per_head["health_inequalities"] = smr / counted if counted else 1.0
        raw[practice.practice_code] = {c: v * everyone for c, v in per_head.items()}
    total_people = math.fsum(heads.values())
    scaled: dict[str, dict[str, float]] = {code: {} for code in raw}
    for c in (*COST_COMPONENTS, "health_inequalities"):
        total = math.fsum(r[c] for r in raw.values())
        for code, r in raw.items():
            scaled[code][c] = r[c] * total_people / total if total > 0 else heads[code]
    own = float(settings.community_own_share)
    out = []
    for practice in practices:
        wp = scaled[practice.practice_code]
        wp["community_services"] = (
            own * wp["community_services"] + (1 - own) * wp["general_and_acute"]
        )
        wp["final"] = math.fsum(model.shares[c] * wp[c] for c in model.shares)
        ordered = {c: wp[c] for c in POPULATION_COMPONENTS}
        out.append(replace(practice, population=heads[practice.practice_code], weighted=ordered))
    return out


def read_population(rows: Iterable[Mapping[str, Any]]) -> list[PopulationCell]:
    return [
        PopulationCell(
            practice_code=str(r["practice_code"]),
            age_band=str(r["age_band"]),
            sex=str(r["sex"]),
            imd_quintile=int(r["imd_quintile"]),
            ltc_band=str(r["ltc_band"]),
            opted_out=bool(r["opted_out"]),
            people=int(r["people"]),
        )
        for r in rows
    ]


def footprint_practices(engine: Engine) -> list[PracticeNeed]:
    """The footprint's practices with their PCN, place and ICB, weights still empty."""
    pr, pl, ic = "pr", "pl", "ic"
    rows = engine.execute(
        exp.select(
            col("practice_code", pr).as_("practice_code"),
            col("practice_name", pr).as_("practice_name"),
            col("pcn_code", pr).as_("pcn_code"),
            col("place_code", pr).as_("place_code"),
            col("place_name", pl).as_("place_name"),
            col("ics_code", ic).as_("ics_code"),
            col("ics_name", ic).as_("ics_name"),
        )
        .from_(table("practice", pr))
        .join(
            table("place", pl),
            on=exp.EQ(this=col("place_code", pr), expression=col("place_code", pl)),
        )
        .join(table("ics", ic), join_type="CROSS")
        .order_by(col("practice_code", pr))
    ).to_pylist()
    return [
        PracticeNeed(
            practice_code=r["practice_code"],
            practice_name=r["practice_name"],
            pcn_code=r["pcn_code"],
            place_code=r["place_code"],
            place_name=r["place_name"],
            icb_code=r["ics_code"],
            icb_name=r["ics_name"],
            population=0.0,
            weighted={},
        )
        for r in rows
    ]


def index_dates(engine: Engine) -> tuple[date, date]:
    """The population health run's index date and the warehouse's extract date."""
    if "phm_run" not in engine.table_names():
        raise ConfigurationError(
            "need from the population builds on population health: run joinedup phm run first"
        )
    got = engine.execute(
        exp.select(
            exp.Max(this=col("index_date", "r")).as_("index_date"),
            exp.Max(this=col("extract_date", "r")).as_("extract_date"),
        ).from_(table("phm_run", "r"))
    ).to_pylist()[0]
    if got["index_date"] is None:
        raise ConfigurationError("phm_run is empty: run joinedup phm run first")
    index: date = got["index_date"]
    extract: date = got["extract_date"]
    if index - timedelta(days=365) < date(1900, 1, 1):
        raise ConfigurationError(f"implausible index date {index}")
    return index, extract


def estimate(
    engine: Engine,
    settings: CapitationSettings | None = None,
    cells: Sequence[Cell] | None = None,
) -> Estimate:
    """Fit the need model on the warehouse (or on `cells` given, e.g. a what-if's) and weight
    every practice's list."""
    conf = settings or CapitationSettings()
    index, extract = index_dates(engine)
    found = (
        list(cells)
        if cells is not None
        else read_cells(engine.execute(cell_query(index, extract, conf)).to_pylist())
    )
    model = fit(found, conf, index)
    population = read_population(engine.execute(population_query()).to_pylist())
    practices = weighted_populations(model, population, footprint_practices(engine), conf)
    return Estimate(model, practices, found, population, conf)
