"""Acceptance: the dashboard as a new user meets it after `make demo` — sign in with a user the
README lists, and every page that user may see shows the demo ICS with real numbers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo import DemoWarehouse
from fastapi.testclient import TestClient

from joinedup.cli.web import add_demo_users
from joinedup.finance import pipeline as fp
from joinedup.finance.defaults import default_config
from joinedup.warehouse import open_engine
from joinedup.web.app import create_app
from joinedup.web.settings import WebSettings

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
USER_ROW = re.compile(r"^\| `([a-z0-9]+)` \| `([^`]+)` \|", re.MULTILINE)
NAV_LINK = re.compile(r'class="nhsuk-header__navigation-link" href="([^"]+)"')
# a table cell, or an indicator list's headline value, holding a figure
NUMBER = re.compile(r"(?:<td[^>]*>|class=\"jd-value\">)\s*[£+−-]?\d[\d,.]*")


def readme_users() -> list[tuple[str, str]]:
    """The dashboard's demo users: the quick start's first table (the demo citizens, who need
    a records store, follow in a table of their own)."""
    quick_start = README.read_text("utf-8").split("## What you can do")[0]
    users_table = quick_start.split("| username | password | sees |", 1)[1].split("\n\n", 1)[0]
    return USER_ROW.findall(users_table)


@pytest.fixture(scope="module")
def dashboard(
    demo_warehouse: DemoWarehouse,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TestClient]:
    with open_engine("duckdb", warehouse=demo_warehouse.path, read_only=False) as engine:
        if "finance_run" not in engine.table_names():
            fp.run_all(engine, default_config(fp.warehouse_profile(engine)))
    access = tmp_path_factory.mktemp("access") / "access.sqlite"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JOINEDUP_ACCESS_DB", str(access))
        add_demo_users(demo_warehouse.path)  # what `make demo` does
    settings = WebSettings(warehouse=demo_warehouse.path, access_db=access)
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_readme_lists_a_user_for_every_role() -> None:
    users = dict(readme_users())
    assert set(users) == {"analyst", "clinician", "clinician2", "finance", "board", "admin"}


@pytest.mark.parametrize("username", [u for u, _ in readme_users()])
def test_every_page_shows_the_demo_ics_with_real_numbers(
    dashboard: TestClient, username: str
) -> None:
    password = dict(readme_users())[username]
    dashboard.cookies.clear()
    signed_in = dashboard.post("/login", data={"username": username, "password": password})
    assert signed_in.status_code == 200, signed_in.text[:300]
    home = signed_in.text
    assert "NHS Riverside and Coast ICB" in home
    links = NAV_LINK.findall(home)
    assert "/" in links and "/about" in links
    for link in links:
        page = dashboard.get(link)
        if link == "/worklists":  # the reason form first, then the list itself
            assert "Why are you opening this worklist?" in page.text
            page = dashboard.get(str(page.url), params={"reason": "case-finding"})
        assert page.status_code == 200, (username, link)
        text = re.sub(r"<svg.*?</svg>", "", page.text, flags=re.DOTALL)
        assert "Synthetic data." in text
        assert NUMBER.search(text), f"{username} sees no figures on {link}"


def test_the_overview_counts_the_demo_population(dashboard: TestClient) -> None:
    token = dashboard.post(
        "/api/v1/token", json={"username": "board", "password": "board-demo-2026"}
    ).json()["access_token"]
    places = dashboard.get("/api/v1/places", headers={"Authorization": f"Bearer {token}"}).json()
    assert len(places) == 5
    people = sum(p["people"] for p in places)
    # 1.2 million registered, less the national data opt-outs (about 5% in England).
    assert 1_050_000 < people < 1_200_000
