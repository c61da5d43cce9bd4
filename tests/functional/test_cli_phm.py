"""`joinedup phm` end to end on a 30,000-person synthetic ICS: the run, its tables, the
worklists a PCN exports, disclosure control and opt-outs, settings errors and re-runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest
from cli_run import PhmWarehouse, flat, joinedup

from joinedup.population.tables import PHM_TABLE_DOCS


def _sql(path: Path, query: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(query).fetchall()


def test_the_run_reports_every_table_and_the_model(phm_warehouse: PhmWarehouse) -> None:
    out = flat(phm_warehouse.run.stdout)
    for table in ("phm_person", "phm_risk", "phm_segment_counts", "phm_worklist", "phm_run"):
        assert table in out
    assert "AUROC" in out and "vs age-sex" in out
    assert "Next: `joinedup phm report" in out


def test_tables_have_exactly_the_documented_columns(phm_warehouse: PhmWarehouse) -> None:
    for name, _, columns in PHM_TABLE_DOCS:
        if name == "phm_person_previous":
            continue
        got = [
            r[0]
            for r in _sql(
                phm_warehouse.path,
                "SELECT column_name FROM information_schema.columns "
                f"WHERE table_name = '{name}' ORDER BY ordinal_position",
            )
        ]
        documented = [c for c, _ in columns]
        assert [c for c in got if not c.endswith("_suppressed")] == documented, name


def test_published_counts_leave_out_opt_outs_and_small_numbers(
    phm_warehouse: PhmWarehouse,
) -> None:
    path = phm_warehouse.path
    (opted_in,) = _sql(path, "SELECT count(*) FROM phm_person WHERE NOT national_data_opt_out")[0]
    (everyone,) = _sql(path, "SELECT count(*) FROM phm_person")[0]
    assert everyone > opted_in  # the synthetic ICS has opt-outs
    total = _sql(
        path, "SELECT sum(people_count) FROM phm_segment_counts WHERE dimension = 'system'"
    )[0][0]
    assert isinstance(total, int)
    assert abs(total - opted_in) <= 5 * 8  # each of at most 8 segments rounded to 5
    for table in ("phm_segment_counts", "phm_segment_transitions", "phm_risk_tiers"):
        small = _sql(path, f"SELECT count(*) FROM {table} WHERE people_count BETWEEN 1 AND 7")[0][0]
        unrounded = _sql(path, f"SELECT count(*) FROM {table} WHERE people_count % 5 <> 0")[0][0]
        assert (small, unrounded) == (0, 0), table
    hidden = _sql(path, "SELECT count(*) FROM phm_inequalities WHERE dsr_suppressed")[0][0]
    leaked = _sql(
        path,
        "SELECT count(*) FROM phm_inequalities WHERE events_count_suppressed AND dsr IS NOT NULL",
    )[0][0]
    assert hidden > 0  # 30,000 people: some PCN-level rates are too small to show
    assert leaked == 0


def test_worklists_include_opt_outs_and_every_person_has_reasons(
    phm_warehouse: PhmWarehouse,
) -> None:
    path = phm_warehouse.path
    lists = dict(_sql(path, "SELECT worklist_id, count(*) FROM phm_worklist GROUP BY 1"))
    assert {"high_risk_no_gp_contact", "raised_bp_no_diagnosis"} <= set(lists)
    missing_reasons = _sql(path, "SELECT count(*) FROM phm_worklist WHERE reasons IS NULL")[0][0]
    assert missing_reasons == 0
    opted_out_listed = _sql(
        path,
        "SELECT count(*) FROM phm_worklist w JOIN phm_person p USING (person_id) "
        "WHERE p.national_data_opt_out",
    )[0][0]
    assert opted_out_listed > 0


def test_a_pcn_exports_only_its_own_worklist(phm_warehouse: PhmWarehouse, tmp_path: Path) -> None:
    pcns = [
        r[0]
        for r in _sql(
            phm_warehouse.path,
            "SELECT pcn_code FROM phm_worklist GROUP BY 1 ORDER BY count(*) DESC LIMIT 2",
        )
    ]
    out = tmp_path / "worklist.csv"
    done = joinedup(
        "phm", "worklist", "--pcn", pcns[0], "-o", str(out), "-w", str(phm_warehouse.path),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Identifiable" in done.stdout
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    assert {r["pcn_code"] for r in rows} == {pcns[0]}
    assert all(len(r["nhs_number"]) == 10 and r["reasons"] for r in rows)
    unknown = joinedup(
        "phm", "worklist", "--pcn", "NOPE", "-o", str(out), "-w", str(phm_warehouse.path),
        cwd=tmp_path,
    )  # fmt: skip
    assert unknown.returncode == 2
    assert "no PCN 'NOPE'" in flat(unknown.stderr)


def test_the_model_card_is_stored_with_the_run(phm_warehouse: PhmWarehouse) -> None:
    (card_json, markdown) = _sql(
        phm_warehouse.path, "SELECT model_card_json, model_card_markdown FROM phm_run"
    )[0]
    assert isinstance(card_json, str) and isinstance(markdown, str)
    card = json.loads(card_json)
    assert card["train_index_date"] < card["validation_index_date"]
    assert "Calibration by decile" in markdown


def test_a_bad_settings_file_names_the_field(phm_warehouse: PhmWarehouse, tmp_path: Path) -> None:
    bad = tmp_path / "phm.yaml"
    bad.write_text(
        "worklists:\n  - id: x_list\n    title: Broken\n    criteria:\n"
        "      - {field: shoe_size, at_least: 9}\n",
        encoding="utf-8",
    )
    done = joinedup("phm", "run", "--config", str(bad), "-w", str(phm_warehouse.path), cwd=tmp_path)
    assert done.returncode == 2
    message = flat(done.stderr)
    assert "phm.yaml" in message and "worklists.0.criteria.0.field" in message
    assert "unknown field 'shoe_size'" in message


def test_settings_can_be_written_out_and_fields_listed(tmp_path: Path) -> None:
    out = tmp_path / "mine.yaml"
    assert joinedup("phm", "config", "-o", str(out), cwd=tmp_path).returncode == 0
    assert "tier_shares" in out.read_text(encoding="utf-8")
    listed = joinedup("phm", "fields", cwd=tmp_path)
    assert "risk_tier" in listed.stdout and "raised_bp_days_24m_count" in listed.stdout


@pytest.mark.slow
def test_a_rerun_gives_the_same_published_tables(
    phm_warehouse: PhmWarehouse, tmp_path: Path
) -> None:
    query = "SELECT * FROM phm_segment_counts ORDER BY ALL"
    before = _sql(phm_warehouse.path, query)
    scores = _sql(phm_warehouse.path, "SELECT sum(risk_score) FROM phm_risk")
    again = joinedup("phm", "run", "-w", str(phm_warehouse.path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _sql(phm_warehouse.path, query) == before
    assert _sql(phm_warehouse.path, "SELECT sum(risk_score) FROM phm_risk") == scores
    assert _sql(phm_warehouse.path, "SELECT count(*) FROM phm_run")[0][0] == 1


def test_score_cms_scores_an_extract(tmp_path: Path) -> None:
    extract = tmp_path / "codes.csv"
    extract.write_text("id,code\nA,I10\nA,E11.9\nB,F03\nC,R69\n", encoding="utf-8")
    out = tmp_path / "cms.csv"
    done = joinedup("score", "cms", str(extract), "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with out.open(newline="", encoding="utf-8") as handle:
        rows = {r["id"]: r for r in csv.DictReader(handle)}
    assert (rows["A"]["ltc_count"], rows["A"]["cms_general"]) == ("2", "0.83")
    assert rows["B"]["dementia"] == "1"
    assert rows["C"]["cms_general"] == "0.0"
