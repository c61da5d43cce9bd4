"""Engines: where canonical tables live and analytics run (DuckDB by default, or Spark).

The Spark module imports pyspark only when a `SparkEngine` is made, so DuckDB users never
load it.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from sqlglot import exp

from joinedup.errors import ConfigurationError, JoinedupError
from joinedup.warehouse import registry
from joinedup.warehouse.engines.base import Engine, machine_memory
from joinedup.warehouse.engines.duckdb import DuckDBEngine
from joinedup.warehouse.engines.lake import LakeEngine
from joinedup.warehouse.engines.spark import SparkEngine, canonical_parquet_files
from joinedup.warehouse.lake import MANIFEST, Lake, Manifest, is_lake

ENGINE_KINDS = ("duckdb", "spark")


def default_memory_limit(
    budget_share: float = 0.25, outside_mb: int = 2560, floor_mb: int = 2048
) -> str:
    """DuckDB's default memory limit for a job: the job as a whole is meant to fit in a quarter
    of this machine's RAM, so DuckDB's buffer pool gets that budget less `outside_mb` (2.5 GB)
    for what the process holds outside the pool, and at least 2 GB. Outside the pool are Python
    and its libraries (0.25 GB), the risk model's bounded samples and batches, and DuckDB's own
    allocations beyond its accounting: the whole process peaked 1.9 GB above the limit in
    `phm run` at 5 million people (docs/scale.md). Beyond the limit DuckDB spills to disk;
    within a larger one it keeps what it reads cached, so peak memory grows with the
    population for no gain in speed that we measured."""
    budget_mb = int(machine_memory() * budget_share / 2**20)
    return f"{max(floor_mb, budget_mb - outside_mb)}MB"


def stored_table(name: str) -> bool:
    """Whether a job keeps table `name` in the store: a table the registry declares, rather
    than a working table of one run."""
    table = registry.lookup(name)
    return table is not None and not table.scratch and table.store == "warehouse"


def _rebuilt_by_the_job(name: str, columns: list[str], writing: bool) -> bool:
    """Whether a table written by an older version may stay for now: only when opened to
    write, and only a job's output (the job that writes it again replaces it); the canonical
    tables, which every job reads, are refused."""
    table = registry.lookup(name)
    return (
        writing
        and table is not None
        and table.kind != "canonical"
        and registry.outdated(name, columns) is not None
    )


def _registry_differences(name: str, schema: pa.Schema, *, writing: bool = False) -> list[str]:
    table = registry.lookup(name)
    if table is None or table.is_pattern:  # a view's table: its ViewDefinition types it
        return []
    if _rebuilt_by_the_job(name, schema.names, writing):
        return []
    return [f"table {d}" for d in registry.check(name, schema)]


def outdated_tables(engine: Engine, *, writing: bool = False) -> str | None:
    """One line naming a table of the warehouse written by an older version of joinedup (a
    column since renamed, `registry.RENAMED_COLUMNS`) and the command that rebuilds it; None
    when there is none. Opened to write, only the canonical tables count (`writing`)."""
    have = set(engine.table_names())
    for name in registry.RENAMED_COLUMNS:
        if name not in have or not stored_table(name):
            continue
        columns = engine.execute(exp.select("*").from_(name).limit(0)).column_names
        line = registry.outdated(name, columns)
        if line is not None and not _rebuilt_by_the_job(name, columns, writing):
            return line
    return None


def open_lake(
    kind: str,
    root: Path,
    *,
    read_only: bool = True,
    spark_master: str = "local[*]",
    memory_limit: str | None = None,
) -> LakeEngine:
    """An engine of `kind` over the lake at `root`."""
    lake = Lake(root)
    if not lake.exists():
        raise JoinedupError(
            f"no lake at {root} (no {MANIFEST}): build one with `joinedup synth --warehouse "
            f"{root}/` or `joinedup warehouse copy FILE.duckdb {root}/`"
        )

    def make_inner(scratch: Path) -> Engine:
        if kind == "duckdb":
            return DuckDBEngine(
                memory_limit=memory_limit or default_memory_limit(), temp_directory=scratch
            )
        if kind == "spark":
            return SparkEngine(spark_master)
        raise ConfigurationError(f"unknown engine {kind!r}; choose from {', '.join(ENGINE_KINDS)}")

    def check(lake: Lake, manifest: Manifest) -> None:
        lake.check(
            manifest,
            stored_table,
            lambda name, schema: _registry_differences(name, schema, writing=not read_only),
        )

    return LakeEngine(lake, make_inner, stored=stored_table, read_only=read_only, check=check)


def open_engine(
    kind: str,
    *,
    warehouse: Path | None = None,
    read_only: bool = True,
    spark_master: str = "local[*]",
    parquet_dir: Path | None = None,
    memory_limit: str | None = None,
) -> Engine:
    """Open an engine over the warehouse's tables.

    A `warehouse` that is a lake (a folder; see `joinedup.warehouse.lake`) is opened with
    either engine. A DuckDB file is opened by `duckdb` only. `duckdb` without a warehouse is
    in memory, loading `parquet_dir` if given; `spark` with `parquet_dir` registers the
    Parquet tables there (read only). DuckDB works within `memory_limit` (e.g. "2GB"; beyond
    it, it spills to disk).
    """
    if warehouse is not None and is_lake(warehouse):
        if parquet_dir is not None:
            raise ConfigurationError("give a warehouse or a Parquet directory, not both")
        return open_lake(
            kind,
            warehouse,
            read_only=read_only,
            spark_master=spark_master,
            memory_limit=memory_limit,
        )
    if kind == "duckdb":
        if warehouse is not None and parquet_dir is not None:
            raise ConfigurationError("give a DuckDB engine a warehouse or a Parquet directory")
        duck = DuckDBEngine(
            warehouse,
            read_only=read_only and warehouse is not None,
            # Jobs that write get the default limit; a reader (the dashboard) keeps DuckDB's
            # own, so other read-only connections in one process open the file alike.
            memory_limit=memory_limit or (None if read_only else default_memory_limit()),
        )
        if parquet_dir is not None:
            for name, files in canonical_parquet_files(parquet_dir).items():
                duck.load_parquet(name, files)
        if warehouse is not None:
            older = outdated_tables(duck, writing=not read_only)
            if older is not None:
                duck.close()
                raise JoinedupError(f"{warehouse}: {older}")
        return duck
    if kind == "spark":
        if warehouse is not None:
            raise ConfigurationError(
                f"the Spark engine reads a lake, not a DuckDB file ({warehouse}): copy it with "
                f"`joinedup warehouse copy {warehouse} lake/` and give --warehouse lake/"
            )
        if parquet_dir is None:
            raise ConfigurationError(
                "the Spark engine reads a lake: give --warehouse DIR/ (a folder written by "
                "`joinedup synth` or `joinedup warehouse copy`)"
            )
        return SparkEngine.from_parquet_dir(parquet_dir, master=spark_master)
    raise ConfigurationError(f"unknown engine {kind!r}; choose from {', '.join(ENGINE_KINDS)}")


def open_empty_engine(kind: str, *, spark_master: str = "local[2]") -> Engine:
    """An engine with no tables yet, for work that loads its own (FHIR resources, a code
    list): DuckDB in memory, or a Spark session at `spark_master`."""
    if kind == "duckdb":
        return DuckDBEngine()
    if kind == "spark":
        return SparkEngine(spark_master)
    raise ConfigurationError(f"unknown engine {kind!r}; choose from {', '.join(ENGINE_KINDS)}")


__all__ = [
    "ENGINE_KINDS",
    "DuckDBEngine",
    "Engine",
    "LakeEngine",
    "SparkEngine",
    "canonical_parquet_files",
    "default_memory_limit",
    "open_empty_engine",
    "open_engine",
    "open_lake",
    "stored_table",
]
