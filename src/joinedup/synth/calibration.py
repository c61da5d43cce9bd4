"""Does the synthetic population look like England? Compare generated marginals with targets.

A calibration run generates an England-shaped system (one place with national ages and every
deprivation decile equally), then measures it with the same canonical analytics every user runs,
and sets each figure beside its published target with a stated tolerance.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from joinedup.synth import condition_codelist, params
from joinedup.synth.generator import england_footprint
from joinedup.synth.run import DEFAULT_START, DEFAULT_YEARS, synthesise
from joinedup.synth.services import base_rate
from joinedup.warehouse import Engine, analytics, open_engine

PYRAMID_BANDS = tuple(range(0, 95, 5))
BROAD = (0, 18, 45, 65, 75, 85)
DOC_START = "<!-- calibration:start -->"
DOC_END = "<!-- calibration:end -->"


@dataclass(frozen=True)
class Check:
    """One generated figure beside its target."""

    group: str
    measure: str
    target: float
    observed: float
    tolerance: float  # allowed absolute difference, in the measure's unit
    unit: str
    source: str

    @property
    def ok(self) -> bool:
        return abs(self.observed - self.target) <= self.tolerance


def tolerance(target: float, per: float, population: float, relative: float, floor: float) -> float:
    """Allowed difference: a relative band, widened to three Poisson standard errors when the
    expected count is small (few deaths in young adults, say)."""
    expected = target / per * population
    sampling = 3 * np.sqrt(max(expected, 1.0)) / max(population, 1.0) * per
    return float(max(relative * target, sampling, floor))


def _national() -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(params.NATIONAL_FEMALE_K, float), np.asarray(params.NATIONAL_MALE_K, float)


def _band_of(edges: Sequence[int], labels: Sequence[str]) -> dict[int, str]:
    out: dict[int, str] = {}
    for age in range(params.MAX_AGE_INDEX + 1):
        i = max(j for j, lo in enumerate(edges) if age >= lo)
        out[age] = labels[i]
    return out


def pyramid_checks(engine: Engine, ref: dt.date) -> list[Check]:
    """Share of the population in each five-year band and sex, against ONS England."""
    labels = analytics.band_labels(PYRAMID_BANDS)
    band = _band_of(PYRAMID_BANDS, labels)
    female, male = _national()
    total = female.sum() + male.sum()
    target: dict[tuple[str, str], float] = {}
    for age in range(params.MAX_AGE_INDEX + 1):
        for sex, counts in (("female", female), ("male", male)):
            key = (band[age], sex)
            target[key] = target.get(key, 0.0) + counts[age] / total
    got = analytics.run(
        engine, "age_sex_pyramid", ref_date=ref, bands=PYRAMID_BANDS, exclude_opted_out=False
    ).to_pylist()
    people = sum(r["people"] for r in got)
    observed = {(r["age_band"], r["sex"]): r["people"] / people for r in got}
    source = "ONS 2020-based national population projections, England 2023"
    return [
        Check(
            "age-sex pyramid",
            f"{sex} {b}",
            100 * t,
            100 * observed.get((b, sex), 0.0),
            0.25,
            "% of people",
            source,
        )
        for (b, sex), t in target.items()
    ]


def prevalence_checks(engine: Engine, ref: dt.date) -> list[Check]:
    """Recorded prevalence of each long-term condition among people of the register's ages."""
    engine.load_session("calibration_codelist", condition_codelist())
    edges = sorted({0, *(c.min_age for c in params.CONDITIONS)})
    got = analytics.run(
        engine,
        "condition_prevalence_by_age_sex",
        codelist="calibration_codelist",
        ref_date=ref,
        bands=tuple(edges),
        exclude_opted_out=False,
    ).to_pylist()
    labels = analytics.band_labels(edges)
    lower = dict(zip(labels, edges, strict=True))
    checks = []
    for c in params.CONDITIONS:
        rows = [r for r in got if r["condition"] == c.name and lower[r["age_band"]] >= c.min_age]
        people = sum(r["people"] for r in rows)
        denominator = sum(r["denominator"] for r in rows)
        observed = people / denominator if denominator else 0.0
        ages = f"aged {c.min_age}+" if c.min_age else "all ages"
        checks.append(
            Check(
                "prevalence",
                f"{c.label} ({ages})",
                100 * c.target_prevalence,
                100 * observed,
                max(0.15, 0.10 * 100 * c.target_prevalence),
                "%",
                c.source,
            )
        )
    return checks


