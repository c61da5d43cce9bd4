"""Differencing attacks on every published aggregate, on a small world where suppression bites.

Disclosure control publishes counts suppressed (1–7) or rounded to 5. An attacker who also
sees a rate, an interval, a ratio or the total of a larger area tries to get a count back more
exactly than it is shown; each attack here fails when, among the exact counts the published
count could stand for, the other published figures single out one that is not the published
value. Attacks: (a) a rate or interval with its published counts; (b) a parent area's total
minus its visible children; (c) an observed/expected ratio times the expected.

Tables are found, not listed: every warehouse table with a `<column>_suppressed` flag is
published, and every column of it must have a declared role below, so a new aggregate cannot
be published without being attacked here.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functional"))

from cli_run import PhmWarehouse, joinedup
from live import serving

from joinedup.disclosure import DisclosurePolicy, control_count
from joinedup.population import risk
from joinedup.population.inequalities import slope_index
from joinedup.population.stats import BYAR_MIN_EVENTS, byars_limits, poisson_limits, proportion
from joinedup.synth import condition_codelist
from joinedup.warehouse.engines import open_engine
from joinedup.warehouse.report import run_all
from joinedup.web.dashboard import Dashboard
from joinedup.web.settings import WebSettings

pytestmark = pytest.mark.security

POLICY = DisclosurePolicy()
SYNTHEA = Path(__file__).resolve().parents[1] / "data" / "synthea"
UNIT_PER = {"%": 100.0, "per 1,000": 1000.0, "per 100,000": 100_000.0}


# --- what each published column is ---------------------------------------------------------


@dataclass(frozen=True)
class Ratio:
    """`value` = numerator / denominator × per (denominator None: not in the table)."""

    value: str
    numerator: str
    denominator: str
    per: Callable[[dict[str, Any]], float]


@dataclass(frozen=True)
class Wilson:
    """A percentage of numerator / denominator with its Wilson 95% limits."""

    value: str
    lower: str
    upper: str
    numerator: str
    denominator: str


@dataclass(frozen=True)
class Dobson:
    """A directly standardised rate with Dobson 95% limits on `events`."""

    value: str
    lower: str
    upper: str
    events: str


@dataclass(frozen=True)
class ObservedExpected:
    """`value` = observed / expected (an SMR, an O/E)."""

    value: str
    expected: str
    observed: str


@dataclass(frozen=True)
class Roles:
    labels: tuple[str, ...]
    counts: tuple[str, ...]
    derived: tuple[Ratio | Wilson | Dobson | ObservedExpected, ...] = ()
    #: Columns that are neither counts nor built on counts, with the reason.
    other: dict[str, str] = field(default_factory=dict)

    def columns(self) -> set[str]:
        named = set(self.labels) | set(self.counts) | set(self.other)
        for d in self.derived:
            named |= {v for k, v in vars(d).items() if isinstance(v, str)}
        return named


def _per_unit(row: dict[str, Any]) -> float:
    return UNIT_PER[row["unit"]]


GAP_LABELS = ("area", "indicator", "note")
ROLES: dict[str, Roles] = {
    "phm_segment_counts": Roles(("dimension", "group_value", "segment"), ("people_count",)),
    "phm_segment_transitions": Roles(("from_segment", "to_segment"), ("people_count",)),
    "phm_risk_tiers": Roles(("risk_tier",), ("people_count",)),
    "phm_inequalities": Roles(
        ("measure", "measure_label", "unit", "dimension", "group_value"),
        ("events_count", "people_count"),
        (
            Ratio("crude_rate", "events_count", "people_count", _per_unit),
            Dobson("dsr", "dsr_lower", "dsr_upper", "events_count"),
        ),
    ),
    "phm_core20plus5": Roles(
        GAP_LABELS,
        tuple(
            f"{w}_{p}_count" for w in ("core20plus", "rest") for p in ("numerator", "denominator")
        ),
        tuple(
            Wilson(
                f"{w}_percent",
                f"{w}_lower",
                f"{w}_upper",
                f"{w}_numerator_count",
                f"{w}_denominator_count",
            )
            for w in ("core20plus", "rest")
        ),
        {"gap_points": "the difference of the two published percentages"},
    ),
    "finance_cost_curve": Roles(
        ("component", "age_band", "sex"),
        ("people_count",),
        other={"cost_per_head_gbp": "money per head: its numerator is money, not a count"},
    ),
    "finance_need_adjustment": Roles(
        ("component", "imd_quintile", "ltc_band"),
        ("people_count",),
        other={"ratio": "a ratio of costs per head, not of counts"},
    ),
    # Values and limits are attacked by each indicator's method (Wilson, Byar's, Dobson) in
    # test_indicator_disclosure.py, with the nesting practice -> PCN -> place -> system.
    "phm_indicator_values": Roles(
        (
            "indicator_id",
            "period",
            "period_start_date",
            "period_end_date",
            "level",
            "area_code",
            "area_name",
            "parent_code",
        ),
        ("numerator_count", "denominator_count"),
        (),
        {
            **dict.fromkeys(("value", "lower", "upper"), "attacked by method elsewhere"),
            **dict.fromkeys(
                (
                    "england_value",
                    "england_lower",
                    "england_upper",
                    "england_period",
                    "england_source",
                    "england_comparison",
                ),
                "England's published figure, and the area's comparison with it",
            ),
            **dict.fromkeys(
                ("parent_value", "parent_lower", "parent_upper", "parent_comparison"),
                "the parent area's published figure, and the comparison with it",
            ),
            **dict.fromkeys(("trend", "trend_p"), "a test on the published figures"),
        },
    ),
    "finance_health_inequalities": Roles(
        ("imd_quintile",),
        ("people_count", "deaths_count"),
        (ObservedExpected("smr", "expected_deaths_count", "deaths_count"),),
        {"expected_deaths_count": "deaths expected at national rates: a model figure, not a count"},
    ),
}


# --- the attacker's arithmetic -------------------------------------------------------------


def could_be(published: int | None) -> range | list[int]:
    """The exact counts a published count can stand for (1–7 when suppressed)."""
    if published is None:
        return range(1, POLICY.suppress_below)
    step = POLICY.round_to
    return [v for v in range(max(0, published - step), published + step + 1)
            if control_count(v, POLICY) == published]  # fmt: skip


def tolerance(x: float) -> float:
    """Half a unit in the last place the figure is published to (exact floats: ~0)."""
    for digits in range(7):
        if abs(x - round(x, digits)) < 1e-9:
            return 0.5 * 10.0**-digits + 1e-9
    return 1e-9 * max(1.0, abs(x))


def pinned(candidates: Iterable[int], fits: Callable[[int], bool], published: int) -> int | None:
    """The one exact count the other figures leave, when it is not the published one."""
    left = [c for c in candidates if fits(c)]
    return left[0] if len(left) == 1 and left[0] != published else None


def dobson_ratio(observed: int) -> float:
    """(rate − lower) / (upper − rate) of a Dobson interval: a function of the count alone."""
    low, high = (byars_limits if observed >= BYAR_MIN_EVENTS else poisson_limits)(observed)
    return (observed - low) / (high - observed)


def attack_ratio(r: Ratio, row: dict[str, Any]) -> list[str]:
    value, num, den = row[r.value], row[r.numerator], row[r.denominator]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if num is None or den is None:
        return [f"{r.value}={value} is shown beside a suppressed {r.numerator}/{r.denominator}"]
    per, tol = r.per(row), tolerance(value)
    dens = [d for d in could_be(den) if d > 0]

    def fits(n: int) -> bool:
        return any(abs(n / d * per - value) <= tol for d in dens)

    found = pinned(could_be(num), fits, num)
    return [f"{r.value}={value} with {r.denominator}={den} pins {r.numerator}={found}, "
            f"published {num}"] if found is not None else []  # fmt: skip


def attack_wilson(w: Wilson, row: dict[str, Any]) -> list[str]:
    value, num, den = row[w.value], row[w.numerator], row[w.denominator]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if num is None or den is None:
        return [f"{w.value}={value} is shown beside a suppressed count"]
    shown = (value, row[w.lower], row[w.upper])
    tols = [tolerance(v) for v in shown]

    def fits(n: int) -> bool:
        for d in could_be(den):
            if d > 0 and n <= d:
                p = proportion(n, d)
                got = (p.value, p.lower, p.upper)
                if all(abs(a - b) <= t for a, b, t in zip(got, shown, tols, strict=True)):
                    return True
        return False

    found = pinned(could_be(num), fits, num)
    return [f"{w.value} interval pins {w.numerator}={found}, published {num}"] if found else []


def attack_dobson(
    value: float | None, lower: float | None, upper: float | None, events: int | None, where: str
) -> list[str]:
    if value is None or lower is None or upper is None:
        return []
    if events is None:
        return [f"{where}: a standardised rate {value} is shown beside suppressed events"]
    t = max(tolerance(value), tolerance(lower), tolerance(upper))
    if lower - t <= 0 or upper - value <= 2 * t:
        return []  # a lower limit floored at 0 carries no ratio
    low = (value - t - (lower + t)) / (upper + t - (value - t))
    high = (value + t - (lower - t)) / (upper - t - (value + t))
    candidates = [o for o in could_be(events) if o > 0]
    found = pinned(candidates, lambda o: low <= dobson_ratio(o) <= high, events)
    return [f"{where}: (rate − lower)/(upper − rate) pins events={found}, "
            f"published {events}"] if found else []  # fmt: skip


def attack_observed_expected(
    ratio: float | None, expected: float | None, observed: int | None, where: str
) -> list[str]:
    if ratio is None or expected is None or (isinstance(ratio, float) and math.isnan(ratio)):
        return []
    if observed is None:
        return [f"{where}: O/E {ratio} is shown beside a suppressed observed count"]
    if expected <= 0:
        return []
    t_r, t_e = tolerance(ratio), tolerance(expected)

    def fits(o: int) -> bool:
        lo, hi = max(expected - t_e, 1e-12), expected + t_e
        return o / hi - t_r <= ratio <= o / lo + t_r

    found = pinned(could_be(observed), fits, observed)
    return [f"{where}: O/E {ratio} × expected {expected} pins observed={found}, "
            f"published {observed}"] if found is not None else []  # fmt: skip


def uncontrolled(value: Any, where: str) -> list[str]:
    """A published count must be 0, suppressed, or rounded and at least the threshold."""
    if value is None:
        return []
    if control_count(int(value), POLICY) != value:
        return [f"{where}: count {value} is not disclosure-controlled"]
    return []


def lone_hidden_children(parent: int | None, children: list[int | None], where: str) -> list[str]:
    """(b): a published total with exactly one hidden part gives that part away."""
    if parent is None or not children:
        return []
    hidden = sum(c is None for c in children)
    return [f"{where}: total {parent} has one suppressed part"] if hidden == 1 else []


# --- the world -----------------------------------------------------------------------------


@dataclass
class Published:
    tables: dict[str, list[dict[str, Any]]]
    columns: dict[str, list[str]]
    pcn_places: dict[str, str]
    run: dict[str, Any]


@pytest.fixture(scope="module")
def published(small_web_warehouse: PhmWarehouse) -> Published:
    """Every published table of the small world, read before the dashboard opens it."""
    with duckdb.connect(str(small_web_warehouse.path), read_only=True) as con:
        names = [r[0] for r in con.sql(
            "SELECT DISTINCT table_name FROM information_schema.columns "
            "WHERE column_name LIKE '%\\_suppressed' ESCAPE '\\'"
        ).fetchall()]  # fmt: skip
        names += ["phm_inequality_index"]
        tables, columns = {}, {}
        for name in names:
            rel = con.table(name)
            columns[name] = rel.columns
            tables[name] = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
        pcn = con.sql("SELECT pcn_code, place_code FROM pcn").fetchall()
        run = con.table("phm_run").fetchall()[0]
        run_row = dict(zip(con.table("phm_run").columns, run, strict=True))
    return Published(tables, columns, dict(pcn), run_row)


@pytest.fixture(scope="module")
def api(
    published: Published,
    small_web_warehouse: PhmWarehouse,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[httpx.Client]:
    """The dashboard over the small world, signed in as an analyst (a non-clinical role)."""
    folder = tmp_path_factory.mktemp("differencing-access")
    source = small_web_warehouse.path.with_name(small_web_warehouse.path.name + ".access.sqlite")
    target = folder / "access.sqlite"
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    settings = WebSettings(warehouse=small_web_warehouse.path, access_db=target)
    with serving(settings) as address, httpx.Client(base_url=address, timeout=120) as client:
        token = client.post(
            "/api/v1/token", json={"username": "analyst", "password": "analyst-demo-2026"}
        )
        assert token.status_code == 200, token.text
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield client


def _report(leaks: list[str]) -> None:
    assert not leaks, f"{len(leaks)} leak(s), e.g.:\n" + "\n".join(leaks[:12])


# --- every published table -----------------------------------------------------------------


def test_every_published_column_has_a_declared_role(published: Published) -> None:
    flagged = {n for n in published.columns if n != "phm_inequality_index"}
    assert flagged >= {"phm_inequalities", "phm_segment_counts", "phm_core20plus5"}
    undeclared = sorted(flagged - set(ROLES))
    assert not undeclared, f"published tables without declared roles: {undeclared}"
    for name in flagged:
        plain = {c for c in published.columns[name] if not c.endswith("_suppressed")}
        missing = plain - ROLES[name].columns()
        assert not missing, f"{name}: columns without a declared role: {sorted(missing)}"


def test_a_rate_or_interval_gives_back_no_count_finer_than_published(
    published: Published,
) -> None:
    """(a) on every table: counts controlled; no rate, interval or ratio pins another count."""
    leaks: list[str] = []
    for name, roles in ROLES.items():
        for i, row in enumerate(published.tables.get(name, [])):
            where = f"{name} row {i}"
            for count in roles.counts:
                leaks += uncontrolled(row[count], f"{where} {count}")
            for d in roles.derived:
                if isinstance(d, Ratio):
                    leaks += [f"{where}: {m}" for m in attack_ratio(d, row)]
                elif isinstance(d, Wilson):
                    leaks += [f"{where}: {m}" for m in attack_wilson(d, row)]
                elif isinstance(d, Dobson):
                    leaks += attack_dobson(
                        row[d.value], row[d.lower], row[d.upper], row[d.events], where
                    )
                else:
                    leaks += attack_observed_expected(
                        row[d.value], row[d.expected], row[d.observed], where
                    )
    _report(leaks)


def test_the_slope_index_is_fitted_to_published_rates_only(published: Published) -> None:
    """The SII table is built from the published rates, so it carries nothing they do not."""
    rates = pa.Table.from_pylist(published.tables["phm_inequalities"])
    refitted = slope_index(rates).to_pylist()
    stored = published.tables["phm_inequality_index"]
    assert [r["measure"] for r in stored] == [r["measure"] for r in refitted]
    for got, want in zip(stored, refitted, strict=True):
        for key in ("sii", "sii_lower", "sii_upper", "rii"):
            assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-9), (got, key)


def _nested_tables(published: Published) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """(table, count column, rows) for every table broken down by dimension and group."""
    for name, roles in ROLES.items():
        if {"dimension", "group_value"} <= set(roles.labels):
            for count in roles.counts:
                yield name, count, published.tables.get(name, [])


def test_a_parent_area_minus_its_visible_children_never_gives_a_suppressed_child(
    published: Published,
) -> None:
    """(b): the system row over each breakdown, and each place over its PCNs."""
    leaks: list[str] = []
    for name, count, rows in _nested_tables(published):
        scope_of = [c for c in ROLES[name].labels if c not in ("dimension", "group_value")]
        scopes: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for row in rows:
            scopes.setdefault(tuple(row[c] for c in scope_of[:1]), []).append(row)
        for scope, members in scopes.items():
            system = next((r for r in members if r["dimension"] == "system"), None)
            by_dim: dict[str, list[dict[str, Any]]] = {}
            for r in members:
                by_dim.setdefault(r["dimension"], []).append(r)
            for dim, children in by_dim.items():
                if system is not None and dim != "system":
                    leaks += lone_hidden_children(
                        system[count], [c[count] for c in children], f"{name} {scope} {dim}"
                    )
            for place in by_dim.get("place_code", []):
                pcns = [
                    r[count] for r in by_dim.get("pcn_code", [])
                    if published.pcn_places.get(r["group_value"]) == place["group_value"]
                ]  # fmt: skip
                leaks += lone_hidden_children(
                    place[count], pcns, f"{name} {scope} place {place['group_value']} {count}"
                )
    _report(leaks)


#: Roles of the columns of the canonical analytics' published outputs.
ANALYTIC_COUNTS = {
    "people", "events", "deaths", "pathways", "denominator", "aged_65_plus", "deaths_last_year",
    "emergency_admissions_last_year", "bed_days",
}  # fmt: skip
ANALYTIC_RATIOS = {
    "prevalence": Ratio("prevalence", "people", "denominator", lambda _: 1.0),
    "rate_per_1000": Ratio("rate_per_1000", "events", "people", lambda _: 1000.0),
    "rate_per_100000": Ratio("rate_per_100000", "deaths", "people", lambda _: 100_000.0),
    "emergency_admissions_per_1000": Ratio(
        "emergency_admissions_per_1000", "emergency_admissions_last_year", "people",
        lambda _: 1000.0,
    ),
}  # fmt: skip
ANALYTIC_OTHER = {
    "place_code", "place_name", "age_band", "sex", "condition", "activity_type",
    "point_of_delivery", "year", "weeks_band", "charlson_band",
    "cost_gbp",  # money: a total, not a count
    "share",  # pathways over all pathways, whose total is not published
    "opted_out_share",  # its numerator (people opted out) is not published
}  # fmt: skip


def test_the_analytics_downloads_give_back_no_count(
    published: Published, small_web_warehouse: PhmWarehouse, tmp_path: Path
) -> None:
    """(a) on the Parquet files `joinedup demo`/`warehouse` write for every canonical analytic
    (before the dashboard opens the warehouse in this process)."""
    with open_engine("duckdb", warehouse=small_web_warehouse.path, read_only=True) as engine:
        runs = run_all(engine, condition_codelist(), tmp_path)
    leaks: list[str] = []
    for run in runs:
        assert run.path is not None
        rows = pq.read_table(run.path).to_pylist()
        for i, row in enumerate(rows):
            where = f"{run.name} row {i}"
            for column, value in row.items():
                if column in ANALYTIC_COUNTS:
                    leaks += uncontrolled(value, f"{where} {column}")
                elif column in ANALYTIC_RATIOS:
                    leaks += [f"{where}: {m}" for m in attack_ratio(ANALYTIC_RATIOS[column], row)]
                else:
                    assert column in ANALYTIC_OTHER or column.endswith("_suppressed"), (
                        f"{run.name}.{column} has no declared role"
                    )
    assert len(runs) >= 8
    _report(leaks)


# --- the API, the pages' figures and the report ----------------------------------------------

COUNT_TEXT = re.compile(r"^\d{1,3}(,\d{3})*$")


def _number(text: Any) -> float | None:
    """A figure as shown ("1,234.5"), None for "*" or blank."""
    if isinstance(text, int | float):
        return float(text)
    if not isinstance(text, str) or not re.fullmatch(r"-?[\d,]+(\.\d+)?", text.strip()):
        return None
    return float(text.replace(",", ""))


def _count_of(text: Any) -> int | None:
    value = _number(text)
    return None if value is None else int(value)


def _rate_rows(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every rate row (events, people, rate and 95% CI) anywhere in a JSON document."""
    if isinstance(node, dict):
        if {"events", "people", "dsr", "ci"} <= set(node):
            yield path, node
        for key, value in node.items():
            yield from _rate_rows(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _rate_rows(value, f"{path}[{i}]")


def _attack_rate_row(row: dict[str, Any], where: str) -> list[str]:
    leaks = uncontrolled(_count_of(row["events"]), f"{where} events")
    leaks += uncontrolled(_count_of(row["people"]), f"{where} people")
    limits = str(row["ci"]).split(" to ")
    if len(limits) != 2:
        return leaks
    events = None if row["events"] == "*" else _count_of(row["events"])
    # The dashboard's rows carry the figures as numbers too; both must hold.
    shown = [(_number(row["dsr"]), _number(limits[0]), _number(limits[1]))]
    if "rate" in row:
        shown.append((row["rate"], row["lower"], row["upper"]))
    for value, lower, upper in shown:
        leaks += attack_dobson(value, lower, upper, events, where)
    return leaks


def _cells_by_key(document: dict[str, Any]) -> dict[tuple[str, str], int | None]:
    """Each published people count of an overview or place profile, by (section, cell)."""
    cells: dict[tuple[str, str], int | None] = {}
    for section, key in (("tiers", "label"), ("segments", "key")):
        for row in document[section]["rows"]:
            cells[(section, str(row[key]))] = _count_of(row["people"])
    sexes = document["pyramid"]["sexes"]
    for row in document["pyramid"]["rows"]:
        for sex, text in zip(sexes, row["cells"], strict=True):
            cells[("pyramid", f"{row['band']} {sex}")] = _count_of(text)
    return cells


def _places_against_the_system(documents: dict[str, Any]) -> list[str]:
    """(b) across pages: the system's tier, segment and pyramid cells are the sums of the
    places' cells, so one hidden place cell beside a published system cell gives it away."""
    system = _cells_by_key(documents["/api/v1/overview"])
    places = [_cells_by_key(d) for p, d in documents.items() if p.startswith("/api/v1/places/")]
    leaks: list[str] = []
    for key, total in system.items():
        leaks += uncontrolled(total, f"overview {key}")
        parts = [cells.get(key, 0) for cells in places]
        leaks += lone_hidden_children(total, parts, f"overview {key} over places")
    return leaks


def test_overview_and_place_figures_give_back_no_count(api: httpx.Client) -> None:
    """(a) and (b) on /api/v1/overview (the report's figures too: the same builder),
    every place profile, and places against their PCNs."""
    documents = {"/api/v1/overview": api.get("/api/v1/overview").json()}
    places = api.get("/api/v1/places").json()
    for place in places:
        path = f"/api/v1/places/{place['place_code']}"
        documents[path] = api.get(path).json()
    leaks: list[str] = []
    rows = 0
    for path, document in documents.items():
        for where, row in _rate_rows(document):
            rows += 1
            leaks += _attack_rate_row(row, f"{path}{where}")
    assert rows >= 12, "the overview should publish rate rows to attack"
    leaks += _places_against_the_system(documents)
    pcns = api.get("/api/v1/pcns").json()
    for place in places:
        leaks += uncontrolled(place["people"], f"place {place['place_code']} people")
        children = [p["people"] for p in pcns if p["place_code"] == place["place_code"]]
        leaks += lone_hidden_children(place["people"], children, f"place {place['place_code']}")
    for pcn in pcns:
        leaks += uncontrolled(pcn["people"], f"pcn {pcn['pcn_code']} people")
    _report(leaks)


def _html_tables(page: str) -> Iterator[tuple[list[str], list[list[str]]]]:
    """(header cells, body rows of cell text) for each table of an HTML page."""
    for table in re.findall(r"<table\b.*?</table>", page, re.S):

        def cells(row: str) -> list[str]:
            found = re.findall(r"<t[hd]\b[^>]*>(.*?)</t[hd]>", row, re.S)
            return [re.sub(r"<[^>]+>", "", c).strip() for c in found]

        head = re.search(r"<thead>(.*?)</thead>", table, re.S)
        body = re.search(r"<tbody>(.*?)</tbody>", table, re.S)
        if head and body:
            header = cells(head.group(1))
            yield header, [cells(r) for r in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)]


