"""The dashboard in a real browser (Chromium under Playwright): every role signs in through the
form and sees only its own areas, the numbers on the pages are the API's, a clinician's worklist
filters and downloads, access is refused where it should be and audited where it is given, and
axe-core finds no serious or critical accessibility failure on any page."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from joinedup.web.access import PURPOSES, demo_password
from joinedup.web.dashboard import TIERS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "test-artifacts" / "browser"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]

ROLES = (
    "analyst", "clinician", "clinician2", "finance", "board", "admin", "privacy-officer",
    "care-worker", "data-engineer",
)  # fmt: skip
EVERYONE = ("overview", "places", "place", "indicators", "about")
#: The pages each role may open, and the navigation links it should be offered (in order).
PAGES: dict[str, tuple[str, ...]] = {
    "analyst": (*EVERYONE, "finance", "data-quality"),
    "clinician": (*EVERYONE, "worklist"),
    "clinician2": (*EVERYONE, "worklist"),
    "finance": (*EVERYONE, "finance"),
    "board": (*EVERYONE, "finance"),
    "admin": (*EVERYONE, "finance", "data-quality", "audit"),
    # Without a records store these see the aggregate pages (the break-glass review, a care
    # worker's records and the person index need `--records`; tested in the records tests).
    "privacy-officer": EVERYONE,
    "care-worker": EVERYONE,
    "data-engineer": (*EVERYONE, "data-quality"),
}
NAV_LABELS = {
    "overview": "Overview", "places": "Places", "indicators": "Indicators",
    "worklist": "Worklists", "finance": "Finance",
    "data-quality": "Data quality", "about": "About this data", "audit": "Audit log",
}  # fmt: skip
NAV_ORDER = (
    "overview",
    "places",
    "indicators",
    "worklist",
    "finance",
    "data-quality",
    "about",
    "audit",
)


# --- helpers ---------------------------------------------------------------------------------


class Api:
    """The JSON API, signed in per user with a bearer token."""

    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=120)
        self.tokens: dict[str, str] = {}

    def headers(self, user: str) -> dict[str, str]:
        if user not in self.tokens:
            answer = self.client.post(
                "/api/v1/token", json={"username": user, "password": demo_password(user)}
            )
            assert answer.status_code == 200, answer.text
            self.tokens[user] = answer.json()["access_token"]
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def raw(self, user: str, path: str, **params: Any) -> httpx.Response:
        answer = self.client.get(path, headers=self.headers(user), params=params)
        assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:300]}"
        return answer

    def get(self, user: str, path: str, **params: Any) -> Any:
        return self.raw(user, path, **params).json()


@dataclass
class Sessions:
    """One signed-in browser context (and page) per user, signed in through the login form."""

    browser: Browser
    base: str
    api: Api
    pages: dict[str, Page] = field(default_factory=dict)
    contexts: list[BrowserContext] = field(default_factory=list)

    def new_context(self) -> BrowserContext:
        context = self.browser.new_context(
            viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        context.set_default_timeout(30_000)
        self.contexts.append(context)
        return context

    def __call__(self, user: str) -> Page:
        if user not in self.pages:
            page = self.new_context().new_page()
            page.goto(f"{self.base}/login")
            expect(page).to_have_title("Sign in – joinedup")
            page.fill("#username", user)
            page.fill("#password", demo_password(user))
            with page.expect_navigation():
                page.click("#sign-in")
            me = self.api.get(user, "/api/v1/me")
            expect(page.locator("#signed-in-as")).to_contain_text(me["display_name"])
            self.pages[user] = page
        return self.pages[user]

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def shown(row: dict[str, Any]) -> str:
    """An NHS number as pages show it: 3-3-4 digits, as NHS guidance asks."""
    n = str(row["nhs_number"])
    return f"{n[:3]} {n[3:6]} {n[6:]}"


def cells(page: Page, table: str) -> list[list[str]]:
    """The text of every cell of each body row of `table`, whitespace normalised."""
    rows: list[list[str]] = page.eval_on_selector_all(
        f"{table} tbody tr",
        "rows => rows.map(r => Array.from(r.cells, c => c.textContent.replace(/\\s+/g, ' ')"
        ".trim()))",
    )
    return rows


def column(page: Page, table: str, selector: str) -> list[str]:
    texts: list[str] = page.eval_on_selector_all(
        f"{table} tbody tr {selector}", "els => els.map(e => e.textContent.trim())"
    )
    return texts


def count_shown(page: Page) -> int:
    text = page.locator("#worklist-count").inner_text()
    match = re.match(r"([\d,]+) (people|person) match", text)
    assert match, f"#worklist-count reads {text!r}"
    return int(match.group(1).replace(",", ""))


def screenshot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def charts_rendered(page: Page) -> list[tuple[str, float, float]]:
    """Every `figure svg` on the page with its figure's id and its rendered size."""
    sizes: list[list[Any]] = page.eval_on_selector_all(
        "figure svg",
        "els => els.map(e => { const r = e.getBoundingClientRect(); "
        "return [e.closest('figure').id || '?', r.width, r.height]; })",
    )
    return [(str(i), float(w), float(h)) for i, w, h in sizes]


