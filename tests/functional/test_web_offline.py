"""The dashboard works offline and asks no other host for anything: in a real browser
(Chromium under Playwright), every page each role can reach, the sign-in and error pages and
the API's documentation pages (Swagger UI, ReDoc) are opened while every request the browser
makes is recorded, and any request to another host, any script error and any request the
Content-Security-Policy had to block fails the test. Swagger UI and ReDoc must draw every
operation (a blank documentation page is what users saw when both came from a CDN), and the
About page must show the period the records cover. The same crawl checks that every page
reads on a desktop (chart text of at least 12 px), on a 390 px phone (no sideways scrolling of
the page) and on paper (printing cuts off no table column)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import duckdb
import httpx
import pytest
from cli_run import PhmWarehouse
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    expect,
)

from joinedup.web.access import demo_password
from joinedup.web.site import NHSUK_VERSION

pytestmark = pytest.mark.slow

ROLES = (
    "analyst", "clinician", "clinician2", "finance", "board", "admin", "privacy-officer",
    "care-worker", "data-engineer",
)  # fmt: skip
DOCS = ("/api/docs", "/api/redoc")
#: The kinds of page each role must reach by following links (a path, or a pattern where a
#: code varies); the crawl finds any others, such as pages added later.
MUST_REACH: dict[str, set[str]] = {
    "analyst": {"/", "/places", "/places/*", "/about", "/finance", "/data-quality"},
    "clinician": {"/", "/places", "/places/*", "/about", "/worklists/*"},
    "clinician2": {"/", "/places", "/places/*", "/about", "/worklists/*"},
    "finance": {"/", "/places", "/places/*", "/about", "/finance"},
    "board": {"/", "/places", "/places/*", "/about", "/finance"},
    "admin": {"/", "/places", "/places/*", "/about", "/finance", "/data-quality", "/admin/audit"},
    "privacy-officer": {"/", "/places", "/places/*", "/about"},
    "care-worker": {"/", "/places", "/places/*", "/about"},
    "data-engineer": {"/", "/places", "/places/*", "/about", "/data-quality"},
}
#: Pages of one kind look alike; a few of each is enough, and keeps the crawl short.
PER_KIND = 2
MAX_PAGES = 60
#: Links not to follow: they sign out, download a file or answer JSON rather than a page.
NOT_PAGES = re.compile(r"^/(logout|api/(?!docs$|redoc$))|/download$")


def kind(path: str) -> str:
    """`/places/E54000008` -> `/places/*`: pages that differ only by a code are one kind."""
    parts = path.strip("/").split("/")
    return "/" + "/".join("*" if CODE.fullmatch(p) else p for p in parts)


CODE = re.compile(r"[A-Z0-9]*[0-9][A-Z0-9]*")


def open_ok(page: Page, url: str) -> None:
    answer = page.goto(url)
    assert answer is not None and answer.status == 200, f"{url}: {answer and answer.status}"


@dataclass
class Traffic:
    """What a browser context asked for, and what went wrong, page by page."""

    origin: str
    opened: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)
    elsewhere: list[tuple[str, str]] = field(default_factory=list)
    blocked: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    #: Pages too wide for a phone, charts with text too small, tables print would cut.
    layout: list[tuple[str, str]] = field(default_factory=list)

    def watch(self, context: BrowserContext) -> None:
        """Record every page `context` opens (`page.on("request")` on each)."""
        context.on("page", self.page)

    def page(self, page: Page) -> None:
        page.on("request", self.request)
        page.on("console", self.console)
        page.on("pageerror", lambda err: self.errors.append((self.opened, str(err))))

    def request(self, request: Request) -> None:
        url = request.url
        self.requests.append((self.opened, url))
        if url.startswith("data:"):
            return  # made in the page, nothing fetched
        inner = url[len("blob:") :] if url.startswith("blob:") else url
        parts = urlsplit(inner)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.elsewhere.append((self.opened, url))

    def console(self, message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text:
            self.blocked.append((self.opened, text))
        elif message.type == "error" and "status of 404" not in text:
            self.errors.append((self.opened, text))  # the error page's own 404 is expected


def crawl(browser: Browser, base: str, user: str) -> tuple[list[str], Traffic]:
    """Sign `user` in through the form and open every page reachable by following links (a
    few of each kind), the error page and the API's documentation; every request recorded."""
    traffic = Traffic(base)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    traffic.watch(context)
    page = context.new_page()
    visited: list[str] = []
    try:
        traffic.opened = "/login"
        open_ok(page, f"{base}/login")
        page.wait_for_load_state("networkidle")
        page.fill("#username", user)
        page.fill("#password", demo_password(user))
        with page.expect_navigation():
            page.click("#sign-in")
        queue = ["/", *DOCS]
        seen: set[str] = set()
        per_kind: dict[str, int] = {}
        while queue and len(visited) < MAX_PAGES:
            path = queue.pop(0)
            if path in seen or per_kind.get(kind(path), 0) >= PER_KIND:
                continue
            seen.add(path)
            per_kind[kind(path)] = per_kind.get(kind(path), 0) + 1
            traffic.opened = path
            open_ok(page, base + path)
            if page.locator("#open-worklist").count():  # a worklist asks why it is opened
                with page.expect_navigation():
                    page.click("#open-worklist")
                expect(page.locator("#worklist-table")).to_be_visible()
            page.wait_for_load_state("networkidle")
            if user in LAYOUT_ROLES and path not in DOCS:
                traffic.layout += [(path, problem) for problem in layout_problems(page)]
            visited.append(path)
            queue += [p for p in links(page, base) if p not in seen]
        traffic.opened = "/no-such-page"
        answer = page.goto(f"{base}/no-such-page")
        assert answer is not None and answer.status == 404
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    return visited, traffic


