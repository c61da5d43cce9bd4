"""Every table of the finance page downloads as CSV and Excel with the page's figures: each
table on the page has its links beside it, the file's rows are the page's rows, and each
exact figure rounds to the text the page shows; Excel holds numbers as numbers; the API
documents every table; whoever may not see finance gets 403 for every table and format."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from html.parser import HTMLParser

import httpx
import pytest
from openpyxl import load_workbook

from joinedup.finance.money import money_text
from joinedup.web.access import demo_password
from joinedup.web.finance_tables import DOWNLOADS

pytestmark = pytest.mark.slow

ROUTE = "/api/v1/finance/table"
CSV = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
NOTES = ["Definition", "Signs", "Period", "Disclosure", "Source"]
#: Column keys whose cells are numbers (or empty, when suppressed).
NUMERIC = re.compile(
    r".*(_gbp|_index|_ratio|_share|_rate|_count)|distance_from_target|"
    r"imd_quintile|months|step"
)


# --- the page's tables, as a reader sees them ---------------------------------------------------


@dataclass
class Cell:
    text: str  # without the secondary code (span.note)
    note: str = ""


@dataclass
class PageTable:
    anchor: str  # its id, or its class when the page shows one per pool, provider...
    caption: str = ""
    rows: list[list[Cell]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # download links after it


class FinancePage(HTMLParser):
    """The tables of the finance report section, each with the download links that follow
    it (before the next table)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[PageTable] = []
        self.depth = 0  # inside .jd-report
        self.table: PageTable | None = None
        self.in_body = self.in_caption = False
        self.cell: Cell | None = None
        self.note = 0  # inside a span.note (nesting)
        self.unit = 0  # inside the caption's span.jd-unit
        self.hidden = 0  # inside a visually hidden span

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        cls = a.get("class") or ""
        if tag == "div" and "jd-report" in cls.split():
            self.depth = 1
            return
        if not self.depth:
            return
        if tag == "div":
            self.depth += 1
        if tag == "table":
            self.table = PageTable(a.get("id") or cls)
            self.tables.append(self.table)
        elif tag == "caption":
            self.in_caption = True
        elif tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.in_body and self.table is not None:
            self.table.rows.append([])
        elif tag in ("td", "th") and self.in_body and self.table is not None:
            self.cell = Cell("")
            self.table.rows[-1].append(self.cell)
        elif tag == "span":
            if self.note or "note" in cls.split():
                self.note += 1
            if self.unit or "jd-unit" in cls.split():
                self.unit += 1
            if self.hidden or "nhsuk-u-visually-hidden" in cls.split():
                self.hidden += 1
        elif tag == "a" and self.tables and (a.get("href") or "").startswith(ROUTE):
            self.tables[-1].links.append(str(a["href"]))

    def handle_endtag(self, tag: str) -> None:
        if not self.depth:
            return
        if tag == "div":
            self.depth -= 1
        elif tag == "table":
            self.table = None
        elif tag == "caption":
            self.in_caption = False
        elif tag == "tbody":
            self.in_body = False
        elif tag in ("td", "th") and self.cell is not None:
            self.cell.text = " ".join(self.cell.text.split())
            self.cell.note = self.cell.note.strip()
            self.cell = None
        elif tag == "span":
            self.note = max(0, self.note - 1)
            self.unit = max(0, self.unit - 1)
            self.hidden = max(0, self.hidden - 1)

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            if self.note:
                self.cell.note += data
            else:
                self.cell.text += data
        elif self.in_caption and self.table is not None and not self.unit and not self.note:
            self.table.caption += data


def page_tables(html: str) -> dict[str, list[PageTable]]:
    parser = FinancePage()
    parser.feed(html)
    found: dict[str, list[PageTable]] = {}
    for t in parser.tables:
        found.setdefault(t.anchor, []).append(t)
    return found


# --- the page's formats ---------------------------------------------------------------------


def pounds(v: str) -> str:
    return money_text(Decimal(v), "£") if v else ""


def signed(v: str) -> str:
    return money_text(Decimal(v), "£", signed=True) if v else ""