def open_ok(page: Page, url: str) -> None:
    answer = page.goto(url)
    assert answer is not None and answer.status == 200, f"{url}: {answer and answer.status}"


# --- fixtures --------------------------------------------------------------------------------


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
def figures(api: Api) -> dict[str, Any]:
    """The API's answers the pages should agree with (as the analyst and the clinicians)."""
    overview = api.get("analyst", "/api/v1/overview")
    places = api.get("analyst", "/api/v1/places")
    place_code = places[0]["place_code"]
    return {
        "overview": overview,
        "places": places,
        "place_code": place_code,
        "place": api.get("analyst", f"/api/v1/places/{place_code}"),
        "pcns": {p["pcn_code"]: p for p in api.get("analyst", "/api/v1/pcns")},
        "me": {u: api.get(u, "/api/v1/me") for u in ("clinician", "clinician2")},
    }


@pytest.fixture(scope="module")
def page_for(live_server: str, figures: dict[str, Any]) -> Callable[[str, str], tuple[str, str]]:
    """The path of a named page for a user, and its expected h1."""
    ics = figures["overview"]["ics_name"]
    place = figures["place"]

    def lookup(name: str, user: str) -> tuple[str, str]:
        if name == "worklist":
            pcn = figures["me"][user]["pcn_code"]
            return f"/worklists/{pcn}", f"Worklists for {figures['pcns'][pcn]['pcn_name']}"
        return {
            "overview": ("/", f"{ics}: system overview"),
            "places": ("/places", "Places"),
            "indicators": ("/indicators", "Indicators"),
            "place": (f"/places/{figures['place_code']}", place["place_name"]),
            "about": ("/about", "About this data"),
            "finance": ("/finance", f"{ics}: the single pot"),
            "data-quality": ("/data-quality", "Data quality"),
            "audit": ("/admin/audit", "Audit log"),
        }[name]

    return lookup


TITLES = {
    "overview": "System overview", "places": "Places", "indicators": "Indicators",
    "about": "About this data",
    "finance": "Finance", "data-quality": "Data quality", "audit": "Audit log",
}  # fmt: skip
CHARTED = {"overview", "places", "place", "finance"}


# --- every role, every page ------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_its_pages_with_charts_and_only_its_navigation(
    role: str, signed_in: Sessions, page_for: Callable[[str, str], tuple[str, str]],
    figures: dict[str, Any],
) -> None:  # fmt: skip
    page = signed_in(role)
    base = signed_in.base
    links = page.eval_on_selector_all(
        "nav[aria-label='Menu'] a", "els => els.map(e => e.textContent.trim())"
    )
    expected = [NAV_LABELS[n] for n in NAV_ORDER if n in PAGES[role]]
    assert links == expected, f"{role} is offered {links}, not {expected}"

    for name in PAGES[role]:
        path, h1 = page_for(name, role)
        if name == "worklist":
            open_ok(page, f"{base}/worklists")
            expect(page).to_have_url(f"{base}{path}")
            expect(page).to_have_title("Why are you opening this worklist? – joinedup")
            expect(page.locator("h1")).to_have_text(h1)
            expect(page.locator("input[name=reason]")).to_have_count(len(PURPOSES))
            screenshot(page, f"{role}-worklist-reason")
            with page.expect_navigation():
                page.click("#open-worklist")
            expect(page.locator("#worklist-table")).to_be_visible()
            title = f"Worklists, {figures['pcns'][path.rsplit('/', 1)[1]]['pcn_name']}"
        else:
            open_ok(page, base + path)
            title = TITLES.get(name, h1)
        expect(page).to_have_title(f"{title} – joinedup")
        expect(page.locator("h1")).to_have_text(h1)
        charts = charts_rendered(page)
        if name in CHARTED:
            assert charts, f"{role}: no chart on {name}"
        flat = [c for c in charts if c[1] <= 0 or c[2] <= 0]
        assert not flat, f"{role}: charts not rendered on {name}: {flat}"
        current = page.locator("nav[aria-label='Menu'] a[aria-current=page]")
        if name in NAV_LABELS and name != "worklist":
            expect(current).to_have_text(NAV_LABELS[name])
        screenshot(page, f"{role}-{name}")


