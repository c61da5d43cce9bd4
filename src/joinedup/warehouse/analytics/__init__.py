"""The canonical analytics: each written once as a sqlglot tree, run on any engine.

`run(engine, "activity_rates", start_date=..., end_date=...)` renders the analytic in the
engine's dialect and returns an Arrow table with the same rows and types on every engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from sqlglot import exp

from joinedup.errors import ConfigurationError
from joinedup.warehouse.analytics.activity import activity_rates, activity_summary
from joinedup.warehouse.analytics.cohort import BROAD_BANDS, FIVE_YEAR_BANDS, band_labels
from joinedup.warehouse.analytics.conditions import (
    condition_prevalence,
    condition_prevalence_by_age_sex,
)
from joinedup.warehouse.analytics.mortality import deaths_by_year_age_sex, mortality_rates
from joinedup.warehouse.analytics.population import (
    age_sex_pyramid,
    population_by_place,
    system_summary,
)
from joinedup.warehouse.analytics.publish import COUNT_COLUMNS, RATE_SOURCES, publish
from joinedup.warehouse.analytics.waiting import WAIT_BANDS, rtt_waiting_list
from joinedup.warehouse.engines.base import Engine


@dataclass(frozen=True)
class Analytic:
    """A named analytic: `build(**params)` returns the query every engine runs."""

    name: str
    description: str
    build: Callable[..., exp.Query]


def _analytic(build: Callable[..., exp.Query]) -> Analytic:
    doc = (build.__doc__ or "").strip().split("\n\n")[0]
    return Analytic(build.__name__, " ".join(doc.split()), build)


_BUILDERS: tuple[Callable[..., exp.Query], ...] = (
    population_by_place,
    age_sex_pyramid,
    condition_prevalence,
    condition_prevalence_by_age_sex,
    activity_rates,
    activity_summary,
    deaths_by_year_age_sex,
    mortality_rates,
    rtt_waiting_list,
    system_summary,
)
ANALYTICS: dict[str, Analytic] = {a.name: a for a in map(_analytic, _BUILDERS)}


def register(build: Callable[..., exp.Query]) -> Analytic:
    """Add an analytic written by a domain above the warehouse (the population package adds
    `charlson_distribution` when imported); its first docstring paragraph describes it."""
    analytic = _analytic(build)
    existing = ANALYTICS.get(analytic.name)
    if existing is not None and existing.build is not build:
        raise ConfigurationError(f"an analytic called {analytic.name!r} is already registered")
    ANALYTICS[analytic.name] = analytic
    return analytic


def get(name: str) -> Analytic:
    """The analytic called `name`, or a ConfigurationError listing those there are."""
    try:
        return ANALYTICS[name]
    except KeyError:
        raise ConfigurationError(
            f"no analytic {name!r}; choose from {', '.join(sorted(ANALYTICS))}"
        ) from None


def run(engine: Engine, analytic: Analytic | str, **params: Any) -> pa.Table:
    """Build `analytic` with `params` and run it on `engine`."""
    chosen = get(analytic) if isinstance(analytic, str) else analytic
    try:
        query = chosen.build(**params)
    except TypeError as err:
        raise ConfigurationError(f"{chosen.name}: {err}") from err
    return engine.execute(query)


__all__ = [
    "ANALYTICS",
    "BROAD_BANDS",
    "COUNT_COLUMNS",
    "FIVE_YEAR_BANDS",
    "RATE_SOURCES",
    "WAIT_BANDS",
    "Analytic",
    "activity_rates",
    "activity_summary",
    "age_sex_pyramid",
    "band_labels",
    "condition_prevalence",
    "condition_prevalence_by_age_sex",
    "deaths_by_year_age_sex",
    "get",
    "mortality_rates",
    "population_by_place",
    "publish",
    "register",
    "rtt_waiting_list",
    "run",
    "system_summary",
]
