"""`joinedup finance` end to end on a 30,000-person synthetic ICS with population health run:
the whole run and its report, money that always adds up, settings refused with the reason and
nothing written, a ledger imported from CSV, what-if from the command line, and re-runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import pytest
from cli_run import PhmWarehouse, flat, joinedup


def _sql(path: Path, query: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(query).fetchall()


@pytest.fixture(scope="module")
def ran(phm_warehouse: PhmWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared warehouse with `joinedup finance run` done."""
    folder = tmp_path_factory.mktemp("finance")
    path = folder / "ics.duckdb"
    shutil.copy(phm_warehouse.path, path)
    result = joinedup("finance", "run", "-w", str(path), cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def test_the_run_writes_every_table(ran: Path) -> None:
    tables = {r[0] for r in _sql(ran, "SELECT table_name FROM information_schema.tables")}
    for name in (
        "finance_practice_need", "finance_need_index", "finance_cost_curve",
        "finance_allocation", "finance_sector_allocation", "finance_guarantee",
        "finance_place_budget", "finance_pooled_budget", "finance_payment_line",
        "finance_ledger", "finance_control_total", "finance_control_total_waterfall",
        "finance_risk_share", "finance_what_if", "finance_run",
    ):  # fmt: skip
        assert name in tables, name


def test_money_adds_up_to_the_penny(ran: Path) -> None:
    # Every year's places sum exactly to that year's pot in the settings.
    settings = _sql(ran, "SELECT settings_yaml FROM finance_run")[0][0]
    assert isinstance(settings, str)
    totals = dict(re.findall(r"- year: (\d{4}/\d{2})\n\s+total_gbp: ([\d.]+)", settings))
    sums = dict(
        _sql(ran, "SELECT financial_year, sum(allocation_gbp) FROM finance_allocation GROUP BY 1")
    )
    assert {y: f"{float(v):.2f}" for y, v in sums.items()} == {
        y: f"{float(v):.2f}" for y, v in totals.items()
    }
    # Sectors sum to each place's allocation; delegated and retained to the allocation.
    mismatched = _sql(ran, """
        SELECT a.financial_year, a.place_code FROM finance_allocation a
        JOIN (SELECT financial_year, place_code, sum(allocation_gbp) s
              FROM finance_sector_allocation GROUP BY ALL) s USING (financial_year, place_code)
        WHERE a.allocation_gbp <> s.s""")  # fmt: skip
    assert mismatched == []
    assert _sql(ran, "SELECT count(*) FROM finance_place_budget "
                "WHERE delegated_gbp + retained_gbp <> allocation_gbp")[0][0] == 0  # fmt: skip
    # Risk share conserves every scenario's variance.
    assert _sql(ran, "SELECT count(*) FROM (SELECT scenario FROM finance_risk_share GROUP BY 1 "
                "HAVING sum(final_gbp) <> sum(variance_gbp))")[0][0] == 0  # fmt: skip
    # A payment's total is the sum of its lines; the waterfall ends on the forecast.
    last = _sql(ran, "SELECT running_total_gbp FROM finance_control_total_waterfall "
                "ORDER BY step DESC LIMIT 1")[0][0]  # fmt: skip
    forecast = _sql(ran, "SELECT forecast_gbp FROM finance_control_total "
                    "WHERE organisation_code = 'SYSTEM'")[0][0]  # fmt: skip
    assert last == forecast


def test_the_report_has_every_section_with_charts(ran: Path) -> None:
    folder = ran.parent
    result = joinedup("finance", "report", "-w", str(ran), "-o", "finance.html", cwd=folder)
    assert result.returncode == 0, result.stderr
    page = (folder / "finance.html").read_text(encoding="utf-8")
    sections = ("need", "allocation", "budgets", "payments", "control-total", "risk-share",
                "what-if")  # fmt: skip
    for section in sections:
        assert f'id="{section}"' in page, section
    charts = ("need-chart", "distance-chart", "path-chart", "waterfall-chart",
              "risk-share-chart", "what-if-chart")  # fmt: skip
    for chart in charts:
        figure = page[page.index(f'id="{chart}"') :]
        assert figure.index("<svg") < figure.index("</figure>"), chart
    assert "Synthetic data" in page
    assert not re.search(r'(src|href)="https?:', page)  # nothing to fetch from the network


def test_baselines_that_do_not_reconcile_are_refused_and_nothing_is_written(ran: Path) -> None:
    folder = ran.parent
    assert joinedup("finance", "config", "-w", str(ran), "-o", "f.yaml", cwd=folder).returncode == 0
    text = (folder / "f.yaml").read_text()
    bad = re.sub(
        r"(baselines_gbp:\n\s+E\w+: )(\d+)",
        lambda m: m.group(1) + str(int(m.group(2)) + 1),
        text,
        count=1,
    )
    (folder / "bad.yaml").write_text(bad)
    before = _sql(ran, "SELECT run_id FROM finance_run")
    result = joinedup("finance", "run", "-w", str(ran), "--config", "bad.yaml", cwd=folder)
    assert result.returncode == 2
    message = flat(result.stderr)
    assert "bad.yaml" in message and "not the baseline_total_gbp" in message
    assert _sql(ran, "SELECT run_id FROM finance_run") == before


def test_a_ledger_is_imported_checked_and_used(ran: Path) -> None:
    folder = ran.parent
    rows = _sql(ran, "SELECT organisation_code, financial_year, month, category, plan_gbp, "
                "actual_gbp FROM finance_ledger ORDER BY ALL")  # fmt: skip
    lines = ["organisation_code,financial_year,month,category,plan_gbp,actual_gbp"]
    lines += [",".join("" if v is None else str(v) for v in r) for r in rows]
    # Trim every actual by £1,000 so the import is visibly different from the synthetic one.
    edited = []
    for line in lines[1:]:
        parts = line.split(",")
        if parts[5]:
            parts[5] = f"{float(parts[5]) - 1000:.2f}" if parts[3] == "pay" else parts[5]
        edited.append(",".join(parts))
    (folder / "ledger.csv").write_text("\n".join([lines[0], *edited]) + "\n")
    result = joinedup("finance", "control-total", "-w", str(ran), "--ledger", "ledger.csv",
                      cwd=folder)  # fmt: skip
    assert result.returncode == 0, result.stderr
    pay = _sql(ran, "SELECT sum(actual_gbp) FROM finance_ledger WHERE category = 'pay'")[0][0]
    before = sum(r[5] for r in rows if r[3] == "pay" and r[5] is not None)  # type: ignore[misc]
    months = sum(1 for r in rows if r[3] == "pay" and r[5] is not None)
    assert before - pay == 1000 * months  # type: ignore[operator]
    # A later run keeps the imported ledger rather than making a synthetic one.
    assert joinedup("finance", "run", "-w", str(ran), cwd=folder).returncode == 0
    assert (
        _sql(ran, "SELECT sum(actual_gbp) FROM finance_ledger WHERE category = 'pay'")[0][0] == pay
    )
    # A bad row is refused with the file, line, column and reason.
    (folder / "bad.csv").write_text(lines[0] + "\n" + edited[0].replace(",1,", ",13,", 1) + "\n")
    bad = joinedup("finance", "control-total", "-w", str(ran), "--ledger", "bad.csv", cwd=folder)
    assert bad.returncode == 2
    assert re.search(r"bad\.csv:2: column 'month'", flat(bad.stderr)), bad.stderr


def test_what_if_from_the_command_line(ran: Path) -> None:
    place = _sql(ran, "SELECT place_code FROM place ORDER BY 1 LIMIT 1")[0][0]
    assert isinstance(place, str)
    result = joinedup(
        "finance", "what-if", "-w", str(ran), "--activity", "emergency_admission",
        "--change", "-0.2", "--place", place, cwd=ran.parent,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "20% fewer emergency admissions, for the people of" in flat(result.stdout)
    changes = dict(_sql(ran, "SELECT place_code, cost_change_gbp FROM finance_what_if"))
    assert changes[place] < 0  # type: ignore[operator]
    assert all(v == 0 for k, v in changes.items() if k != place)
    refused = joinedup("finance", "what-if", "-w", str(ran), "--activity", "admissions",
                       "--change", "-0.1", cwd=ran.parent)  # fmt: skip
    assert refused.returncode == 2 and "unknown activity type 'admissions'" in flat(refused.stderr)


def test_a_rerun_gives_the_same_figures(ran: Path) -> None:
    def figures() -> list[tuple[object, ...]]:
        return _sql(ran, "SELECT * FROM finance_allocation ORDER BY ALL") + _sql(
            ran, "SELECT * EXCLUDE (explanation) FROM finance_payment_line ORDER BY ALL"
        )

    before = figures()
    assert joinedup("finance", "run", "-w", str(ran), cwd=ran.parent).returncode == 0
    assert figures() == before


def test_tables_have_exactly_the_documented_columns(ran: Path) -> None:
    from joinedup.finance.capitation import POPULATION_COMPONENTS
    from joinedup.finance.tables import COMPONENT, FINANCE_TABLE_DOCS

    for name, _, columns in FINANCE_TABLE_DOCS:
        got = [
            r[0]
            for r in _sql(ran, "SELECT column_name FROM information_schema.columns "
                          f"WHERE table_name = '{name}' ORDER BY ordinal_position")
        ]  # fmt: skip
        documented: list[str] = []
        for column, _ in columns:
            if COMPONENT in column:
                documented += [column.replace(COMPONENT, c) for c in POPULATION_COMPONENTS]
            else:
                documented.append(column)
        assert [c for c in got if not c.endswith("_suppressed")] == documented, name


@pytest.mark.parametrize(
    ("command", "table", "shows"),
    [
        ("guarantees", "finance_guarantee", "MHIS"),
        ("payments", "finance_payment_line", "elective_activity"),
        ("risk-share", "finance_risk_share", "winter pressure"),
        ("allocate", "finance_allocation", "distance"),
    ],
)
def test_each_step_runs_alone_and_writes_its_table(
    ran: Path, command: str, table: str, shows: str
) -> None:
    result = joinedup("finance", command, "-w", str(ran), cwd=ran.parent)
    assert result.returncode == 0, result.stderr
    assert shows in flat(result.stdout)
    assert table in flat(result.stdout)  # the "Tables written" list
    assert _sql(ran, f"SELECT count(*) FROM {table}")[0][0] > 0