#: Roles whose crawl also checks each page's layout (between them they reach every kind).
LAYOUT_ROLES = ("admin", "clinician")
#: The narrowest phone the pages are made for, and A4 paper's width in CSS pixels.
PHONE_PX, PAPER_PX = 390, 794
#: The smallest chart text, in CSS pixels as drawn (9 pt at the chart's own size).
MIN_CHART_TEXT_PX = 12.0

_CHART_TEXT = """() => Array.from(document.querySelectorAll('figure svg text'))
  .filter(t => t.textContent.trim() && t.getBoundingClientRect().width > 0)
  .map(t => {
    const svg = t.ownerSVGElement, box = svg.viewBox.baseVal;
    const scale = box && box.width ? svg.getBoundingClientRect().width / box.width : 1;
    return [parseFloat(getComputedStyle(t).fontSize) * scale, t.textContent.trim().slice(0, 40)];
  })"""
_PAGE_WIDTH = """() => {
  const wide = [];
  const walk = (el, depth) => {
    for (const c of el.children) {
      if (depth < 14 && !(c instanceof SVGElement) && c.scrollWidth > window.innerWidth + 1
          && getComputedStyle(c).overflowX === 'visible') {
        wide.push(c.tagName + (c.id ? '#' + c.id : '') + ' ' + c.scrollWidth + 'px');
        walk(c, depth + 1);
      }
    }
  };
  walk(document.body, 0);
  return [document.documentElement.scrollWidth, window.innerWidth, wide.slice(-3)];
}"""
_CUT_CELLS = """() => Array.from(document.querySelectorAll('table')).flatMap(table => {
    const right = document.documentElement.clientWidth + 1;
    const cut = Array.from(table.querySelectorAll('th, td'))
      .filter(c => c.getBoundingClientRect().right > right);
    return cut.length ? [(table.id || table.className || 'table') + ': ' + cut.length] : [];
  })"""


