"""Indicator and area profile pages in a real browser (Chromium under Playwright): every role
that may see them opens each, the compare-areas table shows the API's published values cell by
cell at place and PCN level and sorts by a column without JavaScript, the places map and the
tables walk down system -> place -> PCN -> practice and the breadcrumbs walk back up, a
suppressed value never shows a number, and no new page scrolls sideways on a 390 px phone."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from test_web_browser import AXE, AXE_TAGS, SHOTS, Api, Sessions, cells, open_ok

from joinedup.indicators.headlines import figure
from joinedup.web.access import PERMISSIONS, Role
from joinedup.web.profiles import period_words

pytestmark = pytest.mark.slow

ROLES = ("analyst", "clinician", "clinician2", "finance", "board", "admin")
INDICATOR = "emergency_admissions_dsr"
#: Which area of PERMISSIONS guards each kind of new page.
GUARD = {"indicators": "overview", "indicator": "overview", "place": "places", "pcn": "places",
         "practice": "places"}  # fmt: skip


@pytest.fixture(scope="module")
def api(live_server: str) -> Iterator[Api]:
    client = Api(live_server)
    yield client
    client.client.close()


@pytest.fixture(scope="module")
def signed_in(browser: Browser, live_server: str, api: Api) -> Iterator[Sessions]:
    sessions = Sessions(browser, live_server, api)
    yield sessions
    sessions.close()


@pytest.fixture(scope="module")
def world(api: Api) -> dict[str, Any]:
    """A place, one of its PCNs and one of that PCN's practices, by the API."""
    place = api.get("analyst", "/api/v1/places")[0]
    pcn = api.get("analyst", "/api/v1/pcns", place=place["place_code"])[0]
    values = api.get("analyst", f"/api/v1/indicators/{INDICATOR}", level="practice")["values"]
    practice = next(v for v in values if v["parent_code"] == pcn["pcn_code"])
    return {"place": place, "pcn": pcn, "practice": practice}


def paths(world: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each new page's path and its h1."""
    return {
        "indicators": ("/indicators", "Indicators"),
        "indicator": (f"/indicators/{INDICATOR}", ""),
        "place": (f"/places/{world['place']['place_code']}", world["place"]["place_name"]),
        "pcn": (f"/pcns/{world['pcn']['pcn_code']}", world["pcn"]["pcn_name"]),
        "practice": (
            f"/practices/{world['practice']['area_code']}",
            world["practice"]["area_name"],
        ),
    }


def one_decimal(x: float | None) -> str:
    return "" if x is None else f"{x:,.1f}"


# --- access ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_each_new_page_opens_for_the_roles_allowed_and_refuses_the_rest(
    role: str, signed_in: Sessions, world: dict[str, Any]
) -> None:
    page = signed_in(role)
    for name, (path, h1) in paths(world).items():
        answer = page.goto(signed_in.base + path)
        assert answer is not None
        may = Role(role if role != "clinician2" else "clinician") in PERMISSIONS[GUARD[name]]
        assert answer.status == (200 if may else 403), f"{role} {path}: {answer.status}"
        if may and h1:
            expect(page.locator("h1")).to_have_text(h1)
        if may and name in ("place", "pcn", "practice"):
            expect(page.locator("#spine-chart svg")).to_have_count(1)
            # Every profile opens with its own "In brief" headlines.
            expect(page.locator("#headline-summary")).to_contain_text("indicators compared")
            assert page.locator("#profile-table tbody tr").count() > 10


