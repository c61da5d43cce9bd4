"""The direction of recent change in an indicator, tested and stated, from published figures.

For each area, the values of up to `MAX_POINTS` consecutive periods ending with each period are
tested for a linear trend over time, by the indicator's kind: a chi-squared test for trend in
proportions (Cochran-Armitage) for percentages, its Poisson analogue (a score test for a
log-linear trend in rates) for crude rates, and a weighted least-squares slope (weights
1 / SE², SE from the 95% interval) for standardised rates. A trend significant at the 5% level
is stated as increasing or decreasing, and, by the indicator's polarity, getting better or
worse; otherwise "no significant change". Fingertips tests its recent trends from five
points; joinedup's history gives three, so trends here rest on three.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyarrow as pa
from scipy import stats as sps

from joinedup.indicators.definitions import Definitions, Indicator

#: Consecutive periods a trend is tested over (at least `MIN_POINTS`).
MAX_POINTS = 5
MIN_POINTS = 3
#: Two-sided significance level of the test.
ALPHA = 0.05
_Z95 = float(sps.norm.ppf(0.975))


def proportion_trend(numerators: Sequence[int], denominators: Sequence[int]) -> tuple[float, float]:
    """Cochran-Armitage chi-squared test for a linear trend in proportions over equally spaced
    periods: (statistic T, positive for an increase; two-sided p-value). p is NaN when the
    proportions cannot vary (all 0 or all 1)."""
    n = [float(d) for d in denominators]
    x = [float(v) for v in numerators]
    total = sum(n)
    share = sum(x) / total
    t = list(range(len(n)))
    statistic = sum(ti * (xi - ni * share) for ti, xi, ni in zip(t, x, n, strict=True))
    spread = sum(ni * ti * ti for ni, ti in zip(n, t, strict=True)) - (
        sum(ni * ti for ni, ti in zip(n, t, strict=True)) ** 2 / total
    )
    variance = share * (1 - share) * spread
    if variance <= 0:
        return statistic, math.nan
    return statistic, float(sps.chi2.sf(statistic * statistic / variance, 1))


def rate_trend(events: Sequence[int], people: Sequence[int]) -> tuple[float, float]:
    """Score test for a log-linear trend in Poisson rates over equally spaced periods:
    (statistic, positive for an increase; two-sided p-value). p is NaN without events."""
    n = [float(p) for p in people]
    x = [float(e) for e in events]
    total, observed = sum(n), sum(x)
    t = list(range(len(n)))
    statistic = sum(ti * (xi - observed * ni / total) for ti, xi, ni in zip(t, x, n, strict=True))
    mean_t = sum(ni * ti for ni, ti in zip(n, t, strict=True)) / total
    variance = observed * (
        sum(ni * ti * ti for ni, ti in zip(n, t, strict=True)) / total - mean_t**2
    )
    if variance <= 0:
        return statistic, math.nan
    return statistic, float(sps.chi2.sf(statistic * statistic / variance, 1))


def slope_trend(
    values: Sequence[float], lower: Sequence[float], upper: Sequence[float]
) -> tuple[float, float]:
    """Weighted least-squares slope of values on period (weights 1 / SE², SE from each 95%
    interval) and its two-sided p-value (normal). p is NaN when an interval has no width."""
    se = [(u - lo) / (2 * _Z95) for lo, u in zip(lower, upper, strict=True)]
    if any(s <= 0 for s in se):
        return 0.0, math.nan
    w = [1 / (s * s) for s in se]
    t = list(range(len(values)))
    mean_t = sum(wi * ti for wi, ti in zip(w, t, strict=True)) / sum(w)
    sxx = sum(wi * (ti - mean_t) ** 2 for wi, ti in zip(w, t, strict=True))
    slope = sum(wi * (ti - mean_t) * yi for wi, ti, yi in zip(w, t, values, strict=True)) / sxx
    z = slope / math.sqrt(1 / sxx)
    return slope, float(2 * sps.norm.sf(abs(z)))


def describe(statistic: float, p: float, indicator: Indicator) -> str:
    """The trend in words, as Fingertips states it."""
    if math.isnan(p) or p >= ALPHA or statistic == 0:
        return "no significant change"
    rising = statistic > 0
    direction = "increasing" if rising else "decreasing"
    if indicator.polarity == "unknown":
        return direction
    better = rising == (indicator.polarity == "higher is better")
    return f"{direction} and getting {'better' if better else 'worse'}"


def trend_test(indicator: Indicator, points: Sequence[dict[str, object]]) -> tuple[float, float]:
    """(statistic, p) for an area's published rows, oldest first, by the indicator's kind."""
    if indicator.ci_method == "wilson":
        return proportion_trend(
            [int(str(r["numerator_count"])) for r in points],
            [int(str(r["denominator_count"])) for r in points],
        )
    if indicator.ci_method == "byars":
        return rate_trend(
            [int(str(r["numerator_count"])) for r in points],
            [int(str(r["denominator_count"])) for r in points],
        )
    return slope_trend(
        [float(str(r["value"])) for r in points],
        [float(str(r["lower"])) for r in points],
        [float(str(r["upper"])) for r in points],
    )


def with_trends(published: pa.Table, definitions: Definitions) -> pa.Table:
    """`published` with `trend` (in words) and `trend_p` for each row that ends a run of at
    least `MIN_POINTS` consecutive published values of its area (null otherwise)."""
    base = published.drop_columns([c for c in ("trend", "trend_p") if c in published.column_names])
    rows = base.to_pylist()
    series: dict[tuple[str, str, str], list[int]] = {}
    for i, row in enumerate(rows):
        series.setdefault((row["indicator_id"], row["level"], row["area_code"]), []).append(i)
    words: list[str | None] = [None] * len(rows)
    p_values: list[float | None] = [None] * len(rows)
    for (indicator_id, _, _), members in series.items():
        indicator = definitions.get(indicator_id)
        ordered = sorted(members, key=lambda i: rows[i]["period_end_date"])
        for end in range(len(ordered)):
            window = [rows[i] for i in ordered[max(0, end - MAX_POINTS + 1) : end + 1]]
            if len(window) < MIN_POINTS or any(r["value"] is None for r in window):
                continue
            statistic, p = trend_test(indicator, window)
            words[ordered[end]] = describe(statistic, p, indicator)
            p_values[ordered[end]] = None if math.isnan(p) else round(p, 4)
    out = base.append_column("trend", pa.array(words, pa.string()))
    return out.append_column("trend_p", pa.array(p_values, pa.float64()))
