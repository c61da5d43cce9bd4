"""Downloads against the served dashboard: every table route's CSV and Excel hold the JSON's
values cell for cell and the page's numbers, carry their definition, period and disclosure
note, leave suppressed cells empty, refuse whom the JSON refuses, and never let text become a
formula."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from openpyxl import load_workbook

from joinedup.finance.money import money_text
from joinedup.indicators import shipped_definitions
from joinedup.web.indicators import VALUE_COLUMNS
from joinedup.web.worklists import WorklistRow

pytestmark = pytest.mark.slow

CSV = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
NOTE_LABELS = ["Definition", "Period", "Disclosure", "Source"]
OVERVIEW_TABLES = [
    "population-by-place", "population-by-age-and-sex", "segments", "risk-tiers",
    "inequality-gaps", "rates-by-area", "slope-index-of-inequality", "core20plus5",
    "segment-transitions", "deaths",
]  # fmt: skip
#: The overview tables a place page shows at place level (`?place=`).
PLACE_TABLES = ["population-by-age-and-sex", "segments", "risk-tiers", "rates-by-area", "deaths"]
DATA_QUALITY_TABLES = [
    "loads", "quarantine-reasons", "unmapped-codes", "load-unmapped-codes", "completeness",
]  # fmt: skip
FORMULA = '=HYPERLINK("http://example.invalid","click")'


def sign_in(server: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=server, timeout=120)
    answer = client.post(
        "/api/v1/token", json={"username": username, "password": f"{username}-demo-2026"}
    )
    assert answer.status_code == 200, answer.text
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return client


@pytest.fixture(scope="module")
def api(live_server: str) -> Iterator[dict[str, httpx.Client]]:
    clients = {u: sign_in(live_server, u) for u in ("analyst", "clinician", "clinician2")}
    yield clients
    for c in clients.values():
        c.close()


@pytest.fixture(scope="module")
def browser_session(live_server: str) -> Iterator[httpx.Client]:
    """The analyst signed in with a session cookie, as a browser is: for the pages."""
    with httpx.Client(base_url=live_server, timeout=120) as client:
        answer = client.post(
            "/login", data={"username": "analyst", "password": "analyst-demo-2026"}
        )
        assert answer.status_code in (200, 303), answer.text
        yield client


# --- reading the files back ------------------------------------------------------------------


def csv_of(answer: httpx.Response) -> tuple[list[str], list[list[str]]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == CSV
    assert answer.headers["content-disposition"].startswith('attachment; filename="')
    lines = list(csv.reader(io.StringIO(answer.content.decode("utf-8"))))
    return lines[0], lines[1:]


def xlsx_of(answer: httpx.Response) -> tuple[list[Any], list[list[Any]], dict[str, Any], Any]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == XLSX
    assert re.search(r'filename="[A-Za-z0-9-]+\.xlsx"', answer.headers["content-disposition"])
    book = load_workbook(io.BytesIO(answer.content))
    assert book.sheetnames == ["Data", "Notes"]
    cells = [list(r) for r in book["Data"].iter_rows(values_only=True)]
    notes: dict[str, Any] = {}
    for r in book["Notes"].iter_rows(min_row=2, values_only=True):
        if r and r[0] == "Column":  # the columns and their units follow the notes
            break
        if r and r[0]:
            notes[r[0]] = r[1]
    return list(cells[0]), cells[1:], notes, book


def as_csv(value: Any) -> str:
    """How a JSON value is written to CSV (text that looks like a formula gets a ')."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def as_excel(value: Any) -> Any:
    """How a JSON value reads back from Excel: ISO dates as dates, empty text as an empty
    cell, the rest as they are."""
    if value == "":
        return None
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return datetime.combine(date.fromisoformat(value), datetime.min.time())
    return value


def excel_equal(got: list[Any], want: list[Any]) -> bool:
    """Cells equal, a float to the 15 significant digits Excel keeps (openpyxl writes a double
    with one digit fewer than Python's repr may need, as Excel itself holds 15)."""
    return len(got) == len(want) and all(
        g == w
        or (isinstance(g, float) and isinstance(w, float) and math.isclose(g, w, rel_tol=1e-15))
        for g, w in zip(got, want, strict=True)
    )


def same_cells(
    answer_csv: httpx.Response, answer_xlsx: httpx.Response, expected: list[list[Any]]
) -> tuple[list[str], list[list[str]], dict[str, Any]]:
    """Assert both files hold `expected` (the JSON's values) cell for cell, the CSV with the
    notes on every row; return the CSV header and rows and the Excel notes."""
    header, rows = csv_of(answer_csv)
    xheader, xrows, notes, _ = xlsx_of(answer_xlsx)
    width = len(expected[0]) if expected else len(xheader)
    assert header[:width] == xheader and header[width:] == NOTE_LABELS
    assert len(rows) == len(xrows) == len(expected)
    for i, want in enumerate(expected):
        assert rows[i][:width] == [as_csv(v) for v in want], (i, rows[i], want)
        assert excel_equal(xrows[i], [as_excel(v) for v in want]), (i, xrows[i], want)
        # The notes repeated on every row, Fingertips-style.
        assert rows[i][width:] == [notes[label] for label in NOTE_LABELS]
    for label in NOTE_LABELS:
        assert notes[label], f"the {label} note is empty"
    disclosure = notes["Disclosure"].lower()
    assert any(w in disclosure for w in ("suppress", "identifiable", "disclosure rule"))
    return header, rows, notes


def both(client: httpx.Client, path: str, **params: Any) -> tuple[httpx.Response, ...]:
    return tuple(client.get(path, params={**params, "format": f}) for f in ("csv", "xlsx"))


# --- every table equals its JSON --------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [f"/api/v1/overview/{t}" for t in OVERVIEW_TABLES]
    + [f"/api/v1/data-quality/{t}" for t in DATA_QUALITY_TABLES],
)
def test_a_named_table_is_its_json_cell_for_cell(api: dict[str, httpx.Client], path: str) -> None:
    client = api["analyst"]
    data = client.get(path).json()
    keys = [c["key"] for c in data["columns"]]
    expected = [[row[k] for k in keys] for row in data["rows"]]
    header, _, notes = same_cells(*both(client, path), expected)
    assert [n["label"] for n in data["notes"]] == NOTE_LABELS
    assert {n["label"]: n["text"] for n in data["notes"]} == {k: notes[k] for k in NOTE_LABELS}
    assert len(header) == len(keys) + len(NOTE_LABELS)
    if path.startswith("/api/v1/overview/"):
        assert expected, f"{path} has no rows in a 30,000-person world"
        assert re.search(r"\d{4}-\d{2}-\d{2}", notes["Period"]), notes["Period"]