def test_signed_out_the_new_pages_send_to_sign_in(
    browser: Browser, live_server: str, world: dict[str, Any]
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        for path, _ in paths(world).values():
            page.goto(live_server + path)
            expect(page).to_have_title("Sign in – joinedup")
    finally:
        context.close()


def test_an_unknown_area_or_indicator_is_a_404_page(signed_in: Sessions) -> None:
    page = signed_in("analyst")
    for path in ("/pcns/NOPE1", "/practices/NOPE1", "/places/NOPE1", "/indicators/no_such"):
        answer = page.goto(signed_in.base + path)
        assert answer is not None and answer.status == 404, path
        expect(page.locator("h1")).to_have_text("Page not found")


# --- the page's figures are the API's --------------------------------------------------------


@pytest.mark.parametrize("level", ["place", "pcn"])
def test_compare_table_equals_the_api_cell_by_cell(
    level: str, signed_in: Sessions, api: Api
) -> None:
    page = signed_in("analyst")
    got = api.get("analyst", f"/api/v1/indicators/{INDICATOR}", level=level)
    open_ok(page, f"{signed_in.base}/indicators/{INDICATOR}?level={level}")
    # Keyed by the code shown under each name.
    shown = {r[0].rsplit(" ", 1)[1]: r for r in cells(page, "#compare-table")}
    assert len(shown) == len(got["values"]) > 1
    words = {None: "Not compared", "better": "Better", "similar": "Similar", "worse": "Worse",
             "higher": "Higher", "lower": "Lower"}  # fmt: skip
    for v in got["values"]:
        row = shown[v["area_code"]]
        assert row[0] == f"{v['area_name']} {v['area_code']}"
        if v["suppressed"]:
            assert row[4].startswith("suppressed (fewer than "), row
            assert not any(ch.isdigit() for ch in row[4].split("(")[0]), row
        else:
            assert row[2] == f"{v['numerator_count']:,}"
            assert row[3] == f"{v['denominator_count']:,}"
            assert row[4] == one_decimal(v["value"])
            assert row[5] == f"{one_decimal(v['lower'])} to {one_decimal(v['upper'])}"
        assert row[6] == words[v["england_comparison"]]
        assert row[7] == words[v["parent_comparison"]]
        assert row[8].lower() == (v["trend"] or "not tested (fewer than three years)").lower()
    # The comparison reads in colour as well as words.
    tags = page.eval_on_selector_all(
        "#compare-table tbody tr td:nth-child(7) strong",
        "els => els.map(e => [e.textContent.trim(), getComputedStyle(e).backgroundColor])",
    )
    colours = dict(tags)
    assert len(set(colours.values())) == len(colours)


def test_profile_table_equals_its_api_and_download(
    signed_in: Sessions, api: Api, world: dict[str, Any]
) -> None:
    page = signed_in("board")
    code = world["pcn"]["pcn_code"]
    rows = api.get("board", f"/api/v1/profiles/pcn/{code}")
    open_ok(page, f"{signed_in.base}/pcns/{code}")
    shown = cells(page, "#profile-table")
    assert [r[0] for r in shown] == [r["title"] for r in rows]
    for cell, r in zip(shown, rows, strict=True):
        assert cell[1] == r["value_text"]
        if r["value"] is None:
            assert cell[1].startswith(("suppressed (fewer than ", "not computable")), cell
        else:
            assert one_decimal(r["value"]) in cell[1]
            assert cell[2] == f"{one_decimal(r['lower'])} to {one_decimal(r['upper'])}"
    csv_text = api.raw("board", f"/api/v1/profiles/pcn/{code}", format="csv").text
    table = list(csv.DictReader(io.StringIO(csv_text)))
    assert [t["Indicator"] for t in table] == [r["title"] for r in rows]
    for t, r in zip(table, rows, strict=True):
        assert t["Value (unit of the indicator)"] == ("" if r["value"] is None else str(r["value"]))
    link = page.locator("#profile-downloads a").first
    assert link.get_attribute("href") == f"/api/v1/profiles/pcn/{code}?format=csv"


def test_practice_level_never_shows_a_suppressed_value_as_a_number(
    signed_in: Sessions, api: Api
) -> None:
    page = signed_in("analyst")
    got = api.get("analyst", "/api/v1/indicators/dementia_prevalence", level="practice")
    hidden = [v for v in got["values"] if v["suppressed"]]
    assert hidden, "a 30,000-person world hides some practices' dementia prevalence"
    open_ok(page, f"{signed_in.base}/indicators/dementia_prevalence?level=practice")
    for v in hidden:
        row = page.locator(f"#area-{v['area_code']} td").nth(3)
        expect(row).to_have_text("suppressed (fewer than 8)")


# --- sorting, trend, map and breadcrumbs -----------------------------------------------------


def test_sorting_by_a_column_changes_the_order_without_javascript(
    browser: Browser, signed_in: Sessions, api: Api
) -> None:
    got = api.get("analyst", f"/api/v1/indicators/{INDICATOR}", level="pcn")["values"]
    published = [v for v in got if v["value"] is not None]
    page = signed_in("analyst")
    open_ok(page, f"{signed_in.base}/indicators/{INDICATOR}?level=pcn")

    def codes() -> list[str]:
        return [r[0].rsplit(" ", 1)[1] for r in cells(page, "#compare-table")]

    by_name = codes()
    with page.expect_navigation():
        page.click("#sort-value")  # first click on a number: highest first
    expect(page.locator("#sort-value").locator("xpath=..")).to_have_attribute(
        "aria-sort", "descending"
    )
    highest = [v["area_code"] for v in sorted(published, key=lambda v: -v["value"])]
    assert codes()[: len(highest)] == highest
    assert codes() != by_name
    with page.expect_navigation():
        page.click("#sort-value")
    assert codes()[: len(highest)] == list(reversed(highest))
    # The same links work with JavaScript off: the sort is the server's.
    context = browser.new_context(java_script_enabled=False)
    try:
        bare = context.new_page()
        cookies = page.context.cookies()
        context.add_cookies(cookies)
        bare.goto(f"{signed_in.base}/indicators/{INDICATOR}?level=pcn&sort=value&order=asc")
        shown = [r[0].rsplit(" ", 1)[1] for r in cells(bare, "#compare-table")]
        assert shown[: len(highest)] == list(reversed(highest))
    finally:
        context.close()


def test_trend_is_charted_and_stated_in_words(
    signed_in: Sessions, api: Api, world: dict[str, Any]
) -> None:
    got = api.get("analyst", f"/api/v1/indicators/{INDICATOR}", level="system", period="all")
    latest = max(got["values"], key=lambda v: v["period"])
    page = signed_in("analyst")
    pcn = world["pcn"]["pcn_code"]
    open_ok(page, f"{signed_in.base}/indicators/{INDICATOR}?level=pcn&area={pcn}")
    words = page.locator("#trend-words li")
    expect(words).to_have_count(2)
    expect(words.first).to_contain_text((latest["trend"] or "not tested").lower())
    expect(words.nth(1)).to_contain_text(world["pcn"]["pcn_name"])
    trend = cells(page, "#trend-table")
    assert len(trend) == len(got["periods"]) >= 2
    system_values = [
        one_decimal(v["value"]) for v in sorted(got["values"], key=lambda v: v["period"])
    ]
    assert [r[1] for r in trend] == system_values
    expect(page.locator("#trend-chart svg")).to_have_count(1)
    assert page.locator("#trend-chart figcaption").inner_text().startswith("Line chart of")


def test_the_map_links_each_place_to_its_profile(signed_in: Sessions, api: Api) -> None:
    page = signed_in("finance")
    open_ok(page, f"{signed_in.base}/places")
    links = page.locator("#map-chart svg a[href^='/places/']")
    assert links.count() >= len(api.get("finance", "/api/v1/places"))
    target = links.first.get_attribute("href")
    assert target is not None
    name = {p["place_code"]: p["place_name"] for p in api.get("finance", "/api/v1/places")}
    with page.expect_navigation():
        links.first.click(force=True)
    expect(page).to_have_url(signed_in.base + target)
    expect(page.locator("h1")).to_have_text(name[target.rsplit("/", 1)[1]])


def test_a_walk_down_from_the_system_to_a_practice_and_back_up_by_the_breadcrumbs(
    signed_in: Sessions, api: Api
) -> None:
    page = signed_in("clinician")
    ics = api.get("clinician", "/api/v1/overview")["ics_name"]
    open_ok(page, f"{signed_in.base}/")
    place_link = page.locator("#places-table tbody a").first
    place_name = place_link.inner_text()
    with page.expect_navigation():
        place_link.click()
    expect(page.locator("h1")).to_have_text(place_name)
    pcn_link = page.locator("#pcn-table tbody a").first
    pcn_name = pcn_link.inner_text()
    with page.expect_navigation():
        pcn_link.click()
    expect(page.locator("h1")).to_have_text(pcn_name)
    practice_link = page.locator("#children-table tbody a").first
    practice_name = practice_link.inner_text()
    with page.expect_navigation():
        practice_link.click()
    expect(page.locator("h1")).to_have_text(practice_name)
    assert page.url.rsplit("/", 2)[1] == "practices"
    crumbs = page.locator("#breadcrumbs a")
    expect(crumbs).to_have_text([ics, place_name, pcn_name])
    with page.expect_navigation():
        crumbs.nth(2).click()
    expect(page.locator("h1")).to_have_text(pcn_name)
    expect(crumbs).to_have_text([ics, place_name])
    with page.expect_navigation():
        crumbs.nth(1).click()
    expect(page.locator("h1")).to_have_text(place_name)
    with page.expect_navigation():
        page.locator("nav[aria-label=Breadcrumb] a").first.click()
    expect(page.locator("h1")).to_have_text(f"{ics}: system overview")


# --- on a phone ------------------------------------------------------------------------------


def _width(page: Page) -> tuple[int, int]:
    wide, inner = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    return int(wide), int(inner)


def test_no_new_page_scrolls_sideways_on_a_390_px_phone(
    browser: Browser, signed_in: Sessions, world: dict[str, Any]
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 800})
    try:
        context.add_cookies(signed_in("analyst").context.cookies())
        page = context.new_page()
        for name, (path, _) in paths(world).items():
            for extra in ("", "?level=practice") if name == "indicator" else ("",):
                open_ok(page, signed_in.base + path + extra)
                if name == "place":  # the place page's older sections are not these pages'
                    right = page.evaluate(
                        "() => document.querySelector('section[aria-labelledby=indicators]')"
                        ".getBoundingClientRect().right"
                    )
                    assert right <= 391, f"{path}: indicators section {right} px"
                    continue
                wide, inner = _width(page)
                assert wide <= inner + 1, f"{path}{extra}: {wide} px wide at {inner} px"
    finally:
        context.close()


