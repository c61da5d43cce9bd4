"""What the dashboard shows, read from the warehouse once and kept.

The warehouse is opened read-only while it is served, so published figures cannot change under
a running server: each page's figures are built on first use (by the same builders as the HTML
reports, so the two agree) and kept for the life of the process. Only worklists, which filter
and page identifiable rows, are queried per request. Every aggregate passes disclosure control
before it leaves here; people with a national data opt-out are in no aggregate.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from markupsafe import Markup
from sqlglot import exp

from joinedup import __version__
from joinedup.disclosure import (
    SUPPRESSED_MARK,
    DisclosurePolicy,
    Nesting,
    apply,
    control_count,
    describe,
)
from joinedup.errors import ConfigurationError, InputError
from joinedup.finance import pipeline as finance_pipeline
from joinedup.finance.config import FinanceConfig
from joinedup.indicators.headlines import headlines as area_headlines
from joinedup.indicators.values import TABLE as INDICATOR_VALUES
from joinedup.population.codelists import load_codelists
from joinedup.reports import finance as finance_report
from joinedup.reports import phm as phm_report
from joinedup.reports.charts import NHS_BLUE, figure_svg, linked, new_figure
from joinedup.warehouse import Engine
from joinedup.warehouse.report import Period, period_of

T = TypeVar("T")

PLACE_COLOURS = ("#005eb8", "#41b6e6", "#ffb81c", "#007f3b", "#330072", "#ae2573", "#00a499")
WORKLIST_COLUMNS = (
    "worklist_id", "pcn_code", "practice_code", "person_id", "nhs_number", "age", "sex",
    "risk_tier", "risk_score", "reasons",
)  # fmt: skip
TIERS = ("very_high", "high", "moderate", "low")
#: What the dashboard cannot run without: the footprint and a population health run.
REQUIRED_TABLES = ("ics", "place", "pcn", "practice", "phm_run", "phm_person", "phm_worklist")


@dataclass(frozen=True)
class WorklistPage:
    pcn_code: str
    total: int
    limit: int
    offset: int
    cohorts: list[dict[str, Any]]
    rows: list[dict[str, Any]]


def _count(value: int | None, suppressed: bool) -> str:
    if suppressed or value is None:
        return SUPPRESSED_MARK
    return f"{value:,}"


def plain(value: Any) -> Any:
    """A context as JSON: charts (SVG) left out, money and dates as text, NaN as null."""
    if isinstance(value, dict):
        return {
            str(k): plain(v)
            for k, v in value.items()
            if not str(k).endswith("svg") and not isinstance(v, Markup)
        }
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Dashboard:
    """The figures of one warehouse, built once per page and kept."""

    def __init__(self, engine: Engine, *, boundaries: Path | None = None) -> None:
        self.engine = engine
        self.boundaries = boundaries
        self._lock = threading.RLock()
        self._cache: dict[tuple[str, ...], Any] = {}
        self.tables = set(engine.table_names())

    # --- plumbing --------------------------------------------------------------------------

    def _kept(self, key: tuple[str, ...], build: Callable[[], T]) -> T:
        if key in self._cache:  # built once and never changed: no lock needed to read it
            kept: T = self._cache[key]
            return kept
        with self._lock:
            if key not in self._cache:
                self._cache[key] = build()
            value: T = self._cache[key]
            return value

    def _rows(self, query: exp.Query) -> list[dict[str, Any]]:
        with self._lock:
            rows: list[dict[str, Any]] = self.engine.execute(query).to_pylist()
        return rows

    def _table(self, name: str) -> list[dict[str, Any]]:
        if name not in self.tables:
            return []
        return self._rows(exp.select("*").from_(name))

    def ready(self) -> list[str]:
        """Tables the dashboard needs that the warehouse lacks (empty when ready)."""
        return [t for t in REQUIRED_TABLES if t not in self.tables]

    def warm(self) -> None:
        """Build every page's figures now, so the first visitor does not wait for them."""
        self.overview()
        for place in self.places():
            self.place(place["place_code"])
        if "finance_run" in self.tables:
            self.finance()
        self._worklists()
        self.data_quality()
        self.about()

    # --- the system ------------------------------------------------------------------------

    def ics(self) -> dict[str, Any]:
        return self._kept(("ics",), lambda: (self._table("ics") or [{}])[0])

    def policy(self) -> DisclosurePolicy:
        def build() -> DisclosurePolicy:
            if "phm_run" not in self.tables:  # e.g. data quality straight after a FHIR load
                return DisclosurePolicy()
            run = self._latest_run()
            raw = run.get("disclosure_policy")
            if not raw:
                return DisclosurePolicy()
            return DisclosurePolicy.parse(json.loads(str(raw)), source="phm_run")

        return self._kept(("policy",), build)

    def _latest_run(self) -> dict[str, Any]:
        runs = sorted(self._table("phm_run"), key=lambda r: str(r["run_at"]))
        if not runs:
            raise ConfigurationError(
                "this warehouse has no population health results: run `joinedup phm run` first"
            )
        return runs[-1]

    def synthetic(self) -> bool:
        return self.ics().get("is_real") is False

    def places(self) -> list[dict[str, Any]]:
        """Places with their people (opt-outs excluded, disclosure-controlled) and PCNs."""
        return self._kept(("places",), self._places)

    def _places(self) -> list[dict[str, Any]]:
        names = {r["place_code"]: r for r in self._table("place")}
        published = self._people_by("place_code")
        pcns = self._tally("pcn", "place_code")
        practices = self._tally("practice", "place_code")
        total = sum(r["people"] or 0 for r in published.values())
        out = []
        for code in sorted(names):
            row = published.get(code, {"people": 0, "people_suppressed": False})
            people = row["people"]
            out.append(
                {
                    "place_code": code,
                    "place_name": names[code]["place_name"],
                    "people": people,
                    "people_text": _count(people, bool(row["people_suppressed"])),
                    "share": "" if not total or people is None else f"{100 * people / total:.1f}%",
                    "pcns": pcns.get(code, 0),
                    "practices": practices.get(code, 0),
                }
            )
        return out

    def place_names(self) -> dict[str, str]:
        return {p["place_code"]: p["place_name"] for p in self.places()}

    def _people_by(self, column: str) -> dict[str, dict[str, Any]]:
        """People who may be counted for planning (opt-outs left out), by place ("place_code")
        or PCN ("pcn_code"), disclosure-controlled: {code: {"people", "people_suppressed"}}."""
        return self._kept(("people_by",), self._people_by_area)[column]

    def _people_by_area(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Places and PCNs controlled together, PCNs nested in their places, so a place's
        people minus its visible PCNs never gives a suppressed PCN."""
        counts: dict[str, pa.Table] = {}
        for column in ("place_code", "pcn_code"):
            query = (
                exp.select(
                    exp.column(column).as_("code"),
                    exp.cast(exp.Count(this=exp.Star()), exp.DataType.Type.BIGINT).as_("people"),
                )
                .from_("phm_person")
                .where(exp.Not(this=exp.column("national_data_opt_out")))
                .group_by(exp.column(column))
            )
            with self._lock:
                counts[column] = self.engine.execute(query)
        levels = [c for c in counts for _ in range(counts[c].num_rows)]
        table = pa.table(
            {
                "level": pa.array(levels, pa.string()),
                "code": pa.concat_arrays(
                    [counts[c].column("code").combine_chunks().cast(pa.string()) for c in counts]
                ),
                "people": pa.concat_arrays(
                    [counts[c].column("people").combine_chunks() for c in counts]
                ),
            }
        )
        pcn_places = {str(r["pcn_code"]): str(r["place_code"]) for r in self._table("pcn")}
        nesting = Nesting("level", "code", "pcn_code", "place_code", pcn_places)
        published = apply(
            table, self.policy(), counts=["people"], group_by=["level"], nested=[nesting]
        )
        out: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in counts}
        for row in published.to_pylist():
            out[row["level"]][row["code"]] = row
        return out

    def _tally(self, table: str, column: str) -> dict[str, int]:
        """How many rows of `table` have each value of `column`."""
        out: dict[str, int] = {}
        for row in self._table(table):
            out[row[column]] = out.get(row[column], 0) + 1
        return out

    def pcns(self, place: str | None = None) -> list[dict[str, Any]]:
        """PCNs (of `place` when given) with their people, disclosure-controlled."""
        every = self._kept(("pcns",), self._pcns)
        return every if place is None else [p for p in every if p["place_code"] == place]

    def _pcns(self) -> list[dict[str, Any]]:
        published = self._people_by("pcn_code")
        practices = self._tally("practice", "pcn_code")
        names = self.place_names()
        out = []
        for p in sorted(self._table("pcn"), key=lambda r: str(r["pcn_code"])):
            row = published.get(p["pcn_code"], {"people": 0, "people_suppressed": False})
            out.append(
                {
                    "pcn_code": p["pcn_code"],
                    "pcn_name": p["pcn_name"],
                    "place_code": p["place_code"],
                    "place_name": names.get(p["place_code"], p["place_code"]),
                    "people": row["people"],
                    "people_text": _count(row["people"], bool(row["people_suppressed"])),
                    "practices": practices.get(p["pcn_code"], 0),
                }
            )
        return out

    def practices(self) -> dict[str, dict[str, Any]]:
        return self._kept(
            ("practices",), lambda: {r["practice_code"]: r for r in self._table("practice")}
        )

    # --- pages -----------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        def build() -> dict[str, Any]:
            context = phm_report.report_context(self.engine)
            context["places"] = self.places()
            context["places_chart"] = self._places_chart()
            context["deaths"] = self._deaths()
            context["deaths_chart"] = self._deaths_chart(context["deaths"], None)
            context["map"] = self.map(None)
            return context

        return self._kept(("overview",), build)

    def place(self, code: str) -> dict[str, Any]:
        if code not in self.place_names():
            raise InputError(f"place {code}", "no such place in this footprint")

        def build() -> dict[str, Any]:
            context = phm_report.report_context(self.engine, code)
            context["pcns"] = self.pcns(code)
            context["summary"] = next(p for p in self.places() if p["place_code"] == code)
            # One population figure on the page: the places table's, controlled with every
            # place's and PCN's (the report's own is the same count controlled alone).
            context["registered"] = context["summary"]["people_text"]
            context["map"] = self.map(code)
            deaths = self._deaths()
            context["deaths_chart"] = self._deaths_chart(deaths, code)
            context["deaths"] = [d for d in deaths if d["code"] in (code, "system")]
            return context

        return self._kept(("place", code), build)

    def finance(self) -> dict[str, Any]:
        if "finance_run" not in self.tables:
            raise ConfigurationError(
                "this warehouse has no finance results: run `joinedup finance run` first"
            )
        return self._kept(
            ("finance",), lambda: finance_report.report_context(self.engine, self.policy())
        )

    def finance_need(self) -> tuple[finance_pipeline.Need, FinanceConfig]:
        """Need fitted once on the warehouse with the last finance run's settings, for what-if
        runs from the page: read under the engine lock, nothing written."""
        if self.finance().get("need_source") != "population":
            raise ConfigurationError(
                "what-if changes the activity behind need estimated from the population; this "
                "warehouse's finance run used published weights"
            )

        def build() -> tuple[finance_pipeline.Need, FinanceConfig]:
            config = finance_pipeline.last_run_settings(self.engine)
            return finance_pipeline.need_from_population(self.engine, config), config

        return self._kept(("finance", "need"), build)

    def _period(self) -> Period | None:
        """The latest build's record, read by `period_of` (its one reader); None in a
        warehouse that has none."""
        if "build" not in self.tables:
            return None
        return self._kept(("period",), lambda: period_of(self.engine))

    def about(self) -> dict[str, Any]:
        return self._kept(("about",), self._about)

    def _about(self) -> dict[str, Any]:
        period = self._period()
        run = self._latest_run()
        finance = sorted(self._table("finance_run"), key=lambda r: str(r.get("run_at", "")))
        ics = self.ics()
        return {
            "ics_name": ics.get("ics_name", ""),
            "ics_code": ics.get("ics_code", ""),
            "synthetic": self.synthetic(),
            "build": {
                "source": period.source,
                "built_at": period.built_at,
                "joinedup_version": period.version,
                "seed": period.seed,
                "footprint": period.footprint,
                "start_date": period.start,
                "end_date": period.end,
            }
            if period
            else {},
            "phm_run": {
                "run_id": run.get("run_id"),
                "run_at": run.get("run_at"),
                "index_date": run.get("index_date"),
                "extract_date": run.get("extract_date"),
                "passes_acceptance": run.get("passes_acceptance"),
            },
            "finance_run": {
                "run_id": finance[-1].get("run_id"),
                "run_at": finance[-1].get("run_at"),
                "need_source": finance[-1].get("need_source"),
            }
            if finance
            else None,
            "version": __version__,
            "disclosure_rule": describe(self.policy()),
            "tables": {
                name: self.engine.count(name)
                for name in sorted(self.tables)
                if not name.startswith("phm_person_previous")
            },
        }

    # --- headlines -------------------------------------------------------------------------

    def headlines(self, level: str, code: str) -> dict[str, Any]:
        """An area's headline summary (`indicators.headlines`): worse and better than
        England, and significant recent trends. InputError for an area without values."""

        def build() -> dict[str, Any]:
            with self._lock:
                return area_headlines(self.engine, level, code).as_dict()

        return self._kept(("headlines", level, code), build)

    def indicator_values(self) -> list[dict[str, Any]]:
        """Every published indicator value (`phm_indicator_values`: each indicator, period,
        level and area, already disclosure-controlled and compared), read once; empty when
        the warehouse has none."""
        return self._kept(("indicator_values",), lambda: self._table(INDICATOR_VALUES))

    # --- data quality ----------------------------------------------------------------------

    def data_quality(self) -> dict[str, Any]:
        return self._kept(("data_quality",), self._data_quality)

    def _data_quality(self) -> dict[str, Any]:
        loads = sorted(self._table("fhir_load"), key=lambda r: int(r["load_seq"] or 0))
        quality = self._table("fhir_load_quality")
        latest = loads[-1]["load_id"] if loads else None
        load_unmapped = [
            r for r in quality if r["load_id"] == latest and r["section"] == "unmapped codes"
        ]
        reasons = [
            r for r in quality if r["load_id"] == latest and r["section"] == "quarantine reasons"
        ]
        return {
            "loads": [
                {
                    "load_id": r["load_id"],
                    "load_seq": r["load_seq"],
                    "started_at": r["started_at"],
                    "finished_at": r["finished_at"],
                    "inputs": json.loads(r["inputs"] or "[]"),
                    "resources_in_count": r["resources_in_count"],
                    "stored_count": r["stored_count"],
                    "unchanged_count": r["unchanged_count"],
                    "quarantined_count": r["quarantined_count"],
                }
                for r in reversed(loads)
            ],
            "quarantine_reasons": [
                {"reason": r["item"], "detail": r["detail"], "items_count": r["items_count"]}
                for r in reasons
            ],
            "quarantined": self.engine.count("fhir_quarantine")
            if "fhir_quarantine" in self.tables
            else 0,
            "load_unmapped": self._controlled_codes(load_unmapped),
            "unmapped": self._unmapped_codes(),
            "completeness": self._completeness(),
            "source": period.source if (period := self._period()) else None,
            "disclosure_rule": describe(self.policy()),
        }

    def quarantine(self, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        """Rejected records with their reasons, newest load first; never their content."""
        if "fhir_quarantine" not in self.tables:
            return 0, []
        query = (
            exp.select(
                "load_id", "source_file", "source_line", "resource_type", "resource_id", "reason"
            )
            .from_("fhir_quarantine")
            .order_by("load_id DESC", "source_file", "source_line")
            .limit(limit)
            .offset(offset)
        )
        return self.engine.count("fhir_quarantine"), self._rows(query)

    def _unmapped_codes(self) -> list[dict[str, Any]]:
        """Diagnosis codes in the warehouse that no population health code list knows, by how
        many records carry them: what a new code list entry or a mapping would pick up."""
        if "diagnosis" not in self.tables:
            return []
        lists = load_codelists()
        known = {(system, code) for _, system, code in lists.diagnoses}
        lengths = lists.icd10_prefix_lengths()
        query = (
            exp.select(
                exp.column("code_system"),
                exp.column("code"),
                exp.cast(exp.Count(this=exp.Star()), exp.DataType.Type.BIGINT).as_("records"),
            )
            .from_("diagnosis")
            .group_by(exp.column("code_system"), exp.column("code"))
        )
        rows = self._rows(query)
        total = sum(int(r["records"]) for r in rows)

        def mapped(system: str, code: str) -> bool:
            # SNOMED CT ids match exactly; ICD-10 list entries are prefixes of the full code.
            code = code.upper().replace(".", "")
            if system == "icd10":
                return any((system, code[:n]) in known for n in lengths)
            return (system, code) in known

        # Counts and shares are published: controlled, and shares taken from the published
        # counts, so a code carried by a handful of records shows "*" and no exact figure.
        policy = self.policy()
        shown_total = control_count(total, policy) or 0
        out = []
        for r in rows:
            if mapped(str(r["code_system"]), str(r["code"])):
                continue
            records = control_count(int(r["records"]), policy)
            out.append(
                {
                    "code_system": r["code_system"],
                    "code": r["code"],
                    "records": records,
                    "records_text": _count(records, records is None),
                    "share": f"{100 * records / shown_total:.2f}%"
                    if records is not None and shown_total
                    else "",
                }
            )
        # Ordered by the published count, so the order gives away no more than the counts.
        out.sort(key=lambda r: (-(r["records"] or 0), str(r["code_system"]), str(r["code"])))
        return out[:25]

    def _controlled_codes(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The latest load's unmapped codes with their counts disclosure-controlled."""
        policy = self.policy()
        out = []
        for r in rows:
            count = control_count(int(r["items_count"] or 0), policy)
            out.append(
                {
                    "item": r["item"],
                    "detail": r["detail"],
                    "count": count,
                    "count_text": _count(count, count is None),
                }
            )
        out.sort(key=lambda r: (str(r["item"]), -(r["count"] or 0), str(r["detail"])))
        return out

    def _completeness(self) -> list[dict[str, Any]]:
        """How complete the fields are that population health depends on."""
        if "person" not in self.tables:
            return []

        def missing(column: str) -> exp.Expr:
            return exp.cast(
                exp.Sum(
                    this=exp.If(
                        this=exp.Is(this=exp.column(column), expression=exp.Null()),
                        true=exp.Literal.number(1),
                        false=exp.Literal.number(0),
                    )
                ),
                exp.DataType.Type.BIGINT,
            ).as_(column)

        columns = ("lsoa_code", "imd_decile", "ethnic_category", "practice_code", "sex")
        query = exp.select(
            exp.cast(exp.Count(this=exp.Star()), exp.DataType.Type.BIGINT).as_("people"),
            *(missing(c) for c in columns),
        ).from_("person")
        row = self._rows(query)[0]
        people = int(row["people"] or 0)
        labels = {
            "lsoa_code": "Small area (LSOA)",
            "imd_decile": "Deprivation decile",
            "ethnic_category": "Ethnic category",
            "practice_code": "Registered practice",
            "sex": "Sex",
        }
        policy = self.policy()
        shown_people = control_count(people, policy) or 0
        out = []
        for c in columns:
            absent = control_count(int(row[c] or 0), policy)
            complete = (
                f"{100 * (shown_people - absent) / shown_people:.2f}%"
                if absent is not None and shown_people
                else SUPPRESSED_MARK
                if shown_people
                else ""
            )
            out.append(
                {
                    "field": labels[c],
                    "missing": absent,
                    "missing_text": _count(absent, absent is None),
                    "complete": complete,
                }
            )
        return out

    # --- charts ----------------------------------------------------------------------------

    def _places_chart(self) -> dict[str, Any]:
        places = self.places()
        fig = new_figure(7.5, 0.8 + 0.5 * len(places))
        ax = fig.subplots()
        y = list(range(len(places)))
        ax.barh(y, [p["people"] or 0 for p in places], color=NHS_BLUE, height=0.6)
        ax.set_yticks(y, [p["place_name"] for p in places], fontsize=9)
        ax.invert_yaxis()
        ax.set_xlabel("people registered (opt-outs excluded)")
        ax.spines[["top", "right"]].set_visible(False)
        for i, p in enumerate(places):
            ax.annotate(
                p["people_text"], (p["people"] or 0, i), xytext=(3, 0),
                textcoords="offset points", va="center", fontsize=8,
            )  # fmt: skip
        description = "Bar chart of people registered in each place: " + "; ".join(
            f"{p['place_name']} {p['people_text']} ({p['share']})" for p in places
        )
        return {
            "svg": figure_svg(fig, "places", "People by place", description),
            "description": description + ".",
        }

    def _deaths(self) -> list[dict[str, Any]]:
        """Deaths in the year, age-standardised, for the system and each place."""
        names = self.place_names()
        out = []
        for r in self._table("phm_inequalities"):
            if r["measure"] != "mortality" or r["dimension"] not in ("system", "place_code"):
                continue
            code = "system" if r["dimension"] == "system" else str(r["group_value"])
            row = phm_report.rate_row(r, "System" if code == "system" else names.get(code, code))
            shown = r["dsr"] is not None and not r["dsr_suppressed"]
            row |= {
                "code": code,
                "rate": r["dsr"] if shown else None,
                "lower": r["dsr_lower"] if shown and not r["dsr_lower_suppressed"] else None,
                "upper": r["dsr_upper"] if shown and not r["dsr_upper_suppressed"] else None,
            }
            out.append(row)
        out.sort(key=lambda d: (d["code"] != "system", d["group"]))
        return out

    def _deaths_chart(self, rows: list[dict[str, Any]], highlight: str | None) -> dict[str, Any]:
        """Dots and 95% whiskers: each place's age-standardised death rate, the system's as
        a line, so a place that stands out does so at a glance."""
        places = [d for d in rows if d["code"] != "system" and d["rate"] is not None]
        system = next((d for d in rows if d["code"] == "system"), None)
        fig = new_figure(7.5, 0.9 + 0.45 * max(len(places), 1))
        ax = fig.subplots()
        for i, d in enumerate(places):
            low = d["rate"] - (d["lower"] if d["lower"] is not None else d["rate"])
            high = (d["upper"] if d["upper"] is not None else d["rate"]) - d["rate"]
            colour = NHS_BLUE if highlight in (None, d["code"]) else "#aeb7bd"
            ax.errorbar([d["rate"]], [i], xerr=[[max(low, 0)], [max(high, 0)]], fmt="o",
                        color=colour, ecolor=colour, capsize=4, markersize=6)  # fmt: skip
        if system is not None and system["rate"] is not None:
            ax.axvline(system["rate"], color="#425563", linestyle="--", linewidth=1, label="System")
            ax.legend(fontsize=8, frameon=False, loc="best")
        ax.set_yticks(list(range(len(places))), [d["group"] for d in places], fontsize=9)
        ax.invert_yaxis()
        ax.set_xlabel("deaths per 100,000 in the year, age-standardised (95% CI)")
        ax.spines[["top", "right"]].set_visible(False)
        description = (
            "Dot-and-whisker chart of the age-standardised death rate per 100,000 in each "
            "place, with 95% confidence intervals"
            + (f"; the system rate, {system['dsr']}, is the dashed line" if system else "")
            + ": "
            + "; ".join(f"{d['group']} {d['dsr']} ({d['ci']})" for d in places)
            + "."
            + (f" {self.place_names()[highlight]} is highlighted." if highlight else "")
            + " The table below gives deaths, people and rates."
        )
        key = f"deaths-{highlight or 'system'}"
        return {
            "svg": figure_svg(fig, key, "Deaths by place", description),
            "description": description,
        }

    def map(self, highlight: str | None) -> dict[str, Any]:
        """The places on a map: ONS boundaries for a real footprint when given, otherwise a
        schematic of the practices by place (synthetic places have no boundaries)."""
        return self._kept(("map", highlight or ""), lambda: self._map(highlight))

    def _map(self, highlight: str | None) -> dict[str, Any]:
        places = self.places()
        colour = {
            p["place_code"]: PLACE_COLOURS[i % len(PLACE_COLOURS)] for i, p in enumerate(places)
        }
        names = self.place_names()
        shapes = self._boundary_shapes(set(names)) if not self.synthetic() else {}
        fig = new_figure(6.0, 5.0)
        ax = fig.subplots()
        ax.set_aspect("equal" if shapes else "auto")
        ax.set_axis_off()
        if shapes:
            for code, polygons in shapes.items():
                faded = highlight is not None and code != highlight
                for ring in polygons:
                    xs, ys = zip(*ring, strict=True)
                    for patch in ax.fill(xs, ys, color=colour[code], alpha=0.25 if faded else
                                         0.8, edgecolor="white", linewidth=0.8):  # fmt: skip
                        patch.set_url(f"/places/{code}")
            kind = "boundaries"
            source = "Local authority district boundaries, December 2021 (ONS, OGL v3)"
        else:
            for code in names:
                pts = [
                    (p["longitude"], p["latitude"])
                    for p in self.practices().values()
                    if p["place_code"] == code and p["longitude"] is not None
                ]
                if not pts:
                    continue
                faded = highlight is not None and code != highlight
                xs, ys = zip(*pts, strict=True)
                dots = ax.scatter(
                    xs, ys, s=40, color=colour[code], alpha=0.3 if faded else 0.9,
                    edgecolor="white", linewidth=0.5, label=names[code],
                )  # fmt: skip
                dots.set_urls([f"/places/{code}"] * len(xs))
                ax.annotate(
                    names[code], (sum(xs) / len(xs), sum(ys) / len(ys)), ha="center",
                    fontsize=8, weight="bold" if code == highlight else "normal",
                    url=f"/places/{code}",
                )  # fmt: skip
            kind = "schematic"
            source = "Schematic: each dot is a GP practice, coloured by place"
        description = (
            f"{'Map' if shapes else 'Schematic map'} of the {len(names)} places: "
            + ", ".join(names.values())
            + (f", with {names[highlight]} highlighted" if highlight else "")
            + f". {source}."
        )
        # Each place's shapes, dots and name link to its profile.
        svg = figure_svg(fig, f"map-{highlight or 'system'}", "Places", description)
        targets = {f"/places/{c}": f"{n}: place profile" for c, n in names.items()}
        return {
            "svg": linked(svg, targets),
            "description": description,
            "kind": kind,
            "legend": [
                {"place_code": c, "place_name": names[c], "colour": colour[c]} for c in names
            ],
        }

    def _boundary_shapes(self, codes: set[str]) -> dict[str, list[list[tuple[float, float]]]]:
        if self.boundaries is None or not self.boundaries.is_file():
            return {}
        try:
            data = json.loads(self.boundaries.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(str(self.boundaries), f"not readable GeoJSON: {err}") from err
        shapes: dict[str, list[list[tuple[float, float]]]] = {}
        for feature in data.get("features", []):
            props = feature.get("properties") or {}
            code = next((v for k, v in props.items() if k.upper().endswith("CD")), None)
            if code not in codes:
                continue
            geometry = feature.get("geometry") or {}
            polygons = geometry.get("coordinates", [])
            if geometry.get("type") == "Polygon":
                polygons = [polygons]
            shapes[str(code)] = [
                [(float(x), float(y)) for x, y, *_ in polygon[0]] for polygon in polygons
            ]
        return shapes

    # --- worklists -------------------------------------------------------------------------

    def worklist_titles(self) -> dict[str, dict[str, str]]:
        def build() -> dict[str, dict[str, str]]:
            settings = yaml.safe_load(self._latest_run().get("settings_yaml") or "") or {}
            return {
                str(w["id"]): {
                    "title": str(w.get("title", w["id"])),
                    "purpose": str(w.get("purpose", "")),
                }
                for w in settings.get("worklists", [])
            }

        return self._kept(("worklist_titles",), build)

    def _worklists(self) -> pa.Table:
        """Every worklist row, ordered for display, held in memory: worklists are small next
        to the population (tens of thousands of rows for a million people) and reading them
        from memory lets requests filter them concurrently, with no database lock."""

        def build() -> pa.Table:
            query = (
                exp.select(*WORKLIST_COLUMNS)
                .from_("phm_worklist")
                .order_by("pcn_code", "worklist_id", "risk_score DESC", "nhs_number")
            )
            with self._lock:
                return self.engine.execute(query)

        return self._kept(("worklists",), build)

    def worklist_people(self) -> dict[int, dict[str, Any]]:
        """Name and date of birth of each person on a worklist, from `identity` (the only table
        holding them), for the same clinicians who see the NHS number; held in memory."""

        def build() -> dict[int, dict[str, Any]]:
            on_list = exp.select("person_id").from_("phm_worklist").distinct()
            # One identity row per person, whole (never a name from one source and a date of
            # birth from another).
            first = exp.Window(
                this=exp.RowNumber(),
                partition_by=[exp.column("person_id")],
                order=exp.Order(expressions=[exp.column("source_system"), exp.column("source_id")]),
            )
            ranked = (
                exp.select("person_id", "given_name", "family_name", "birth_date", first.as_("n"))
                .from_("identity")
                .where(exp.column("person_id").isin(query=on_list))
            )
            query = (
                exp.select("person_id", "given_name", "family_name", "birth_date")
                .from_(ranked.subquery("i"))
                .where(exp.EQ(this=exp.column("n"), expression=exp.Literal.number(1)))
            )
            with self._lock:
                found = self.engine.execute(query).to_pylist()
            return {int(r.pop("person_id")): r for r in found}

        return self._kept(("worklist_people",), build)

    def worklist_person_ranks(
        self, name: str, key: Callable[[dict[str, Any]], Any]
    ) -> tuple[pa.Array, pa.Array, int | None]:
        """Every on-list person's dense rank by `key` of their identity row (null where `key`
        gives None), as (person_id, rank), and the rank of a person with no identity row
        (`key({})`); built once per `name` and kept, so a sort by name ranks rows in Arrow."""

        def build() -> tuple[pa.Array, pa.Array, int | None]:
            people = self.worklist_people()
            keys = [key(who) for who in people.values()]
            nobody = key({})
            present = {k for k in [*keys, nobody] if k is not None}
            rank = {k: i for i, k in enumerate(sorted(present))}
            return (
                pa.array(list(people), pa.int64()),
                pa.array([None if k is None else rank[k] for k in keys], pa.int64()),
                None if nobody is None else rank[nobody],
            )

        return self._kept(("worklist_person_ranks", name), build)

    def _worklist_rows(
        self, pcn_code: str, filters: dict[str, str | None]
    ) -> tuple[pa.Table, pa.Table]:
        """(rows in scope: the PCN, or the practice; the same with every filter applied)."""
        table = self._worklists()
        scope = pc.equal(table["pcn_code"], pcn_code)
        if filters.get("practice"):
            scope = pc.and_(scope, pc.equal(table["practice_code"], filters["practice"]))
        mask = scope
        for column, key in (("worklist_id", "cohort"), ("risk_tier", "risk_tier")):
            if filters.get(key):
                mask = pc.and_(mask, pc.equal(table[column], filters[key]))
        return table.filter(scope), table.filter(mask)

    def worklist(
        self,
        pcn_code: str,
        *,
        practice: str | None = None,
        cohort: str | None = None,
        risk_tier: str | None = None,
        limit: int = 50,
        offset: int = 0,
        order: Callable[[pa.Table], pa.Array] | None = None,
    ) -> WorklistPage:
        """One page of a PCN's worklist rows (in `practice` only, when given), filtered; in the
        table's own order, or as `order` gives them (the indices, in Arrow, of the filtered rows
        to show, in order: it may leave rows out), so only the page's rows become Python
        objects."""
        filters = {"practice": practice, "cohort": cohort, "risk_tier": risk_tier}
        scope, chosen = self._worklist_rows(pcn_code, filters)
        titles = self.worklist_titles()
        found: dict[str, int] = {}
        for key in scope["worklist_id"].to_pylist():
            found[key] = found.get(key, 0) + 1
        cohorts = [
            {"id": key, "title": t["title"], "purpose": t["purpose"], "people": found.get(key, 0)}
            for key, t in titles.items()
        ] + [
            {"id": key, "title": key, "purpose": "", "people": n}
            for key, n in found.items()
            if key not in titles
        ]
        shown = chosen.num_rows
        if order is None:
            rows = chosen.slice(offset, limit).to_pylist() if offset < shown else []
        else:
            ordered = order(chosen)
            shown = len(ordered)
            rows = chosen.take(ordered.slice(offset, limit)).to_pylist() if offset < shown else []
        for r in rows:
            r["cohort"] = titles.get(r["worklist_id"], {}).get("title", r["worklist_id"])
            r["risk_score"] = None if r["risk_score"] is None else round(float(r["risk_score"]), 4)
        return WorklistPage(pcn_code, shown, limit, offset, cohorts, rows)

    def worklist_csv_rows(
        self, pcn_code: str, *, practice: str | None, cohort: str | None, risk_tier: str | None
    ) -> pa.Table:
        filters = {"practice": practice, "cohort": cohort, "risk_tier": risk_tier}
        return self._worklist_rows(pcn_code, filters)[1]
