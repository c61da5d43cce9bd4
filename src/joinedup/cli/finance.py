"""`joinedup finance`: the single pot — need, allocation, guarantees, the control total,
payments, risk share and what-if, written to warehouse tables (finance_*), and the report."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import pyarrow as pa
import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from joinedup.cli.main import (
    DEFAULT_SPARK_MASTER,
    DEFAULT_WAREHOUSE,
    EngineOption,
    MemoryLimitOption,
    SparkMasterOption,
    WarehouseOption,
    console,
)
from joinedup.cli.results import write_result
from joinedup.disclosure import DisclosurePolicy
from joinedup.errors import ConfigurationError, InputError, describe_validation_error
from joinedup.finance import pipeline as fp
from joinedup.finance.config import FinanceConfig, dump_config, load_config
from joinedup.finance.control_total import Ledger, load_ledger
from joinedup.finance.defaults import default_config
from joinedup.finance.money import gbp_text, pence
from joinedup.finance.need import (
    COMPONENTS,
    LEVELS,
    NeedIndex,
    from_published,
    icb_need,
    need_within_icb,
)
from joinedup.finance.whatif import ActivityChange, ActivityShift, describe
from joinedup.footprint import Footprint
from joinedup.reference.practices import load_practices_from_dir
from joinedup.reports.finance import write_report
from joinedup.warehouse import Engine, open_engine

app = typer.Typer(
    help="The single pot: need, allocation, guarantees, budgets, payments, control total, risk "
    "share and what-if.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Finance settings YAML (default: illustrative settings sized to the warehouse; "
        "`joinedup finance config` writes them to edit).",
    ),
]
ReferenceOption = Annotated[
    Path | None,
    typer.Option(
        "--reference-dir",
        help="Use NHS England's published practice weights (gp_practice_weighted_populations_"
        "2025_26.csv in this folder) instead of need estimated from the population.",
    ),
]

SHOWN = ("general_and_acute", "community_services", "mental_health", "maternity",
         "prescribing", "health_inequalities", "final", "primary_medical_care")  # fmt: skip


def _need_frame(rows: list[NeedIndex]) -> pa.Table:
    components = [c for c in (*COMPONENTS, *SHOWN) if c in rows[0].index]
    components = list(dict.fromkeys(components))
    columns: dict[str, list[object]] = {
        "level": [r.level for r in rows],
        "code": [r.code for r in rows],
        "name": [r.name for r in rows],
        "parent_code": [r.parent_code for r in rows],
        "registered_count": [r.population for r in rows],
    }
    for name in components:
        columns[f"{name}_wp"] = [r.weighted[name] for r in rows]
    for name in components:
        columns[f"{name}_index"] = [r.index[name] for r in rows]
    return pa.table(columns)


def _print_need(rows: list[NeedIndex], title: str) -> None:
    table = Table(title=title, show_edge=False)
    table.add_column("code")
    table.add_column("name")
    table.add_column("population", justify="right")
    shown = [n for n in SHOWN if n in rows[0].index]
    for name in shown:
        table.add_column(name.replace("_", " "), justify="right")
    for r in rows:
        table.add_row(
            r.code, escape(r.name), f"{r.population:,.0f}",
            *(f"{r.index[n]:.3f}" for n in shown),
        )  # fmt: skip
    console.print(table)


@contextmanager
def _session(
    warehouse: Path,
    config: Path | None,
    engine_kind: str = "duckdb",
    spark_master: str = DEFAULT_SPARK_MASTER,
    memory_limit: str | None = None,
) -> Iterator[tuple[Engine, FinanceConfig, str]]:
    """The warehouse opened for writing, with the settings checked against its footprint."""
    with open_engine(
        engine_kind,
        warehouse=warehouse,
        read_only=False,
        spark_master=spark_master,
        memory_limit=memory_limit,
    ) as engine:
        places, orgs = fp.footprint_names(engine)
        if config is None:
            settings = default_config(fp.warehouse_profile(engine))
            source = "illustrative defaults"
        else:
            settings = load_config(config)
            source = str(config)
        settings.check_footprint(places, orgs, source)
        yield engine, settings, source


def _need(engine: Engine, settings: FinanceConfig, reference_dir: Path | None) -> fp.Need:
    if reference_dir is not None:
        return fp.need_from_published(engine, load_practices_from_dir(reference_dir), settings)
    with console.status("Estimating need from the population"):
        return fp.need_from_population(engine, settings)


def _written(rows: dict[str, int]) -> None:
    table = Table(title="Tables written", show_edge=False)
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("holds")
    for name, count in rows.items():
        table.add_row(name, f"{count:,}", fp.FINANCE_TABLES.get(name, ""))
    console.print(table)


def _money(value: int) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}£{abs(value) / 100:,.0f}"


@app.command("need-index")
def need_index(
    reference_dir: ReferenceOption = None,
    icb: Annotated[
        str | None,
        typer.Option("--icb", help="With --reference-dir: the ICB whose areas to index."),
    ] = None,
    england: Annotated[
        bool,
        typer.Option("--england", help="With --reference-dir: every ICB against England."),
    ] = False,
    level: Annotated[
        str, typer.Option("--level", help=f"Areas to index: {', '.join(LEVELS[:3])}.")
    ] = "place",
    footprint: Annotated[
        Path | None,
        typer.Option(
            "--footprint",
            help="With --reference-dir: a footprint file assigning practices to PCNs "
            "(the 2025/26 file has none), for --level pcn.",
        ),
    ] = None,
    rounding: Annotated[
        str,
        typer.Option(
            "--rounding",
            help="With --reference-dir: 'tool' rounds sums to whole people as NHS England's "
            "place-based allocation tool does; 'exact' keeps them as published.",
        ),
    ] = "tool",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write every column to .csv or .parquet.")
    ] = None,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    config: ConfigOption = None,
) -> None:
    """Need indices per allocation component and overall.

    index = (weighted population / population) of the area / the same of its parent; 1.10
    means 10% more need per head than the parent's average.

    With --reference-dir: from NHS England's published practice weights, for the places (or
    PCNs, practices) of --icb, or every ICB against England with --england; nothing is
    written to the warehouse. Without: need estimated from the warehouse's own population
    (after `joinedup phm run`), stored in finance_practice_need, finance_need_index and the
    model tables (cost curves, additional need, health inequalities).
    """
    if level not in LEVELS[:3]:
        raise ConfigurationError(f"--level must be one of {', '.join(LEVELS[:3])}")
    if rounding not in ("tool", "exact"):
        raise ConfigurationError("--rounding must be 'tool' or 'exact'")
    mode: Literal["tool", "exact"] = "tool" if rounding == "tool" else "exact"
    if reference_dir is not None:
        if (icb is None) == (not england):
            raise ConfigurationError("give --icb CODE (areas within an ICB) or --england (ICBs)")
        records = load_practices_from_dir(reference_dir)
        pcn_of = {p.code: p.pcn for p in Footprint.load(footprint).practices} if footprint else None
        rows = from_published(records, pcn_of)
        if england:
            result = icb_need(records, rounding=mode)
        else:
            result = need_within_icb(rows, icb or "", level, rounding=mode)
        if output is not None:
            write_result(_need_frame(result), output)
            console.print(f"Wrote {len(result)} need indices to {escape(str(output))}.")
            return
        parent = "England" if england else result[0].parent_code
        _print_need(result, f"Need index against {parent} (NHS England's weights)")
        return
    if icb is not None or england or footprint is not None:
        raise ConfigurationError("--icb, --england and --footprint go with --reference-dir")
    with _session(warehouse, config) as (engine, settings, _):
        need = _need(engine, settings, None)
        written = fp.store(engine, fp.need_tables(need, DisclosurePolicy()))
        rows_out = need.indices(level)
    if output is not None:
        write_result(_need_frame(rows_out), output)
        console.print(f"Wrote {len(rows_out)} need indices to {escape(str(output))}.")
    _print_need(rows_out, f"Need index against {need.icb_code}, estimated from the population")
    _written(written)


@app.command("config")
def config_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the settings here (YAML).")
    ] = None,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
) -> None:
    """Write illustrative finance settings sized to the warehouse's footprint, to edit: the pot
    (about £2,000 a head), baselines (each place's head-count share), pace of change, sectors,
    guarantees, budgets, contracts, the control total, risk share and what-if scenarios."""
    with open_engine("duckdb", warehouse=warehouse) as engine:
        text = dump_config(default_config(fp.warehouse_profile(engine)))
    if output is None:
        console.print(text, markup=False, highlight=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    console.print(f"Wrote finance settings to {escape(str(output))}.")


@app.command("allocate")
def allocate_command(
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    config: ConfigOption = None,
    reference_dir: ReferenceOption = None,
) -> None:
    """Targets from need, distance from target, and the pace-of-change path from the baselines,
    to places and to sectors, in exact pence (finance_allocation, finance_sector_allocation)."""
    with _session(warehouse, config) as (engine, settings, _):
        need = _need(engine, settings, reference_dir)
        result = fp.allocate(need, settings)
        written = fp.store(engine, fp.allocation_tables(result))
    table = Table(title=f"Allocation ({need.source} need)", show_edge=False)
    for column in ("year", "place", "baseline", "target", "allocation", "distance", "growth"):
        table.add_column(column, justify="left" if column in ("year", "place") else "right")
    for r in result.path:
        table.add_row(
            r.year, escape(result.place_names.get(r.place_code, r.place_code)),
            _money(r.baseline_pence), _money(r.target_pence), _money(r.allocation_pence),
            f"{float(r.distance_from_target):+.1%}", f"{float(r.growth):+.1%}",
        )  # fmt: skip
    console.print(table)
    _written(written)


def _driver(
    kind: type[ActivityChange] | type[ActivityShift], **fields: str | None
) -> ActivityChange | ActivityShift:
    try:
        return kind.model_validate({"name": "command line", **fields})
    except ValidationError as err:
        raise InputError("what-if", describe_validation_error(err)) from err


@app.command("what-if")
def what_if_command(
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    config: ConfigOption = None,
    activity: Annotated[
        str | None,
        typer.Option("--activity", help="Change this activity type (e.g. emergency_admission)."),
    ] = None,
    change: Annotated[
        str | None, typer.Option("--change", help="By this share: -0.1 is 10% fewer.")
    ] = None,
    shift: Annotated[
        str | None,
        typer.Option(
            "--shift", help="Move activity FROM:TO (e.g. outpatient_attendance:community_contact)."
        ),
    ] = None,
    share: Annotated[str | None, typer.Option("--share", help="With --shift: share moved.")] = None,
    place: Annotated[
        str | None, typer.Option("--place", help="Only the people of this place.")
    ] = None,
    segment: Annotated[
        str | None,
        typer.Option("--segment", help="Only the people of this Bridges to Health segment."),
    ] = None,
) -> None:
    """What a change in activity does to each place's cost, need and allocation (finance_what_if).

    Give a driver (--activity with --change, or --shift with --share), or none to run the
    scenarios in the settings. Need is refitted on the changed activity.
    """
    drivers: list[ActivityChange | ActivityShift]
    if activity is not None or change is not None:
        if activity is None or change is None or shift is not None:
            raise ConfigurationError("--activity and --change go together, without --shift")
        drivers = [_driver(ActivityChange, activity_type=activity, change=change,
                           place=place, segment=segment)]  # fmt: skip
    elif shift is not None:
        if share is None or ":" not in shift:
            raise ConfigurationError("--shift FROM:TO needs --share")
        source, target = shift.split(":", 1)
        drivers = [_driver(ActivityShift, from_activity=source, to_activity=target, share=share,
                           place=place, segment=segment)]  # fmt: skip
    else:
        drivers = []
    with _session(warehouse, config) as (engine, settings, _):
        chosen = drivers or list(settings.what_if)
        if not chosen:
            raise ConfigurationError(
                "no what-if scenario: give a driver or list them in the settings"
            )
        need = _need(engine, settings, None)
        with console.status("Refitting need for each scenario"):
            effects = fp.what_if(need, settings, chosen)
        year = settings.allocation.years[0].year
        written = fp.store(engine, {"finance_what_if": fp.what_if_table(effects, chosen, year)})
    names = {e.place_code: e.place_name for e in effects}
    for driver in chosen:
        table = Table(title=escape(f"{driver.name}: {describe(driver, names)}"), show_edge=False)
        for column in ("place", "cost change", "index", "target change", "allocation change"):
            table.add_column(column, justify="left" if column == "place" else "right")
        for e in (e for e in effects if e.scenario == driver.name):
            table.add_row(
                escape(e.place_name),
                _money(e.scenario_cost_pence - e.baseline_cost_pence),
                f"{e.baseline_index:.3f} → {e.scenario_index:.3f}",
                _money(e.scenario_target_pence - e.baseline_target_pence),
                _money(e.scenario_allocation_pence - e.baseline_allocation_pence),
            )
        console.print(table)
    _written(written)


@app.command("guarantees")
def guarantees_command(
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    config: ConfigOption = None,
    reference_dir: ReferenceOption = None,
) -> None:
    """The Mental Health Investment Standard and the community services guarantee against the
    allocation's growth, delegated place budgets and pooled budgets with councils (BCF,
    Section 75) (finance_guarantee, finance_place_budget, finance_pooled_budget)."""
    with _session(warehouse, config) as (engine, settings, _):
        allocation = fp.allocate(_need(engine, settings, reference_dir), settings)
        tables = fp.guarantee_tables(allocation, settings)
        if not tables:
            raise ConfigurationError(
                "the settings have no mhis, community_guarantee, delegation or pooled_budgets"
            )
        written = fp.store(engine, tables)
    if "finance_guarantee" in tables:
        for row in tables["finance_guarantee"].to_pylist():
            mark = "[green]met[/]" if row["met"] else "[bold red]NOT met[/]"
            console.print(f"{mark}  {escape(row['explanation'])}")
    _written(written)


@app.command("payments")
def payments_command(
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    config: ConfigOption = None,
) -> None:
    """Each contract in the settings paid for its year's activity in the warehouse under the
    blended payment rules (2022/23, or 2023/24 onward), line by line with the sums
    (finance_payment_line)."""
    with _session(warehouse, config) as (engine, settings, _):
        tables = fp.payment_tables(engine, settings)
        if not tables:
            raise ConfigurationError("the settings have no contracts")
        written = fp.store(engine, tables)
    table = Table(title="Blended payments", show_edge=False)
    for column in ("provider", "year", "rules", "line", "pod", "amount"):
        table.add_column(column, justify="right" if column == "amount" else "left")
    for row in tables["finance_payment_line"].to_pylist():
        table.add_row(
            row["provider_code"], row["financial_year"], row["rules"], row["line"],
            row["point_of_delivery"] or "", gbp_text(pence(row["amount_gbp"])),
        )  # fmt: skip
    console.print(table)
    _written(written)


@app.command("risk-share")
def risk_share_command(
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    config: ConfigOption = None,
) -> None:
    """The risk-share agreement in the settings applied to each outturn scenario: what each
    place and collaborative keeps, pools, shares and ends with, caps and collars applied
    (finance_risk_share)."""
    with _session(warehouse, config) as (engine, settings, _):
        data = fp.risk_share_tables(settings)
        written = fp.store(engine, {"finance_risk_share": data})
    table = Table(title="Risk share (losses positive)", show_edge=False)
    for column in ("scenario", "party", "variance", "after sharing"):
        table.add_column(
            column, justify="right" if column in ("variance", "after sharing") else "left"
        )
    for row in data.to_pylist():
        table.add_row(
            escape(row["scenario"]), escape(row["party_name"]),
            _money(pence(row["variance_gbp"])), _money(pence(row["final_gbp"])),
        )  # fmt: skip
    console.print(table)
    _written(written)


LedgerOption = Annotated[
    Path | None,
    typer.Option(
        "--ledger",
        help="Import organisations' plans and actuals by month from this CSV (organisation_code,"
        " financial_year, month, category, plan_gbp, actual_gbp); it replaces the stored one.",
    ),
]


def _ledger(engine: Engine, path: Path | None) -> Ledger | None:
    if path is None:
        return None
    _, orgs = fp.footprint_names(engine)
    return load_ledger(path, orgs)


@app.command("control-total")
def control_total_command(
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    config: ConfigOption = None,
    ledger: LedgerOption = None,
) -> None:
    """The system control total: each organisation's position, forecast outturn (trend or run
    rate), variance by cause and the break-even rule in force for the year (the system from
    2023/24, each organisation too from 2026/27). Without --ledger it uses the ledger already
    imported, or a synthetic one for the demo (finance_ledger, finance_control_total,
    finance_variance, finance_control_total_waterfall)."""
    with _session(warehouse, config) as (engine, settings, _):
        result, tables = fp.control_total_step(engine, settings, _ledger(engine, ledger))
        written = fp.store(engine, tables)
    table = Table(title=escape(f"Control total {result.financial_year}"), show_edge=False)
    for column in ("organisation", "months", "plan to date", "actual to date", "forecast",
                   "plan", "must break even", "meets"):  # fmt: skip
        table.add_column(column, justify="left" if column == "organisation" else "right")
    for p in result.positions:
        meets = "" if p.meets_rule is None else ("yes" if p.meets_rule else "NO")
        table.add_row(
            escape(p.organisation_name), str(p.months_reported), _money(p.plan_ytd_pence),
            _money(p.actual_ytd_pence), _money(p.forecast_pence), _money(p.plan_full_year_pence),
            "yes" if p.must_break_even else "no", meets,
        )  # fmt: skip
    console.print(table)
    console.print(escape(result.explanation))
    _written(written)


@app.command("run")
def run_command(
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    config: ConfigOption = None,
    reference_dir: ReferenceOption = None,
    ledger: LedgerOption = None,
    engine: EngineOption = "duckdb",
    spark_master: SparkMasterOption = DEFAULT_SPARK_MASTER,
    memory_limit: MemoryLimitOption = None,
) -> None:
    """Every finance step into the warehouse in one transaction: need, allocation to places and
    sectors, guarantees, delegated and pooled budgets, payments, risk share, the control total
    and the what-if scenarios in the settings. A failure leaves the previous tables as they
    were; a re-run replaces them. Runs on DuckDB or Spark (--engine spark needs a lake)."""
    began = time.perf_counter()

    def stage(text: str) -> None:
        console.print(f"[dim]{time.perf_counter() - began:6.1f} s[/]  {escape(text)}")

    published = load_practices_from_dir(reference_dir) if reference_dir is not None else None
    with (
        _session(warehouse, config, engine, spark_master, memory_limit) as (eng, settings, _),
        console.status("Finance") as status,
    ):

        def update(text: str) -> None:
            stage(text)
            status.update(text)

        written = fp.run_all(
            eng, settings, published=published, ledger=_ledger(eng, ledger), on_stage=update
        )
    stage("done")
    _written(written)


@app.command("report")
def report_command(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the HTML report.")
    ] = Path("data/outputs/finance-report.html"),
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
) -> None:
    """Write the finance report (self-contained HTML with charts and tables) from the tables
    `joinedup finance run` leaves in the warehouse."""
    with open_engine("duckdb", warehouse=warehouse) as engine:
        path = write_report(engine, output)
    console.print(f"Wrote {escape(str(path))}.")
