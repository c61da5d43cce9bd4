"""The shared care record's pages in a real browser (Chromium under Playwright), as
`joinedup serve --records` serves them: each role that has one signs in through the form and
opens its page (a GP finds the person by NHS number and sees the record, a clinician without a
relationship is refused, a council's care worker sees the care parts, the privacy officer the
break-glass review, a citizen their own record, a data engineer the person index's queue);
every page runs its own script, asks nothing of another host, and axe-core finds no serious or
critical accessibility failure on it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from live import serving
from playwright.sync_api import Browser, expect
from test_web_browser import AXE, AXE_TAGS
from test_web_records_pages import NHS_NUMBER, PASSWORD, _load, world  # noqa: F401 - fixture

from joinedup.records import PersonIndexStore, RecordStore
from joinedup.web.access import AccessStore
from joinedup.web.person_index import mount_person_index
from joinedup.web.records_api import mount_records
from joinedup.web.records_pages import mount_records_pages
from joinedup.web.settings import WebSettings

pytestmark = pytest.mark.slow

#: (user, page, status, heading, a text the page must show); PID stands for the person's id.
PAGES = (
    ("gp", "/records/patient/PID", 200, "Ann JONES", "Type 2 diabetes mellitus"),
    ("stranger", "/records/patient/PID", 403,
     "You have no legitimate relationship with this person", "break"),
    ("social", "/records/patient/PID", 200, "Ann JONES", "Social care needs assessment"),
    ("privacy", "/privacy/break-glass", 200, "Break-glass access to records", "grant"),
    ("ann", "/my-record", 200, "My record", "Who has looked at my record"),
    ("dataeng", "/person-index/review", 200, "Person index: pairs to review", "review"),
)  # fmt: skip


@pytest.fixture(scope="module")
def records_site(world: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:  # noqa: F811
    """The dashboard with a SQLite records store holding one person's record across five
    organisations (test_web_records_pages' world), served as `serve --records` serves it."""
    path = Path(tmp_path_factory.mktemp("records_browser")) / "records.sqlite"
    settings = WebSettings(warehouse=world.path)
    with RecordStore(path) as store, PersonIndexStore(path) as people:
        pid = _load(store)
        store.create({  # the council's open episode: the care worker's relationship
            "resourceType": "EpisodeOfCare", "status": "active",
            "patient": {"reference": f"Patient/{pid}"},
            "managingOrganization": {"reference": "Organization/LA001"},
        })  # fmt: skip
        users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
        users.add_user("ann", PASSWORD, "citizen", patient_id=pid)
        users.add_user("dataeng", PASSWORD, "data-engineer")
        users.close()

        def mount(app: Any) -> None:  # in `joinedup serve --records`'s order
            mount_records(app, store)
            mount_person_index(app, people)
            mount_records_pages(app)

        with serving(settings, warm=False, mount=mount) as address:
            yield address, pid


def _sign_in(browser: Browser, base: str, user: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{base}/login")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("#sign-in")
    return page


def _serious(page: Any) -> list[str]:
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async tags => await axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    assert result["passes"], "axe checked nothing"
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:5]]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize(("user", "path", "status", "heading", "shows"), PAGES,
                         ids=[f"{p[0]}" for p in PAGES])  # fmt: skip
def test_each_records_page_in_chromium_is_accessible_and_asks_only_its_host(
    browser: Browser, records_site: tuple[str, str], user: str, path: str, status: int,
    heading: str, shows: str,
) -> None:  # fmt: skip
    assert AXE.is_file(), f"axe-core is missing at {AXE}: run `make assets` (npm ci in frontend)"
    base, pid = records_site
    page = _sign_in(browser, base, user)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    try:
        answer = page.goto(base + path.replace("PID", pid))
        assert answer is not None and answer.status == status, (user, answer and answer.status)
        expect(page.locator("h1")).to_contain_text(heading)
        assert shows.lower() in page.inner_text("main").lower(), f"{user}: {shows!r} not shown"
        # The page's own script ran from /static under a CSP that allows no inline script.
        expect(page.locator("body")).to_have_class(re.compile(r"\bjs-enabled\b"))
        bad = _serious(page)
        assert not bad, f"axe on {path} as {user}:\n" + "\n".join(bad)
        hosts = {urlsplit(u).netloc for u in asked if not u.startswith("data:")}
        assert hosts == {urlsplit(base).netloc}, f"{user} on {path} asked {hosts}"
    finally:
        page.context.close()


def test_a_gp_finds_the_person_by_nhs_number_in_the_form(
    browser: Browser, records_site: tuple[str, str]
) -> None:
    base, pid = records_site
    page = _sign_in(browser, base, "gp")
    try:
        page.goto(f"{base}/records")
        expect(page.locator("h1")).to_have_text("Find a person's record")
        assert not _serious(page)
        page.fill("#nhs-number", f"{NHS_NUMBER[:3]} {NHS_NUMBER[3:6]} {NHS_NUMBER[6:]}")
        with page.expect_navigation():
            page.click("button[type=submit]")
        expect(page).to_have_url(f"{base}/records/patient/{pid}")
        expect(page.locator("#patient-name")).to_have_text("Ann JONES")
        # A wrong check digit is said next to the field, and the field is marked.
        page.goto(f"{base}/records")
        page.fill("#nhs-number", "943 476 5918")
        with page.expect_navigation():
            page.click("button[type=submit]")
        expect(page.locator("#nhs-number-error")).to_contain_text("check digit is wrong")
        assert not _serious(page)
    finally:
        page.context.close()