def layout_problems(page: Page) -> list[str]:
    """What a reader would notice on this page: chart text under 12 px on a desktop screen,
    the page scrolling sideways on a 390 px phone, and table cells printed off the paper."""
    problems = []
    small = [(px, text) for px, text in page.evaluate(_CHART_TEXT) if px < MIN_CHART_TEXT_PX - 0.1]
    if small:
        problems.append(f"{len(small)} chart texts under 12 px, e.g. {small[:3]}")
    size = page.viewport_size or {"width": 1280, "height": 900}
    try:
        page.set_viewport_size({"width": PHONE_PX, "height": 800})
        # Opened afresh at phone width, as a phone opens it: the header's script lays out its
        # menu once on load, and a resize mid-page races it.
        page.reload(wait_until="networkidle")
        wide, inner, culprits = page.evaluate(_PAGE_WIDTH)
        if wide > inner + 1:
            problems.append(f"at {PHONE_PX} px the page is {wide} px wide ({culprits})")
        page.set_viewport_size({"width": PAPER_PX, "height": 1123})
        page.emulate_media(media="print")
        cut = page.evaluate(_CUT_CELLS)
        if cut:
            problems.append(f"printed, cells fall off the page: {cut[:4]}")
    finally:
        page.emulate_media(media="screen")
        page.set_viewport_size(size)
    return problems


def links(page: Page, base: str) -> list[str]:
    """The paths of this site's pages that `page` links to, in order, without fragments."""
    hrefs: list[str] = page.eval_on_selector_all(
        "a[href]:not([download])", "els => els.map(e => e.getAttribute('href'))"
    )
    found = []
    for href in hrefs:
        url = urldefrag(urljoin(page.url, href)).url
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != base or NOT_PAGES.search(parts.path):
            continue
        found.append(parts.path or "/")
    return list(dict.fromkeys(found))


def operations(base: str) -> list[tuple[str, str, str]]:
    """Every operation the API describes: (method, path, summary)."""
    spec: dict[str, Any] = httpx.get(f"{base}/api/openapi.json", timeout=60).json()
    verbs = {"get", "put", "post", "delete", "patch", "head", "options"}
    return [
        (verb.upper(), path, str(op.get("summary", "")))
        for path, item in spec["paths"].items()
        for verb, op in item.items()
        if verb in verbs
    ]


@pytest.fixture(scope="module")
def crawled(browser: Browser, live_server: str) -> Iterator[dict[str, tuple[list[str], Traffic]]]:
    yield {user: crawl(browser, live_server, user) for user in ROLES}


# --- no page asks another host for anything --------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_page_asks_only_its_own_host(
    role: str, crawled: dict[str, tuple[list[str], Traffic]]
) -> None:
    visited, traffic = crawled[role]
    reached = {kind(p) for p in visited}
    assert MUST_REACH[role] <= reached, f"{role} never reached {MUST_REACH[role] - reached}"
    assert set(DOCS) <= set(visited)
    recorded = {opened for opened, url in traffic.requests if url == traffic.origin + opened}
    assert recorded >= set(visited), "every page's own request is recorded"
    assert not traffic.elsewhere, f"{role}: requests to other hosts: {traffic.elsewhere}"
    assert not traffic.blocked, f"{role}: the security policy blocked: {traffic.blocked}"
    assert not traffic.errors, f"{role}: script errors: {traffic.errors}"


@pytest.mark.parametrize("role", LAYOUT_ROLES)
def test_every_page_reads_on_a_phone_a_desktop_and_paper(
    role: str, crawled: dict[str, tuple[list[str], Traffic]]
) -> None:
    """Issue 15, item 6: charts drawn with text of at least 12 px, no page wider than a
    390 px phone (wide tables and charts scroll inside their own box), and printing keeps
    every column of every table on the paper."""
    visited, traffic = crawled[role]
    assert len(visited) > 5
    assert not traffic.layout, "\n".join(f"{path}: {problem}" for path, problem in traffic.layout)


def test_the_nhs_stylesheet_fetches_no_font_from_another_host(live_server: str) -> None:
    """Frutiger comes from assets.nhs.uk in the NHS.UK stylesheet; the served copy leaves its
    @font-face rules out, so text uses the stylesheet's own fallback (Arial, sans-serif)."""
    css = httpx.get(f"{live_server}/static/nhsuk/nhsuk-frontend-{NHSUK_VERSION}.min.css").text
    assert "frutiger w01,arial,sans-serif" in css.replace('"', "").lower()  # its own stack
    assert not re.findall(r"url\((?!/|data:)[^)]*\)", css), "a url() to another host"
    assert "@font-face" not in css


