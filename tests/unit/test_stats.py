"""Rates, proportions, age-standardised rates and the slope index of inequality.

Every expected number below is worked by hand in a comment. No published DSR worked example with
reproducible inputs could be found (the PHEindicatormethods vignettes use randomly sampled data and
its expected results live in Excel files), so the DSR is checked on a small 3-band example whose
arithmetic follows the formulae of PHEindicatormethods `calculate_dsr`.
"""

from __future__ import annotations

import math

import pytest

from joinedup.errors import ConfigurationError
from joinedup.population.stats import (
    ESP2013,
    ESP2013_BANDS,
    byars_limits,
    crude_rate,
    dsr,
    poisson_limits,
    proportion,
    sii,
)

Z95 = 1.959963984540054


def test_esp2013_has_19_bands_summing_to_100000() -> None:
    assert len(ESP2013) == 19
    assert len(ESP2013_BANDS) == 19
    assert sum(ESP2013) == 100_000
    assert ESP2013_BANDS[0] == 0
    assert ESP2013_BANDS[-1] == 90
    assert ESP2013[0] == 5000  # 0-4
    assert ESP2013[-1] == 1000  # 90+


def test_exact_poisson_limits_for_10_and_0() -> None:
    # 10 events: chi2(0.025; 20)/2 = 9.5908/2 = 4.7954, chi2(0.975; 22)/2 = 36.7807/2 = 18.3904.
    lower, upper = poisson_limits(10)
    assert lower == pytest.approx(4.7954, abs=1e-4)
    assert upper == pytest.approx(18.3904, abs=1e-4)
    # 0 events: lower 0; upper chi2(0.975; 2)/2 = -ln(0.025) = 3.6889.
    lower, upper = poisson_limits(0)
    assert lower == 0.0
    assert upper == pytest.approx(-math.log(0.025))


def test_byars_limits_for_65() -> None:
    # lower = 65 * (1 - 1/585 - 1.96/(3*sqrt 65))^3 = 65 * (1 - 0.001709 - 0.081035)^3
    #       = 65 * 0.917256^3 = 65 * 0.771740 = 50.163
    # upper = 66 * (1 - 1/594 + 1.96/(3*sqrt 66))^3 = 66 * (1 - 0.001684 + 0.080418)^3
    #       = 66 * 1.078735^3 = 66 * 1.255290 = 82.849
    lower, upper = byars_limits(65)
    assert lower == pytest.approx(50.163, abs=1e-3)
    assert upper == pytest.approx(82.849, abs=1e-3)


def test_wilson_interval_for_10_out_of_100() -> None:
    # z^2 = 3.8415; centre 2*10 + 3.8415 = 23.8415; half = 1.96*sqrt(3.8415 + 40*0.9) = 12.3715;
    # (23.8415 -/+ 12.3715) / (2 * 103.8415) = 0.05523 and 0.17437.
    rate = proportion(10, 100)
    assert rate.value == pytest.approx(10.0)
    assert rate.lower == pytest.approx(5.52, abs=0.01)
    assert rate.upper == pytest.approx(17.44, abs=0.01)
    assert (rate.numerator, rate.denominator) == (10, 100)


def test_wilson_interval_stays_inside_0_to_100_percent() -> None:
    assert proportion(0, 50).lower == 0.0
    assert proportion(50, 50).upper == pytest.approx(100.0)


def test_crude_rate_uses_exact_limits_and_scales_by_per() -> None:
    # 10 events in 5,000 people per 1,000: 2.0, limits 4.7954/5 and 18.3904/5.
    rate = crude_rate(10, 5000)
    assert rate.value == pytest.approx(2.0)
    assert rate.lower == pytest.approx(0.95908, abs=1e-5)
    assert rate.upper == pytest.approx(3.67807, abs=1e-5)


def test_zero_denominator_gives_nan_not_an_error() -> None:
    for rate in (crude_rate(0, 0), proportion(0, 0), dsr([0, 0], [0, 0], [1, 1])):
        assert math.isnan(rate.value)
        assert math.isnan(rate.lower)
        assert math.isnan(rate.upper)
        assert rate.denominator == 0