@pytest.fixture(scope="module")
def place_code(api: dict[str, httpx.Client]) -> str:
    code: str = api["analyst"].get("/api/v1/places").json()[0]["place_code"]
    return code


@pytest.mark.parametrize("table", PLACE_TABLES)
def test_a_place_pages_table_is_its_json_cell_for_cell(
    api: dict[str, httpx.Client], place_code: str, table: str
) -> None:
    client = api["analyst"]
    path = f"/api/v1/overview/{table}"
    data = client.get(path, params={"place": place_code}).json()
    system = client.get(path).json()
    keys = [c["key"] for c in data["columns"]]
    expected = [[row[k] for k in keys] for row in data["rows"]]
    assert expected
    same_cells(*both(client, path, place=place_code), expected)
    if "area_code" in keys:  # the place beside the system, as the page shows it
        assert {r["area_code"] for r in data["rows"]} == {place_code, "system"}
    else:  # the place's own figures, not the system's
        assert data["rows"] != system["rows"]
    answer = client.get("/api/v1/overview/core20plus5", params={"place": place_code})
    assert answer.status_code == 422 and "system's only" in answer.json()["detail"]
    assert client.get(path, params={"place": "NOPE1"}).status_code == 404


def test_an_unknown_table_is_404_in_every_format(api: dict[str, httpx.Client]) -> None:
    for path in ("/api/v1/overview/nonsense", "/api/v1/data-quality/nonsense"):
        for fmt in ("json", "csv", "xlsx"):
            answer = api["analyst"].get(path, params={"format": fmt})
            assert answer.status_code == 404, (path, fmt)
            assert "choose from" in answer.json()["detail"]
    assert api["analyst"].get("/api/v1/places", params={"format": "pdf"}).status_code == 422


def test_places_and_pcns_downloads_are_their_json(api: dict[str, httpx.Client]) -> None:
    client = api["analyst"]
    places = client.get("/api/v1/places").json()
    expected = [
        [p["place_code"], p["place_name"], p["people"],
         float(p["share"].rstrip("%")) if p["share"] else None, p["pcns"], p["practices"]]
        for p in places
    ]  # fmt: skip
    same_cells(*both(client, "/api/v1/places"), expected)
    place = places[0]["place_code"]
    for params in ({}, {"place": place}):
        pcns = client.get("/api/v1/pcns", params=params).json()
        expected = [
            [p["pcn_code"], p["pcn_name"], p["place_code"], p["place_name"], p["people"],
             p["practices"]]
            for p in pcns
        ]  # fmt: skip
        assert expected
        same_cells(*both(client, "/api/v1/pcns", **params), expected)


def test_indicator_definitions_download_is_the_json(api: dict[str, httpx.Client]) -> None:
    client = api["analyst"]
    definitions = client.get("/api/v1/indicators").json()
    expected = []
    for d in definitions:
        parts = [
            [d[p]["words"], d[p]["counts"], "; ".join(d[p]["where"])]
            for p in ("numerator", "denominator")
        ]
        expected.append(
            [d["id"], d["title"], *parts[0], *parts[1], d["population"], d["ages"], d["unit"],
             d["method"], d["method_words"], d["ci_method"], d["ci_words"], d["polarity"],
             d["period_type"], d["source"], d["disclosure"]]
        )  # fmt: skip
    assert len(expected) == len(list(shipped_definitions()))
    same_cells(*both(client, "/api/v1/indicators"), expected)


def test_indicator_values_one_row_per_area_period_and_suppressed_cells_empty(
    api: dict[str, httpx.Client],
) -> None:
    client = api["clinician"]  # published aggregates: every role
    keys = [c.key for c in VALUE_COLUMNS]
    suppressed_seen = 0
    for indicator in shipped_definitions():
        path = f"/api/v1/indicators/{indicator.id}"
        params = {"level": "practice", "period": "all"}
        data = client.get(path, params=params).json()
        assert all(set(r) == set(keys) for r in data["values"])  # no field left out
        expected = [[r[k] for k in keys] for r in data["values"]]
        header, rows, notes = same_cells(*both(client, path, **params), expected)
        assert indicator.title in notes["Definition"]
        assert all(p in notes["Period"] for p in data["periods"])
        value = keys.index("value")
        for row, json_row in zip(rows, data["values"], strict=True):
            if json_row["suppressed"]:
                suppressed_seen += 1
                assert row[value] == "" and row[keys.index("suppressed")] == "true"
        if suppressed_seen:
            _, xrows, _, _ = xlsx_of(client.get(path, params={**params, "format": "xlsx"}))
            hidden = [x for x, j in zip(xrows, data["values"], strict=True) if j["suppressed"]]
            assert hidden and all(x[value] is None for x in hidden)
            assert header[value].startswith("Value")
            break
    assert suppressed_seen, "no practice-level indicator value was suppressed: nothing tested"


# --- the same numbers as the page ------------------------------------------------------------


def page_cells(html: str, table_id: str, cls: str = "count") -> list[str]:
    found = re.search(rf'<table id="{table_id}".*?</table>', html, re.S)
    assert found, table_id
    return re.findall(rf'<td class="{cls}[^"]*">([^<]*)</td>', found.group(0))