@pytest.mark.parametrize("name", ["indicators", "indicator", "place", "pcn", "practice"])
def test_axe_finds_no_serious_accessibility_failures_on_the_new_pages(
    name: str, signed_in: Sessions, world: dict[str, Any]
) -> None:
    assert AXE.is_file(), f"axe-core is missing at {AXE}: run `make assets`"
    page = signed_in("admin")
    open_ok(page, signed_in.base + paths(world)[name][0])
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async tags => await axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    assert result["passes"], f"axe checked nothing on {name}"
    bad = [
        (v["id"], [n["target"] for n in v["nodes"][:5]])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"axe on {name}: {bad}"


# --- periods ---------------------------------------------------------------------------------


def test_the_compare_table_shows_the_year_chosen_with_a_plain_form(
    browser: Browser, signed_in: Sessions, api: Api
) -> None:
    got = api.get("analyst", f"/api/v1/indicators/{INDICATOR}", level="pcn", period="all")
    periods = got["periods"]  # latest first
    assert len(periods) >= 2
    earlier = periods[1]
    want = {v["area_code"]: v for v in got["values"] if v["period"] == earlier}
    # With JavaScript off: the picker is a GET form the server answers.
    context = browser.new_context(java_script_enabled=False)
    try:
        context.add_cookies(signed_in("analyst").context.cookies())
        page = context.new_page()
        open_ok(page, f"{signed_in.base}/indicators/{INDICATOR}?level=pcn")
        expect(page.locator("#period option")).to_have_count(len(periods))
        expect(page.locator("#period option:checked")).to_contain_text("(latest)")
        page.select_option("#period", earlier.split("/")[1])
        with page.expect_navigation():
            page.click("#show-level")
        assert f"period={earlier.split('/')[1]}" in page.url
        expect(page.locator("#period option:checked")).to_have_attribute(
            "value", earlier.split("/")[1]
        )
        shown = {r[0].rsplit(" ", 1)[1]: r for r in cells(page, "#compare-table")}
        assert set(shown) == set(want)
        for code, v in want.items():
            if not v["suppressed"]:
                assert shown[code][4] == one_decimal(v["value"]), code
        end = earlier.split("/")[1]
        assert period_words(earlier) in page.locator("#compare-caption").inner_text()
        # Sorting keeps the year; the downloads are the year's.
        with page.expect_navigation():
            page.click("#sort-value")
        assert f"period={end}" in page.url
        href = page.locator("#compare-downloads a").first.get_attribute("href") or ""
        assert f"period={earlier}" in href
        answer = api.raw("analyst", href.split("?")[0], **dict(
            p.split("=", 1) for p in href.split("?")[1].split("&")))  # fmt: skip
        assert len(list(csv.reader(io.StringIO(answer.text)))) == len(want) + 1
        # Quarters are not made up: the page says why there are none.
        expect(page.locator("#period-note")).to_contain_text("quarters cannot be computed")
    finally:
        context.close()
    bad = signed_in("analyst").goto(f"{signed_in.base}/indicators/{INDICATOR}?period=1999-03-31")
    assert bad is not None and bad.status == 404


# --- the new analyst's path (issue 15's acceptance) --------------------------------------------

#: Clicks a new analyst may need from the overview to the spine chart data of the place and
#: the PCN significantly worse than England for emergency admissions.
MAX_CLICKS = 4


def profile_page_matches_csv(page: Page, base: str, level: str, code: str, text: str) -> None:
    """The downloaded spine chart CSV holds the profile page's spine chart table cell by cell."""
    rows = list(csv.DictReader(io.StringIO(text)))
    open_ok(page, f"{base}/{'places' if level == 'place' else 'pcns'}/{code}")
    table = cells(page, "#profile-table")
    assert len(rows) == len(table) > 10
    for shown, r in zip(table, rows, strict=True):
        assert r["Area code"] == code
        assert shown[0] == r["Indicator"]
        unit = r["Unit"]
        value = r["Value (unit of the indicator)"]
        if value == "":
            assert shown[1].startswith(("suppressed (fewer than ", "not computable")), shown
        else:
            assert shown[1] == figure(float(value), unit), (shown, r)
            assert shown[2] == (
                f"{one_decimal(float(r['Lower 95% limit']))} to "
                f"{one_decimal(float(r['Upper 95% limit']))}"
            )
        england = r["England"]
        assert shown[3] == ("" if england == "" else figure(float(england), unit))
        assert shown[4] == (r["Compared with England"].capitalize() or "Not compared")
        parent = r["Parent area"]
        assert shown[5] == ("" if parent == "" else figure(float(parent), unit))
        assert shown[6] == (r["Compared with parent area"].capitalize() or "Not compared")
        low, high = (
            r["Lowest in the system at this level"],
            r["Highest in the system at this level"],
        )
        if low and high and shown[7]:
            assert shown[7] == f"{one_decimal(float(low))} to {one_decimal(float(high))}"
        assert (
            shown[8].lower() == (r["Recent trend"] or "not tested (fewer than three years)").lower()
        )


def test_a_new_analyst_finds_the_worst_place_and_pcn_and_downloads_their_spine_chart_data(
    signed_in: Sessions, api: Api
) -> None:
    """From the overview: the place and the PCN significantly worse than England for
    emergency admissions, and both spine charts' data, in at most four clicks."""
    page = signed_in("analyst")
    base = signed_in.base
    open_ok(page, f"{base}/")
    clicks = 0

    def click(target: Any) -> None:
        nonlocal clicks
        clicks += 1
        target.click()

    # Which areas the API says are significantly worse, furthest from England first.
    worst = {}
    for level in ("place", "pcn"):
        values = api.get("analyst", f"/api/v1/indicators/{INDICATOR}", level=level)["values"]
        worse = [v for v in values if v["england_comparison"] == "worse"]
        assert worse, f"no {level} worse than England for {INDICATOR} in the test world"
        worst[level] = max(worse, key=lambda v: abs(v["value"] - v["england_value"])
                           / v["england_value"])  # fmt: skip

    # 1. "In brief" names the indicator with places and PCNs worse than England.
    link = page.locator(f"#headlines-worst-areas #worst-{INDICATOR}")
    expect(link).to_contain_text("significantly worse than England")
    with page.expect_navigation():
        click(link)
    assert page.url.startswith(f"{base}/indicators/{INDICATOR}")
    downloads = {}
    for level in ("place", "pcn"):
        first = page.locator(f"#worse-{level} li").first
        code = worst[level]["area_code"]
        # The page names the worst area first, with its figures.
        expect(first).to_have_id(f"worse-{level}-{code}")
        expect(first).to_contain_text(worst[level]["area_name"])
        # 2 and 3. Its spine chart data, straight from the list.
        with page.expect_download() as info:
            click(first.locator("a.jd-spine-csv"))
        assert info.value.suggested_filename == f"profile-{level}-{code}.csv"
        downloads[level] = (code, Path(info.value.path()).read_text(encoding="utf-8"))
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"new-user-{level}.png"), full_page=False)
    assert clicks <= MAX_CLICKS, f"{clicks} clicks from the overview"

    # What was downloaded is the profile page's spine chart table.
    for level, (code, text) in downloads.items():
        profile_page_matches_csv(page, base, level, code, text)
        link = page.locator("#spine-csv")
        expect(link).to_have_text("Download spine chart data (CSV)")
        assert link.get_attribute("href") == f"/api/v1/profiles/{level}/{code}?format=csv"
