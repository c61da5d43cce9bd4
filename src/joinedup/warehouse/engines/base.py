"""The one interface every analytic runs through.

An analytic is written once, as a sqlglot syntax tree over the canonical tables; each engine
renders it in its own dialect and returns an Arrow table. Engines differ only in where the
tables live (a DuckDB file or memory; Spark views over Parquet or Arrow) and how SQL is run.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pyarrow as pa
from sqlglot import exp

from joinedup.warehouse.schema import Table


class Engine(ABC):
    """A place where canonical tables live and analytics execute."""

    #: sqlglot dialect the engine speaks.
    dialect: str = ""
    #: short name shown to users and in benchmark results.
    name: str = ""

    @abstractmethod
    def load(self, name: str, data: pa.Table) -> None:
        """Make `data` available as table `name`, replacing any table of that name."""

    def append(self, name: str, data: pa.Table) -> None:
        """Append Arrow rows to stored table `name`; engines over read-only views say so."""
        raise NotImplementedError(f"the {self.name} engine cannot append to stored tables")

    def load_session(self, name: str, data: pa.Table) -> None:
        """Make a small lookup table (a code list, say) available to this session only, never
        stored with the canonical tables. Engines whose `load` is session-only need not
        override this."""
        self.load(name, data)

    @abstractmethod
    def load_parquet(self, name: str, files: Iterable[Path]) -> None:
        """Make the Parquet `files` available as table `name`, replacing any of that name."""

    def view_parquet(self, name: str, files: Iterable[Path]) -> None:
        """Table `name` as a view over Parquet `files`, read in place (a lake's tables)."""
        raise NotImplementedError(f"the {self.name} engine cannot read Parquet in place")

    def write_parquet(self, query: exp.Query, folder: Path) -> None:
        """Write the rows of `query` as Parquet files in `folder`, inside the engine."""
        raise NotImplementedError(f"the {self.name} engine cannot write Parquet")

    @abstractmethod
    def execute(self, query: exp.Query) -> pa.Table:
        """Run a query and return its result as Arrow."""

    def materialise(self, name: str, query: exp.Query) -> None:
        """Store the result of `query` as table `name`, replacing any of that name. Engines that
        can do it without moving rows through Python override this."""
        self.load(name, self.execute(query))

    def materialise_now(self, name: str, query: exp.Query) -> None:
        """Store the result of `query` as table `name`, computed now and kept: for working
        tables read again and again (an iterative computation), which an engine whose
        `materialise` is a lazy view would compute afresh at each read."""
        self.materialise(name, query)

    def map_batches(
        self,
        name: str,
        query: exp.Query,
        fn: Callable[[pa.RecordBatch], pa.RecordBatch],
        schema: pa.Schema,
    ) -> None:
        """Store as table `name` what `fn` makes of the rows of `query`, one Arrow batch at a
        time (work SQL cannot do, such as scoring a model), never the whole result in Python.
        `fn` returns batches with exactly `schema`; it may run in other processes (Spark's
        executors), so it must pickle. Engines that cannot do it say so."""
        raise NotImplementedError(f"the {self.name} engine cannot map batches through Python")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make the writes inside the block all-or-nothing where the engine can (DuckDB);
        engines whose tables are session views have nothing to protect."""
        yield

    def load_json_lines(self, name: str, files: Iterable[Path]) -> None:
        """Session table or view `name` with one JSON value per line of the (optionally gzipped)
        files, in column `json`, read inside the engine; engines that cannot say so."""
        raise NotImplementedError(f"the {self.name} engine cannot read JSON lines itself")

    def read_json_columns(
        self,
        name: str,
        files: Iterable[Path],
        columns: dict[str, exp.DataType],
        *,
        filename: bool = False,
    ) -> None:
        """Session view `name` of the (optionally gzipped) NDJSON files read into `columns`
        (each line's keys of those names, as those types; other keys are not kept), with the
        file's name in column `filename` when asked. Reading it fails on a line whose value
        has another shape (an array where a STRUCT is named). Engines that cannot say so."""
        raise NotImplementedError(f"the {self.name} engine cannot read typed JSON lines itself")

    @contextmanager
    def staging(self, path: Path) -> Iterator[str | None]:
        """A scratch database in the file `path` for working tables too large for memory,
        beside the engine's own tables while the block runs: yields the schema to name them
        in, or None where working tables are the session's own (Spark's views)."""
        yield None

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of `sql`, in this engine's own dialect, as Python tuples (small results:
        counts, a key)."""
        return [tuple(r.values()) for r in self.execute_text(sql).to_pylist()]

    def execute_text(self, sql: str) -> pa.Table:
        """Run SQL in this engine's own dialect; engines that only take syntax trees say so."""
        raise NotImplementedError(f"the {self.name} engine runs syntax trees only")

    def stream(self, query: exp.Query | str, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        """The rows of `query` in batches, for results too large to hold at once. A `str` is
        SQL in this engine's own dialect, for work written for one engine only (FHIR export).
        Engines that cannot stream say so."""
        raise NotImplementedError(f"the {self.name} engine cannot stream query results")

    def run(self, statement: exp.Expression | str) -> None:
        """Run a statement that returns no rows (INSERT, DELETE, CREATE); a `str` is SQL in
        this engine's own dialect. Engines whose tables are read-only views say so."""
        raise NotImplementedError(f"the {self.name} engine cannot change stored tables")

    def splink_api(self) -> Any:
        """Splink's database API over this engine's own connection or session, so probabilistic
        linkage (`joinedup.linkage`) runs inside the engine; engines Splink has no backend for
        say so."""
        raise NotImplementedError(f"the {self.name} engine has no Splink backend")

    @abstractmethod
    def drop(self, name: str) -> None:
        """Forget table `name`; no error when there is none."""

    @abstractmethod
    def table_names(self) -> list[str]:
        """Tables (or views) the engine can see."""

    def close(self) -> None:  # noqa: B027 - engines without resources need not override
        """Release connections and sessions."""

    def render(self, query: exp.Query) -> str:
        """The SQL this engine would run for `query` (for logs and debugging)."""
        return query.sql(dialect=self.dialect)

    def count(self, name: str) -> int:
        result = self.execute(exp.select(exp.func("count", exp.Star()).as_("n")).from_(name))
        return int(result.column("n")[0].as_py())

    def missing_tables(self, tables: Iterable[Table]) -> list[str]:
        have = set(self.table_names())
        return [t.name for t in tables if t.name not in have]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def machine_memory() -> int:
    """This machine's RAM in bytes (8 GB where the system will not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30
