"""Engines: where canonical tables live and analytics run (DuckDB by default, or Spark).

The Spark module imports pyspark only when a `SparkEngine` is made, so DuckDB users never
load it.
"""

from __future__ import annotations

from pathlib import Path

from joinedup.errors import ConfigurationError
from joinedup.warehouse.engines.base import Engine
from joinedup.warehouse.engines.duckdb import DuckDBEngine
from joinedup.warehouse.engines.spark import SparkEngine, canonical_parquet_files

ENGINE_KINDS = ("duckdb", "spark")


def open_engine(
    kind: str,
    *,
    warehouse: Path | None = None,
    read_only: bool = True,
    spark_master: str = "local[2]",
    parquet_dir: Path | None = None,
    memory_limit: str | None = None,
) -> Engine:
    """Open an engine over the canonical tables.

    `duckdb` opens the `warehouse` file (or memory, loading `parquet_dir` if given), within
    `memory_limit` (e.g. "2GB"; beyond it DuckDB spills to disk) when given; `spark`
    starts a session at `spark_master` and registers the Parquet tables in `parquet_dir`.
    """
    if kind == "duckdb":
        if warehouse is not None and parquet_dir is not None:
            raise ConfigurationError("give a DuckDB engine a warehouse or a Parquet directory")
        duck = DuckDBEngine(
            warehouse, read_only=read_only and warehouse is not None, memory_limit=memory_limit
        )
        if parquet_dir is not None:
            for name, files in canonical_parquet_files(parquet_dir).items():
                duck.load_parquet(name, files)
        return duck
    if kind == "spark":
        if parquet_dir is None:
            raise ConfigurationError(
                "the Spark engine reads Parquet: give --parquet DIR (a warehouse exported "
                "with one <table>.parquet or <table>/ folder per canonical table)"
            )
        if warehouse is not None:
            raise ConfigurationError(
                "the Spark engine cannot open a DuckDB file; export it to Parquet and give "
                "--parquet DIR instead"
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
    "SparkEngine",
    "canonical_parquet_files",
    "open_empty_engine",
    "open_engine",
]
