"""Apache Spark: the same analytics over Parquet on a laptop (local[N]) or a cluster.

pyspark is imported only when a SparkEngine is made, so DuckDB users never pay for it.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlglot import exp

from joinedup.errors import JoinedupError
from joinedup.warehouse.engines.base import Engine, machine_memory
from joinedup.warehouse.schema import ALL_TABLES, Table

_NEEDS_JAVA = "install Java 17+ (`make test` installs it)"

#: Settings for a small, quiet, UTC session; `config` overrides any of them.
DEFAULT_CONFIG: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Timestamps as Parquet's standard microsecond type (not the legacy INT96) and dates
    # without calendar rebasing, so DuckDB, pyarrow and Spark read a lake alike.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    # Writes leave only Parquet files and no _SUCCESS marker in a lake's version folder.
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    "spark.hadoop.parquet.summary.metadata.level": "NONE",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.driver.memory": "2g",
    # Spark's own catalogue folder in the system's temporary folder, not the user's.
    "spark.sql.warehouse.dir": str(Path(tempfile.gettempdir()) / "joinedup-spark-warehouse"),
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    # Spark 4.x's RemoveRedundantAliases can leave an unresolved plan (an internal error,
    # PLAN_VALIDATION_FAILED_RULE_IN_BATCH) for UNION ALLs of aggregates over one view, which
    # the segment and inequality breakdowns are; the rule is an optimisation, so skip it.
    "spark.sql.optimizer.excludedRules": (
        "org.apache.spark.sql.catalyst.optimizer.RemoveRedundantAliases"
    ),
}
#: Extra settings for local mode, where a few partitions beat Spark's default of 200.
LOCAL_CONFIG: dict[str, str] = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
}


class SparkEngine(Engine):
    """Runs analytics in Spark; `master` is passed through (local[N], spark://, yarn, k8s://)."""

    dialect = "spark"
    name = "spark"

    def __init__(
        self,
        master: str = "local[2]",
        app_name: str = "joinedup",
        config: Mapping[str, str] | None = None,
    ) -> None:
        try:
            from pyspark.sql import SparkSession  # noqa: PLC0415 - only Spark users load it
        except ImportError as err:
            raise JoinedupError(
                "the Spark engine needs pyspark: pip install 'joinedup[spark]'"
            ) from err
        if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
            raise JoinedupError(f"Spark needs Java and none was found: {_NEEDS_JAVA}")
        _check_master(master)
        settings = {**DEFAULT_CONFIG, **(LOCAL_CONFIG if master.startswith("local") else {})}
        settings.update(config or {})
        jar = _splink_similarity_jar()
        if jar is not None and "spark.jars" not in settings:
            # Splink's string similarity functions (Jaro-Winkler and others) for linkage are
            # Java functions; the driver loads them only from a jar given at start.
            settings["spark.jars"] = jar
        if master.startswith("local") and not (config or {}).get("spark.driver.memory"):
            # In local mode the driver is the executor too: 2 GB runs out on a million people
            # (docs/scale.md), so give it a quarter of the machine's RAM.
            settings["spark.driver.memory"] = f"{max(2048, machine_memory() // 2**22)}m"
        if master.startswith("local"):
            # Local Python workers (map_batches) run this interpreter, which has joinedup,
            # rather than whatever `python3` is first on the PATH.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # A session already running (a notebook, another engine) is reused and left running.
        self._owns_session = SparkSession.getActiveSession() is None
        builder = SparkSession.builder.master(master).appName(app_name)
        for key, value in settings.items():
            builder = builder.config(key, value)
        try:
            self.session: Any = builder.getOrCreate()
        except Exception as err:  # py4j and pyspark raise many kinds when the JVM will not start
            first = next((line for line in str(err).splitlines() if line.strip()), "")
            raise JoinedupError(
                f"cannot start Spark at {master}: {first.strip()[:300]}. If Java is missing or "
                "older than 17, " + _NEEDS_JAVA
            ) from err
        self.session.sparkContext.setLogLevel("ERROR")
        self.master = master
        # The views this engine made: in a session it shares (a notebook's, another engine's)
        # they are forgotten on close, so the next engine never reads this one's tables (a
        # second lake opened in the session would otherwise see the first lake's fhir_load).
        self._views: set[str] = set()

    @classmethod
    def from_parquet_dir(
        cls,
        directory: Path,
        master: str = "local[2]",
        app_name: str = "joinedup",
        config: Mapping[str, str] | None = None,
    ) -> SparkEngine:
        """A session with every canonical table found under `directory` registered as a view."""
        found = canonical_parquet_files(directory)
        engine = cls(master, app_name, config)
        for name, files in found.items():
            engine.load_parquet(name, files)
        return engine

    def load(self, name: str, data: pa.Table) -> None:
        self._keep(name, self.session.createDataFrame(data))

    def load_parquet(self, name: str, files: Iterable[Path]) -> None:
        paths = [str(f) for f in files]
        if not paths:
            raise JoinedupError(f"no Parquet files to read for table {name}")
        self.session.read.parquet(*paths).createOrReplaceTempView(name)
        self._views.add(name)

    def execute(self, query: exp.Query) -> pa.Table:
        sql = query.sql(dialect=self.dialect)
        try:
            result = self.session.sql(sql).toArrow()
        except Exception as err:
            if "TABLE_OR_VIEW_NOT_FOUND" in str(err):
                raise JoinedupError(f"Spark lacks a table this needs: {err}") from err
            raise
        return _normalise(result)

    def materialise(self, name: str, query: exp.Query) -> None:
        """A temporary view of the query: Spark computes it where the data are, lazily,
        without collecting rows to the driver."""
        self._keep(name, self.session.sql(query.sql(dialect=self.dialect)))

    def materialise_now(self, name: str, query: exp.Query) -> None:
        """The query's rows computed now and kept in the executors (a local checkpoint, which
        also cuts the plan's lineage), so later reads neither recompute nor re-plan them."""
        frame = self.session.sql(query.sql(dialect=self.dialect))
        self._keep(name, frame.localCheckpoint(eager=True))

    def map_batches(
        self,
        name: str,
        query: exp.Query,
        fn: Callable[[pa.RecordBatch], pa.RecordBatch],
        schema: pa.Schema,
    ) -> None:
        """`mapInArrow`: the executors apply `fn` to their own partitions' batches, so no row
        passes through the driver."""
        from pyspark.sql.pandas.types import from_arrow_schema  # noqa: PLC0415 - see __init__

        frame = self.session.sql(query.sql(dialect=self.dialect))
        self._keep(name, frame.mapInArrow(functools.partial(_each, fn), from_arrow_schema(schema)))

    def _keep(self, name: str, frame: Any) -> None:
        """Keep `frame` as table `name`: the one place a computed or loaded frame is stored."""
        frame.createOrReplaceTempView(name)
        self._views.add(name)

    def view_parquet(self, name: str, files: Iterable[Path]) -> None:
        """Table `name` as a view over Parquet `files` (a lake's current version)."""
        self.load_parquet(name, files)

    def write_parquet(self, query: exp.Query, folder: Path) -> None:
        """Write the rows of `query` into `folder` as Parquet: the executors write their own
        partitions; nothing passes through the driver."""
        frame = self.session.sql(query.sql(dialect=self.dialect))
        frame.write.mode("overwrite").parquet(str(folder))

    def table_names(self) -> list[str]:
        return sorted(t.name for t in self.session.catalog.listTables())

    def drop(self, name: str) -> None:
        """Forget the view `name` (no error if there is none)."""
        self.session.catalog.dropTempView(name)
        self._views.discard(name)

    def splink_api(self) -> Any:
        """Splink's Spark API over this engine's session. Splink's intermediate tables are
        persisted in the session (not checkpointed to files in the working directory)."""
        from splink import SparkAPI  # noqa: PLC0415 - only linkage loads Splink

        return SparkAPI(spark_session=self.session, break_lineage_method="persist")  # type: ignore[no-untyped-call]

    def drop_all(self) -> None:
        """Forget every temporary view, leaving the session running."""
        for t in self.session.catalog.listTables():
            if t.isTemporary:
                self.session.catalog.dropTempView(t.name)

    def close(self) -> None:
        if self._owns_session:
            self.session.stop()
            return
        for name in sorted(self._views):
            self.session.catalog.dropTempView(name)
        self._views.clear()


def _splink_similarity_jar() -> str | None:
    """Splink's jar of similarity functions for this Spark, or None without Splink."""
    try:
        from splink.backends.spark import similarity_jar_location  # noqa: PLC0415
    except ImportError:
        return None
    return str(similarity_jar_location())


_MASTER_PREFIXES = ("local", "spark://", "yarn", "k8s://", "mesos://")
_CONNECT_SECONDS = 5.0


def _check_master(master: str) -> None:
    """Refuse, in one line naming the address, a master Spark would spend minutes retrying:
    an unknown kind, or a standalone `spark://host:port` master no socket reaches."""
    if not master.startswith(_MASTER_PREFIXES):
        raise JoinedupError(
            f"--spark-master {master!r} is not a Spark master URL: use local[N], "
            "spark://host:port, yarn or k8s://..."
        )
    if not master.startswith("spark://"):
        return
    reasons = []
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise JoinedupError(f"--spark-master {master!r}: {address!r} is not host:port")
        try:
            with socket.create_connection((host, int(port)), timeout=_CONNECT_SECONDS):
                return
        except OSError as err:
            reasons.append(f"{address}: {err.strerror or err}")
    raise JoinedupError(f"cannot reach the Spark master at {master} ({'; '.join(reasons)})")


def _each(
    fn: Callable[[pa.RecordBatch], pa.RecordBatch], batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """`fn` over each batch of a partition (module level, so executors unpickle it by name)."""
    for batch in batches:
        yield fn(batch)


def _normalise(table: pa.Table) -> pa.Table:
    """Arrow types as DuckDB returns them: nullable fields, date32, string, int64 counts."""
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_date64(t):
            t = pa.date32()
        elif pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        fields.append(pa.field(f.name, t, nullable=True))
    schema = pa.schema(fields)
    return table if schema == table.schema else table.cast(schema)


def canonical_parquet_files(
    directory: Path, tables: Iterable[Table] = ALL_TABLES
) -> dict[str, list[Path]]:
    """Parquet files for each canonical table under `directory`.

    A table is `<dir>/<table>/*.parquet` (e.g. written by Spark) or `<dir>/<table>.parquet`.
    Tables with neither are left out; finding none at all is an error.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise JoinedupError(f"Parquet directory {directory} does not exist")
    found: dict[str, list[Path]] = {}
    for t in tables:
        folder, single = directory / t.name, directory / f"{t.name}.parquet"
        files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        if files:
            found[t.name] = files
        elif single.is_file():
            found[t.name] = [single]
    if not found:
        raise JoinedupError(
            f"no canonical tables in {directory}: expected <table>.parquet or <table>/*.parquet "
            "(export a warehouse with `joinedup warehouse export`)"
        )
    return found