def _attack_html(page: str, where: str) -> tuple[int, list[str]]:
    """Rate tables and the model card's calibration table of a page, attacked."""
    leaks: list[str] = []
    seen = 0
    for header, rows in _html_tables(page):
        if header[1:3] == ["Events", "People"] and header[-1] == "95% CI":
            for row in rows:
                seen += 1
                named = {"events": row[1], "people": row[2], "dsr": row[3], "ci": row[4]}
                leaks += _attack_rate_row(named, f"{where} {header[0]} {row[0]}")
        if header == ["Decile", "People", "Expected", "Observed", "O/E"]:
            for row in rows:
                seen += 1
                observed = None if row[3] == "*" else _count_of(row[3])
                leaks += uncontrolled(observed, f"{where} decile {row[0]} observed")
                leaks += attack_observed_expected(
                    _number(row[4]) if row[4] != "*" else None,
                    _number(row[2]), observed, f"{where} decile {row[0]}",
                )  # fmt: skip
    return seen, leaks


def test_the_report_gives_back_no_count(
    small_web_warehouse: PhmWarehouse, published: Published, tmp_path: Path
) -> None:
    """(a) and (c) on the HTML report `joinedup phm report` writes: rate tables and the card."""
    output = tmp_path / "report.html"
    run = joinedup(
        "phm", "report", "-o", str(output), "-w", str(small_web_warehouse.path), cwd=tmp_path
    )
    assert run.returncode == 0, run.stdout + run.stderr
    seen, leaks = _attack_html(output.read_text("utf-8"), "report")
    assert seen >= 10, "the report should have rate and calibration tables to attack"
    _report(leaks)