# --- the API's documentation draws -----------------------------------------------------------


def test_swagger_ui_draws_every_operation_from_this_host(
    browser: Browser, live_server: str
) -> None:
    described = operations(live_server)
    assert len(described) >= 10
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        open_ok(page, f"{live_server}/api/docs")
        blocks = page.locator("#swagger-ui .opblock")
        expect(blocks).to_have_count(len(described), timeout=60_000)
        shown = page.eval_on_selector_all(
            "#swagger-ui .opblock .opblock-summary",
            "els => els.map(e => [e.querySelector('.opblock-summary-method').textContent.trim(),"
            " e.querySelector('.opblock-summary-path').getAttribute('data-path')])",
        )
        assert sorted(map(tuple, shown)) == sorted((m, p) for m, p, _ in described)
        expect(page.locator("#swagger-ui .info .title")).to_contain_text("joinedup")
        # Try an operation from the page: the health check answers through Swagger UI.
        health = page.locator("#operations-service-health_health_get")
        health.locator(".opblock-summary").click()
        health.get_by_role("button", name="Try it out").click()
        health.get_by_role("button", name="Execute").click()
        answered = health.locator(".live-responses-table tbody tr.response")
        expect(answered.locator(".response-col_status")).to_have_text("200", timeout=30_000)
        expect(answered.locator(".highlight-code")).to_contain_text('"status": "ok"')
    finally:
        context.close()


def test_redoc_draws_every_operation_and_searches_them(browser: Browser, live_server: str) -> None:
    described = operations(live_server)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: blocked.append(m.text) if "Security Policy" in m.text else 0)
        open_ok(page, f"{live_server}/api/redoc")
        sections = page.locator("[data-section-id^='operation/']")  # one per operation
        expect(sections).to_have_count(len(described), timeout=60_000)
        # Search runs in a web worker ReDoc starts from a blob: URL, which only this page's
        # policy allows.
        page.fill("input[placeholder='Search...']", "token")
        results = page.locator("[data-role='search:results'] label")
        expect(results.first).to_be_visible(timeout=30_000)
        assert not blocked, blocked
    finally:
        context.close()


def test_documentation_pages_run_no_inline_script(live_server: str) -> None:
    for path in DOCS:
        answer = httpx.get(live_server + path, timeout=60)
        assert answer.status_code == 200, path
        policy = {
            p.split()[0]: p.split()[1:]
            for p in answer.headers["content-security-policy"].split(";")
            if p.strip()
        }
        assert policy["script-src"] == ["'self'"], path
        assert policy["default-src"] == ["'self'"], path
        assert policy.get("worker-src") == (["blob:"] if path == "/api/redoc" else None), path
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", answer.text, re.S | re.I)
        assert scripts, path
        for attributes, body in scripts:
            assert re.search(r'\bsrc="/static/[^"]+\.js"', attributes), (path, attributes)
            assert not body.strip(), (path, body[:80])
        for url in re.findall(r'\b(?:src|href)="([^"]*)"', answer.text):
            assert url.startswith("/") and not url.startswith("//"), (path, url)


# --- About shows the real period -------------------------------------------------------------


def test_about_shows_the_period_the_records_cover(
    browser: Browser, live_server: str, phm_warehouse: PhmWarehouse
) -> None:
    # The served warehouse is a copy of this one, with the same build record.
    with duckdb.connect(str(phm_warehouse.path), read_only=True) as con:
        row = con.execute(
            "SELECT history_start_date, history_end_date FROM build ORDER BY built_at DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    start, end = row
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{live_server}/login")
        page.fill("#username", "board")
        page.fill("#password", demo_password("board"))
        with page.expect_navigation():
            page.click("#sign-in")
        open_ok(page, f"{live_server}/about")
        row_text = page.locator(".nhsuk-summary-list__row", has_text="Records cover")
        expect(row_text.locator("dd")).to_have_text(f"{start.isoformat()} to {end.isoformat()}")
        assert "None" not in page.locator("#about-list").inner_text()
    finally:
        context.close()
