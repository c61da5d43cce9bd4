"""Differencing attacks on the published indicator values (`phm_indicator_values`) of the
small security world: every count controlled; no value or interval, attacked by its own
method (Wilson for percentages, Byar's for crude rates, Dobson for standardised rates), pins a
count other than the published one; and no published area (system, place, PCN) has exactly one
hidden part among the areas inside it, so subtraction gives no hidden count away."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest
from cli_run import PhmWarehouse
from test_disclosure_differencing import (
    Ratio,
    Wilson,
    attack_dobson,
    attack_ratio,
    attack_wilson,
    lone_hidden_children,
    uncontrolled,
)

from joinedup.indicators import shipped_definitions

pytestmark = pytest.mark.security

DEFINITIONS = shipped_definitions()
COUNTS = ("numerator_count", "denominator_count")


@pytest.fixture(scope="module")
def rows(small_web_warehouse: PhmWarehouse) -> list[dict[str, Any]]:
    with duckdb.connect(str(small_web_warehouse.path), read_only=True) as con:
        rel = con.table("phm_indicator_values")
        return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def _report(leaks: list[str]) -> None:
    assert not leaks, f"{len(leaks)} leak(s), e.g.:\n" + "\n".join(leaks[:12])


def test_the_world_is_small_enough_for_suppression_to_bite(rows: list[dict[str, Any]]) -> None:
    assert {r["level"] for r in rows} == {"system", "place", "pcn", "practice"}
    hidden = sum(r["numerator_count"] is None for r in rows)
    assert 0 < hidden < len(rows)
    assert sum(r["value"] is not None for r in rows if r["level"] == "practice") > 0


def test_no_value_or_interval_gives_back_a_count_finer_than_published(
    rows: list[dict[str, Any]],
) -> None:
    leaks: list[str] = []
    for i, row in enumerate(rows):
        where = f"phm_indicator_values row {i} ({row['indicator_id']}, {row['area_code']})"
        for count in COUNTS:
            leaks += uncontrolled(row[count], f"{where} {count}")
        if row["value"] is not None and (
            row["numerator_count"] is None or row["denominator_count"] is None
        ):
            leaks.append(f"{where}: a value is shown beside a suppressed count")
        indicator = DEFINITIONS.get(row["indicator_id"])
        if indicator.ci_method == "wilson":
            wilson = Wilson("value", "lower", "upper", *COUNTS)
            leaks += [f"{where}: {m}" for m in attack_wilson(wilson, row)]
        else:
            if indicator.method == "crude":
                ratio = Ratio("value", *COUNTS, lambda _, per=indicator.per: float(per))
                leaks += [f"{where}: {m}" for m in attack_ratio(ratio, row)]
            # Byar's interval of a crude rate and Dobson's of a standardised one both carry
            # (value - lower) / (upper - value), a function of the count alone.
            leaks += attack_dobson(
                row["value"], row["lower"], row["upper"], row["numerator_count"], where
            )
    _report(leaks)


def test_no_area_minus_its_visible_parts_gives_a_hidden_part(rows: list[dict[str, Any]]) -> None:
    parts: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["parent_code"] is not None:
            key = (row["indicator_id"], row["period"], row["level"], row["parent_code"])
            parts.setdefault(key, []).append(row)
    up = {"practice": "pcn", "pcn": "place", "place": "system"}
    by_key = {(r["indicator_id"], r["period"], r["level"], r["area_code"]): r for r in rows}
    leaks: list[str] = []
    checked = 0
    for (indicator_id, period, level, parent_code), children in parts.items():
        parent = by_key[(indicator_id, period, up[level], parent_code)]
        for count in COUNTS:
            checked += 1
            leaks += lone_hidden_children(
                parent[count],
                [c[count] for c in children],
                f"{indicator_id} {period} {up[level]} {parent_code} {count}",
            )
    assert checked > 100
    _report(leaks)