# --- the model card ---------------------------------------------------------------------------


def test_the_model_card_publishes_no_count_its_ratios_give_back(published: Published) -> None:
    """(c): stored counts controlled; O/E and prevalence computed from published counts, and
    suppressed with them; the Markdown (report and dashboard) likewise."""
    card = json.loads(published.run["model_card_json"])
    leaks: list[str] = []
    for name, metrics in card["metrics"].items():
        if metrics is None:
            continue
        for key in ("people", "events", "admissions"):
            leaks += uncontrolled(metrics[key], f"card {name} {key}")
        prevalence = Ratio("prevalence", "events", "people", lambda _: 1.0)
        leaks += [f"card {name}: {m}" for m in attack_ratio(prevalence, metrics)]
        for d in metrics["calibration"]:
            where = f"card {name} decile {d['decile']}"
            leaks += uncontrolled(d["people"], f"{where} people")
            leaks += uncontrolled(d["observed"], f"{where} observed")
            leaks += attack_observed_expected(d["ratio"], d["expected"], d["observed"], where)
    for tier in card["tiers"]:
        leaks += uncontrolled(tier["people"], f"card tier {tier['tier']}")
    markdown = str(published.run["model_card_markdown"])
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in markdown.splitlines()
        if re.match(r"^\| \d+ \|", line)
    ]
    html = "<table><thead><tr><th>Decile</th><th>People</th><th>Expected</th><th>Observed</th>"
    html += "<th>O/E</th></tr></thead><tbody>"
    html += "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    seen, more = _attack_html(html + "</tbody></table>", "card markdown")
    assert seen == 10
    _report(leaks + more)


