"""Indicators: the shipped definitions validate and mean what they say, bad ones are refused
naming the indicator and field, intervals are those of `population.stats`, comparisons follow
Fingertips (including unknown polarity), and an England file is refused naming row and column.
The shipped England values are derived here from the figures synth is calibrated to."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml
from scipy import stats as sps

from joinedup.errors import InputError
from joinedup.indicators import (
    EnglandValue,
    compare,
    england_for,
    load_england,
    parse_definitions,
    shipped_definitions,
    shipped_england,
    statistic,
)
from joinedup.indicators.definitions import PER
from joinedup.indicators.trends import (
    describe,
    proportion_trend,
    rate_trend,
    slope_trend,
    with_trends,
)
from joinedup.indicators.values import Period, annual_periods, crude_rate
from joinedup.population.stats import ESP2013, byars_limits, dsr, poisson_limits, proportion
from joinedup.synth import params
from joinedup.synth.services import base_rate
from joinedup.warehouse.registry import lookup

DEFINITIONS = shipped_definitions()


def _raw() -> list[dict[str, object]]:
    path = Path(__file__).resolve().parents[2] / "src/joinedup/indicators/definitions.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(raw, list)
    return raw


# --- definitions ------------------------------------------------------------------------------


def test_shipped_definitions_cover_what_an_analyst_expects() -> None:
    ids = [i.id for i in DEFINITIONS]
    assert 12 <= len(ids) <= 25 and len(set(ids)) == len(ids)
    for expected in (
        "diabetes_prevalence", "hypertension_prevalence", "copd_prevalence", "asthma_prevalence",
        "chd_prevalence", "heart_failure_prevalence", "emergency_admissions_crude",
        "emergency_admissions_dsr", "ae_attendances_crude", "mortality_under75_dsr",
        "multimorbidity_prevalence", "frailty_moderate_severe",
    ):  # fmt: skip
        assert expected in ids
    columns = set(lookup("phm_person").column_names)  # type: ignore[union-attr]
    for i in DEFINITIONS:
        assert i.title and i.source and i.numerator.words and i.denominator.words, i.id
        for c in (*i.numerator.where, *i.denominator.where):
            assert c.column in columns, i.id
        assert i.per == PER[i.unit]
        if i.method == "dsr":
            assert i.ci_method == "dobson" and len(i.standard()) == len(i.bands())
    assert DEFINITIONS.get("mortality_under75_dsr").standard() == list(ESP2013[:15])
    assert {i.polarity for i in DEFINITIONS} == {"unknown", "lower is better", "higher is better"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ci_method": "byars"}, "a percentage is a crude proportion of people"),
        ({"unit": "per mille"}, "unit"),
        ({"numerator": {"words": "x", "counts": "people", "where": [
            {"column": "no_such_column", "op": "=", "value": 1}]}}, "not a column of phm_person"),
        ({"min_age": 18, "max_age": 10}, "max_age 10 is below min_age 18"),
        ({"colour": "blue"}, "colour"),
    ],
)  # fmt: skip
def test_a_bad_definition_is_refused_naming_the_indicator_and_field(
    change: dict[str, object], message: str
) -> None:
    raw = _raw()
    first = dict(raw[0]) | change
    with pytest.raises(InputError) as caught:
        parse_definitions([first, *raw[1:]], "mine.yaml")
    text = str(caught.value)
    assert text.startswith("mine.yaml: indicator hypertension_prevalence") and message in text


def test_a_repeated_id_is_refused() -> None:
    raw = _raw()
    with pytest.raises(InputError, match="given more than once: hypertension_prevalence"):
        parse_definitions([*raw, raw[0]], "mine.yaml")


def test_a_standardised_rate_must_use_whole_five_year_bands() -> None:
    raw = [r for r in _raw() if r["id"] == "mortality_under75_dsr"]
    with pytest.raises(InputError, match="whole five-year bands"):
        parse_definitions([dict(raw[0]) | {"max_age": 73}], "mine.yaml")


# --- intervals are population.stats' ------------------------------------------------------------


def test_intervals_are_those_of_population_stats() -> None:
    numerator = np.zeros(19, np.int64)
    denominator = np.zeros(19, np.int64)
    numerator[[3, 10, 16]] = (4, 9, 30)
    denominator[[3, 10, 16]] = (400, 350, 120)
    prevalence = statistic(DEFINITIONS.get("diabetes_prevalence"), numerator, denominator)
    assert prevalence == proportion(43, 870)
    standardised = statistic(DEFINITIONS.get("emergency_admissions_dsr"), numerator, denominator)
    assert standardised == dsr(numerator, denominator, ESP2013, per=100_000)
    under75 = statistic(DEFINITIONS.get("mortality_under75_dsr"), numerator, denominator)
    assert under75 == dsr(numerator[:15], denominator[:15], ESP2013[:15], per=100_000)
    crude = statistic(DEFINITIONS.get("emergency_admissions_crude"), numerator, denominator)
    low, high = byars_limits(43)
    assert (crude.value, crude.lower, crude.upper) == pytest.approx(
        (43 / 870 * 1000, low / 870 * 1000, high / 870 * 1000)
    )
    few = crude_rate(6, 870, 1000)  # exact Poisson limits under 10 events
    assert (few.lower, few.upper) == pytest.approx(tuple(x / 870 * 1000 for x in poisson_limits(6)))
    assert math.isnan(crude_rate(0, 0, 1000).value)


# --- comparisons ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "lower", "upper", "comparator", "polarity", "expected"),
    [
        (10.0, 8.0, 12.0, 11.0, "lower is better", "similar"),
        (10.0, 8.0, 12.0, 12.0, "lower is better", "similar"),  # on the limit: not excluded
        (10.0, 8.0, 12.0, 13.0, "lower is better", "better"),
        (10.0, 8.0, 12.0, 7.0, "lower is better", "worse"),
        (10.0, 8.0, 12.0, 13.0, "higher is better", "worse"),
        (10.0, 8.0, 12.0, 7.0, "higher is better", "better"),
        (10.0, 8.0, 12.0, 13.0, "unknown", "lower"),
        (10.0, 8.0, 12.0, 7.0, "unknown", "higher"),
        (10.0, 8.0, 12.0, 9.0, "unknown", "similar"),
        (None, None, None, 9.0, "unknown", None),  # suppressed: not compared
        (10.0, 8.0, 12.0, None, "lower is better", None),  # no comparator
    ],
)
def test_comparison_is_fingertips_style(
    value: float | None,
    lower: float | None,
    upper: float | None,
    comparator: float | None,
    polarity: str,
    expected: str | None,
) -> None:
    assert compare(value, lower, upper, comparator, polarity) == expected  # type: ignore[arg-type]


def test_england_value_of_the_same_period_else_the_latest() -> None:
    values = [
        EnglandValue("copd_prevalence", "2022-23", 1.8, None, None, "a"),
        EnglandValue("copd_prevalence", "2023-24", 1.9, None, None, "b"),
    ]
    assert england_for(values, "copd_prevalence", "2022-23") == values[0]
    assert england_for(values, "copd_prevalence", "2025-04-01/2026-03-31") == values[1]
    assert england_for(values, "diabetes_prevalence", "2023-24") is None


def test_annual_periods_chain_their_snapshots() -> None:
    from datetime import date

    periods = annual_periods(date(2026, 4, 1), ("now", "before", "earlier"))
    assert periods[0] == Period(date(2025, 4, 1), date(2026, 3, 31), "now", "before")
    assert periods[0].label == "2025-04-01/2026-03-31"
    assert periods[1].end_date == date(2025, 3, 31) and periods[1].start_table == "earlier"
    assert periods[2].start_table is None


# --- England files ----------------------------------------------------------------------------

HEADER = "indicator_id,period,value,lower,upper,source\n"
GOOD = "copd_prevalence,2023-24,1.9,,,QOF\n"


def _file(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "england.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_a_good_england_file_loads(tmp_path: Path) -> None:
    path = _file(
        tmp_path, "copd_prevalence,2023-24,1.9,1.8,2.0,QOF\ndiabetes_prevalence,2023-24,7.7,,,QOF\n"
    )
    got = load_england(path)
    assert got[0] == EnglandValue("copd_prevalence", "2023-24", 1.9, 1.8, 2.0, "QOF")
    assert got[1].lower is None


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (f"{GOOD}no_such,2023-24,1,,,QOF\n", "row 3: column 'indicator_id'"),
        ("copd_prevalence,2023-24,lots,,,QOF\n", "row 2: column 'value': 'lots' is not a number"),
        ("copd_prevalence,2023-24,,,,QOF\n", "row 2: column 'value': a number is required"),
        ("copd_prevalence,2023-24,1.9,2.5,,QOF\n", "row 2: column 'lower': 2.5 is above the value"),
        ("copd_prevalence,2023-24,1.9,,1.0,QOF\n", "row 2: column 'upper': 1.0 is below the value"),
        ("copd_prevalence,2023-24,1.9,,,\n", "row 2: column 'source'"),
        ("copd_prevalence,,1.9,,,QOF\n", "row 2: column 'period'"),
        ("copd_prevalence,2023-24,inf,,,QOF\n", "row 2: column 'value': 'inf' is not a finite"),
        (f"{GOOD}{GOOD}", "row 3: column 'period': copd_prevalence 2023-24 repeats row 2"),
        ("copd_prevalence,2023-24,1.9,,QOF\n", "row 2: expected 6 columns"),
    ],
)  # fmt: skip
def test_a_malformed_england_file_is_refused_naming_row_and_column(
    tmp_path: Path, body: str, where: str
) -> None:
    path = _file(tmp_path, body)
    with pytest.raises(InputError) as caught:
        load_england(path)
    assert str(caught.value) == str(caught.value).splitlines()[0]
    assert f"{path}, {where}" in str(caught.value)


def test_an_england_file_with_a_wrong_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing column 'source'"):
        load_england(
            _file(tmp_path, "copd_prevalence,2023-24,1.9,,\n", HEADER.replace(",source", ""))
        )
    extra = HEADER.replace("\n", ",note\n")
    with pytest.raises(InputError, match="row 1: column 'note' is not one of"):
        load_england(_file(tmp_path, "copd_prevalence,2023-24,1.9,,,QOF,x\n", extra))
    with pytest.raises(InputError, match="no rows after the header"):
        load_england(_file(tmp_path, ""))


# --- the shipped England values are the figures synth is calibrated to ------------------------


def _national_rate(activity_type: str) -> tuple[float, float]:
    """England's crude rate per 1,000 and ESP 2013 standardised rate per 100,000 from synth's
    service rates by age and the ONS projection of England's population."""
    ages = np.arange(params.MAX_AGE_INDEX + 1)
    male, female = (
        np.asarray(params.NATIONAL_MALE_K, float),
        np.asarray(params.NATIONAL_FEMALE_K, float),
    )
    s = params.SERVICE_INDEX[activity_type]
    events = base_rate(s, ages, np.ones(len(ages), np.int8)) * male
    events += base_rate(s, ages, np.zeros(len(ages), np.int8)) * female
    people = male + female
    band = np.minimum(ages // 5, 18)
    by_band = np.bincount(band, events) / np.bincount(band, people)
    weights = np.asarray(ESP2013, float)
    return events.sum() / people.sum() * 1000, float(weights @ by_band / weights.sum() * 100_000)


def test_shipped_england_values_are_derived_from_the_calibration_figures() -> None:
    england = {v.indicator_id: v for v in shipped_england()}
    assert set(england) <= {i.id for i in DEFINITIONS}
    targets = {c.name: c for c in params.CONDITIONS}
    same = {
        "hypertension_prevalence": "hypertension", "diabetes_prevalence": "diabetes",
        "asthma_prevalence": "asthma", "copd_prevalence": "copd",
        "chd_prevalence": "coronary_heart_disease", "heart_failure_prevalence": "heart_failure",
        "atrial_fibrillation_prevalence": "atrial_fibrillation",
        "stroke_tia_prevalence": "stroke_tia",
        "ckd_prevalence": "chronic_kidney_disease", "dementia_prevalence": "dementia",
        "smi_prevalence": "severe_mental_illness", "epilepsy_prevalence": "epilepsy",
        "learning_disability_prevalence": "learning_disability",
    }  # fmt: skip
    for indicator_id, condition in same.items():
        target = targets[condition]
        assert england[indicator_id].value == pytest.approx(100 * target.target_prevalence)
        assert (DEFINITIONS.get(indicator_id).min_age or 0) == target.min_age, indicator_id
        assert "Quality and Outcomes Framework 2023-24" in england[indicator_id].source
    crude, standardised = _national_rate("emergency_admission")
    assert england["emergency_admissions_crude"].value == pytest.approx(crude, abs=0.05)
    assert england["emergency_admissions_dsr"].value == pytest.approx(standardised, abs=0.05)
    assert england["ae_attendances_crude"].value == pytest.approx(
        _national_rate("ae_attendance")[0], abs=0.05
    )
    ages = np.arange(params.MAX_AGE_INDEX + 1)
    male, female = (
        np.asarray(params.NATIONAL_MALE_K, float),
        np.asarray(params.NATIONAL_FEMALE_K, float),
    )
    deaths = (
        np.asarray(params.MORTALITY_MALE_PER_100K) * male
        + np.asarray(params.MORTALITY_FEMALE_PER_100K) * female
    ) / 1e5
    band = np.minimum(ages // 5, 18)
    by_band = (np.bincount(band, deaths) / np.bincount(band, male + female))[:15]
    weights = np.asarray(ESP2013[:15], float)
    under75 = float(weights @ by_band / weights.sum() * 100_000)
    assert england["mortality_under75_dsr"].value == pytest.approx(under75, abs=0.05)


def test_the_docs_list_every_indicator_with_its_england_period() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "indicators.md").read_text("utf-8")
    england = {v.indicator_id: v for v in shipped_england()}
    for i in DEFINITIONS:
        line = next((x for x in page.splitlines() if x.startswith(f"| `{i.id}` |")), None)
        assert line is not None, f"docs/indicators.md does not list {i.id}"
        assert i.title in line and i.unit in line and i.polarity in line, i.id
        if i.id in england:
            assert f"({england[i.id].period})" in line, i.id


# --- trends -----------------------------------------------------------------------------------


def test_the_proportion_trend_is_cochran_armitage() -> None:
    numerators, denominators = [10, 20, 30], [100, 100, 100]
    statistic, p = proportion_trend(numerators, denominators)
    # By hand: mean share 0.2; T = 2 x (30 - 20) = 20; Var = 0.2 x 0.8 x (500 - 300) = 32.
    assert statistic == pytest.approx(20.0)
    assert p == pytest.approx(float(sps.chi2.sf(12.5, 1)))
    # The same statistic as N r^2 between period and outcome person by person (Armitage 1955).
    period = np.repeat([0, 1, 2], denominators)
    outcome = np.concatenate(
        [np.r_[np.ones(x), np.zeros(n - x)] for x, n in zip(numerators, denominators, strict=True)]
    )
    r = np.corrcoef(period, outcome)[0, 1]
    assert sps.chi2.isf(p, 1) == pytest.approx(len(outcome) * r * r)
    assert math.isnan(proportion_trend([0, 0, 0], [50, 60, 70])[1])


def test_the_rate_trend_is_a_poisson_score_test() -> None:
    statistic, p = rate_trend([10, 20, 30], [1000, 1000, 1000])
    # By hand: expected 20 a period; T = 2 x 10 = 20; Var = 60 x (5/3 - 1) = 40.
    assert statistic == pytest.approx(20.0)
    assert p == pytest.approx(float(sps.chi2.sf(10.0, 1)))
    falling, p_falling = rate_trend([30, 20, 10], [1000, 1000, 1000])
    assert falling < 0 and p_falling == pytest.approx(p)


def test_the_standardised_rate_trend_is_a_weighted_slope() -> None:
    slope, p = slope_trend([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], [2.0, 3.0, 4.0])
    se = 2.0 / (2 * sps.norm.ppf(0.975))
    assert slope == pytest.approx(1.0)
    assert p == pytest.approx(float(2 * sps.norm.sf(math.sqrt(2) / se)))


@pytest.mark.parametrize(
    ("statistic", "p", "polarity", "words"),
    [
        (5.0, 0.01, "lower is better", "increasing and getting worse"),
        (-5.0, 0.01, "lower is better", "decreasing and getting better"),
        (5.0, 0.01, "higher is better", "increasing and getting better"),
        (5.0, 0.01, "unknown", "increasing"),
        (-5.0, 0.01, "unknown", "decreasing"),
        (5.0, 0.2, "lower is better", "no significant change"),
        (5.0, math.nan, "unknown", "no significant change"),
    ],
)
def test_trends_are_stated_as_fingertips_states_them(
    statistic: float, p: float, polarity: str, words: str
) -> None:
    indicator = DEFINITIONS.get("copd_prevalence").model_copy(update={"polarity": polarity})
    assert describe(statistic, p, indicator) == words


def test_a_trend_needs_three_published_periods() -> None:
    from datetime import date

    def row(year: int, numerator: int | None, value: float | None) -> dict[str, object]:
        return {
            "indicator_id": "copd_prevalence", "level": "place", "area_code": "E1",
            "period_end_date": date(year, 3, 31), "numerator_count": numerator,
            "denominator_count": 1000, "value": value, "lower": None, "upper": None,
        }  # fmt: skip

    rising = pa.Table.from_pylist([row(2024, 10, 1.0), row(2026, 40, 4.0), row(2025, 20, 2.0)])
    out = with_trends(rising, DEFINITIONS).to_pylist()
    latest = next(r for r in out if r["period_end_date"].year == 2026)
    assert latest["trend"] == "increasing" and latest["trend_p"] < 0.05
    assert [r["trend"] for r in out if r["period_end_date"].year < 2026] == [None, None]
    hidden = pa.Table.from_pylist([row(2024, 10, 1.0), row(2025, None, None), row(2026, 40, 4.0)])
    assert all(r["trend"] is None for r in with_trends(hidden, DEFINITIONS).to_pylist())
