"""The finance page as a finance director reads it, in a real browser (Chromium under
Playwright): names beside every code, money in one format with its unit and sign stated once
per table, and a what-if run from the page whose figures equal the API's and those of
`joinedup finance what-if` for the same scenario; bad input gets a clear message, roles
without finance get 403, and each run is in the audit log."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from cli_run import PhmWarehouse, joinedup
from playwright.sync_api import Browser, Page, expect

from joinedup.warehouse.schema import ACTIVITY_TYPES
from joinedup.web.access import AccessStore, demo_password
from joinedup.web.settings import WebSettings

pytestmark = pytest.mark.slow

#: A code standing alone: places (E99000001), PCNs (U99001), organisations (ZZL02, SYSTEM),
#: points of delivery (EL), scenario slugs (fewer-admissions-e99000001).
CODE = re.compile(
    r"[A-Z]{1,3}\d{2,}|[a-z][a-z0-9]*(-[a-z0-9]+)+|SYSTEM|" + "|".join(ACTIVITY_TYPES.values())
)
MILLIONS = re.compile(r"[+-]?£\d{1,3}(,\d{3})*\.\dm")
POUNDS = re.compile(r"[+-]?£\d{1,3}(,\d{3})*")
SCENARIO = {"activity": "emergency_admission", "change": "-10"}


def sign_in(browser: Browser, base: str, user: str) -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{base}/login")
    page.fill("#username", user)
    page.fill("#password", demo_password(user))
    with page.expect_navigation():
        page.click("#sign-in")
    expect(page.locator("#signed-in-as")).to_be_visible()
    return page


@pytest.fixture(scope="module")
def finance(browser: Browser, live_server: str) -> Iterator[Page]:
    page = sign_in(browser, live_server, "finance")
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def api(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=120) as client:
        token = client.post(
            "/api/v1/token", json={"username": "finance", "password": demo_password("finance")}
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


@pytest.fixture(scope="module")
def place(api: httpx.Client) -> dict[str, str]:
    """The largest place, whose emergency admissions the scenario changes."""
    places = api.get("/api/v1/places").json()
    return max(places, key=lambda p: p.get("people") or 0)  # type: ignore[no-any-return]


def labels(page: Page) -> list[tuple[str, str, str]]:
    """Each row header, caption and text cell of the finance tables: (tag, whole text, text
    without the secondary codes and units)."""
    found: list[tuple[str, str, str]] = page.eval_on_selector_all(
        ".jd-report table th[scope=row], .jd-report table caption, "
        ".jd-report table td:not(.num):not(.count)",
        """els => els.map(e => {
            const c = e.cloneNode(true);
            c.querySelectorAll('.note, .jd-unit').forEach(n => n.remove());
            return [e.tagName, e.textContent.trim(), c.textContent.trim()];
        })""",
    )
    return found


def money_tables(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.eval_on_selector_all(
        ".jd-report table",
        """ts => ts.map(t => ({
            id: t.id || t.className,
            unit: (t.querySelector('caption .jd-unit') || {}).textContent || '',
            cells: [...t.querySelectorAll('tbody td.num')].map(c => c.textContent.trim())
                .filter(v => v.includes('£')),
        }))""",
    )
    return [t for t in found if t["cells"]]


def test_every_code_has_its_name_beside_it(finance: Page, live_server: str) -> None:
    answer = finance.goto(f"{live_server}/finance")
    assert answer is not None and answer.status == 200
    shown = labels(finance)
    assert len(shown) > 40
    bare = [
        whole for tag, whole, words in shown if CODE.fullmatch(words) or (not words and tag != "TD")
    ]
    assert not bare, f"labels that are only codes: {bare[:5]}"
    body = finance.locator(".jd-report").inner_text()
    # The trial's findings: a council shown by its code, a scenario by its slug.
    assert "Northvale Borough Council" in body
    assert "10% fewer emergency admissions, for the people of" in body
    for slug in re.findall(r"fewer-admissions-\S+", body):
        holder = finance.locator(".note", has_text=slug).first
        assert holder.count() == 1, f"{slug} shown other than as a note beside its words"


def test_money_is_one_format_per_table_with_unit_and_sign_stated(
    finance: Page, live_server: str
) -> None:
    finance.goto(f"{live_server}/finance")
    expect(finance.locator("#money-convention")).to_contain_text("£ million to one decimal place")
    tables = money_tables(finance)
    assert len(tables) > 10
    for t in tables:
        unit = t["unit"]
        if unit.startswith("£ million"):
            wrong = [c for c in t["cells"] if not MILLIONS.fullmatch(c)]
        else:
            assert unit.startswith("Whole pounds"), f"{t['id']}: no unit stated ({unit!r})"
            wrong = [c for c in t["cells"] if not POUNDS.fullmatch(c)]
        assert not wrong, f"{t['id']} ({unit}): {wrong[:5]}"
        signed = [c for c in t["cells"] if c[0] in "+-"]
        if signed:
            assert "positive" in unit, f"{t['id']}: signed figures without a sign convention"
    # No thousands (£312k) anywhere: one unit or the other.
    assert not re.search(r"£\d[\d,.]*k\b", finance.locator(".jd-report").inner_text())


def pounds_of(text: str) -> int:
    return int(text.replace("£", "").replace(",", "").replace("+", ""))


def test_a_what_if_from_the_page_equals_the_api_and_the_command_line(
    finance: Page,
    live_server: str,
    api: httpx.Client,
    place: dict[str, str],
    web_warehouse: PhmWarehouse,
    web_settings: WebSettings,
    tmp_path: Path,
) -> None:
    finance.goto(f"{live_server}/finance")
    finance.locator("#what-if-try summary").click()
    finance.select_option("#what-if-place", place["place_code"])
    finance.select_option("#what-if-activity", SCENARIO["activity"])
    finance.fill("#what-if-change", SCENARIO["change"])
    with finance.expect_navigation():
        finance.click("#what-if-run")
    expect(finance.locator("#what-if-scenario")).to_have_text(
        f"10% fewer emergency admissions, for the people of {place['place_name']}"
    )
    expect(finance.locator("#what-if-run-note")).to_contain_text(
        re.compile(r"(Run in|took) \d+\.\d\d s")
    )
    rows = finance.eval_on_selector_all(
        "#what-if-result-table tbody tr:not(.total)",
        "rs => rs.map(r => [r.querySelector('th').textContent.trim(),"
        " ...[...r.querySelectorAll('td')].map(c => c.textContent.trim())])",
    )

    body = {"place_code": place["place_code"], "activity_type": SCENARIO["activity"],
            "change_percent": SCENARIO["change"]}  # fmt: skip
    answer = api.post("/api/v1/finance/what-if", json=body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["description"] == finance.locator("#what-if-scenario").inner_text()
    money = ("baseline_cost_gbp", "scenario_cost_gbp", "cost_change_gbp")
    target = ("baseline_target_gbp", "scenario_target_gbp", "target_change_gbp")
    allocation = ("baseline_allocation_gbp", "scenario_allocation_gbp", "allocation_change_gbp")
    assert len(rows) == len(result["places"]) > 1
    for shown, p in zip(rows, result["places"], strict=True):
        assert shown[0] == f"{p['place_name']} {p['place_code']}"
        figures = [*money, "baseline_index", "scenario_index", *target, *allocation]
        for cell, key in zip(shown[1:], figures, strict=True):
            if key.endswith("index"):
                assert cell == f"{p[key]:.3f}", (p["place_code"], key)
            else:
                exact = Decimal(p[key]).quantize(Decimal(1), rounding="ROUND_HALF_UP")
                assert pounds_of(cell) == int(exact), (p["place_code"], key, cell)
    changed = next(p for p in result["places"] if p["place_code"] == place["place_code"])
    assert Decimal(changed["cost_change_gbp"]) < 0  # fewer admissions cost less

    # The same scenario from the command line, on a copy of the served warehouse (the server
    # holds it open), with the settings of its finance run.
    copy = tmp_path / "ics.duckdb"
    shutil.copyfile(web_warehouse.path, copy)
    with duckdb.connect(str(copy), read_only=True) as con:
        settings = con.sql("SELECT settings_yaml FROM finance_run").fetchall()[0][0]
    (tmp_path / "finance.yaml").write_text(settings, encoding="utf-8")
    run = joinedup(
        "finance", "what-if", "-w", str(copy), "--config", "finance.yaml",
        "--activity", SCENARIO["activity"], "--change", "-0.1", "--place", place["place_code"],
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    with duckdb.connect(str(copy), read_only=True) as con:
        stored = con.sql(
            "SELECT place_code, baseline_cost_gbp, scenario_cost_gbp, cost_change_gbp, "
            "baseline_index, scenario_index, baseline_target_gbp, scenario_target_gbp, "
            "target_change_gbp, allocation_change_gbp FROM finance_what_if ORDER BY place_code"
        ).fetchall()
    columns = ("place_code", *money, "baseline_index", "scenario_index", *target,
               "allocation_change_gbp")  # fmt: skip
    from_api = [
        tuple(
            p[c] if c == "place_code" else p[c] if c.endswith("index") else Decimal(p[c])
            for c in columns
        )
        for p in sorted(result["places"], key=lambda p: p["place_code"])
    ]
    assert [tuple(r) for r in stored] == from_api
    assert place["place_name"] in run.stdout

    # The run is audited, naming the scenario in words.
    store = AccessStore(web_settings.access_path, audit_key_path=web_settings.audit_key_path)
    try:
        _, entries = store.audit_entries(limit=20)
    finally:
        store.close()
    mine = [e for e in entries if e["action"] == "what-if" and e["username"] == "finance"]
    assert mine and place["place_name"] in mine[0]["detail"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("250", "The activity change must be between -90% and +100%; got 250%"),
        ("ten", "Give the activity change as a number of percent, like -10; got 'ten'"),
        ("0", "An activity change of 0% changes nothing"),
    ],
)
def test_bad_input_gets_a_clear_message(
    finance: Page, live_server: str, change: str, message: str
) -> None:
    finance.goto(f"{live_server}/finance")
    finance.locator("#what-if-try summary").click()
    finance.fill("#what-if-change", change)
    with finance.expect_navigation() as navigation:
        finance.click("#what-if-run")
    assert navigation.value.status == 422
    expect(finance.locator("#what-if-error")).to_contain_text(message)
    expect(finance.locator("#what-if-change-error")).to_contain_text(message)
    assert finance.locator("#what-if-result").count() == 0


def test_roles_without_finance_are_refused(browser: Browser, live_server: str) -> None:
    page = sign_in(browser, live_server, "clinician")
    try:
        answer = page.goto(f"{live_server}/finance/what-if?change=-10")
        assert answer is not None and answer.status == 403
    finally:
        page.context.close()
    with httpx.Client(base_url=live_server, timeout=60) as client:
        token = client.post(
            "/api/v1/token",
            json={"username": "clinician", "password": demo_password("clinician")},
        ).json()["access_token"]
        refused = client.post(
            "/api/v1/finance/what-if", json={"change_percent": -10},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        assert refused.status_code == 403
        anonymous = client.post("/api/v1/finance/what-if", json={"change_percent": -10})
        assert anonymous.status_code == 401
        # A form posted without its token is refused, even for a role that may see finance.
        allowed = client.post(
            "/api/v1/token", json={"username": "finance", "password": demo_password("finance")}
        ).json()["access_token"]
        client.cookies.set("joinedup_session", allowed)
        forged = client.post("/finance/what-if", data={"change": "-10", "csrf": "made-up"})
        assert forged.status_code == 403
        assert "This form has expired" in forged.text