def _card(observed: list[int], expected: list[float]) -> risk.ModelCard:
    """A model card over hand-made validation deciles (no model needs fitting for its text)."""
    deciles = tuple(
        risk.Decile(i + 1, 100, e, o)
        for i, (o, e) in enumerate(zip(observed, expected, strict=True))
    )
    metrics = risk.Metrics(1000, sum(observed), sum(observed), 0.7, 0.07, 0.4, deciles)
    baseline = risk.Metrics(1000, sum(observed), sum(observed), 0.6, 0.08, 0.3, deciles)
    return risk.ModelCard(
        train_index_date=date(2024, 4, 1),
        validation_index_date=date(2025, 4, 1),
        population="1,000 people",
        synthetic=True,
        features=risk.FEATURES,
        condition_columns=(),
        seed=1,
        hyperparameters=(),
        validation=metrics,
        baseline_validation=baseline,
        train=None,
        tiers=(),
        software=(),
    )


def test_the_card_hides_o_e_beside_a_suppressed_observed_and_counts_deciles_truly() -> None:
    """The issue's figures: Expected 1.7 beside a suppressed 5 gave O/E 2.92; and 7 deciles of
    10 outside ±20% were printed as "outside ±20% in every decile"."""
    observed = [5, 10, 30, 40, 50, 60, 70, 80, 90, 100]
    expected = [1.7, 10.0, 20.0, 30.0, 50.0, 60.0, 90.0, 50.0, 120.0, 150.0]
    card = _card(observed, expected)
    text = card.to_markdown()
    assert "| 1 | 100 | 1.7 | * | * |" in text
    assert "2.92" not in text and "2.94" not in text
    first = card.to_dict()["metrics"]["validation"]["calibration"][0]
    assert first["observed"] is None and first["ratio"] is None
    assert card.calibration_summary == "outside ±20% in 7 of 10 deciles"
    assert "7 of 10 deciles" in text