# --- the pages show the API's numbers --------------------------------------------------------


def test_overview_numbers_match_the_api(signed_in: Sessions, figures: dict[str, Any]) -> None:
    page = signed_in("analyst")
    open_ok(page, signed_in.base + "/")
    r = figures["overview"]
    assert [[c[0], c[1]] for c in cells(page, "#places-table")] == [
        [p["place_name"], p["people_text"]] for p in r["places"]
    ]
    assert [p["people_text"] for p in r["places"]] == [p["people_text"] for p in figures["places"]]
    assert cells(page, "#segment-table") == [
        [str(s["lynn"]), s["label"], s["people"], s["share"]] for s in r["segments"]["rows"]
    ]
    assert cells(page, "#tier-table") == [
        [t["label"], t["people"], t["share"]] for t in r["tiers"]["rows"]
    ]
    assert cells(page, "#pyramid-table") == [[p["band"], *p["cells"]] for p in r["pyramid"]["rows"]]
    population = page.locator("section[aria-labelledby=population] > p").first.inner_text()
    assert population.startswith(f"{r['registered']} people registered"), population
    # The one population figure; the bars' own total is given with the reason it differs.
    if r["pyramid"]["total"] != r["registered"]:
        assert f"add to {r['pyramid']['total']}, not the {r['registered']} registered" in population
    assert r["pyramid"]["total"] in page.locator("#pyramid-chart figcaption").inner_text()


def test_place_numbers_match_the_api(signed_in: Sessions, figures: dict[str, Any]) -> None:
    page = signed_in("analyst")
    place = figures["place"]
    open_ok(page, f"{signed_in.base}/places/{figures['place_code']}")
    shown = cells(page, "#pcn-table")
    assert shown == [
        [p["pcn_name"], p["pcn_code"], p["people_text"], str(p["practices"])] for p in place["pcns"]
    ]
    assert len(shown) > 1
    assert [row[2] for row in shown] == [figures["pcns"][row[1]]["people_text"] for row in shown]
    registered = place["summary"]["people_text"]
    assert place["registered"] == registered  # one population figure for the place
    assert cells(page, "#compare-table")[0][:2] == [
        "People registered (opt-outs excluded)",
        registered,
    ]
    lede = page.locator("p.nhsuk-lede-text").inner_text()
    population = page.locator("section[aria-labelledby=population] > p").first.inner_text()
    assert f"{registered} people registered" in lede
    assert population.startswith(f"{registered} people registered"), population
    assert cells(page, "#tier-table") == [
        [t["label"], t["people"], t["share"]] for t in place["tiers"]["rows"]
    ]


def test_finance_numbers_match_the_api(signed_in: Sessions, api: Api) -> None:
    page = signed_in("finance")
    r = api.get("finance", "/api/v1/finance")
    open_ok(page, signed_in.base + "/finance")
    keys = ("year", "place", "baseline", "target", "allocation", "growth", "distance")
    rows = cells(page, "#allocation-table")
    assert rows == [[a[k] for k in (*keys, "head_count")] for a in r["allocation"]["rows"]]
    assert len(rows) > 1
    assert cells(page, "#head-count-table") == [
        [h["place"], h["target"], h["head_count"], h["difference"], h["share"]]
        for h in r["allocation"]["head_count"]
    ]
    assert [row[:2] for row in cells(page, "#need-table")] == [
        [f"{n['name']} {n['code']}", n["population"]] for n in r["need"]["rows"]
    ]


def test_data_quality_numbers_match_the_api(signed_in: Sessions, api: Api) -> None:
    page = signed_in("analyst")
    dq = api.get("analyst", "/api/v1/data-quality")
    open_ok(page, signed_in.base + "/data-quality")
    assert cells(page, "#completeness-table") == [
        [c["field"], c["missing_text"], c["complete"]] for c in dq["completeness"]
    ]
    assert len(dq["completeness"]) > 0
    if dq["unmapped"]:
        assert [row[1:3] for row in cells(page, "#unmapped-table")] == [
            [u["code"], u["records_text"]] for u in dq["unmapped"]
        ]


# --- a clinician's worklist ------------------------------------------------------------------