def millions(v: str) -> str:
    return money_text(Decimal(v), "£m") if v else ""


def millions_signed(v: str) -> str:
    return money_text(Decimal(v), "£m", signed=True)


def percent(v: str, *, sign: bool = True) -> str:
    x = float(v)
    if round(abs(x) * 1000) == 0:
        return "0.0%"
    return f"{x:+.1%}" if sign else f"{x:.1%}"


def share(v: str) -> str:
    return percent(v, sign=False)


def count(v: str) -> str:
    return "*" if v == "" else f"{int(v):,}"


def places(digits: int) -> Callable[[str], str]:
    return lambda v: "*" if v == "" else f"{float(v):.{digits}f}"


def quintile(v: str) -> str:
    return {"0": "unknown", "1": "1 (most deprived)", "5": "5 (least deprived)"}.get(v, v)


def met(v: str) -> str:
    return "met" if v == "true" else "not met"


def same(v: str) -> str:
    return v


Row = dict[str, str]
#: Per table: the page's table(s), and a download row as the page's row (cell texts) and the
#: codes shown beside the names (span.note), in order.
SHOWN: dict[str, tuple[str, Callable[[Row, list[str]], list[str]], Callable[[Row], list[str]]]] = {
    "need": ("need-table",
             lambda r, k: [r["name"], count(r["population_count"]),
                           *(places(3)(r[c]) for c in k if c.endswith("_index"))],
             lambda r: [r["place_code"]]),
    "pcn-need": ("pcn-need-table",
                 lambda r, k: [r["name"], count(r["population_count"]),
                               places(3)(r["final_index"])],
                 lambda r: [r["pcn_code"]]),
    "cost-curves": ("curve-table",
                    lambda r, k: [r["age_band"],
                                  *(pounds(r[c]) or "*" for c in k if c.endswith("_gbp"))],
                    lambda r: []),
    "need-adjustment": ("adjustment-table",
                        lambda r, k: [quintile(r["imd_quintile"]), r["ltc_band"],
                                      *(places(2)(r[c]) for c in k if c.endswith("_ratio"))],
                        lambda r: []),
    "health-inequalities": ("smr-table",
                            lambda r, k: [quintile(r["imd_quintile"]), count(r["people_count"]),
                                          count(r["deaths_count"]),
                                          places(2)(r["standardised_mortality_ratio"])],
                            lambda r: []),
    "head-count": ("head-count-table",
                   lambda r, k: [r["place"], millions(r["target_gbp"]),
                                 millions(r["head_count_gbp"]),
                                 millions_signed(r["difference_gbp"]),
                                 percent(r["difference_ratio"])],
                   lambda r: []),
    "allocation": ("allocation-table",
                   lambda r, k: [r["year"], r["place"], millions(r["baseline_gbp"]),
                                 millions(r["target_gbp"]), millions(r["allocation_gbp"]),
                                 percent(r["growth_rate"]), percent(r["distance_from_target"]),
                                 millions(r["head_count_gbp"])],
                   lambda r: []),
    "sectors": ("sector-table",
                lambda r, k: [r["place"], *(millions(r[c]) for c in k if c.endswith("_gbp"))],
                lambda r: []),
    "guarantees": ("guarantee-table",
                   lambda r, k: [r["name"], r["year"], pounds(r["previous_gbp"]),
                                 pounds(r["minimum_gbp"]), pounds(r["planned_gbp"]),
                                 signed(r["margin_gbp"]), percent(r["allocation_growth_rate"]),
                                 percent(r["spend_growth_rate"]), met(r["met"])],
                   lambda r: []),
    "delegation": ("delegation-table",
                   lambda r, k: [r["place"], millions(r["allocation_gbp"]),
                                 millions(r["delegated_gbp"]), millions(r["retained_gbp"]),
                                 share(r["delegated_share"])],
                   lambda r: []),
    "pools": ("pool-table",
              lambda r, k: [r["partner"], pounds(r["contribution_gbp"]),
                            share(r["contribution_share"])],
              lambda r: [r["partner_code"]] if r["partner_code"] else []),
    "payments": ("payment-table",
                 lambda r, k: [r["line"], r["pod"], pounds(r["amount_gbp"]), r["explanation"]],
                 lambda r: [r["pod_code"]] if r["pod_code"] else []),
    "waterfall": ("waterfall-table",
                  lambda r, k: [r["label"], signed(r["amount_gbp"]),
                                pounds(r["running_total_gbp"])],
                  lambda r: []),
    "control-total": ("control-total-table",
                      lambda r, k: [r["name"], r["months"], pounds(r["plan_ytd_gbp"]),
                                    pounds(r["actual_ytd_gbp"]),
                                    pounds(r["forecast_run_rate_gbp"]),
                                    pounds(r["forecast_trend_gbp"]),
                                    pounds(r["plan_full_year_gbp"]),
                                    signed(r["forecast_variance_gbp"]), r["must"], r["meets"]],
                      lambda r: []),
    "variance": ("variance-table",
                 lambda r, k: [r["category"], signed(r["variance_gbp"])],
                 lambda r: []),
    "risk-share": ("risk-share-table",
                   lambda r, k: [r["party"], r["kind"], signed(r["variance_gbp"]),
                                 signed(r["kept_gbp"]), signed(r["pool_share_gbp"]),
                                 signed(r["limits_gbp"]), signed(r["final_gbp"])],
                   lambda r: []),
    "what-if": ("what-if-table",
                lambda r, k: [r["place"], signed(r["cost_change_gbp"]),
                              f"{float(r['baseline_index']):.3f} → "
                              f"{float(r['scenario_index']):.3f}",
                              signed(r["target_change_gbp"]),
                              signed(r["allocation_change_gbp"])],
                lambda r: []),
}  # fmt: skip