# --- data quality -----------------------------------------------------------------------------


def _data_quality_leaks(dq: dict[str, Any]) -> tuple[int, list[str]]:
    leaks: list[str] = []
    seen = 0
    shown = [(u, "records") for u in dq["unmapped"]] + [(u, "count") for u in dq["load_unmapped"]]
    shown += [(c, "missing") for c in dq["completeness"]]
    for row, key in shown:
        seen += 1
        leaks += uncontrolled(row[key], f"data quality {row} {key}")
    return seen, leaks


def test_data_quality_shows_no_small_count_of_records(tmp_path: Path) -> None:
    """Defect 11: a FHIR load (Synthea's small bulk export, where codes carry 1–6 records),
    and the figures the data-quality page and /api/v1/data-quality show to analysts."""
    warehouse = tmp_path / "synthea.duckdb"
    run = joinedup("ingest", "fhir", str(SYNTHEA), "-w", str(warehouse), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    with open_engine("duckdb", warehouse=warehouse, read_only=True) as engine:
        dq = Dashboard(engine).data_quality()
    _, leaks = _data_quality_leaks(dq)
    assert dq["load_unmapped"] and dq["unmapped"], "the load should leave unmapped codes"
    assert any(u["count"] is None for u in dq["load_unmapped"])
    _report(leaks)


def test_data_quality_api_shows_no_small_count(api: httpx.Client) -> None:
    answer = api.get("/api/v1/data-quality")
    assert answer.status_code == 200
    seen, leaks = _data_quality_leaks(answer.json())
    assert seen > 0
    _report(leaks)
