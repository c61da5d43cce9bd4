"""The statistics behind health-inequality reporting: rates, proportions, age-standardised rates
and the slope index of inequality, with the confidence intervals OHID (formerly PHE) publishes.

The methods follow the Fingertips Public Health Technical Guidance and the R package
PHEindicatormethods (UKHSA/DHSC), so a figure joinedup produces can be set beside a Fingertips one:
exact Poisson limits for counts, Wilson score limits for proportions, the Dobson et al. (1991)
interval for directly standardised rates, and the simulated interval of Low & Low (2004) for the
slope index of inequality. Every function is pure and works on plain numbers or numpy arrays.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray
from scipy import stats as sps

from joinedup.errors import ConfigurationError

Values: TypeAlias = Sequence[float] | NDArray[Any]
FloatArray: TypeAlias = NDArray[np.float64]

# Eurostat (2013), "Revision of the European Standard Population: report of Eurostat's task
# force", Methodologies and Working papers, table 1: 0-4, 5-9, ..., 85-89, 90+.
ESP2013: tuple[int, ...] = (
    5000, 5500, 5500, 5500, 6000, 6000, 6500, 7000, 7000, 7000,
    7000, 6500, 6000, 5500, 5000, 4000, 2500, 1500, 1000,
)  # fmt: skip
ESP2013_BANDS: tuple[int, ...] = tuple(range(0, 95, 5))

# PHE applies Byar's approximation to a total of at least this many events and suppresses
# directly standardised rates below it (Morris et al., Popul Health Metr 2018;16:3).
BYAR_MIN_EVENTS = 10


@dataclass(frozen=True)
class Rate:
    """A rate or proportion scaled by `per`, with its confidence limits and the counts behind it.

    When the denominator is 0 the rate is undefined and value, lower and upper are `math.nan`.
    """

    value: float
    lower: float
    upper: float
    numerator: float
    denominator: float


@dataclass(frozen=True)
class Inequality:
    """The slope and relative indices of inequality across `groups` deprivation groups, with
    simulated confidence limits; positive means the value is higher in the most deprived."""

    sii: float
    sii_lower: float
    sii_upper: float
    rii: float
    rii_lower: float
    rii_upper: float
    groups: int


def _z(confidence: float) -> float:
    """The two-sided normal critical value for `confidence`, which must lie strictly in (0, 1)."""
    if not (isinstance(confidence, int | float) and 0.0 < confidence < 1.0):
        raise ConfigurationError(
            f"confidence must be strictly between 0 and 1 (e.g. 0.95); got {confidence!r}"
        )
    return _critical(float(confidence))


@functools.lru_cache(maxsize=16)
def _critical(confidence: float) -> float:
    """The normal quantile, computed once per confidence: scipy's ppf costs about half a
    millisecond, and indicators take thousands of intervals at 95%."""
    return float(sps.norm.ppf(0.5 + confidence / 2.0))


def _count(name: str, value: float) -> float:
    """`value` as a float, refused unless it is finite and not negative."""
    x = float(value)
    if not math.isfinite(x) or x < 0:
        raise ConfigurationError(f"{name} must be a finite number >= 0; got {value!r}")
    return x


def _per(per: float) -> float:
    """The multiplier, refused unless it is finite and positive."""
    p = float(per)
    if not math.isfinite(p) or p <= 0:
        raise ConfigurationError(f"per must be a finite number > 0; got {per!r}")
    return p


def _array(name: str, values: Values) -> FloatArray:
    """`values` as a 1-D float array, refused if it holds anything but finite numbers."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ConfigurationError(f"{name} must be a sequence of numbers: {err}") from err
    if arr.ndim != 1:
        raise ConfigurationError(f"{name} must be one-dimensional; got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ConfigurationError(f"{name} must be finite; position(s) {bad.tolist()} are not")
    return arr


def _same_length(**arrays: FloatArray) -> None:
    """Refuse arrays of different lengths, naming each length."""
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ConfigurationError(f"{', '.join(lengths)} must have the same length; {described}")


def _not_negative(name: str, arr: FloatArray) -> None:
    """Refuse an array with a negative entry, naming the positions."""
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        raise ConfigurationError(
            f"{name} must all be >= 0; position(s) {bad.tolist()} are negative"
        )


def poisson_limits(observed: float, confidence: float = 0.95) -> tuple[float, float]:
    """Exact confidence limits for a Poisson count from its relation to the chi-square
    distribution (Ulm 1990; PHE technical guidance "Confidence intervals for counts")."""
    o = _count("observed", observed)
    _z(confidence)
    alpha = 1.0 - confidence
    lower = 0.0 if o == 0 else float(sps.chi2.ppf(alpha / 2.0, 2.0 * o)) / 2.0
    upper = float(sps.chi2.ppf(1.0 - alpha / 2.0, 2.0 * o + 2.0)) / 2.0
    return lower, upper


def byars_limits(observed: float, confidence: float = 0.95) -> tuple[float, float]:
    """Byar's approximation to the exact Poisson limits (Breslow & Day 1987), which
    PHEindicatormethods uses for counts of 10 or more; the lower limit is floored at 0."""
    o = _count("observed", observed)
    z = _z(confidence)
    lower = 0.0 if o == 0 else max(o * (1.0 - 1.0 / (9.0 * o) - z / (3.0 * math.sqrt(o))) ** 3, 0.0)
    u = o + 1.0
    upper = u * (1.0 - 1.0 / (9.0 * u) + z / (3.0 * math.sqrt(u))) ** 3
    return lower, upper


def _nan_rate(numerator: float) -> Rate:
    return Rate(math.nan, math.nan, math.nan, numerator, 0.0)


def crude_rate(
    events: float, population: float, per: float = 1000, confidence: float = 0.95
) -> Rate:
    """Events per `per` population with exact Poisson limits; NaN when the population is 0.

    PHEindicatormethods `calculate_rate` switches to Byar's approximation at 10 events; the exact
    limits used here differ from it in the third significant figure at most.
    """
    d = _count("events", events)
    n = _count("population", population)
    scale = _per(per)
    _z(confidence)
    if n == 0:
        if d > 0:
            raise ConfigurationError(f"events must be 0 when population is 0; got {events!r}")
        return _nan_rate(d)
    lo, hi = poisson_limits(d, confidence)
    return Rate(d / n * scale, lo / n * scale, hi / n * scale, d, n)


def proportion(
    numerator: float, denominator: float, per: float = 100, confidence: float = 0.95
) -> Rate:
    """A proportion scaled by `per` (100 gives a percentage) with Wilson score limits (Wilson
    1927; Newcombe & Altman 2000), as PHEindicatormethods `phe_proportion`; NaN when the
    denominator is 0."""
    x = _count("numerator", numerator)
    n = _count("denominator", denominator)
    scale = _per(per)
    z = _z(confidence)
    if x > n:
        raise ConfigurationError(
            f"numerator ({numerator!r}) must not exceed denominator ({denominator!r})"
        )
    if n == 0:
        return _nan_rate(x)
    centre = 2.0 * x + z * z
    half = z * math.sqrt(z * z + 4.0 * x * (1.0 - x / n))
    lower = max((centre - half) / (2.0 * (n + z * z)), 0.0)
    upper = min((centre + half) / (2.0 * (n + z * z)), 1.0)
    return Rate(x / n * scale, lower * scale, upper * scale, x, n)


def dsr(
    events: Values,
    population: Values,
    standard: Values = ESP2013,
    per: int = 100_000,
    confidence: float = 0.95,
) -> Rate:
    """Directly age-standardised rate per `per` with the Dobson et al. (1991) confidence interval,
    computed as OHID Fingertips and PHEindicatormethods `calculate_dsr` compute it.

    The bands of `events`, `population` and `standard` are matched by position; the default
    standard is ESP2013, so the arrays then have 19 bands. DSR = sum(w*d/n) / sum(w);
    var = sum(w**2 * d / n**2) / sum(w)**2; with O = sum(d) and (L, U) confidence limits for O,
    the limits are DSR + sqrt(var / O) * (L - O) and DSR + sqrt(var / O) * (U - O).

    (L, U) are Byar's limits when O >= 10, exactly as PHEindicatormethods, and the exact Poisson
    limits below that, where PHEindicatormethods suppresses the DSR as unreliable (Morris et al.
    2018): callers publishing figures should suppress O < 10 themselves. A band with population 0
    and no events contributes 0 to the weighted sum but keeps its weight, so every area is
    standardised to the same total; events in a band with population 0 are an error. When O = 0
    the DSR and lower limit are 0 and the upper limit is the Dobson limit as O -> 0 with events
    spread in proportion to population, U(0) * sqrt(sum(w**2 / n) / sum(n)) / sum(w), which equals
    the crude rate's exact upper limit when the population has the standard's age structure.
    The lower limit is floored at 0. NaN when the whole population is 0.
    """
    d = _array("events", events)
    n = _array("population", population)
    w = _array("standard", standard)
    _same_length(events=d, population=n, standard=w)
    scale = _per(per)
    _z(confidence)
    _not_negative("events", d)
    _not_negative("population", n)
    _not_negative("standard", w)
    total_w = float(w.sum())
    if total_w <= 0:
        raise ConfigurationError("standard must have at least one positive weight")
    empty = np.flatnonzero((n == 0) & (d > 0))
    if empty.size:
        raise ConfigurationError(
            f"events must be 0 where population is 0; band position(s) {empty.tolist()} have "
            "events but no population"
        )
    observed = float(d.sum())
    total_n = float(n.sum())
    if total_n == 0:
        return _nan_rate(observed)
    has = n > 0
    wh, dh, nh = w[has], d[has], n[has]
    value = float(np.sum(wh * dh / nh)) / total_w
    if observed == 0:
        per_event = float(np.sum(wh * wh / nh)) / total_n / total_w**2
        upper = math.sqrt(per_event) * poisson_limits(0.0, confidence)[1]
        return Rate(0.0, 0.0, upper * scale, 0.0, total_n)
    var = float(np.sum(wh * wh * dh / (nh * nh))) / total_w**2
    if observed >= BYAR_MIN_EVENTS:
        lo_o, hi_o = byars_limits(observed, confidence)
    else:
        lo_o, hi_o = poisson_limits(observed, confidence)
    spread = math.sqrt(var / observed)
    lower = max(value + spread * (lo_o - observed), 0.0)
    upper = value + spread * (hi_o - observed)
    return Rate(value * scale, lower * scale, upper * scale, observed, total_n)


def _slopes_and_means(y: FloatArray, a: FloatArray, x: FloatArray) -> tuple[Any, Any]:
    """The weighted least-squares slope of y on x with weights a (summing to 1), and the weighted
    mean of y, for each row of y (or for y itself when it is 1-D)."""
    centred = a * (x - float(a @ x))
    return (y @ centred) / float(centred @ x), y @ a


def sii(
    values: Values,
    lower: Values,
    upper: Values,
    population: Values,
    *,
    confidence: float = 0.95,
    simulations: int = 10_000,
    seed: int = 20130101,
    limits_confidence: float = 0.95,
) -> Inequality:
    """Slope and relative indices of inequality across deprivation groups (Low & Low, J Public
    Health 2004;26:388-95), fitted as PHEindicatormethods `phe_sii` fits them.

    Give the groups in order from MOST to LEAST deprived. Each group sits at the midpoint of its
    share of the cumulative population (0 = most deprived, 1 = least) and the values are regressed
    on it by least squares weighted by population share, which is phe_sii's sqrt(a) transformed
    regression. SII = fitted(0) - fitted(1), so it is positive when the value is higher in the most
    deprived (phe_sii reports the opposite sign). RII = SII / population-weighted mean value
    (Mackenbach & Kunst 1997; phe_sii instead reports fitted(1) / fitted(0)); it is NaN when that
    mean is 0. Confidence limits are the percentiles of SII and RII refitted to `simulations`
    draws of every value from Normal(value, SE), where SE = (upper - lower) / (2 z) and `lower`,
    `upper` are `limits_confidence` limits (phe_sii assumes 95%); a fixed `seed` makes the
    result repeatable. Groups with population 0 are left out; at least 2 must remain.
    """
    y = _array("values", values)
    lo = _array("lower", lower)
    hi = _array("upper", upper)
    pop = _array("population", population)
    _same_length(values=y, lower=lo, upper=hi, population=pop)
    _z(confidence)
    z_in = _z(limits_confidence)
    _not_negative("population", pop)
    if isinstance(simulations, bool) or not isinstance(simulations, int) or simulations < 1000:
        raise ConfigurationError(f"simulations must be an integer >= 1000; got {simulations!r}")
    keep = pop > 0
    if int(keep.sum()) < 2:
        raise ConfigurationError(
            f"sii needs at least 2 groups with a positive population; got {int(keep.sum())}"
        )
    outside = np.flatnonzero(keep & ~((lo <= y) & (y <= hi)))
    if outside.size:
        raise ConfigurationError(
            "each value must lie within its confidence limits (lower <= value <= upper); "
            f"group position(s) {outside.tolist()} do not"
        )
    flat = np.flatnonzero(keep & ~(hi > lo))
    if flat.size:
        raise ConfigurationError(
            "each group needs a standard error > 0, i.e. upper > lower; "
            f"group position(s) {flat.tolist()} have upper == lower"
        )
    y, lo, hi, pop = y[keep], lo[keep], hi[keep], pop[keep]
    a = pop / pop.sum()
    x = np.cumsum(a) - a / 2.0
    se = (hi - lo) / (2.0 * z_in)

    slope, mean = _slopes_and_means(y, a, x)
    sii_value = -float(slope)
    rii_value = sii_value / float(mean) if float(mean) != 0 else math.nan

    rng = np.random.default_rng(seed)
    draws = rng.normal(loc=y, scale=se, size=(simulations, len(y)))
    sim_slopes, sim_means = _slopes_and_means(draws, a, x)
    sim_sii = -np.asarray(sim_slopes, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        sim_rii = sim_sii / np.asarray(sim_means, dtype=np.float64)
    tails = [0.5 - confidence / 2.0, 0.5 + confidence / 2.0]
    sii_lo, sii_hi = (float(q) for q in np.quantile(sim_sii, tails))
    finite_rii = sim_rii[np.isfinite(sim_rii)]
    if math.isnan(rii_value) or finite_rii.size == 0:
        rii_lo = rii_hi = math.nan
    else:
        rii_lo, rii_hi = (float(q) for q in np.quantile(finite_rii, tails))
    return Inequality(
        sii=sii_value,
        sii_lower=sii_lo,
        sii_upper=sii_hi,
        rii=rii_value,
        rii_lower=rii_lo,
        rii_upper=rii_hi,
        groups=len(y),
    )