# --- fixtures -------------------------------------------------------------------------------


def signed_in(server: str, user: str) -> httpx.Client:
    client = httpx.Client(base_url=server, timeout=120)
    answer = client.post("/api/v1/token", json={"username": user, "password": demo_password(user)})
    assert answer.status_code == 200, answer.text
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return client


@pytest.fixture(scope="module")
def finance_api(live_server: str) -> Iterator[httpx.Client]:
    client = signed_in(live_server, "finance")
    yield client
    client.close()


@pytest.fixture(scope="module")
def shown(live_server: str) -> dict[str, list[PageTable]]:
    """The finance page's tables as the analyst sees them."""
    with httpx.Client(base_url=live_server, timeout=120) as browser:
        answer = browser.post(
            "/login", data={"username": "analyst", "password": demo_password("analyst")}
        )
        assert answer.status_code in (200, 303), answer.text
        page = browser.get("/finance")
        assert page.status_code == 200
        return page_tables(page.text)


def download(client: httpx.Client, name: str, fmt: str) -> httpx.Response:
    answer = client.get(ROUTE, params={"name": name, "format": fmt})
    assert answer.status_code == 200, (name, fmt, answer.text[:300])
    assert answer.headers["content-type"] == (CSV if fmt == "csv" else XLSX)
    assert answer.headers["content-disposition"] == (f'attachment; filename="finance-{name}.{fmt}"')
    return answer


# --- the tests ------------------------------------------------------------------------------


def test_every_table_on_the_page_has_its_downloads_beside_it(
    shown: dict[str, list[PageTable]],
) -> None:
    anchors = {anchor for anchor, _, _ in SHOWN.values()}
    assert set(shown) == anchors, "a table on the finance page with no download, or gone"
    assert set(SHOWN) == set(DOWNLOADS)
    for name, (anchor, _, _) in SHOWN.items():
        links = shown[anchor][-1].links  # one link pair after the last of a kind
        assert links == [f"{ROUTE}?name={name}&format={f}" for f in ("csv", "xlsx")], name


