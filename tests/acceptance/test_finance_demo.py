"""Acceptance: on the demo ICS (`make demo`: 1.2 million people, seed 42) need estimated from
the population ranks the places as their age and deprivation would lead a person to expect,
and the report says how the need-based split differs from a head-count split.

What a person expects, place by place: the older a place (share aged 65 and over), the more
general and acute, community and prescribing need per head; the more deprived (mean IMD
decile, lower is more deprived), the more mental health and health inequalities need; and a
place that is both older and more deprived than another has more need overall. Where one place
is older and another more deprived, a person cannot say which needs more, and neither does
this test.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from demo import DemoWarehouse
from sqlglot import exp

from joinedup.finance import pipeline as fp
from joinedup.finance.defaults import default_config
from joinedup.reports.finance import write_report
from joinedup.warehouse import open_engine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finance(demo_warehouse: DemoWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Any:
    report = tmp_path_factory.mktemp("finance") / "finance.html"
    with open_engine("duckdb", warehouse=demo_warehouse.path, read_only=False) as engine:
        fp.run_all(engine, default_config(fp.warehouse_profile(engine)))
        places = engine.execute(
            exp.select("*").from_("finance_need_index").where("level = 'place'")
        ).to_pylist()
        profile = engine.execute(
            exp.select(
                "place_code",
                exp.alias_(exp.func("avg", exp.column("imd_decile")), "imd"),
                exp.alias_(exp.func("avg", exp.cast(exp.column("age") >= 65, "INT")), "older"),
            )
            .from_("phm_person")
            .group_by("place_code")
        ).to_pylist()
        write_report(engine, report)
    by_code = {r["code"]: r for r in places}
    for r in profile:
        by_code[r["place_code"]] |= {"imd": r["imd"], "older": r["older"]}
    return list(by_code.values()), report


def _order(rows: list[dict[str, Any]], key: str, *, descending: bool = True) -> list[str]:
    return [r["code"] for r in sorted(rows, key=lambda r: r[key], reverse=descending)]


@pytest.mark.parametrize(
    "component", ["general_and_acute_index", "community_services_index", "prescribing_index"]
)
def test_age_driven_need_follows_the_share_of_older_people(finance: Any, component: str) -> None:
    places, _ = finance
    assert _order(places, component) == _order(places, "older")


@pytest.mark.parametrize("component", ["mental_health_index", "health_inequalities_index"])
def test_deprivation_driven_need_follows_deprivation(finance: Any, component: str) -> None:
    places, _ = finance
    assert _order(places, component) == _order(places, "imd", descending=False)


def test_a_place_older_and_more_deprived_than_another_needs_more_overall(finance: Any) -> None:
    places, _ = finance
    compared = 0
    for a, b in itertools.permutations(places, 2):
        if a["older"] > b["older"] and a["imd"] < b["imd"]:
            assert a["final_index"] > b["final_index"], (a["name"], b["name"])
            compared += 1
    assert compared >= 3  # the demo has four such pairs


def test_the_report_says_how_need_differs_from_a_head_count_split(finance: Any) -> None:
    places, report = finance
    text = Path(report).read_text(encoding="utf-8")
    summary = re.search(r'<p id="head-count-summary">(.*?)</p>', text, re.S)
    assert summary is not None
    sentence = " ".join(summary.group(1).split())
    assert "rather than by head count" in sentence
    for place in places:
        assert place["name"] in sentence
    # The oldest place gains from need; the youngest loses.
    oldest = max(places, key=lambda r: r["older"])["name"]
    youngest = min(places, key=lambda r: r["older"])["name"]
    assert re.search(rf"gives {re.escape(oldest)} £[\d.,]+m \([\d.]+%\) more", sentence)
    assert re.search(rf"{re.escape(youngest)} £[\d.,]+m \([\d.]+%\) less", sentence)
