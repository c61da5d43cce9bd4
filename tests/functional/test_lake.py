"""A lake warehouse, as a user drives it: `synth` into a folder, `phm run` and `finance run`
on DuckDB and on Spark writing the same rows, `warehouse copy` to a file and back, and bad
lakes, engines and masters refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_run import flat, joinedup

PEOPLE = 1_500
# Columns that differ between two runs of the same job (when, and an id of the run).
WALL_CLOCK = {"run_id", "run_at", "build_id", "built_at"}


def _tables(lake: Path, prefix: tuple[str, ...] = ()) -> dict[str, pa.Table]:
    manifest = json.loads((lake / "_manifest.json").read_text())
    out = {}
    for name, entry in manifest["tables"].items():
        if prefix and not name.startswith(prefix):
            continue
        files = sorted((lake / name / entry["version"]).glob("*.parquet"))
        out[name] = pa.concat_tables(
            [pq.read_table(f) for f in files], promote_options="permissive"
        )
    return out


def _rows(table: pa.Table) -> list[tuple[object, ...]]:
    """Every row, every column but the wall clock's, in a stable order."""
    kept = [c for c in table.column_names if c not in WALL_CLOCK]
    rows = table.select(kept).to_pylist()
    return sorted((tuple(repr(r[c]) for c in kept) for r in rows), key=repr)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lake")
    done = joinedup(
        "synth", "--people", str(PEOPLE), "--seed", "5", "--workers", "1", "-w", "lake",
        cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return folder / "lake"


def test_synth_writes_a_lake_every_parquet_reader_can_open(lake: Path) -> None:
    tables = _tables(lake)
    assert {"person", "activity", "diagnosis", "practice", "build"} <= set(tables)
    with duckdb.connect() as con:  # a user's own DuckDB, reading the files the manifest names
        manifest = json.loads((lake / "_manifest.json").read_text())
        entry = manifest["tables"]["person"]
        files = [str(f) for f in sorted((lake / "person" / entry["version"]).glob("*.parquet"))]
        (n,) = con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()  # type: ignore[misc]
    assert n == entry["rows"] == tables["person"].num_rows
    assert sorted(p.name for p in lake.iterdir() if not p.name.startswith("_")) == sorted(tables)


def test_copy_to_a_file_and_back_keeps_every_table(lake: Path, tmp_path: Path) -> None:
    file, back = tmp_path / "ics.duckdb", tmp_path / "back"
    for source, target in ((lake, file), (file, back)):
        done = joinedup("warehouse", "copy", str(source), str(target), cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
    info = joinedup("warehouse", "info", "-w", str(file), cwd=tmp_path)
    assert info.returncode == 0 and "from synthetic" in flat(info.stdout)
    first, second = _tables(lake), _tables(back)
    assert set(first) == set(second)
    for name in first:
        assert _rows(first[name]) == _rows(second[name]), name
    refused = joinedup("warehouse", "copy", str(lake), str(back), cwd=tmp_path)
    assert refused.returncode == 2 and "copy from a .duckdb file to a lake" in flat(refused.stderr)


@pytest.mark.spark
@pytest.mark.slow
def test_phm_and_finance_on_spark_write_the_rows_duckdb_writes(lake: Path, tmp_path: Path) -> None:
    runs = {}
    for engine in ("duckdb", "spark"):
        copy = shutil.copytree(lake, tmp_path / engine)
        extra = ("--engine", engine) + (("--spark-master", "local[2]") if engine == "spark" else ())
        for job in (("phm", "run"), ("finance", "run")):
            done = joinedup(*job, "-w", str(copy), *extra, cwd=tmp_path, timeout=900)
            assert done.returncode == 0, f"{engine} {job}: {done.stdout}{done.stderr}"
        runs[engine] = _tables(copy, ("phm_", "finance_"))
    duck, spark = runs["duckdb"], runs["spark"]
    assert set(duck) == set(spark)
    assert len(duck) >= 25, sorted(duck)
    for name in sorted(duck):
        assert duck[name].column_names == spark[name].column_names, name
        assert [f.type for f in duck[name].schema] == [f.type for f in spark[name].schema], name
        assert _rows(duck[name]) == _rows(spark[name]), f"{name} differs between engines"


def test_spark_on_a_duckdb_file_is_refused_in_one_line(tmp_path: Path) -> None:
    done = joinedup("phm", "run", "--engine", "spark", "-w", "ics.duckdb", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") <= 3
    assert "warehouse copy ics.duckdb lake/" in flat(done.stderr)


def test_an_unreachable_spark_master_is_refused_naming_it(lake: Path, tmp_path: Path) -> None:
    done = joinedup(
        "phm", "run", "--engine", "spark", "--spark-master", "spark://127.0.0.1:9",
        "-w", str(lake), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "cannot reach the Spark master at spark://127.0.0.1:9" in flat(done.stderr)


def test_a_foreign_table_in_a_lake_is_refused_naming_it(lake: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(lake, tmp_path / "lake")
    (copy / "sales_2025").mkdir()
    done = joinedup("warehouse", "info", "-w", str(copy), cwd=tmp_path)
    assert done.returncode == 2
    assert "'sales_2025' is not a table joinedup writes" in flat(done.stderr)


def test_a_column_that_differs_is_refused_naming_table_and_column(
    lake: Path, tmp_path: Path
) -> None:
    copy = shutil.copytree(lake, tmp_path / "lake")
    entry = json.loads((copy / "_manifest.json").read_text())["tables"]["place"]
    (file,) = sorted((copy / "place" / entry["version"]).glob("*.parquet"))
    table = pq.read_table(file)
    pq.write_table(table.set_column(0, "place_code", pa.array(range(table.num_rows))), file)
    done = joinedup("warehouse", "info", "-w", str(copy), cwd=tmp_path)
    assert done.returncode == 2
    assert "table place, column place_code" in flat(done.stderr)


def test_a_missing_lake_is_refused_with_how_to_make_one(tmp_path: Path) -> None:
    done = joinedup("phm", "run", "-w", "nowhere/", cwd=tmp_path)
    assert done.returncode == 2
    assert "no lake at nowhere" in flat(done.stderr)