def shown(value: Any) -> str:
    return "*" if value is None else f"{value:,}"


def rate_shown(value: float | None) -> str:
    if value is None:
        return "*"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def column(client: httpx.Client, table: str, key: str) -> list[Any]:
    data = client.get(f"/api/v1/overview/{table}", params={"format": "xlsx"})
    header, rows, _, _ = xlsx_of(data)
    keys = [c["key"] for c in client.get(f"/api/v1/overview/{table}").json()["columns"]]
    assert len(header) == len(keys)
    return [r[keys.index(key)] for r in rows]


def test_the_overview_downloads_hold_the_numbers_the_page_shows(
    api: dict[str, httpx.Client], browser_session: httpx.Client
) -> None:
    client = api["analyst"]
    html = browser_session.get("/").text
    checks: list[tuple[str, list[str], Callable[[], list[str]]]] = [
        ("places-table", page_cells(html, "places-table"),
         lambda: [shown(v) for v in column(client, "population-by-place", "people")]),
        ("pyramid-table", page_cells(html, "pyramid-table"),
         lambda: [shown(v) for v in column(client, "population-by-age-and-sex", "people")]),
        ("segment-table", page_cells(html, "segment-table"),
         lambda: [shown(v) for v in column(client, "segments", "people")]),
        ("tier-table", page_cells(html, "tier-table"),
         lambda: [shown(v) for v in column(client, "risk-tiers", "people")]),
        ("deaths-table", page_cells(html, "deaths-table"),
         lambda: [shown(v) for pair in zip(column(client, "deaths", "events"),
                                           column(client, "deaths", "people"), strict=True)
                  for v in pair]),
    ]  # fmt: skip
    for name, on_page, in_file in checks:
        assert on_page and on_page == in_file(), name
    rates = page_cells(html, "deaths-table", "num")[0::2]  # rate, then its interval
    assert rates == [rate_shown(v) for v in column(client, "deaths", "rate")]
    # Each table's links are on the page, under it or in the downloads section.
    for table in OVERVIEW_TABLES:
        for fmt in ("csv", "xlsx"):
            assert f'href="/api/v1/overview/{table}?format={fmt}"' in html, (table, fmt)
    assert 'href="/api/v1/places?format=csv"' in html


