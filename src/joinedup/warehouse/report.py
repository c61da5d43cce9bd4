"""The system at a glance, and every analytic run once: what `joinedup summary` and `joinedup
demo` show. Every table here has passed disclosure control."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from joinedup.disclosure import DisclosurePolicy, control_count
from joinedup.errors import JoinedupError
from joinedup.warehouse import analytics
from joinedup.warehouse.engines.base import Engine

CODELIST_TABLE = "summary_codelist"


@dataclass(frozen=True)
class Period:
    """The history a warehouse holds, from its latest build."""

    start: dt.date
    end: dt.date
    source: str = ""
    seed: int | None = None
    footprint: str = ""
    built_at: str = ""
    version: str = ""

    @property
    def last_year_start(self) -> dt.date:
        return max(self.start, self.end - dt.timedelta(days=364))


def period_of(engine: Engine) -> Period:
    """The history of the latest build recorded in the warehouse."""
    query = exp.select("*").from_("build").order_by(exp.column("built_at").desc()).limit(1)
    try:
        rows = engine.execute(query).to_pylist()
    except JoinedupError as err:
        raise JoinedupError(f"this warehouse has no build record ({err})") from err
    if not rows:
        raise JoinedupError("this warehouse has no build record: build it with `joinedup synth`")
    r = rows[0]
    return Period(
        start=r["history_start_date"],
        end=r["history_end_date"],
        source=r["source"],
        seed=r["seed"],
        footprint=r["footprint"],
        built_at=r["built_at"],
        version=r["joinedup_version"],
    )


@dataclass
class SystemReport:
    period: Period
    places: pa.Table
    conditions: pa.Table
    activity: pa.Table
    waiting: pa.Table
    policy: DisclosurePolicy
    totals: dict[str, Any] = field(default_factory=dict)


def system_report(
    engine: Engine, codelist: pa.Table | None, policy: DisclosurePolicy | None = None
) -> SystemReport:
    """People per place, conditions, activity and costs in the last year, and the waiting list."""
    chosen = policy or DisclosurePolicy()
    period = period_of(engine)
    places = analytics.run(engine, "system_summary", ref_date=period.end)
    conditions = pa.table({"condition": pa.array([], pa.string())})
    if codelist is not None and codelist.num_rows:
        engine.load_session(CODELIST_TABLE, codelist)
        conditions = analytics.run(
            engine, "condition_prevalence", codelist=CODELIST_TABLE, ref_date=period.end
        )
    activity = analytics.run(
        engine, "activity_summary", start_date=period.last_year_start, end_date=period.end
    )
    waiting = analytics.run(engine, "rtt_waiting_list", ref_date=period.end)
    totals = {
        "people": sum(places.column("people").to_pylist()),
        "deaths_last_year": sum(places.column("deaths_last_year").to_pylist()),
    }
    return SystemReport(
        period=period,
        places=analytics.publish(places, chosen),
        conditions=analytics.publish(conditions, chosen) if conditions.num_rows else conditions,
        activity=analytics.publish(activity, chosen),
        waiting=analytics.publish(waiting, chosen),
        policy=chosen,
        totals={k: _published_total(v, chosen) for k, v in totals.items()},
    )


def _published_total(value: int, policy: DisclosurePolicy) -> int | None:
    return control_count(int(value), policy)


def default_parameters(name: str, period: Period) -> dict[str, Any]:
    """Parameters that make each analytic meaningful for a warehouse's history."""
    ref = {"ref_date": period.end}
    last_year = {"start_date": period.last_year_start, "end_date": period.end}
    by_name: dict[str, dict[str, Any]] = {
        "population_by_place": ref,
        "age_sex_pyramid": ref,
        "condition_prevalence": {**ref, "codelist": CODELIST_TABLE},
        "condition_prevalence_by_age_sex": {**ref, "codelist": CODELIST_TABLE},
        "activity_rates": last_year,
        "activity_summary": last_year,
        "deaths_by_year_age_sex": {},
        "mortality_rates": {},
        "rtt_waiting_list": ref,
        "system_summary": ref,
    }
    return by_name.get(name, ref)


@dataclass(frozen=True)
class AnalyticRun:
    name: str
    rows: int
    seconds: float
    path: Path | None


def run_all(
    engine: Engine,
    codelist: pa.Table | None,
    out_dir: Path | None = None,
    policy: DisclosurePolicy | None = None,
) -> list[AnalyticRun]:
    """Run every canonical analytic with parameters for this warehouse; write each published
    result to `out_dir/<name>.parquet` when given."""
    chosen = policy or DisclosurePolicy()
    period = period_of(engine)
    if codelist is not None:
        engine.load_session(CODELIST_TABLE, codelist)
    runs: list[AnalyticRun] = []
    for name in analytics.ANALYTICS:
        params = default_parameters(name, period)
        if "codelist" in params and codelist is None:
            continue
        began = time.perf_counter()
        result = analytics.publish(analytics.run(engine, name, **params), chosen)
        seconds = time.perf_counter() - began
        path = None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / f"{name}.parquet"
            tmp = path.with_name(path.name + ".tmp")
            pq.write_table(result, tmp)
            tmp.replace(path)
        runs.append(AnalyticRun(name, result.num_rows, seconds, path))
    return runs