def _rate_source(sp: params.ServiceParams) -> str:
    return sp.source.split("; cost")[0]


def _expected_rate(activity_type: str, lo: int, hi: int) -> float:
    """Population-weighted service rate per person-year for ages lo..hi under England's ages."""
    s = params.SERVICE_INDEX[activity_type]
    female, male = _national()
    ages = np.arange(lo, min(hi, params.MAX_AGE_INDEX) + 1)
    f = base_rate(s, ages, np.zeros(len(ages), np.int8)) * female[ages]
    m = base_rate(s, ages, np.ones(len(ages), np.int8)) * male[ages]
    return float((f.sum() + m.sum()) / (female[ages].sum() + male[ages].sum()))


def activity_checks(engine: Engine, start: dt.date) -> list[Check]:
    """Emergency admissions per 1,000 by age band, and every service's rate, in the first year."""
    end = start.replace(year=start.year + 1) - dt.timedelta(days=1)
    labels = analytics.band_labels(BROAD)
    got = analytics.run(
        engine,
        "activity_rates",
        start_date=start,
        end_date=end,
        bands=BROAD,
        exclude_opted_out=False,
    ).to_pylist()
    checks = []
    emergency = params.SERVICES[params.SERVICE_INDEX["emergency_admission"]]
    for i, label in enumerate(labels):
        hi = BROAD[i + 1] - 1 if i + 1 < len(BROAD) else 120
        target = 1000 * _expected_rate("emergency_admission", BROAD[i], hi)
        row = next(
            (
                r
                for r in got
                if r["activity_type"] == "emergency_admission" and r["age_band"] == label
            ),
            None,
        )
        observed = float(row["rate_per_1000"]) if row else 0.0
        people = float(row["people"]) if row else 0.0
        checks.append(
            Check(
                "emergency admissions per 1,000",
                f"aged {label}",
                target,
                observed,
                tolerance(target, 1000, people, 0.08, 2.0),
                "per 1,000",
                _rate_source(emergency),
            )
        )
    totals: dict[str, tuple[int, int]] = {}
    for r in got:
        events, people = totals.get(r["activity_type"], (0, 0))
        totals[r["activity_type"]] = (events + r["events"], people + r["people"])
    population = max(
        (sum(r["people"] for r in got if r["activity_type"] == kind) for kind in totals), default=0
    )
    for sp in params.SERVICES:
        target = 1000 * _expected_rate(sp.activity_type, 0, 120)
        events = totals.get(sp.activity_type, (0, 0))[0]
        observed = 1000 * events / population if population else 0.0
        checks.append(
            Check(
                "activity per 1,000 a year",
                sp.activity_type.replace("_", " "),
                target,
                observed,
                tolerance(target, 1000, population, 0.08, 1.0),
                "per 1,000",
                _rate_source(sp),
            )
        )
    return checks