def rate_text(value: float | None) -> str:
    """A rate as the report's tables show one that is not suppressed ("" when none)."""
    if value is None:
        return ""
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def json_rows(client: httpx.Client, table: str, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = client.get(f"/api/v1/overview/{table}", params=params).json()[
        "rows"
    ]
    return rows


def file_rows(client: httpx.Client, table: str, **params: Any) -> list[dict[str, Any]]:
    """The Excel download's rows by column key (numbers as numbers, empty cells None)."""
    keys = [c["key"] for c in client.get(f"/api/v1/overview/{table}", params=params).json()[
        "columns"]]  # fmt: skip
    answer = client.get(f"/api/v1/overview/{table}", params={**params, "format": "xlsx"})
    _, rows, _, _ = xlsx_of(answer)
    return [dict(zip(keys, r, strict=True)) for r in rows]


def test_the_inequality_and_transition_downloads_hold_the_page_numbers(
    api: dict[str, httpx.Client], browser_session: httpx.Client
) -> None:
    client = api["analyst"]
    html = browser_session.get("/").text
    # Slope and relative index of inequality: each index and its interval.
    sii = file_rows(client, "slope-index-of-inequality")
    assert sii
    expected = []
    for r in sii:
        for k in ("sii", "rii"):
            interval = (
                f"{rate_text(r[f'{k}_lower'])} to {rate_text(r[f'{k}_upper'])}"
                if r[f"{k}_lower"] is not None and r[f"{k}_upper"] is not None
                else ""
            )
            expected += [rate_text(r[k]), interval]
    assert page_cells(html, "sii-table", "num") == expected
    # Core20PLUS5: each group's percentage, interval and counts, and the gap.
    core20 = file_rows(client, "core20plus5")
    on_page = page_cells(html, "core20plus5-table", "num")
    assert len(on_page) == 3 * len(core20) > 0
    for i, r in enumerate(core20):
        for j, prefix in enumerate(("core20plus", "rest")):
            cell = on_page[3 * i + j]
            if r[f"{prefix}_percent"] is None:
                assert cell == "" or cell.startswith("*"), (i, prefix, cell)
                continue
            assert cell.startswith(f"{rate_text(r[f'{prefix}_percent'])}% ("), (i, cell)
            if r[f"{prefix}_lower"] is not None:
                assert f"({rate_text(r[f'{prefix}_lower'])} to " in cell
            for part in ("numerator_count", "denominator_count"):
                if r[f"{prefix}_{part}"] is not None:
                    assert f"{r[f'{prefix}_{part}']:,}" in cell.split("), ")[1], (i, cell)
        gap = on_page[3 * i + 2]
        assert gap == (rate_text(r["gap_points"]) if r["gap_points"] is not None else gap)
        assert r["gap_points"] is not None or gap in ("", "*")
    # Segment transitions: the matrix cell by cell (no row: nobody moved, 0).
    matrix = file_rows(client, "segment-transitions")
    assert len(matrix) == 8
    keys = [c["key"] for c in client.get("/api/v1/overview/segment-transitions").json()[
        "columns"]][1:]  # fmt: skip
    assert page_cells(html, "transition-table") == [shown(r[k]) for r in matrix for k in keys]
    assert any(r[k] for r in matrix for k in keys)


def test_a_place_pages_downloads_hold_its_numbers(
    api: dict[str, httpx.Client], browser_session: httpx.Client, place_code: str
) -> None:
    client = api["analyst"]
    html = browser_session.get(f"/places/{place_code}").text
    for table_id, table in (
        ("pyramid-table", "population-by-age-and-sex"),
        ("segment-table", "segments"),
        ("tier-table", "risk-tiers"),
    ):
        people = [shown(r["people"]) for r in file_rows(client, table, place=place_code)]
        assert page_cells(html, table_id) == people, table_id
    rates = file_rows(client, "rates-by-area", place=place_code)
    compare = re.search(r'<table id="compare-table".*?</table>', html, re.S)
    assert compare
    for r in rates:
        if r["area_code"] == place_code and r["rate"] is not None:
            assert f">{rate_text(r['rate'])} (" in compare.group(0), r
    for table in PLACE_TABLES:
        for fmt in ("csv", "xlsx"):
            href = f'href="/api/v1/overview/{table}?place={place_code}&amp;format={fmt}"'
            assert href in html, (table, fmt)
    assert f'href="/api/v1/pcns?place={place_code}&amp;format=csv"' in html
    assert f'href="/api/v1/profiles/place/{place_code}?format=csv"' in html


def test_the_what_if_result_downloads_are_the_page_and_the_json(
    api: dict[str, httpx.Client], live_server: str, place_code: str
) -> None:
    client = api["analyst"]  # analysts may run what-ifs
    scenario = {"place": place_code, "segment": "", "activity": "emergency_admission",
                "change": "-12.5"}  # fmt: skip
    data = client.get("/api/v1/finance/what-if", params=scenario).json()
    posted = client.post(
        "/api/v1/finance/what-if",
        json={"place_code": place_code, "segment": None,
              "activity_type": "emergency_admission", "change_percent": "-12.5"},
    ).json()  # fmt: skip
    assert posted["places"] == data["places"] and posted["total"] == data["total"]
    keys = ["place_name", "place_code", "baseline_cost_gbp", "scenario_cost_gbp",
            "cost_change_gbp", "baseline_index", "scenario_index", "baseline_target_gbp",
            "scenario_target_gbp", "target_change_gbp", "baseline_allocation_gbp",
            "scenario_allocation_gbp", "allocation_change_gbp"]  # fmt: skip
    total = data["total"] | {"baseline_index": None, "scenario_index": None}
    expected = [[r[k] for k in keys] for r in [*data["places"], total]]
    header, rows = csv_of(
        client.get("/api/v1/finance/what-if", params={**scenario, "format": "csv"})
    )
    xheader, xrows, notes, _ = xlsx_of(
        client.get("/api/v1/finance/what-if", params={**scenario, "format": "xlsx"})
    )
    assert header[: len(keys)] == xheader
    assert len(rows) == len(xrows) == len(expected) == len(data["places"]) + 1
    for row, xrow, want in zip(rows, xrows, expected, strict=True):
        for cell, xcell, value in zip(row, xrow, want, strict=False):
            if value is None:
                assert cell == "" and xcell is None
            elif isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value):
                # Money: exact pounds in the JSON (text), the CSV and Excel (a number).
                assert float(cell) == float(value) == xcell, (cell, xcell, value)
            else:
                assert cell == as_csv(value), (cell, value)
                assert excel_equal([xcell], [as_excel(value)]), (xcell, value)
    assert "-12.5%" in notes["Definition"] or "12.5% fewer" in notes["Definition"]
    assert notes["Signs"].startswith("Positive is more money")
    # The page's result table shows the same figures, rounded to whole pounds.
    with httpx.Client(base_url=live_server, timeout=120) as browser:
        browser.post("/login", data={"username": "analyst", "password": "analyst-demo-2026"})
        html = browser.get("/finance/what-if", params=scenario).text
    table = re.search(r'<table id="what-if-result-table".*?</table>', html, re.S)
    assert table
    shown_rows = re.findall(r"<tr><th scope=\"row\">(.*?)</tr>", table.group(0), re.S)
    assert len(shown_rows) == len(data["places"])
    money = ("baseline_cost_gbp", "scenario_cost_gbp", "cost_change_gbp")
    for tr, r in zip(shown_rows, data["places"], strict=True):
        tds = re.findall(r'<td class="num">([^<]*)</td>', tr)
        assert tds[:3] == [
            money_text(Decimal(r[k]), signed=k.endswith("change_gbp")) for k in money
        ]
        assert tds[3:5] == [f"{r['baseline_index']:.3f}", f"{r['scenario_index']:.3f}"]
    link = "/api/v1/finance/what-if?" + urlencode(scenario).replace("&", "&amp;")
    assert f'href="{link}&amp;format=csv"' in html
    # Whom finance is refused, the download is refused too.
    refused = api["clinician"].get("/api/v1/finance/what-if", params={**scenario, "format": "csv"})
    assert refused.status_code == 403


def test_the_indicators_page_links_its_values_and_definitions(
    api: dict[str, httpx.Client], browser_session: httpx.Client
) -> None:
    client = api["analyst"]
    html = browser_session.get("/indicators").text
    ics = client.get("/api/v1/overview").json()["ics_code"]
    for url in (f"/api/v1/profiles/system/{ics}", "/api/v1/indicators"):
        for fmt in ("csv", "xlsx"):
            assert f'href="{url}?format={fmt}"' in html, (url, fmt)
    # The system's values on the page are its profile download's, one by one.
    shown = re.findall(r'<span class="jd-value">([^<]*)</span>', html)
    rows = client.get(f"/api/v1/profiles/system/{ics}").json()
    assert shown and shown == [r["value_text"] for r in rows]
    _, file_rows_ = csv_of(client.get(f"/api/v1/profiles/system/{ics}", params={"format": "csv"}))
    assert [r[0] for r in file_rows_] == [r["title"] for r in rows]


def test_the_pages_link_their_downloads(browser_session: httpx.Client) -> None:
    places = browser_session.get("/places").text
    assert ">Download CSV<" in places and 'href="/api/v1/places?format=xlsx"' in places
    quality = browser_session.get("/data-quality").text
    for table in ("unmapped-codes", "completeness"):
        assert f'href="/api/v1/data-quality/{table}?format=csv"' in quality
        # What the page links to answers with a file.
        answer = browser_session.get(f"/api/v1/data-quality/{table}", params={"format": "xlsx"})
        assert answer.headers["content-type"] == XLSX


