"""`joinedup synth`, `joinedup warehouse` and `joinedup summary` end to end, from a shell."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_run import flat, joinedup

from joinedup.warehouse.analytics import ANALYTICS
from joinedup.warehouse.schema import ALL_TABLES

PEOPLE = 5_000


_joinedup = joinedup
_flat = flat


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A 5,000-person warehouse built by the CLI, and what the build printed."""
    folder = tmp_path_factory.mktemp("cli-synth")
    warehouse = folder / "w.duckdb"
    run = _joinedup("synth", "--people", str(PEOPLE), "--seed", "1", "--warehouse", str(warehouse),
                    "--workers", "1", cwd=folder)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return warehouse, run


@pytest.fixture(scope="module")
def warehouse(built: tuple[Path, subprocess.CompletedProcess[str]]) -> Path:
    return built[0]


def test_synth_prints_row_counts_and_speed(
    built: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    warehouse, run = built
    assert warehouse.is_file()
    out = run.stdout
    people = re.search(r"^\s*person\s*\S\s*([\d,]+)\s*$", out, re.MULTILINE)
    assert people, out
    # The registered population plus the babies born during the history.
    assert PEOPLE <= int(people.group(1).replace(",", "")) < PEOPLE * 1.1
    for table in ("activity", "diagnosis", "observation", "medication", "rtt_pathway"):
        assert re.search(rf"^\s*{table}\s*\S\s*[1-9][\d,]*\s*$", out, re.MULTILINE), table
    assert re.search(r"\(\s*[\d,]+ people/s\)", out), out


def test_warehouse_info_lists_every_table(warehouse: Path, tmp_path: Path) -> None:
    run = _joinedup("warehouse", "info", "--warehouse", str(warehouse), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    for table in ALL_TABLES:
        assert re.search(rf"^\s*{table.name}\s", run.stdout, re.MULTILINE), table.name
    text = _flat(run.stdout)
    assert "seed 1" in text
    assert "01 Apr 2023 to 31 Mar 2026" in text


def test_warehouse_env_var_is_honoured(warehouse: Path, tmp_path: Path) -> None:
    run = _joinedup("warehouse", "info", cwd=tmp_path, env={"JOINEDUP_WAREHOUSE": str(warehouse)})
    assert run.returncode == 0, run.stderr
    assert warehouse.name in run.stdout
    assert re.search(r"^\s*person\s", run.stdout, re.MULTILINE)
    # Pointed at a file that is not there, the command names that file and creates nothing.
    elsewhere = tmp_path / "nowhere.duckdb"
    missing = _joinedup("warehouse", "info", cwd=tmp_path,
                        env={"JOINEDUP_WAREHOUSE": str(elsewhere)})  # fmt: skip
    assert missing.returncode == 2
    assert "nowhere.duckdb" in _flat(missing.stderr)
    assert "Traceback" not in missing.stderr
    assert not elsewhere.exists()


def _people_per_place_rows(stdout: str) -> list[list[str]]:
    """Cells of the rows of the 'People per place' table (between its title and the next title)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "People per place" in line)
    rows = []
    for line in lines[start + 1 :]:
        if (
            "Recorded long-term conditions" in line
            or line.startswith("Activity")
            or not line.strip()
        ):
            break
        cells = [c.strip() for c in re.split(r"[│┃|]", line.strip().strip("│┃|"))]
        if len(cells) == 6 and not set("".join(cells)) <= set("━╇─┼╋ "):
            rows.append(cells)
    return rows[1:]  # after the header


def test_summary_shows_places_and_disclosure_control(warehouse: Path, tmp_path: Path) -> None:
    run = _joinedup("summary", "--warehouse", str(warehouse), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    text = _flat(run.stdout)
    for place in ("Riverside City", "Northvale", "Saltmarsh Coast", "Highdale", "Brookford"):
        assert place in text
    assert "Disclosure control" in text
    assert "suppressed" in text
    rows = _people_per_place_rows(run.stdout)
    assert len(rows) == 5, run.stdout
    for cells in rows:
        for cell in cells[1:4]:  # people, aged 65+, deaths (not the rate or the share)
            if cell == "*":
                continue
            value = int(cell.replace(",", ""))
            assert not 1 <= value <= 7, f"unsuppressed small count {value} in {cells}"
            assert value % 5 == 0, f"count {value} is not rounded to 5 in {cells}"


def test_activity_summary_csv_is_rounded(warehouse: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    run = _joinedup("warehouse", "run", "activity_summary", "--warehouse", str(warehouse),
                    "-o", str(out), cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["activity_type"] for r in rows} >= {"gp_consultation", "emergency_admission"}
    for r in rows:
        assert r["events"] == "" or int(r["events"]) % 5 == 0, r
    assert any(r["events"] for r in rows)


def test_an_unknown_analytic_lists_the_valid_ones(warehouse: Path, tmp_path: Path) -> None:
    run = _joinedup("warehouse", "run", "nope", "--warehouse", str(warehouse), cwd=tmp_path)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr + run.stdout
    message = _flat(run.stderr)
    assert "nope" in message
    for name in ANALYTICS:
        assert name in message


def test_a_bad_footprint_file_names_the_field(tmp_path: Path) -> None:
    assert _joinedup("footprint", "default", "-o", "fp.json", cwd=tmp_path).returncode == 0
    data = json.loads((tmp_path / "fp.json").read_text(encoding="utf-8"))
    data["practices"][2]["list_size"] = -5
    (tmp_path / "bad.json").write_text(json.dumps(data), encoding="utf-8")

    run = _joinedup("synth", "--footprint", "bad.json", "--people", "100",
                    "--warehouse", "w.duckdb", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 2
    assert "practices.2.list_size" in _flat(run.stderr)
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "w.duckdb").exists()


def test_zero_people_is_refused_in_one_line(tmp_path: Path) -> None:
    run = _joinedup("synth", "--people", "0", "--warehouse", "w.duckdb", cwd=tmp_path)
    assert run.returncode == 2
    assert "--people" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.spark
@pytest.mark.slow
def test_spark_on_exported_parquet_agrees_with_duckdb(warehouse: Path, tmp_path: Path) -> None:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Spark needs Java in CI")
        pytest.skip("Spark needs Java")
    parquet = tmp_path / "parquet"
    export = _joinedup("warehouse", "export-parquet", "--out", str(parquet),
                       "--warehouse", str(warehouse), cwd=tmp_path)  # fmt: skip
    assert export.returncode == 0, export.stderr
    assert (parquet / "person.parquet").is_file()

    duck = _joinedup("warehouse", "run", "population_by_place", "--warehouse", str(warehouse),
                     "-o", str(tmp_path / "duckdb.csv"), cwd=tmp_path)  # fmt: skip
    assert duck.returncode == 0, duck.stderr
    spark = _joinedup("warehouse", "run", "population_by_place", "--engine", "spark",
                      "--parquet", str(parquet), "-o", str(tmp_path / "spark.csv"),
                      cwd=tmp_path, timeout=300)  # fmt: skip
    assert spark.returncode == 0, spark.stderr
    assert "on spark" in spark.stdout

    def rows(name: str) -> list[dict[str, str]]:
        with (tmp_path / name).open(encoding="utf-8", newline="") as handle:
            return sorted(csv.DictReader(handle), key=lambda r: r["place_code"])

    on_duckdb, on_spark = rows("duckdb.csv"), rows("spark.csv")
    assert len(on_duckdb) == 5
    assert on_spark == on_duckdb


def test_calibrate_draws_the_comparison_chart(tmp_path: Path) -> None:
    chart = tmp_path / "calibration.svg"
    run = _joinedup(
        "synth",
        "calibrate",
        "--people",
        "20000",
        "--seed",
        "3",
        "--chart",
        str(chart),
        cwd=tmp_path,
    )
    # A small population may miss a tolerance (exit 1); the chart is drawn either way.
    assert run.returncode in (0, 1), run.stderr
    svg = chart.read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for title in ("Age and sex", "Emergency admissions by age", "Long-term conditions"):
        assert title in svg
    assert "figures within tolerance" in _flat(run.stdout)


def test_synth_extracts_writes_five_systems_and_the_truth_apart(
    warehouse: Path, tmp_path: Path
) -> None:
    run = _joinedup("synth", "extracts", "--warehouse", str(warehouse), "-o", "out",
                    "--seed", "3", "--error-scale", "2", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["acute.csv", "community.csv", "extracts.json", "gp.csv",
                     "mental_health.csv", "social_care.csv", "truth"]  # fmt: skip
    with (out / "gp.csv").open(encoding="utf-8", newline="") as handle:
        gp = list(csv.DictReader(handle))
    assert len(gp) >= PEOPLE
    assert f"{len(gp):,}" in run.stdout and "truth" in _flat(run.stdout)
    # What the command printed names nobody.
    assert not any(r["family_name"] and r["family_name"] in run.stdout for r in gp[:500])
    manifest = json.loads((out / "extracts.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 3 and manifest["error_scale"] == 2
    assert manifest["rates"]["nhs_number_other"]["missing"] == pytest.approx(0.06)

    bad = _joinedup("synth", "extracts", "--warehouse", str(warehouse), "-o", "x",
                    "--error-scale", "-1", cwd=tmp_path)  # fmt: skip
    assert bad.returncode != 0
    assert "--error-scale -1.0: give a multiplier of 0 or more" in _flat(bad.stderr)