@pytest.mark.parametrize("name", list(DOWNLOADS))
def test_a_tables_download_holds_the_figures_the_page_shows(
    finance_api: httpx.Client, shown: dict[str, list[PageTable]], name: str
) -> None:
    data = finance_api.get(ROUTE, params={"name": name}).json()
    keys = list(data[0])
    lines = list(csv.reader(io.StringIO(download(finance_api, name, "csv").text)))
    header, body = lines[0], lines[1:]
    assert header[len(keys) :] == NOTES
    rows = [dict(zip(keys, line, strict=False)) for line in body]

    # The page's rows, table after table, are the file's rows, figure for figure.
    anchor, cells, codes = SHOWN[name]
    tables = shown[anchor]
    on_page = [row for t in tables for row in t.rows]
    assert len(on_page) == len(rows) > 0, name
    for i, (tr, row) in enumerate(zip(on_page, rows, strict=True)):
        assert [c.text for c in tr] == cells(row, keys), (name, i)
        assert [c.note for c in tr if c.note] == codes(row), (name, i)
    if name == "pools":  # one table per pool: its caption names it and its total
        for t in tables:
            partners = [r for r in rows if t.caption.startswith(r["pool"] + " (")]
            assert partners, t.caption
            total = sum(Decimal(r["contribution_gbp"]) for r in partners)
            assert t.caption.strip().endswith(f": {money_text(total, '£')}"), t.caption
    if name == "payments":
        for t in tables:
            mine = [r for r in rows if t.caption.startswith(r["provider"])
                    and f", {r['year']}, {r['rules']} rules:" in t.caption]  # fmt: skip
            total = sum(Decimal(r["amount_gbp"]) for r in mine)
            assert mine and t.caption.strip().endswith(f": {money_text(total, '£')}")

    # The notes on every row, as every download carries them.
    notes = body[0][len(keys) :]
    assert all(line[len(keys) :] == notes for line in body)
    assert all(notes), f"{name}: an empty note"
    assert "suppressed" in notes[NOTES.index("Disclosure")]
    assert re.search(r"\d{4}(/\d{2}|-\d{2}-\d{2})", notes[NOTES.index("Period")]), notes

    # Excel: the same cells, numbers typed as numbers.
    book = load_workbook(io.BytesIO(download(finance_api, name, "xlsx").content))
    assert book.sheetnames == ["Data", "Notes"]
    xrows = list(book["Data"].iter_rows(values_only=True))
    assert list(xrows[0]) == header[: len(keys)]
    assert len(xrows) - 1 == len(rows)
    numeric = [k for k in keys if NUMERIC.fullmatch(k)]
    assert numeric, name
    for line, xrow in zip(body, xrows[1:], strict=True):
        for key, text, cell in zip(keys, line, xrow, strict=False):
            if text == "":
                assert cell is None, (name, key)
            elif key in numeric:
                assert isinstance(cell, int | float) and not isinstance(cell, bool), (key, cell)
                assert math.isclose(cell, float(text), rel_tol=1e-15), (name, key, text, cell)
            elif text in ("true", "false"):
                assert cell is (text == "true"), (name, key)
            else:
                assert cell == text, (name, key)


def test_the_api_documents_every_table_and_refuses_whom_finance_refuses(
    live_server: str, finance_api: httpx.Client
) -> None:
    spec = httpx.get(f"{live_server}/api/openapi.json").json()
    parameters = spec["paths"][ROUTE]["get"]["parameters"]
    name = next(p for p in parameters if p["name"] == "name")
    assert name["schema"]["enum"] == list(DOWNLOADS)
    for table in DOWNLOADS:
        assert f"`{table}`" in name["description"], table
    unknown = finance_api.get(ROUTE, params={"name": "budget", "format": "csv"})
    assert unknown.status_code == 404 and "choose from need, pcn-need" in unknown.text
    clinician = signed_in(live_server, "clinician")
    try:
        for table in DOWNLOADS:
            for fmt in ("json", "csv", "xlsx"):
                answer = clinician.get(ROUTE, params={"name": table, "format": fmt})
                assert answer.status_code == 403, (table, fmt, answer.status_code)
                assert "£" not in answer.text
    finally:
        clinician.close()
