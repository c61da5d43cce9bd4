"""Worklists a clinician can act on, in a real browser (Chromium under Playwright): names and
dates of birth beside the NHS number, reasons in plain English, sorting by any column from
the keyboard, and a per-person status that a colleague of the same PCN sees, another PCN can
neither read nor change, and the audit log records without naming anyone."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from joinedup.web.access import AccessStore, Role, demo_password
from joinedup.web.settings import WebSettings

pytestmark = pytest.mark.slow

COLLEAGUE = "clinician-colleague"
COLLEAGUE_PASSWORD = "colleague-password-2026"
MACHINE_SYNTAX = ("frailty_level", "(equals", "(at least", "(in ", "ltc_count", "fall_6m")


@pytest.fixture(scope="module")
def store(web_settings: WebSettings) -> Iterator[AccessStore]:
    """The served dashboard's own access store (users, statuses, audit log)."""
    opened = AccessStore(web_settings.access_path, audit_key_path=web_settings.audit_key_path)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def pcn(live_server: str) -> str:
    with httpx.Client(base_url=live_server, timeout=120) as client:
        token = client.post(
            "/api/v1/token",
            json={"username": "clinician", "password": demo_password("clinician")},
        ).json()["access_token"]
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    return str(me["pcn_code"])


@pytest.fixture(scope="module")
def colleague(store: AccessStore, pcn: str) -> str:
    """A second clinician of the same PCN as the demo clinician."""
    store.add_user(
        COLLEAGUE, COLLEAGUE_PASSWORD, Role.CLINICIAN, display_name="Dr Col League",
        pcn_code=pcn, replace=True,
    )  # fmt: skip
    return COLLEAGUE


def sign_in(browser: Browser, base: str, user: str, password: str) -> Page:
    page = browser.new_context(viewport={"width": 1600, "height": 900}).new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{base}/login")
    page.fill("#username", user)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("#sign-in")
    expect(page.locator("#signed-in-as")).to_be_visible()
    return page


def column_texts(page: Page, cls: str) -> list[str]:
    texts: list[str] = page.eval_on_selector_all(
        f"#worklist-table tbody td.{cls}", "els => els.map(e => e.textContent.trim())"
    )
    return texts


