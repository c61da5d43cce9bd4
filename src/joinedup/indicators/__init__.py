"""Indicators as data: definitions (what each figure counts and how it is judged), their values
at system, place, PCN and practice level for each period with 95% intervals, published under
disclosure control and compared with England and with the parent area (docs/indicators.md)."""

from joinedup.indicators.definitions import (
    Condition,
    Count,
    Definitions,
    DisclosureRule,
    Indicator,
    load_definitions,
    parse_definitions,
    shipped_definitions,
)
from joinedup.indicators.england import (
    EnglandValue,
    compare,
    england_for,
    load_england,
    shipped_england,
)
from joinedup.indicators.values import (
    LEVELS,
    TABLE,
    Period,
    annual_periods,
    counts_query,
    crude_rate,
    indicator_values,
    published_values,
    statistic,
    with_comparisons,
)

__all__ = [
    "LEVELS",
    "TABLE",
    "Condition",
    "Count",
    "Definitions",
    "DisclosureRule",
    "EnglandValue",
    "Indicator",
    "Period",
    "annual_periods",
    "compare",
    "counts_query",
    "crude_rate",
    "england_for",
    "indicator_values",
    "load_definitions",
    "load_england",
    "parse_definitions",
    "published_values",
    "shipped_definitions",
    "shipped_england",
    "statistic",
    "with_comparisons",
]