def test_clinician_opens_filters_and_downloads_their_worklist(
    signed_in: Sessions, api: Api, figures: dict[str, Any]
) -> None:
    page = signed_in("clinician")
    base = signed_in.base
    pcn = figures["me"]["clinician"]["pcn_code"]
    open_ok(page, f"{base}/worklists")
    expect(page).to_have_url(f"{base}/worklists/{pcn}")
    expect(page.locator("#worklist-table")).to_have_count(0)
    page.check("input[name=reason][value=mdt]")
    with page.expect_navigation():
        page.click("#open-worklist")
    expect(page).to_have_url(re.compile(r"reason=mdt"))

    everyone = api.get("clinician", f"/api/v1/worklists/{pcn}", reason="mdt")
    assert everyone["total"] > 0
    assert count_shown(page) == everyone["total"]
    assert column(page, "#worklist-table", "th[scope=row]")[0] == shown(everyone["rows"][0])
    assert cells(page, "#cohort-table") == [
        [c["title"], c["purpose"], f"{c['people']:,}"] for c in everyone["cohorts"]
    ]

    totals = {
        t: api.get("clinician", f"/api/v1/worklists/{pcn}", reason="mdt", risk_tier=t)["total"]
        for t in TIERS
    }
    tier = next(t for t in TIERS if 0 < totals[t] < everyone["total"])
    some = api.get("clinician", f"/api/v1/worklists/{pcn}", reason="mdt", risk_tier=tier)
    page.select_option("#risk_tier", tier)
    with page.expect_navigation():
        page.click("#apply-filter")
    expect(page).to_have_url(re.compile(f"risk_tier={tier}"))
    expect(page.locator("#risk_tier")).to_have_value(tier)
    assert count_shown(page) == some["total"] != everyone["total"]
    assert column(page, "#worklist-table", "th[scope=row]")[0] == shown(some["rows"][0])
    tiers_shown = {row[7] for row in cells(page, "#worklist-table")}
    assert tiers_shown == {tier.replace("_", " ")}
    expect(page.locator("#download-csv")).to_contain_text(f"{some['total']:,} rows")

    with page.expect_download() as info:
        page.click("#download-csv")
    download = info.value
    assert download.suggested_filename == f"worklist-{pcn}.csv"
    text = Path(download.path()).read_text(encoding="utf-8")
    table = list(csv.reader(io.StringIO(text)))
    header, rows = table[0], table[1:]
    from_api = api.raw(
        "clinician", f"/api/v1/worklists/{pcn}/csv", reason="mdt", risk_tier=tier
    ).text
    assert header == next(csv.reader(io.StringIO(from_api)))
    assert "nhs_number" in header and "risk_tier" in header
    assert len(rows) == some["total"]
    assert {row[header.index("risk_tier")] for row in rows} == {tier}
    assert {row[header.index("pcn_code")] for row in rows} == {pcn}


# --- who may see what, and the audit log -----------------------------------------------------


def refused(page: Page, url: str) -> None:
    answer = page.goto(url)
    assert answer is not None and answer.status == 403, f"{url}: {answer and answer.status}"
    expect(page.locator("h1")).to_have_text("You cannot see this page")
    expect(page.locator("#error-message")).to_be_visible()
    expect(page.locator("#worklist-table")).to_have_count(0)
    expect(page.locator("#completeness-table")).to_have_count(0)


def test_pages_outside_a_role_are_refused(signed_in: Sessions, figures: dict[str, Any]) -> None:
    base = signed_in.base
    own = figures["me"]["clinician"]["pcn_code"]
    other = figures["me"]["clinician2"]["pcn_code"]
    assert own != other
    assert figures["pcns"][own]["place_code"] != figures["pcns"][other]["place_code"]
    clinician = signed_in("clinician")
    refused(clinician, f"{base}/worklists/{other}")
    refused(clinician, f"{base}/worklists/{other}?reason=mdt")
    expect(clinician.locator("#error-message")).to_contain_text(own)
    refused(clinician, f"{base}/finance")
    analyst = signed_in("analyst")
    refused(analyst, f"{base}/worklists/{own}?reason=mdt")
    refused(analyst, f"{base}/admin/audit")
    board = signed_in("board")
    refused(board, f"{base}/data-quality")
    screenshot(board, "board-data-quality-refused")


