"""Indicators end to end on a small synthetic ICS: `phm run` stores every indicator for each
year at every level; `/api/v1/indicators` serves the definitions and each indicator's values,
number for number as the table holds them; `joinedup indicators` lists, shows and re-compares
with an England file of the user's, refusing a malformed one in one line."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import duckdb
import pytest
from cli_run import PhmWarehouse, flat, joinedup
from fastapi.testclient import TestClient

from joinedup.indicators import shipped_definitions
from joinedup.web.app import create_app
from joinedup.web.settings import WebSettings
from joinedup.web.site import SESSION_COOKIE

pytestmark = pytest.mark.slow

PEOPLE = 1_500


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> PhmWarehouse:
    folder = tmp_path_factory.mktemp("indicators")
    path = folder / "ics.duckdb"
    run = None
    for step in (
        ("synth", "--people", str(PEOPLE), "--seed", "5", "--workers", "1", "-w", str(path)),
        ("phm", "run", "-w", str(path)),
        ("users", "demo", "-w", str(path)),
    ):
        run = joinedup(*step, cwd=folder)
        assert run.returncode == 0, f"joinedup {' '.join(step)}: {run.stdout}{run.stderr}"
    assert run is not None
    return PhmWarehouse(path, folder, run)


def _table(path: Path, where: str = "") -> list[dict[str, Any]]:
    with duckdb.connect(str(path), read_only=True) as con:
        rel = con.sql(f"SELECT * FROM phm_indicator_values {where}")  # noqa: S608 - test's own
        return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


@pytest.fixture(scope="module")
def client(world: PhmWarehouse) -> Iterator[TestClient]:
    settings = WebSettings(warehouse=world.path)
    with TestClient(create_app(settings, warm=False)) as test_client:
        token = test_client.post(
            "/api/v1/token", json={"username": "board", "password": "board-demo-2026"}
        )
        assert token.status_code == 200, token.text
        test_client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield test_client


def test_the_run_stores_every_indicator_for_each_year_at_every_level(world: PhmWarehouse) -> None:
    rows = _table(world.path)
    assert "phm_indicator_values" in flat(world.run.stdout) or rows
    periods = sorted({r["period"] for r in rows})
    assert len(periods) == 3  # three snapshots: the last year and the two before it
    for indicator in shipped_definitions():
        mine = [r for r in rows if r["indicator_id"] == indicator.id]
        expected = 2 if indicator.population == "start" else 3  # deaths need a start snapshot
        assert len({r["period"] for r in mine}) == expected, indicator.id
        assert {r["level"] for r in mine} == {"system", "place", "pcn", "practice"}
    system = [r for r in rows if r["level"] == "system"]
    # A trend wherever three years are published, and nowhere else.
    shown: dict[str, int] = {}
    for r in system:
        shown[r["indicator_id"]] = shown.get(r["indicator_id"], 0) + (r["value"] is not None)
    latest = [r for r in system if r["period"] == max(periods)]
    assert sum(r["trend"] is not None for r in latest) >= 15
    for r in latest:
        assert (r["trend"] is not None) == (shown[r["indicator_id"]] == 3), r["indicator_id"]
    assert all(r["trend"] is None for r in rows if r["period"] != max(periods))
    # Small numbers in a world of 1,500 people are hidden, and only they.
    assert all(r["value"] is not None or r["value_suppressed"] for r in system)
    assert sum(r["value"] is not None for r in system) >= len(system) - 8


def test_definitions_are_served(client: TestClient) -> None:
    answer = client.get("/api/v1/indicators")
    assert answer.status_code == 200
    served = answer.json()
    assert [d["id"] for d in served] == [i.id for i in shipped_definitions()]
    dsr = next(d for d in served if d["id"] == "emergency_admissions_dsr")
    assert dsr["unit"] == "per 100,000" and dsr["ci_method"] == "dobson"
    assert "European Standard Population 2013" in dsr["method_words"]
    assert dsr["numerator"]["sum_of"] == "prior_emergency_12m_count"
    assert "not shown under 10 events" in dsr["disclosure"]
    assert TestClient(client.app).get("/api/v1/indicators").status_code == 401


@pytest.mark.parametrize("level", ["system", "place", "pcn", "practice"])
def test_values_are_the_tables_number_for_number(
    client: TestClient, world: PhmWarehouse, level: str
) -> None:
    answer = client.get("/api/v1/indicators/emergency_admissions_dsr", params={"level": level})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    latest = max(r["period"] for r in _table(world.path))
    assert body["periods"] == [latest] and body["level"] == level
    stored = {
        r["area_code"]: r
        for r in _table(world.path)
        if (r["indicator_id"], r["level"], r["period"])
        == ("emergency_admissions_dsr", level, latest)
    }
    assert {v["area_code"] for v in body["values"]} == set(stored)
    for value in body["values"]:
        row = stored[value["area_code"]]
        for key in (
            "numerator_count", "denominator_count", "value", "lower", "upper", "england_value",
            "england_period", "england_source", "england_comparison", "parent_value",
            "parent_comparison", "area_name", "parent_code", "trend", "trend_p",
        ):  # fmt: skip
            assert value[key] == row[key], (level, value["area_code"], key)
        assert value["suppressed"] == row["value_suppressed"]


def test_every_period_and_refusals(client: TestClient) -> None:
    every = client.get(
        "/api/v1/indicators/mortality_under75_dsr", params={"period": "all", "level": "system"}
    ).json()
    assert len(every["periods"]) == 2 and len(every["values"]) == 2
    end = every["periods"][-1].split("/")[1]
    one = client.get(
        "/api/v1/indicators/mortality_under75_dsr", params={"period": end, "level": "system"}
    ).json()
    assert one["periods"] == [every["periods"][-1]]
    assert client.get("/api/v1/indicators/no_such").status_code == 404
    assert (
        client.get("/api/v1/indicators/copd_prevalence", params={"period": "1999"}).status_code
        == 404
    )
    assert (
        client.get("/api/v1/indicators/copd_prevalence", params={"level": "ward"}).status_code
        == 422
    )


def test_the_cli_lists_shows_and_compares_with_a_users_england_file(world: PhmWarehouse) -> None:
    listed = joinedup("indicators", "list", cwd=world.folder)
    assert listed.returncode == 0 and "mortality_under75_dsr" in listed.stdout
    shown = joinedup(
        "indicators", "show", "copd_prevalence", "--level", "place", "-w", str(world.path),
        cwd=world.folder,
    )  # fmt: skip
    assert shown.returncode == 0 and "COPD" in shown.stdout
    bad = world.folder / "bad.csv"
    bad.write_text(
        "indicator_id,period,value,lower,upper,source\ncopd_prevalence,2024-25,high,,,mine\n",
        encoding="utf-8",
    )
    # A copy: the dashboard under test holds the warehouse open, read-only.
    copy = world.folder / "copy.duckdb"
    shutil.copyfile(world.path, copy)
    refused = joinedup("indicators", "compare", str(bad), "-w", str(copy), cwd=world.folder)
    assert refused.returncode != 0
    assert f"{bad}, row 2: column 'value': 'high' is not a number" in flat(
        refused.stdout + refused.stderr
    )
    good = world.folder / "england.csv"
    good.write_text(
        "indicator_id,period,value,lower,upper,source\ncopd_prevalence,2024-25,50,,,mine\n",
        encoding="utf-8",
    )
    done = joinedup("indicators", "compare", str(good), "-w", str(copy), cwd=world.folder)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _table(copy, "WHERE level = 'system'")
    copd = [r for r in rows if r["indicator_id"] == "copd_prevalence"]
    assert all((r["england_value"], r["england_source"]) == (50.0, "mine") for r in copd)
    assert all(r["england_comparison"] == "lower" for r in copd)  # polarity unknown
    others = [r for r in rows if r["indicator_id"] != "copd_prevalence"]
    assert all(r["england_value"] is None and r["england_comparison"] is None for r in others)


def test_the_headline_summary_is_served_and_leads_the_overview(
    client: TestClient, world: PhmWarehouse
) -> None:
    rows = _table(world.path, "WHERE level = 'system'")
    code = rows[0]["area_code"]
    latest = [r for r in rows if r["period"] == max(r["period"] for r in rows)]
    got = client.get(f"/api/v1/headlines/system/{code}")
    assert got.status_code == 200, got.text
    h = got.json()
    for verdict in ("worse", "better"):
        expected = {r["indicator_id"] for r in latest if r["england_comparison"] == verdict}
        assert {x["indicator_id"] for x in h[verdict]} == expected
    trending = {
        r["indicator_id"]
        for r in latest
        if r["trend"] not in (None, "no significant change") and r["value"] is not None
    }
    assert {x["indicator_id"] for x in h["changes"]} == trending
    assert h["compared"] == sum(r["england_comparison"] is not None for r in latest)
    # The overview opens with the same summary, each line linking to its indicator.
    token = client.headers["Authorization"].split()[1]
    client.cookies.set(SESSION_COOKIE, token)
    try:
        page = client.get("/", headers={"Authorization": ""})
    finally:
        client.cookies.delete(SESSION_COOKIE)
    assert page.status_code == 200
    head = page.text[: page.text.index('aria-label="Sections on this page"')]
    assert escape(h["summary"]) in head
    for x in h["worse"][:5] + h["changes"][:5]:
        assert f'<a href="/indicators/{x["indicator_id"]}">{escape(x["text"])}</a>' in head
    assert client.get("/api/v1/headlines/place/E00000000").status_code == 404
    assert client.get(f"/api/v1/headlines/county/{code}").status_code == 422