def test_dsr_equals_the_crude_rate_when_every_band_has_the_same_rate() -> None:
    # 2 events per 1,000 in every band: each band rate is 0.002, so the weighted mean is 0.002
    # whatever the weights = 200 per 100,000.
    population = [1000.0 * (i + 1) for i in range(19)]
    events = [p * 0.002 for p in population]
    rate = dsr(events, population)
    assert rate.value == pytest.approx(200.0)
    assert rate.numerator == pytest.approx(sum(events))
    assert rate.denominator == pytest.approx(sum(population))


def test_dsr_three_band_example_checked_by_hand() -> None:
    # Bands: events 5, 20, 40; population 1000, 2000, 1000; standard 3000, 5000, 2000 (sum 10,000).
    # Band rates 0.005, 0.01, 0.04; weighted sum 15 + 50 + 80 = 145; DSR = 145 / 10,000 = 0.0145
    # = 14.5 per 1,000.
    # var = (3000^2*5/1000^2 + 5000^2*20/2000^2 + 2000^2*40/1000^2) / 10,000^2
    #     = (45 + 125 + 160) / 1e8 = 3.3e-6; O = 65; sqrt(var / O) = 2.25320e-4.
    # Byar's limits for 65 are 50.1632 and 82.8491 (test above), so
    # lower = 0.0145 + 2.25320e-4 * (50.1632 - 65) = 0.0145 - 0.0033431 = 0.0111569 -> 11.157
    # upper = 0.0145 + 2.25320e-4 * (82.8491 - 65) = 0.0145 + 0.0040218 = 0.0185218 -> 18.522
    rate = dsr([5, 20, 40], [1000, 2000, 1000], standard=[3000, 5000, 2000], per=1000)
    assert rate.value == pytest.approx(14.5)
    assert rate.lower == pytest.approx(11.157, abs=1e-3)
    assert rate.upper == pytest.approx(18.522, abs=1e-3)
    assert (rate.numerator, rate.denominator) == (65, 4000)


def test_dobson_limits_bracket_the_dsr_and_widen_as_counts_shrink() -> None:
    # Dividing every count and population by 10 keeps each band rate, so the DSR is unchanged,
    # but with a tenth of the events the interval must be wider.
    population = [5000.0 + 250 * i for i in range(19)]
    events = [20.0 + 10 * i for i in range(19)]
    big = dsr(events, population)
    small = dsr([e / 10 for e in events], [p / 10 for p in population])
    assert small.value == pytest.approx(big.value)
    for rate in (big, small):
        assert rate.lower < rate.value < rate.upper
    assert small.upper - small.lower > 2 * (big.upper - big.lower)


def test_dsr_of_a_single_band_under_10_events_matches_the_exact_crude_rate() -> None:
    # One band: sqrt(var / O) = 1/n, so the limits are the exact Poisson limits of O over n.
    assert dsr([5], [1000], standard=[1], per=1000) == crude_rate(5, 1000)


def test_zero_events_gives_zero_with_a_positive_upper_limit() -> None:
    # Two equal bands of 1,000 with equal weights (the standard's age structure): the upper limit
    # is U(0) * sqrt((1/1000 + 1/1000) / 2000) / 2 = 3.68888 * 5e-4 = 1.84444e-3 = 184.444 per
    # 100,000, the same as the crude rate's exact upper limit for 0 events in 2,000.
    rate = dsr([0, 0], [1000, 1000], standard=[1, 1])
    assert rate.value == 0.0
    assert rate.lower == 0.0
    assert rate.upper == pytest.approx(184.444, abs=1e-3)
    assert rate.upper == pytest.approx(crude_rate(0, 2000, per=100_000).upper)


def test_a_band_with_no_population_and_no_events_contributes_nothing() -> None:
    # Bands 10/1000 and 0/0 with weights 1 and 1: (1 * 0.01 + 0) / 2 = 0.005 = 500 per 100,000.
    rate = dsr([10, 0], [1000, 0], standard=[1, 1])
    assert rate.value == pytest.approx(500.0)
    assert rate.denominator == 1000


def test_events_without_population_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"band position\(s\) \[1\] have events"):
        dsr([10, 3], [1000, 0], standard=[1, 1])


def test_mismatched_lengths_are_refused_with_the_lengths() -> None:
    with pytest.raises(ConfigurationError, match="events has 3, population has 3, standard has 19"):
        dsr([1, 2, 3], [100, 200, 300])
    with pytest.raises(ConfigurationError, match="same length"):
        sii([1, 2], [0, 1], [2, 3], [10, 10, 10])


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"events must all be >= 0; position\(s\) \[1\]"):
        dsr([1, -2], [100, 100], standard=[1, 1])
    with pytest.raises(ConfigurationError, match="events must be a finite number >= 0"):
        crude_rate(-1, 100)
    with pytest.raises(ConfigurationError, match="observed must be a finite number >= 0"):
        poisson_limits(-3)
    with pytest.raises(ConfigurationError, match="must not exceed denominator"):
        proportion(11, 10)


