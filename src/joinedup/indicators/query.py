"""Reading published indicator values back: the service the API and the pages share."""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from joinedup.errors import ConfigurationError, InputError
from joinedup.indicators.definitions import Definitions, shipped_definitions
from joinedup.indicators.values import LEVELS, TABLE
from joinedup.warehouse import Engine
from joinedup.warehouse.analytics.cohort import col, table

V = "v"


def periods_of(engine: Engine, indicator_id: str) -> list[str]:
    """The periods `indicator_id` has values for, latest first."""
    query = (
        exp.select(col("period", V).as_("period"))
        .distinct()
        .from_(table(TABLE, V))
        .where(exp.EQ(this=col("indicator_id", V), expression=exp.convert(indicator_id)))
    )
    return sorted((r["period"] for r in engine.execute(query).to_pylist()), reverse=True)


def resolve_period(periods: list[str], wanted: str | None) -> list[str]:
    """The periods `wanted` names: "latest" (or nothing), "all", a period as stored
    (2025-04-01/2026-03-31) or its end date (2026-03-31)."""
    if not periods:
        return []
    if wanted in (None, "", "latest"):
        return periods[:1]
    if wanted == "all":
        return periods
    found = [p for p in periods if wanted in (p, p.split("/")[-1])]
    if not found:
        raise InputError(
            "period", f"no values for {wanted!r}; periods: latest, all, {', '.join(periods)}"
        )
    return found


def read_values(
    engine: Engine,
    indicator_id: str,
    *,
    level: str | None = None,
    period: str | None = None,
    definitions: Definitions | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """The periods chosen (see `resolve_period`) and the published rows of `indicator_id` in
    them, at `level` (every level when None), ordered by period, level and area code.
    InputError for an unknown indicator, level or period."""
    (definitions or shipped_definitions()).get(indicator_id)
    if level is not None and level not in LEVELS:
        raise InputError("level", f"{level!r} is not one of {', '.join(LEVELS)}")
    if TABLE not in engine.table_names():
        raise ConfigurationError(f"the warehouse has no {TABLE}: run `joinedup phm run`")
    chosen = resolve_period(periods_of(engine, indicator_id), period)
    if not chosen:
        return [], []
    tests: list[exp.Expr] = [
        exp.EQ(this=col("indicator_id", V), expression=exp.convert(indicator_id)),
        exp.In(this=col("period", V), expressions=[exp.convert(p) for p in chosen]),
    ]
    if level is not None:
        tests.append(exp.EQ(this=col("level", V), expression=exp.convert(level)))
    query = exp.select("*").from_(table(TABLE, V)).where(exp.and_(*tests))
    rows = engine.execute(query).to_pylist()
    rank = {name: i for i, name in enumerate(LEVELS)}
    rows.sort(key=lambda r: (r["period"], rank[r["level"]], r["area_code"]))
    return chosen, rows