# --- worklists: identifiable, the same checks and audit, and no formula ------------------------


def worklist_json(client: httpx.Client, pcn: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = client.get(
            f"/api/v1/worklists/{pcn}",
            params={"reason": "mdt", "limit": 500, "offset": len(rows)},
        ).json()
        rows += page["rows"]
        if len(rows) >= page["total"]:
            return rows


def test_the_worklist_download_is_its_json_and_neutralises_a_formula_in_a_note(
    api: dict[str, httpx.Client], live_server: str
) -> None:
    client = api["clinician"]
    pcn = client.get("/api/v1/me").json()["pcn_code"]
    rows = worklist_json(client, pcn)
    target = rows[-1]
    # A clinician types a formula as a status note, through the page's own form.
    with httpx.Client(base_url=live_server, timeout=120) as page:
        page.post("/login", data={"username": "clinician", "password": "clinician-demo-2026"})
        html = page.get(f"/worklists/{pcn}", params={"reason": "mdt"}).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', html)
        assert csrf

        def note(text: str) -> None:
            answer = page.post(
                f"/worklists/{pcn}/status",
                data={"csrf": csrf.group(1), "worklist_id": target["worklist_id"],
                      "person_id": str(target["person_id"]), "status": target["status"],
                      "note": text, "back": "reason=mdt"},
            )  # fmt: skip
            assert answer.status_code in (200, 303), answer.text

        note(FORMULA)
        try:
            rows = worklist_json(client, pcn)
            keys = list(WorklistRow.model_fields)
            assert all(set(r) == set(keys) for r in rows)
            expected = [[r[k] for k in keys] for r in rows]
            answers = both(client, f"/api/v1/worklists/{pcn}", reason="mdt")
            header, got, notes = same_cells(*answers, expected)
            assert header[: len(keys)] == keys  # machine names, as the CSV always had
            written = next(
                r[keys.index("status_note")] for r in got if r[keys.index("status_note")]
            )
            assert written == "'" + FORMULA
            book = xlsx_of(answers[1])[3]
            cell = next(
                c
                for c in book["Data"].iter_rows(min_row=2)
                if c[keys.index("status_note")].value == FORMULA
            )[keys.index("status_note")]
            assert cell.data_type == "s"  # text, never a formula
            assert "audit" in notes["Disclosure"]
            assert all(a.headers["cache-control"] == "no-store" for a in answers)
            # The old route is an alias of format=csv.
            old = client.get(f"/api/v1/worklists/{pcn}/csv", params={"reason": "mdt"})
            old_header, old_rows = csv_of(old)
            assert old_header == header
            assert [r[: len(keys)] for r in old_rows] == [r[: len(keys)] for r in got]
        finally:
            note("")


def test_downloads_are_refused_to_whom_the_json_is(
    api: dict[str, httpx.Client], live_server: str
) -> None:
    pcn = api["clinician"].get("/api/v1/me").json()["pcn_code"]
    refused = [
        (api["clinician"], "/api/v1/data-quality/completeness", {}),
        (api["clinician"], "/api/v1/data-quality/quarantine", {}),
        (api["analyst"], f"/api/v1/worklists/{pcn}", {"reason": "mdt"}),
        (api["clinician2"], f"/api/v1/worklists/{pcn}", {"reason": "mdt"}),
    ]
    for client, path, params in refused:
        for fmt in ("json", "csv", "xlsx"):
            answer = client.get(path, params={**params, "format": fmt})
            assert answer.status_code == 403, (path, fmt, answer.status_code)
            assert answer.headers["content-type"].startswith("application/json")
    for fmt in ("csv", "xlsx"):
        assert httpx.get(f"{live_server}/api/v1/places?format={fmt}").status_code == 401
    # A worklist download without a reason is refused too, as its JSON is.
    no_reason = api["clinician"].get(f"/api/v1/worklists/{pcn}", params={"format": "csv"})
    assert no_reason.status_code == 422


def test_a_worklist_download_is_audited(api: dict[str, httpx.Client]) -> None:
    client = api["clinician"]
    pcn = client.get("/api/v1/me").json()["pcn_code"]
    admin = sign_in(str(client.base_url).rstrip("/"), "admin")
    try:
        before = admin.get("/api/v1/audit").json()["total"]
        client.get(f"/api/v1/worklists/{pcn}", params={"reason": "follow-up", "format": "xlsx"})
        log = admin.get("/api/v1/audit", params={"limit": 1}).json()
        assert log["total"] == before + 1
        (entry,) = log["entries"]
        assert (entry["username"], entry["action"], entry["reason"]) == (
            "clinician", "download", "follow-up",
        )  # fmt: skip
    finally:
        admin.close()


# --- an area's child areas: a place's PCNs, a PCN's practices ---------------------------------


def test_a_pcn_pages_practices_download_is_its_table_and_json(
    api: dict[str, httpx.Client], browser_session: httpx.Client, place_code: str
) -> None:
    client = api["analyst"]
    pcn = client.get("/api/v1/pcns", params={"place": place_code}).json()[0]
    path = f"/api/v1/profiles/pcn/{pcn['pcn_code']}/children"
    data = client.get(path).json()
    keys = [c["key"] for c in data["columns"]]
    assert keys == ["code", "name", "parent_code", "parent_name"]  # no counts: none published
    expected = [[row[k] for k in keys] for row in data["rows"]]
    assert expected
    _, rows, notes = same_cells(*both(client, path), expected)
    assert pcn["pcn_name"] in notes["Definition"]
    # The page's table, row by row: the practice's name (linked) and code.
    html = browser_session.get(f"/pcns/{pcn['pcn_code']}").text
    table = re.search(r'<table id="children-table".*?</table>', html, re.S)
    assert table
    on_page = re.findall(
        r'<th scope="row"><a href="/practices/([^"]+)">([^<]*)</a>', table.group(0)
    )
    assert [(code, name.replace("&amp;", "&").replace("&#39;", "'")) for code, name in on_page] \
        == [(r[0], r[1]) for r in rows]  # fmt: skip
    assert len(on_page) == pcn["practices"]
    for fmt in ("csv", "xlsx"):
        assert f'href="{path}?format={fmt}"' in html, fmt


def test_a_place_profiles_child_download_holds_its_pcns_people(
    api: dict[str, httpx.Client], place_code: str, live_server: str
) -> None:
    client = api["analyst"]
    path = f"/api/v1/profiles/place/{place_code}/children"
    data = client.get(path).json()
    keys = [c["key"] for c in data["columns"]]
    assert keys[-1] == "people"
    expected = [[row[k] for k in keys] for row in data["rows"]]
    same_cells(*both(client, path), expected)
    # The same people as the place page's PCN table (its own download, /api/v1/pcns?place=).
    pcns = client.get("/api/v1/pcns", params={"place": place_code}).json()
    assert sorted((r[0], r[-1]) for r in expected) == sorted(
        (p["pcn_code"], p["people"]) for p in pcns
    )
    # A practice has none; an unknown area is 404 in every format; signed out, 401.
    practice = data and client.get(f"/api/v1/profiles/pcn/{expected[0][0]}/children").json()
    for bad in (f"/api/v1/profiles/practice/{practice['rows'][0]['code']}/children",
                "/api/v1/profiles/pcn/NOPE1/children"):  # fmt: skip
        for fmt in ("json", "csv", "xlsx"):
            assert client.get(bad, params={"format": fmt}).status_code == 404, (bad, fmt)
    for fmt in ("csv", "xlsx"):
        assert httpx.get(f"{live_server}{path}?format={fmt}").status_code == 401


# --- About ------------------------------------------------------------------------------------


def test_the_about_tables_download_is_its_json_and_the_page(
    api: dict[str, httpx.Client], browser_session: httpx.Client, live_server: str
) -> None:
    client = api["clinician"]  # About is every staff role's
    path = "/api/v1/about/tables"
    data = client.get(path).json()
    assert [c["key"] for c in data["columns"]] == ["table", "rows"]
    expected = [[r["table"], r["rows"]] for r in data["rows"]]
    assert expected == [[k, v] for k, v in client.get("/api/v1/about").json()["tables"].items()]
    _, rows, notes = same_cells(*both(client, path), expected)
    assert re.search(r"\d{4}-\d{2}-\d{2} to \d{4}-\d{2}-\d{2}", notes["Period"]), notes["Period"]
    html = browser_session.get("/about").text
    table = re.search(r'<table id="tables-table".*?</table>', html, re.S)
    assert table
    on_page = re.findall(
        r'<th scope="row"><code>([^<]*)</code></th><td class="num">([^<]*)</td>', table.group(0)
    )
    assert on_page == [(r[0], f"{int(r[1]):,}") for r in rows] and len(on_page) > 5
    for fmt in ("csv", "xlsx"):
        assert f'href="{path}?format={fmt}"' in html
        assert httpx.get(f"{live_server}{path}?format={fmt}").status_code == 401


# --- the audit log: admins only, and the download is itself audited --------------------------


def assert_admins_only(api: dict[str, httpx.Client], live_server: str, path: str) -> None:
    """`path` in every format is 403 to the analyst and the clinician, 401 signed out."""
    for fmt in ("json", "csv", "xlsx"):
        for user in ("analyst", "clinician"):
            answer = api[user].get(path, params={"format": fmt})
            assert answer.status_code == 403, (user, fmt)
        assert httpx.get(f"{live_server}{path}?format={fmt}").status_code == 401


def test_the_audit_log_download_is_its_json_audited_and_admins_only(
    api: dict[str, httpx.Client], live_server: str
) -> None:
    admin = sign_in(live_server, "admin")
    try:
        # An entry of its own first (a request without a token is audited), so the download
        # has rows to compare however few tests ran before this one.
        assert httpx.get(f"{live_server}/api/v1/me").status_code == 401
        keys = ["seq", "at", "username", "role", "action", "resource", "detail", "reason",
                "client"]  # fmt: skip
        params = {"limit": 20, "offset": 0}
        for fmt in ("csv", "xlsx"):
            data = admin.get("/api/v1/audit", params=params).json()
            expected = [[e[k] for k in keys] for e in data["entries"]]
            assert expected
            answer = admin.get("/api/v1/audit", params={**params, "format": fmt})
            if fmt == "csv":
                header, rows = csv_of(answer)
                assert header[len(keys) :] == NOTE_LABELS
                assert [r[: len(keys)] for r in rows] == [[as_csv(v) for v in e] for e in expected]
            else:
                _, xrows, notes, _ = xlsx_of(answer)
                assert xrows == [[as_excel(v) for v in e] for e in expected]
                assert "no disclosure rule" in notes["Disclosure"]
                assert "never a patient's NHS number" in notes["Disclosure"]
            # The download is the newest entry now, naming only the range and format.
            (entry,) = admin.get("/api/v1/audit", params={"limit": 1}).json()["entries"]
            assert entry["seq"] == data["entries"][0]["seq"] + 1
            assert (entry["username"], entry["action"], entry["resource"]) == (
                "admin", "download", "audit",
            )  # fmt: skip
            assert entry["detail"] == f"{len(expected)} entries from offset 0 as {fmt}"
        # The page links its own entries' download.
        with httpx.Client(base_url=live_server, timeout=120) as page:
            page.post("/login", data={"username": "admin", "password": "admin-demo-2026"})
            html = page.get("/admin/audit", params={"page": 2}).text
        assert 'href="/api/v1/audit?limit=50&amp;offset=50&amp;format=csv"' in html
        # Whom the log is refused, its download is refused.
        assert_admins_only(api, live_server, "/api/v1/audit")
    finally:
        admin.close()


def test_the_accounts_download_is_its_json_audited_admins_only_and_names_no_record(
    api: dict[str, httpx.Client], live_server: str
) -> None:
    admin = sign_in(live_server, "admin")
    try:
        data = admin.get("/api/v1/accounts").json()
        keys = [c["key"] for c in data["columns"]]
        rows = {r["username"]: r for r in data["rows"]}
        # Everyone the demo made, each with when they last signed in: the admin just did.
        assert {"admin", "analyst", "clinician", "clinician2"} <= set(rows)
        assert rows["admin"]["last_sign_in_at"] >= rows["admin"]["created_at"]
        assert rows["admin"]["live_sessions_count"] >= 1
        assert rows["clinician"]["sees"].startswith("PCN ")
        expected = [[r[k] for k in keys] for r in data["rows"]]
        for fmt in ("csv", "xlsx"):
            answer = admin.get("/api/v1/accounts", params={"format": fmt})
            if fmt == "csv":
                header, got = csv_of(answer)
                assert header[: len(keys)] == [
                    c["heading"] + (f" ({c['unit']})" if c["unit"] else "") for c in data["columns"]
                ]
                assert [r[: len(keys)] for r in got] == [[as_csv(v) for v in e] for e in expected]
            else:
                _, xrows, notes, _ = xlsx_of(answer)
                assert xrows == [[as_excel(v) for v in e] for e in expected]
                assert "no Patient id" in notes["Disclosure"]
            # Audited, naming how many accounts and the format only.
            (entry,) = admin.get("/api/v1/audit", params={"limit": 1}).json()["entries"]
            assert (entry["username"], entry["action"], entry["resource"], entry["detail"]) == (
                "admin", "download", "accounts", f"{len(expected)} accounts as {fmt}",
            )  # fmt: skip
        # A citizen's row names the account, never the record it opens.
        for row in data["rows"]:
            if row["role"] == "Citizen":
                assert row["sees"] == "their own record"
        # The page shows when each last signed in and links the download.
        with httpx.Client(base_url=live_server, timeout=120) as page:
            page.post("/login", data={"username": "admin", "password": "admin-demo-2026"})
            html = page.get("/admin/audit").text
        assert "Last signed in (UTC)" in html
        assert 'href="/api/v1/accounts?format=xlsx"' in html
        assert_admins_only(api, live_server, "/api/v1/accounts")
    finally:
        admin.close()


def test_the_worklist_cohort_counts_download_is_the_page_and_the_json(
    api: dict[str, httpx.Client], live_server: str
) -> None:
    client = api["clinician"]
    pcn = client.get("/api/v1/me").json()["pcn_code"]
    path = f"/api/v1/worklists/{pcn}/cohorts"
    data = client.get(path, params={"reason": "mdt"}).json()
    keys = [c["key"] for c in data["columns"]]
    expected = [[r[k] for k in keys] for r in data["rows"]]
    # The worklist's own JSON counts the same cohorts.
    page_json = client.get(f"/api/v1/worklists/{pcn}", params={"reason": "mdt", "limit": 1})
    assert expected == [[c[k] for k in keys] for c in page_json.json()["cohorts"]]
    assert any(r[-1] for r in expected)
    _, _, notes = same_cells(*both(client, path, reason="mdt"), expected)
    assert "audit" in notes["Disclosure"]
    with httpx.Client(base_url=live_server, timeout=120) as browser:
        browser.post("/login", data={"username": "clinician", "password": "clinician-demo-2026"})
        html = browser.get(f"/worklists/{pcn}", params={"reason": "mdt"}).text
    table = re.search(r'<table id="cohort-table".*?</table>', html, re.S)
    assert table
    counts = re.findall(r'<td class="num">([^<]*)</td>', table.group(0))
    assert counts == [f"{r[-1]:,}" for r in expected]
    for fmt in ("csv", "xlsx"):
        assert f'href="{path}?reason=mdt&amp;format={fmt}"' in html, fmt
    # The worklist's checks: another PCN's clinician, an analyst, no reason; audited.
    for who, params, status in (("clinician2", {"reason": "mdt"}, 403),
                                ("analyst", {"reason": "mdt"}, 403),
                                ("clinician", {}, 422)):  # fmt: skip
        for fmt in ("json", "csv", "xlsx"):
            answer = api[who].get(path, params={**params, "format": fmt})
            assert answer.status_code == status, (who, fmt, answer.status_code)
    admin = sign_in(live_server, "admin")
    try:
        client.get(path, params={"reason": "follow-up", "format": "csv"})
        (entry,) = admin.get("/api/v1/audit", params={"limit": 1}).json()["entries"]
        assert (entry["username"], entry["action"], entry["resource"], entry["reason"]) == (
            "clinician", "download", f"worklist/{pcn}/cohorts", "follow-up",
        )  # fmt: skip
    finally:
        admin.close()


# --- the whole audit log: streamed, every entry the JSON pages hold --------------------------

AUDIT_KEYS = ["seq", "at", "username", "role", "action", "resource", "detail", "reason", "client"]


def audit_log_as_json(admin: httpx.Client) -> list[dict[str, Any]]:
    """Every entry of the log, newest first, read through the JSON's pages of at most 500."""
    entries: list[dict[str, Any]] = []
    while True:
        page = admin.get("/api/v1/audit", params={"limit": 500, "offset": len(entries)})
        assert page.status_code == 200, page.text
        data = page.json()
        entries += data["entries"]
        if len(entries) >= data["total"]:
            return entries


def test_the_whole_audit_log_export_is_every_json_entry_in_range_audited_and_admins_only(
    api: dict[str, httpx.Client], live_server: str
) -> None:
    admin = sign_in(live_server, "admin")
    try:
        # More entries than one JSON page holds: each unauthenticated request is one entry.
        total = admin.get("/api/v1/audit", params={"limit": 1}).json()["total"]
        with httpx.Client(base_url=live_server, timeout=60) as anonymous:
            for _ in range(max(0, 620 - total)):
                assert anonymous.get("/api/v1/audit").status_code == 401
        for fmt in ("csv", "xlsx"):
            entries = audit_log_as_json(admin)
            assert len(entries) > 600
            assert [e["seq"] for e in entries] == list(range(len(entries), 0, -1))
            expected = [[e[k] for k in AUDIT_KEYS] for e in entries]
            answer = admin.get("/api/v1/audit/export", params={"format": fmt})
            if fmt == "csv":
                header, rows = csv_of(answer)
                assert header[len(AUDIT_KEYS) :] == NOTE_LABELS
                assert [r[: len(AUDIT_KEYS)] for r in rows] == [
                    [as_csv(v) for v in e] for e in expected
                ]
                notes = dict(zip(NOTE_LABELS, rows[0][len(AUDIT_KEYS) :], strict=True))
            else:
                _, rows, notes, _ = xlsx_of(answer)
                assert rows == [[as_excel(v) for v in e] for e in expected]
            n = len(entries)
            assert (
                f"chain intact: every entry from the first to {n} was checked"
                in notes["Definition"]
            )
            assert notes["Period"].startswith(
                f"{n:,} entries, numbers 1 to {n}, newest first, written from the first entry "
                "to the newest (UTC)"
            )
            assert "never a patient's NHS number" in notes["Disclosure"]
            # The export is the newest entry now, naming only how many, the range and format.
            (entry,) = admin.get("/api/v1/audit", params={"limit": 1}).json()["entries"]
            assert (entry["seq"], entry["username"], entry["action"], entry["resource"]) == (
                n + 1, "admin", "export", "audit",
            )  # fmt: skip
            assert entry["detail"] == (
                f"{n} entries (1 to {n}) from the first entry to the newest (UTC) as {fmt}"
            )

        # A period: entries written from one entry's instant until another's, both included.
        entries = audit_log_as_json(admin)
        since, until = entries[450]["at"], entries[30]["at"]
        wanted = [e for e in entries if since <= e["at"] <= until]
        assert 400 <= len(wanted) < len(entries)
        answer = admin.get(
            "/api/v1/audit/export", params={"format": "csv", "since": since, "until": until}
        )
        _, rows = csv_of(answer)
        assert [r[0] for r in rows] == [str(e["seq"]) for e in wanted]
        period = rows[0][len(AUDIT_KEYS) + 1]
        assert period.startswith(f"{len(wanted):,} entries, numbers {wanted[-1]['seq']} to ")
        assert f"written from {since} until {until} (UTC)" in period
        (entry,) = admin.get("/api/v1/audit", params={"limit": 1}).json()["entries"]
        assert entry["detail"] == (
            f"{len(wanted)} entries ({wanted[-1]['seq']} to {wanted[0]['seq']}) from {since} "
            f"until {until} (UTC) as csv"
        )
        # Dates are whole UTC days: today's entries are all of them; none until yesterday.
        today = datetime.fromisoformat(entries[0]["at"]).date()
        first_day = datetime.fromisoformat(entries[-1]["at"]).date()
        answer = admin.get(
            "/api/v1/audit/export", params={"since": first_day.isoformat(), "until": str(today)}
        )
        _, rows = csv_of(answer)
        assert len(rows) == len(entries) + 1  # the export just above
        answer = admin.get("/api/v1/audit/export", params={"until": "2000-01-01"})
        header, rows = csv_of(answer)
        assert rows == [] and header[0] == "Entry"
        answer = admin.get("/api/v1/audit/export", params={"until": "2000-01-01", "format": "xlsx"})
        _, xrows, notes, _ = xlsx_of(answer)
        assert xrows == [] and notes["Period"].startswith("no entries")

        # Bad parameters: 422 naming the parameter; nothing exported, nothing audited.
        newest = admin.get("/api/v1/audit", params={"limit": 1}).json()["total"]
        for params, named in [
            ({"since": "2026-13-01"}, "since"),
            ({"until": "soon"}, "until"),
            ({"since": "2026-02-01", "until": "2026-01-31"}, "until"),
            ({"since": "2026-02-01T10:00:00Z", "until": "2026-02-01T10:00:00Z"}, None),
        ]:
            answer = admin.get("/api/v1/audit/export", params=params)
            if named is None:  # one instant, both ends included: a valid (empty) period
                assert answer.status_code == 200, answer.text
                continue
            assert answer.status_code == 422, (params, answer.text)
            assert answer.json()["detail"].startswith(f"{named}: "), answer.text
        answer = admin.get("/api/v1/audit/export", params={"format": "pdf"})
        assert answer.status_code == 422 and "format" in answer.text
        assert admin.get("/api/v1/audit", params={"limit": 1}).json()["total"] == newest + 1

        # The page offers the export; whom the log is refused, its export is refused.
        with httpx.Client(base_url=live_server, timeout=120) as page:
            page.post("/login", data={"username": "admin", "password": "admin-demo-2026"})
            html = page.get("/admin/audit").text
        assert 'action="/api/v1/audit/export"' in html
        for user in ("analyst", "clinician"):
            answer = api[user].get("/api/v1/audit/export", params={"format": "csv"})
            assert answer.status_code == 403, user
        # The privacy officer reviews the records API's AuditEvents, not the dashboard's log.
        officer = sign_in(live_server, "privacy-officer")
        try:
            assert officer.get("/api/v1/audit").status_code == 403
            assert officer.get("/api/v1/audit/export").status_code == 403
        finally:
            officer.close()
        assert httpx.get(f"{live_server}/api/v1/audit/export").status_code == 401
    finally:
        admin.close()