def test_confidence_as_a_percentage_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="strictly between 0 and 1"):
        crude_rate(10, 100, confidence=95)


def _symmetric(values: list[float], se: float) -> tuple[list[float], list[float]]:
    return [v - Z95 * se for v in values], [v + Z95 * se for v in values]


def test_sii_recovers_a_linear_gradient_and_is_positive_when_more_deprived_is_higher() -> None:
    # Five equal groups sit at x = 0.1, 0.3, 0.5, 0.7, 0.9. Values 50, 45, 40, 35, 30 (most
    # deprived first) lie on 52.5 - 25x, so SII = fitted(0) - fitted(1) = 25. The mean is 40, so
    # RII = 25 / 40 = 0.625. With SE 1, sd(slope) = sqrt(sum a^2 (x - 0.5)^2) / sum a (x - 0.5)^2
    # = sqrt(0.04 * 0.4) / (0.2 * 0.4) = 1.58, so the 95% interval is about 25 +/- 3.1.
    values = [50.0, 45.0, 40.0, 35.0, 30.0]
    lower, upper = _symmetric(values, 1.0)
    result = sii(values, lower, upper, [1000] * 5)
    assert result.sii == pytest.approx(25.0)
    assert result.rii == pytest.approx(0.625)
    assert result.groups == 5
    assert result.sii_lower < 25.0 < result.sii_upper
    assert result.sii_upper - result.sii_lower == pytest.approx(2 * Z95 * 1.58, rel=0.05)
    assert result.rii_lower < 0.625 < result.rii_upper


def test_sii_is_negative_when_the_least_deprived_are_higher() -> None:
    values = [30.0, 35.0, 40.0, 45.0, 50.0]
    lower, upper = _symmetric(values, 1.0)
    assert sii(values, lower, upper, [1000] * 5).sii == pytest.approx(-25.0)


def test_sii_places_groups_by_their_share_of_the_population() -> None:
    # Populations 100, 100, 200: shares 0.25, 0.25, 0.5; midpoints 0.125, 0.375, 0.75.
    # Values 9, 7, 4 lie exactly on 10 - 8x at those midpoints, so SII = 8 (equally spaced ranks
    # 1/6, 1/2, 5/6 would not fit a line). Weighted mean 0.25*9 + 0.25*7 + 0.5*4 = 6, RII = 8/6.
    # A fourth group with no population is left out.
    values = [9.0, 7.0, 4.0, 99.0]
    lower, upper = _symmetric(values, 0.5)
    result = sii(values, lower, upper, [100, 100, 200, 0])
    assert result.sii == pytest.approx(8.0)
    assert result.rii == pytest.approx(8.0 / 6.0)
    assert result.groups == 3


def test_same_seed_gives_the_same_interval() -> None:
    values = [50.0, 44.0, 41.0, 33.0, 31.0]
    lower, upper = _symmetric(values, 2.0)
    first = sii(values, lower, upper, [900, 1000, 1100, 1000, 950], seed=7)
    again = sii(values, lower, upper, [900, 1000, 1100, 1000, 950], seed=7)
    other = sii(values, lower, upper, [900, 1000, 1100, 1000, 950], seed=8)
    assert first == again
    assert (other.sii_lower, other.sii_upper) != (first.sii_lower, first.sii_upper)
    assert other.sii == first.sii


def test_sii_needs_two_populated_groups_with_a_standard_error() -> None:
    with pytest.raises(ConfigurationError, match="at least 2 groups with a positive population"):
        sii([1.0, 2.0], [0.5, 1.5], [1.5, 2.5], [100, 0])
    with pytest.raises(ConfigurationError, match=r"standard error > 0.*\[1\]"):
        sii([1.0, 2.0], [0.5, 2.0], [1.5, 2.0], [100, 100])
    with pytest.raises(ConfigurationError, match=r"within its confidence limits.*\[0\]"):
        sii([1.0, 2.0], [1.5, 1.5], [0.5, 2.5], [100, 100])