def mortality_checks(engine: Engine, year: int) -> list[Check]:
    """Deaths per 100,000 in a full calendar year by broad age band, against ONS rates."""
    labels = analytics.band_labels(BROAD)
    got = analytics.run(engine, "mortality_rates", bands=BROAD, exclude_opted_out=False)
    rows = [r for r in got.to_pylist() if r["year"] == year]
    female, male = _national()
    mf = np.asarray(params.MORTALITY_FEMALE_PER_100K)
    mm = np.asarray(params.MORTALITY_MALE_PER_100K)
    checks = []
    for i, label in enumerate(labels):
        hi = BROAD[i + 1] - 1 if i + 1 < len(BROAD) else params.MAX_AGE_INDEX
        ages = np.arange(BROAD[i], hi + 1)
        target = float((mf[ages] * female[ages]).sum() + (mm[ages] * male[ages]).sum()) / float(
            female[ages].sum() + male[ages].sum()
        )
        deaths = sum(r["deaths"] for r in rows if r["age_band"] == label)
        people = sum(r["people"] for r in rows if r["age_band"] == label)
        observed = 1e5 * deaths / people if people else 0.0
        checks.append(
            Check(
                "deaths per 100,000 a year",
                f"aged {label}",
                target,
                observed,
                tolerance(target, 1e5, people, 0.12, 5.0),
                "per 100,000",
                "ONS 2020-based NPP mortality assumptions, 2024",
            )
        )
    return checks


def opt_out_check(engine: Engine, ref: dt.date) -> Check:
    summary = analytics.run(engine, "system_summary", ref_date=ref).to_pylist()
    people = sum(r["people"] for r in summary)
    share = sum((r["opted_out_share"] or 0.0) * r["people"] for r in summary) / max(people, 1)
    return Check(
        "national data opt-out",
        "share of people",
        100 * params.NATIONAL_DATA_OPT_OUT_RATE,
        100 * share,
        0.3,
        "%",
        "NHS England National Data Opt-out statistics, 2024",
    )


def run_checks(engine: Engine, start: dt.date = DEFAULT_START) -> list[Check]:
    """Every calibration check on a warehouse built by `calibrate`."""
    end = start.replace(year=start.year + DEFAULT_YEARS) - dt.timedelta(days=1)
    return [
        *pyramid_checks(engine, start),
        *prevalence_checks(engine, end),
        *activity_checks(engine, start),
        *mortality_checks(engine, start.year + 1),
        opt_out_check(engine, start),
    ]


def calibrate(people: int, seed: int, workdir: Path | None = None) -> list[Check]:
    """Generate an England-shaped population of `people` and check it against the targets."""
    with tempfile.TemporaryDirectory(prefix="joinedup-calibration-", dir=workdir) as tmp:
        warehouse = Path(tmp) / "calibration.duckdb"
        synthesise(england_footprint(people), people=people, seed=seed, warehouse=warehouse)
        engine = open_engine("duckdb", warehouse=warehouse)
        try:
            return run_checks(engine)
        finally:
            engine.close()


def render_table(checks: Sequence[Check], people: int, seed: int) -> str:
    """The comparison as a Markdown section (for docs/synthetic-data.md)."""
    passed = sum(c.ok for c in checks)
    lines = [
        DOC_START,
        f"Generated by `joinedup synth calibrate --people {people} --seed {seed} --write-doc "
        f"docs/synthetic-data.md`: {passed} of {len(checks)} figures within tolerance.",
        "",
        "| group | measure | target | synthetic | tolerance (±) | unit | within | source |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for c in checks:
        lines.append(
            f"| {c.group} | {c.measure} | {c.target:.2f} | {c.observed:.2f} | {c.tolerance:.2f} "
            f"| {c.unit} | {'yes' if c.ok else '**no**'} | {c.source} |"
        )
    lines.append(DOC_END)
    return "\n".join(lines)


def write_doc(path: Path, section: str) -> None:
    """Replace the calibration section of `path` (between the markers) with `section`."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if DOC_START in text and DOC_END in text:
        head, rest = text.split(DOC_START, 1)
        _, tail = rest.split(DOC_END, 1)
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n## Calibration\n\n" + section + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def summarise(checks: Sequence[Check]) -> Mapping[str, int]:
    return {"checks": len(checks), "within_tolerance": sum(c.ok for c in checks)}
