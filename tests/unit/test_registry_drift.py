"""The registry cannot drift from the jobs: on a small world, `synth`, `phm run`, `finance run`,
`users add` and `ingest fhir` run as a user runs them, and every table they leave must be
registered and hold exactly its declared columns, types and nulls; every working table they
drop must be registered as one; and every registered table must be written by one of them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
from sqlglot import exp
from typer.testing import CliRunner

from joinedup.cli import app
from joinedup.warehouse import open_engine
from joinedup.warehouse.engines.duckdb import DuckDBEngine
from joinedup.warehouse.registry import REGISTRY, check, conform, lookup

#: About 30 s of CPU: out of `make test-fast`, in `make test` and CI.
pytestmark = pytest.mark.slow

PEOPLE = 1_000
SEED = 3
SYNTHEA = Path(__file__).resolve().parents[1] / "data" / "synthea"
#: SQLite's declared column types as Arrow (the access store declares TEXT and INTEGER, and
#: DATE for a day kept as ISO text, which SQLite leaves as text).
SQLITE_TYPES = {"TEXT": pa.string(), "INTEGER": pa.int64(), "DATE": pa.date32()}


@dataclass(frozen=True)
class World:
    """The files the jobs wrote, and the working tables they dropped (seen just before)."""

    synthetic: Path  # synth, phm run, finance run, users add
    fhir: Path  # ingest fhir into a new warehouse
    access: Path  # the access store beside the synthetic warehouse
    dropped: dict[str, pa.Schema]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("registry")
    synthetic, fhir = folder / "ics.duckdb", folder / "fhir.duckdb"
    dropped: dict[str, pa.Schema] = {}
    drop = DuckDBEngine.drop

    def noting_drop(engine: DuckDBEngine, name: str) -> None:
        if name in _file_tables(engine):
            query = exp.select("*").from_(exp.to_table(name)).limit(0)
            dropped[name] = engine.execute(query).schema
        drop(engine, name)

    commands = (
        ("synth", "--people", str(PEOPLE), "--seed", str(SEED), "--workers", "1"),
        ("phm", "run"),
        ("finance", "run"),
        ("users", "add", "registry-test", "--role", "analyst"),
    )
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DuckDBEngine, "drop", noting_drop)
        patch.setenv("JOINEDUP_NEW_PASSWORD", "a long enough password")
        patch.delenv("JOINEDUP_WAREHOUSE", raising=False)
        patch.chdir(folder)
        for args in commands:
            result = runner.invoke(app, [*args, "-w", str(synthetic)])
            assert result.exit_code == 0, f"{' '.join(args)}: {result.output}"
        result = runner.invoke(app, ["ingest", "fhir", str(SYNTHEA), "-w", str(fhir)])
        assert result.exit_code == 0, f"ingest fhir: {result.output}"
    access = synthetic.with_name(synthetic.name + ".access.sqlite")
    yield World(synthetic, fhir, access, dropped)


def _file_tables(engine: DuckDBEngine) -> set[str]:
    """Tables in the warehouse file: not the session's TEMPORARY ones (`load_session`)."""
    query = (
        exp.select("table_name")
        .from_(exp.to_table("information_schema.tables"))
        .where(exp.column("table_catalog").neq(exp.Literal.string("temp")))
    )
    return {r["table_name"] for r in engine.execute(query).to_pylist()}


def _written(path: Path) -> dict[str, pa.Table]:
    with open_engine("duckdb", warehouse=path) as engine:
        return {
            name: engine.execute(exp.select("*").from_(exp.to_table(name)))
            for name in engine.table_names()
        }


def _declared_not_null(path: Path) -> set[tuple[str, str]]:
    """Columns the DuckDB file itself declares NOT NULL."""
    query = (
        exp.select("table_name", "column_name")
        .from_(exp.to_table("information_schema.columns"))
        .where(exp.column("is_nullable").eq(exp.Literal.string("NO")))
    )
    with open_engine("duckdb", warehouse=path) as engine:
        return {(r["table_name"], r["column_name"]) for r in engine.execute(query).to_pylist()}


def _access_tables(path: Path) -> dict[str, list[tuple[str, str, bool]]]:
    """Each table of the SQLite access store: (column, declared type, NOT NULL) in order."""
    with sqlite3.connect(path) as con:
        names = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {
            name: [
                (str(c[1]), str(c[2]), bool(c[3] or c[5]))
                for c in con.execute("SELECT * FROM pragma_table_info(?)", (name,))
            ]
            for name in names
        }


def test_every_table_a_job_leaves_is_registered_and_as_declared(world: World) -> None:
    problems: list[str] = []
    for path in (world.synthetic, world.fhir):
        for name, data in _written(path).items():
            differences = check(name, data.schema)
            if differences:
                problems += differences
                continue
            try:
                conform(name, data)  # values cast and declared non-null columns hold no null
            except ValueError as err:
                problems.append(str(err))
    assert problems == [], "\n".join(problems)


def test_columns_the_file_declares_not_null_are_registered_not_null(world: World) -> None:
    problems = [
        f"{table}.{column}: NOT NULL in {path.name}, registered nullable"
        for path in (world.synthetic, world.fhir)
        for table, column in sorted(_declared_not_null(path))
        if (found := lookup(table)) is not None
        and (registered := found.column(column)) is not None
        and registered.nullable
    ]
    assert problems == [], "\n".join(problems)


def test_every_working_table_a_job_drops_is_registered_as_working(world: World) -> None:
    assert {"phm_person_train", "fhir_current", "v_patient"} <= set(world.dropped)
    for name in world.dropped:
        found = lookup(name)
        assert found is not None, f"{name}: dropped by a job but not registered"
        assert found.scratch, f"{name}: dropped by a job but registered as a kept table"


def test_the_access_store_is_as_registered(world: World) -> None:
    tables = _access_tables(world.access)
    problems: list[str] = []
    for name, columns in tables.items():
        found = lookup(name)
        if found is None or found.store != "access":
            problems.append(f"{name}: in the access store but not registered there")
            continue
        arrow = pa.schema([(c, SQLITE_TYPES[t]) for c, t, _ in columns])
        problems += check(name, arrow)
        problems += [
            f"{name}.{c}: NOT NULL in the access store, registered nullable"
            for c, _, not_null in columns
            if not_null and (column := found.column(c)) is not None and column.nullable
        ]
    assert problems == [], "\n".join(problems)


def test_every_registered_table_is_written_by_these_jobs(world: World) -> None:
    """No dead entries: each registered table (and each working table) turned up."""
    seen = set(_written(world.synthetic)) | set(_written(world.fhir))
    seen |= set(_access_tables(world.access)) | set(world.dropped)
    unseen = [t.name for t in REGISTRY if not any(t.matches(name) for name in seen)]
    assert unseen == []