def test_a_status_is_shared_with_the_pcn_refused_to_others_and_audited(
    browser: Browser, live_server: str, pcn: str, colleague: str, store: AccessStore
) -> None:
    base = live_server
    page = sign_in(browser, base, "clinician", demo_password("clinician"))
    answer = page.goto(f"{base}/worklists/{pcn}?reason=mdt")
    assert answer is not None and answer.status == 200
    body = page.locator("#worklist-table").inner_text()
    for machine in MACHINE_SYNTAX:
        assert machine not in body, f"worklist shows {machine!r}"
    names = column_texts(page, "jd-name")
    assert names and all(re.fullmatch(r"[A-Z' -]+, \S.*", n) for n in names), names[:3]
    born = column_texts(page, "jd-born")
    assert all(re.fullmatch(r"\d\d-[A-Z][a-z]{2}-\d{4}", b) for b in born), born[:3]

    row = page.locator("#worklist-table tbody tr").first
    row_id = str(row.get_attribute("id"))
    nhs_number = row.locator("th").inner_text().replace(" ", "")
    name = row.locator("td.jd-name").inner_text()
    expect(row.locator(".jd-status-label")).to_have_text("To contact")
    row.locator("select[name=status]").select_option("contacted")
    row.locator("input[name=note]").fill("Left a voicemail; try again Friday")
    with page.expect_navigation():
        row.locator("button[type=submit]").click()
    mine = page.locator(f"#{row_id}")
    expect(mine.locator(".jd-status-label")).to_have_text("Contacted")
    expect(mine.locator(".jd-status-note")).to_have_text("Left a voicemail; try again Friday")
    expect(mine.locator(".jd-status-changed")).to_contain_text("clinician, ")

    # A colleague of the same PCN sees it, filtered by status.
    other = sign_in(browser, base, colleague, COLLEAGUE_PASSWORD)
    answer = other.goto(f"{base}/worklists/{pcn}?reason=mdt&status=contacted")
    assert answer is not None and answer.status == 200
    theirs = other.locator(f"#{row_id}")
    expect(theirs.locator(".jd-status-label")).to_have_text("Contacted")
    expect(theirs.locator(".jd-status-note")).to_have_text("Left a voicemail; try again Friday")
    assert set(column_texts(other, "jd-status")) and all(
        t.startswith("Contacted") for t in column_texts(other, "jd-status")
    )

    # Another PCN's clinician can neither read the list nor change the status.
    before = store.audit_entries(limit=1)[0]
    outsider = sign_in(browser, base, "clinician2", demo_password("clinician2"))
    answer = outsider.goto(f"{base}/worklists/{pcn}?reason=mdt")
    assert answer is not None and answer.status == 403
    outsider.goto(f"{base}/")
    csrf = str(outsider.locator("input[name=csrf]").first.get_attribute("value"))
    worklist_id, person_id = row_id.removeprefix("row-").rsplit("-", 1)
    refused = outsider.request.post(
        f"{base}/worklists/{pcn}/status",
        form={"csrf": csrf, "worklist_id": worklist_id, "person_id": person_id,
              "status": "done", "note": "not mine to change"},
        max_redirects=0,
    )  # fmt: skip
    assert refused.status == 403
    answer = page.goto(f"{base}/worklists/{pcn}?reason=mdt&status=contacted")
    expect(page.locator(f"#{row_id} .jd-status-label")).to_have_text("Contacted")

    total, entries = store.audit_entries(limit=200)
    assert total > before
    changed = [
        e for e in entries
        if e["action"] == "worklist status" and e["resource"].endswith(f"/{person_id}")
    ]  # fmt: skip
    assert [(e["username"], e["resource"]) for e in changed] == [
        ("clinician", f"worklist/{pcn}/{worklist_id}/{person_id}")
    ]
    denied = [
        e for e in entries[: total - before]
        if e["username"] == "clinician2" and e["action"] == "denied"
    ]  # fmt: skip
    assert len(denied) == 2 and {e["resource"] for e in denied} == {f"worklist/{pcn}"}
    family = name.split(",")[0].strip()
    for entry in entries:
        text = " ".join(str(v) for v in entry.values())
        assert nhs_number not in text and family.lower() not in text.lower()
        assert "voicemail" not in text


def test_every_column_sorts_from_the_keyboard(browser: Browser, live_server: str, pcn: str) -> None:
    base = live_server
    page = sign_in(browser, base, "clinician", demo_password("clinician"))
    page.goto(f"{base}/worklists/{pcn}?reason=case-finding")
    header = page.locator("#worklist-table thead th", has_text="Age")
    expect(header).to_have_attribute("aria-sort", "none")
    page.focus("#sort-age")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"sort=age&order=asc"))
    expect(header).to_have_attribute("aria-sort", "ascending")
    ages = [int(a) for a in page.eval_on_selector_all(
        "#worklist-table tbody tr td.num:nth-of-type(5)", "els => els.map(e => e.textContent)"
    )]  # fmt: skip
    assert ages and ages == sorted(ages) and ages[0] < ages[-1]
    page.focus("#sort-age")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(header).to_have_attribute("aria-sort", "descending")

    page.click("#sort-name")
    expect(page).to_have_url(re.compile(r"sort=name&order=asc"))
    families = [n.split(",")[0].lower() for n in column_texts(page, "jd-name")]
    assert families == sorted(families) and families[0] != families[-1]
    # The sort is kept when filtering.
    page.select_option("#risk_tier", "high")
    with page.expect_navigation():
        page.click("#apply-filter")
    expect(page).to_have_url(re.compile(r"sort=name"))
    families = [n.split(",")[0].lower() for n in column_texts(page, "jd-name")]
    assert families == sorted(families)
