"""The table registry: lookup, check and conform do what they say, every registered name keeps
the conventions with no exceptions, a store written before a rename is named as such, and the
docs and the modules' table pages say what the registry says. `test_registry_drift.py` holds
the registry to real runs."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from joinedup.fhir.tables import FHIR_TABLE_DOCS
from joinedup.finance.tables import COMPONENT, FINANCE_TABLE_DOCS
from joinedup.population.tables import PHM_TABLE_DOCS
from joinedup.warehouse import registry
from joinedup.warehouse.registry import (
    KINDS,
    REGISTRY,
    RENAMED_COLUMNS,
    Column,
    RegistryError,
    Table,
    check,
    column_problems,
    conform,
    lookup,
    naming_problems,
    outdated,
)
from joinedup.warehouse.schema import ALL_TABLES

DOC = Path(__file__).resolve().parents[2] / "docs" / "warehouse.md"


def _table(name: str) -> Table:
    found = lookup(name)
    assert found is not None, name
    return found


# --- lookup -----------------------------------------------------------------------------------


def test_lookup_finds_tables_by_name_and_views_by_their_pattern() -> None:
    assert _table("phm_risk").kind == "phm"
    assert _table("finance_ledger").written_by == ("finance run", "finance control-total")
    view = _table("v_patient")
    assert view.name == "v_<view>"
    assert view.scratch
    assert lookup("v_") is None
    assert lookup("no_such_table") is None


def test_every_table_is_registered_once_with_a_kind_a_writer_and_distinct_columns() -> None:
    names = [t.name for t in REGISTRY]
    assert len(names) == len(set(names))
    for t in REGISTRY:
        assert t.kind in KINDS, t.name
        assert t.description.strip(), t.name
        assert t.written_by, t.name
        assert not (t.published and t.identifiable), f"{t.name}: published and identifiable"
        assert t.scratch or t.columns, f"{t.name}: no columns"
        assert len(t.column_names) == len(set(t.column_names)), t.name


def test_canonical_entries_are_the_canonical_schema() -> None:
    for table in ALL_TABLES:
        entry = _table(table.name)
        assert entry.kind == "canonical"
        assert entry.arrow_schema() == table.arrow_schema(), table.name


def test_identifiable_tables_include_every_table_with_an_nhs_number() -> None:
    for t in REGISTRY:
        if "nhs_number" in t.column_names:
            assert t.identifiable, t.name


# --- check ------------------------------------------------------------------------------------


def test_check_finds_nothing_in_a_table_written_as_registered() -> None:
    for t in REGISTRY:
        if not t.scratch:
            assert check(t.name, t.arrow_schema()) == [], t.name


def test_check_names_table_and_column_of_each_difference() -> None:
    written = pa.schema(
        [
            ("person_id", pa.int64()),
            ("risk_score", pa.float32()),  # registered DOUBLE
            ("risk_band", pa.string()),  # not registered
        ]
    )  # risk_tier is missing
    assert check("phm_risk", written) == [
        "phm_risk.risk_tier: missing (registered VARCHAR)",
        "phm_risk.risk_score: written as float, registered DOUBLE (double)",
        "phm_risk.risk_band: not registered (written as string)",
    ]


def test_check_lets_an_optional_column_be_absent_but_not_mistyped() -> None:
    need = _table("finance_practice_need")
    without = need.arrow_schema([c.name for c in need.columns if not c.optional])
    assert "final_pmc_wp" not in without.names
    assert check("finance_practice_need", without) == []
    mistyped = without.append(pa.field("final_pmc_wp", pa.string()))
    assert check("finance_practice_need", mistyped) == [
        "finance_practice_need.final_pmc_wp: written as string, registered DOUBLE (double)"
    ]


def test_check_reports_a_table_that_is_not_registered_or_has_no_column_contract() -> None:
    assert check("phm_new_thing", pa.schema([("x", pa.int64())])) == [
        "phm_new_thing: not a registered table (joinedup.warehouse.registry)"
    ]
    [line] = check("fhir_arrived", pa.schema([("x", pa.int64())]))
    assert line.startswith("fhir_arrived: a working table")


# --- conform ----------------------------------------------------------------------------------


def _ledger(**overrides: pa.Array) -> pa.Table:
    columns: dict[str, pa.Array] = {
        # out of order and loosely typed, as a CSV import would give them
        "actual_gbp": pa.array(["10.50", None]),
        "plan_gbp": pa.array([12.0, 13.25]),
        "month": pa.array([1, 2], pa.int64()),
        "organisation_code": pa.array(["RXX", "RXX"]),
        "financial_year": pa.array(["2026/27", "2026/27"]),
        "month_start_date": pa.array([dt.date(2026, 4, 1), dt.date(2026, 5, 1)]),
        "category": pa.array(["pay", "pay"]),
    }
    columns |= overrides
    return pa.table(columns)


def test_conform_matches_columns_by_name_and_casts_to_the_registered_types() -> None:
    out = conform("finance_ledger", _ledger())
    assert out.schema == _table("finance_ledger").arrow_schema()
    assert out.column("month").type == pa.int8()
    assert out.column("actual_gbp").to_pylist() == [Decimal("10.50"), None]
    assert out.column("plan_gbp").to_pylist() == [Decimal("12.00"), Decimal("13.25")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _ledger().drop_columns(["category"]),
            "finance_ledger.category: missing (registered VARCHAR)",
        ),
        (
            _ledger(note=pa.array(["a", "b"])),
            "finance_ledger.note: not a registered column",
        ),
        (
            _ledger(month=pa.array(["1", "April"])),
            "finance_ledger.month: cannot be TINYINT (string): ",
        ),
        (
            _ledger(month=pa.array([1, 300])),
            "finance_ledger.month: cannot be TINYINT (int64): ",
        ),
        (
            _ledger(plan_gbp=pa.array([1.0, None])),
            "finance_ledger.plan_gbp: 1 null value(s) where none may be",
        ),
    ],
)
def test_conform_refuses_in_one_line_naming_table_and_column(data: pa.Table, message: str) -> None:
    with pytest.raises(RegistryError) as caught:
        conform("finance_ledger", data)
    text = str(caught.value)
    assert text.startswith(message)
    assert "\n" not in text


def test_conform_leaves_out_an_optional_column_the_run_did_not_write() -> None:
    need = _table("finance_practice_need")
    data = pa.table(
        {
            c.name: pa.array(["x"] if c.type == "VARCHAR" else [1.5], c.arrow_type)
            for c in need.columns
            if not c.optional
        }
    )
    assert "final_pmc_wp" not in conform("finance_practice_need", data).column_names


def test_conform_refuses_tables_without_a_column_contract() -> None:
    data = pa.table({"x": [1]})
    with pytest.raises(RegistryError, match=r"^nowhere: not a registered table"):
        conform("nowhere", data)
    with pytest.raises(RegistryError, match=r"^v_patient: a working table"):
        conform("v_patient", data)


# --- naming conventions -----------------------------------------------------------------------


def test_every_registered_column_keeps_the_naming_conventions() -> None:
    problems = [p for t in REGISTRY for p in naming_problems(t)]
    assert problems == [], "\n".join(problems)


def test_the_conventions_catch_each_kind_of_new_name() -> None:
    bad = Table(
        "phm_new",
        "phm",
        "A table with one column breaking each rule.",
        ("phm run",),
        (
            Column("seen", "DATE"),
            Column("due_date", "VARCHAR"),
            Column("patients", "BIGINT", measure="count"),
            Column("visits_count", "BIGINT", measure="number"),
            Column("cost", "DECIMAL(18,2)"),
            Column("price_gbp", "DOUBLE"),
            Column("referrals", "INTEGER"),
            Column("spend_growth", "DOUBLE"),  # a fraction of money: fine
            Column("tariff_cost", "DOUBLE"),
        ),
    )
    assert naming_problems(bad) == [
        "phm_new.seen: a date ends _date",
        "phm_new.due_date: _date is for DATE",
        "phm_new.patients: a count ends _count",
        "phm_new.visits_count: _count is for a column measuring a count",
        "phm_new.cost: money ends _gbp",
        "phm_new.price_gbp: _gbp is for DECIMAL",
        "phm_new.price_gbp: money is DECIMAL pounds, not DOUBLE",
        "phm_new.referrals: a whole number says what it measures (count, flag, key or number)",
        "phm_new.tariff_cost: money is DECIMAL pounds, not DOUBLE",
    ]


def test_no_allow_list_remains() -> None:
    """The conventions hold for every column: nothing in the registry excuses a name."""
    assert not hasattr(registry, "LEGACY_NAMES")


def test_each_renamed_column_is_registered_under_its_new_name_only() -> None:
    for table_name, renamed in RENAMED_COLUMNS.items():
        table = _table(table_name)
        for old, new in renamed.items():
            assert table.column(old) is None, f"{table_name}.{old} is still registered"
            column = table.column(new)
            assert column is not None, f"{table_name}.{new} is not registered"
            assert column_problems(column) == [], f"{table_name}.{new}"


def test_a_table_written_before_a_rename_is_named_with_the_command_that_rebuilds_it() -> None:
    old = pa.schema([("risk_tier", pa.string()), ("people", pa.int64())])
    line = (
        "table phm_risk_tiers was written by an older version of joinedup (column people, "
        "now people_count): rebuild it with `joinedup phm run`"
    )
    assert outdated("phm_risk_tiers", old.names) == line
    assert check("phm_risk_tiers", old) == [line]
    assert "`joinedup synth`" in (outdated("practice", ["practice_code", "list_size"]) or "")
    with pytest.raises(RegistryError, match=r"^table phm_risk_tiers was written by an older"):
        conform("phm_risk_tiers", old.empty_table())
    current = _table("phm_risk_tiers").arrow_schema()
    assert outdated("phm_risk_tiers", current.names) is None
    assert check("phm_risk_tiers", current) == []


# --- documentation ----------------------------------------------------------------------------


def test_the_warehouse_page_lists_the_registry() -> None:
    page = DOC.read_text(encoding="utf-8")
    assert page == registry.with_registry_section(page), (
        "docs/warehouse.md is stale: run `python -m joinedup.warehouse.registry`"
    )


def _documented_columns(columns: list[tuple[str, str]]) -> set[str]:
    names: set[str] = set()
    for name, _ in columns:
        if COMPONENT in name:
            components = (*registry.NEED_COMPONENTS, registry.PUBLISHED_ONLY_COMPONENT)
            names |= {name.replace(COMPONENT, c) for c in components}
        else:
            names.add(name)
    return names


def test_every_output_column_has_a_meaning_in_its_module_table_page() -> None:
    """Column meanings of the jobs' outputs live in population/finance/fhir `tables.py`
    (docs/data-model.md); they must describe exactly the registered columns."""
    pages = {name: columns for name, _, columns in (*PHM_TABLE_DOCS, *FINANCE_TABLE_DOCS)}
    pages |= {name: columns for name, _, columns in FHIR_TABLE_DOCS}
    pages["phm_person_previous"] = pages["phm_person"]
    for t in REGISTRY:
        if t.kind in ("canonical", "access") or t.scratch:
            continue
        assert t.name in pages, f"{t.name} has no table page"
        registered = {c for c in t.column_names if not c.endswith("_suppressed")}
        assert registered == _documented_columns(pages[t.name]), t.name