def test_the_audit_log_records_the_clinicians_views_and_downloads(
    signed_in: Sessions, api: Api, figures: dict[str, Any]
) -> None:
    base = signed_in.base
    pcn = figures["me"]["clinician"]["pcn_code"]
    clinician = signed_in("clinician")
    open_ok(clinician, f"{base}/worklists/{pcn}")
    clinician.check("input[name=reason][value=care-planning]")
    with clinician.expect_navigation():
        clinician.click("#open-worklist")
    cohort = clinician.locator("#cohort option").nth(1).get_attribute("value")
    assert cohort
    clinician.select_option("#cohort", cohort)
    with clinician.expect_navigation():
        clinician.click("#apply-filter")
    with clinician.expect_download() as info:
        clinician.click("#download-csv")
    assert info.value.path()

    admin = signed_in("admin")
    open_ok(admin, f"{base}/admin/audit")
    expect(admin.locator("#chain-status")).to_contain_text("Chain intact")
    rows = cells(admin, "#audit-table")
    mine = [r for r in rows if r[2] == "clinician (clinician)" and f"cohort={cohort}" in r[4]]
    why = PURPOSES["care-planning"]
    assert mine[0][3] == f"download worklist/{pcn}" and mine[0][5] == why, mine[:2]
    assert mine[1][3] == f"view worklist/{pcn}" and mine[1][5] == why, mine[:2]
    log = api.get("admin", "/api/v1/audit")
    assert log["chain_intact"] is True
    assert [r[0] for r in rows] == [str(e["seq"]) for e in log["entries"]]
    assert [r[2] for r in rows] == [f"{e['username']} ({e['role']})" for e in log["entries"]]
    actions = {e["action"] for e in log["entries"] if e["username"] == "clinician"}
    assert {"view", "download"} <= actions
    screenshot(admin, "admin-audit-after-clinician")


# --- accessibility ---------------------------------------------------------------------------


#: (who, page, path): every page of the dashboard, for a role that may reach it.
AXE_PAGES = (
    (None, "login", "/login"),
    ("admin", "overview", "/"),
    ("admin", "places", "/places"),
    ("admin", "place", "place"),
    ("admin", "finance", "/finance"),
    ("admin", "data-quality", "/data-quality"),
    ("admin", "about", "/about"),
    ("admin", "audit", "/admin/audit"),
    ("clinician", "worklist-reason", "reason"),
    ("clinician", "worklist", "worklist"),
    ("clinician", "refused", "refused"),
)


@pytest.mark.parametrize(("user", "name", "path"), AXE_PAGES, ids=[p[1] for p in AXE_PAGES])
def test_axe_finds_no_serious_accessibility_failures(
    user: str | None, name: str, path: str, signed_in: Sessions, figures: dict[str, Any]
) -> None:
    assert AXE.is_file(), f"axe-core is missing at {AXE}: run `make assets` (npm ci in frontend)"
    base = signed_in.base
    own = figures["me"]["clinician"]["pcn_code"]
    url = {
        "place": f"/places/{figures['place_code']}",
        "reason": f"/worklists/{own}",
        "worklist": f"/worklists/{own}?reason=mdt",
        "refused": f"/worklists/{figures['me']['clinician2']['pcn_code']}",
    }.get(path, path)
    page = signed_in(user) if user else signed_in.new_context().new_page()
    answer = page.goto(base + url)
    assert answer is not None and answer.status == (403 if path == "refused" else 200)
    # The page's own script ran from /static under a CSP that allows no inline script.
    expect(page.locator("body")).to_have_class(re.compile(r"\bjs-enabled\b"))
    # Through the DevTools protocol, not a <script> tag: the CSP rightly refuses inline ones.
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async tags => await axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    assert result["passes"], f"axe checked nothing on {name}"
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    for v in result["violations"]:
        print(f"axe on {name}: {v['id']} ({v['impact']}), {len(v['nodes'])} nodes: {v['help']}")
    report = "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} [{v['helpUrl']}]\n    "
        + "\n    ".join(
            f"{n['target']}: {' '.join(n.get('failureSummary', '').split())}"
            for n in v["nodes"][:8]
        )
        for v in bad
    )
    assert not bad, f"axe on {name} ({url}):\n{report}"


# --- keyboard --------------------------------------------------------------------------------


@pytest.mark.parametrize("user", [None, "analyst"], ids=["signed-out", "signed-in"])
def test_the_skip_link_is_the_first_thing_tab_reaches(
    user: str | None, signed_in: Sessions
) -> None:
    page = signed_in(user) if user else signed_in.new_context().new_page()
    open_ok(page, signed_in.base + ("/" if user else "/login"))
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => [document.activeElement.textContent.trim(), "
        "document.activeElement.getAttribute('href')]"
    )
    assert focused == ["Skip to main content", "#maincontent"]
    expect(page.locator(".nhsuk-skip-link")).to_be_in_viewport()
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "maincontent"
