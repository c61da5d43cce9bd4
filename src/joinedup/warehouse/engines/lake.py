"""An engine over a lake: DuckDB or Spark queries the lake's Parquet; writes are versioned.

`LakeEngine` wraps the engine that runs the SQL (DuckDB in memory, or a Spark session) and
keeps the tables in a `Lake`. On opening it reads the manifest once, pins those versions and
shows each table as a view over its files. A table a job writes (one the schema registry
knows) goes to a new version folder, written by the engine itself (DuckDB's COPY, Spark's
executors), and the view is pointed at it; the manifest changes only when the job's
transaction commits, so every reader, and a job killed at any point, sees the old tables or
the new. Intermediate tables stay in the session (DuckDB, which spills to the run's scratch
folder) or are checkpointed to Parquet in the scratch folder (Spark, so a long plan is cut
and nothing is recomputed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from joinedup.errors import JoinedupError
from joinedup.warehouse import registry
from joinedup.warehouse.engines.base import Engine
from joinedup.warehouse.lake import Lake, LakeWrite, Manifest, loosen, scratch_root
from joinedup.warehouse.scratch import scratch_folder


class LakeEngine(Engine):
    """Queries through `inner`; tables live in `lake`. `stored(name)` says which tables a job
    keeps in the lake (the registry's); others are the run's intermediates."""

    def __init__(
        self,
        lake: Lake,
        make_inner: Callable[[Path], Engine],
        *,
        stored: Callable[[str], bool],
        read_only: bool = True,
        check: Callable[[Lake, Manifest], None] | None = None,
    ) -> None:
        """`make_inner(scratch)` opens the query engine, given this run's scratch folder (for
        DuckDB's spill files)."""
        self.lake = lake
        self.read_only = read_only
        self._stored = stored
        self._stack = ExitStack()
        self._pin = ExitStack()
        self._write: LakeWrite | None = None
        self._write_stack: ExitStack | None = None
        self.inner: Engine | None = None
        try:
            self.manifest = lake.manifest()
            if check is not None:
                check(lake, self.manifest)
            self._pin.enter_context(lake.pinned(self.manifest))
            self._scratch = self._stack.enter_context(scratch_folder(scratch_root(lake), "run"))
            self.inner = make_inner(self._scratch)
            self.dialect = self._q.dialect
            self.name = self._q.name
            self._attach_current()
        except BaseException:
            self.close()
            raise

    @property
    def _q(self) -> Engine:
        assert self.inner is not None
        return self.inner

    # ---- reading -------------------------------------------------------------------------

    def _attach_current(self) -> None:
        for name, entry in self.manifest.tables.items():
            self._q.view_parquet(name, self.lake.files(entry))

    def execute(self, query: exp.Query) -> pa.Table:
        return self._q.execute(query)

    def execute_text(self, sql: str) -> pa.Table:
        return self._q.execute_text(sql)

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        return self._q.fetch(sql)

    def stream(self, query: exp.Query | str, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        return self._q.stream(query, batch_rows)

    def render(self, query: exp.Query) -> str:
        return self._q.render(query)

    def table_names(self) -> list[str]:
        return self._q.table_names()

    def count(self, name: str) -> int:
        return self._q.count(name)

    def load_session(self, name: str, data: pa.Table) -> None:
        self._q.load_session(name, data)

    def load_parquet(self, name: str, files: Any) -> None:
        self._q.view_parquet(name, files)

    def view_parquet(self, name: str, files: Any) -> None:
        self._q.view_parquet(name, files)

    # ---- writing -------------------------------------------------------------------------

    def _refuse_if_read_only(self, name: str) -> None:
        if self.read_only:
            raise JoinedupError(f"lake {self.lake.root} is open read-only; cannot write {name}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Every table written inside the block becomes current at once when it ends, or
        none does (an error, an interrupt, or the process killed)."""
        if self._write is not None:  # nested: the outer block commits
            yield
            return
        self._refuse_if_read_only("tables")
        stack = ExitStack()
        self._write = stack.enter_context(self.lake.writing())
        self._write_stack = stack
        try:
            yield
            self.manifest = self._write.commit()
            self._repin()
        except BaseException:
            self._write = None
            stack.close()
            self._write_stack = None
            self._reattach_after_abort()
            raise
        self._write = None
        self._write_stack = None
        stack.close()

    def _reattach_after_abort(self) -> None:
        """Views back on the committed versions (the staged ones are gone)."""
        with contextlib.suppress(JoinedupError):
            self.manifest = self.lake.manifest()
        self._attach_current()

    @contextmanager
    def _writing(self) -> Iterator[LakeWrite]:
        """The current write, or one of its own for a single table outside a transaction."""
        if self._write is not None:
            yield self._write
            return
        with self.transaction():
            assert self._write is not None
            yield self._write

    def _scratch_dir(self) -> Path:
        return self._scratch

    def _repin(self) -> None:
        """Hold the versions just committed instead of those read at opening, so the old
        ones can be cleaned up."""
        self._pin.close()
        self._pin = ExitStack()
        self._pin.enter_context(self.lake.pinned(self.manifest))

    def materialise(self, name: str, query: exp.Query) -> None:
        if not self._stored(name):
            if self._q.name == "spark":  # checkpoint: cut the plan, keep rows on disk
                folder = self._scratch_dir() / f"{name}-{uuid.uuid4().hex[:6]}"
                self._q.write_parquet(query, folder)
                self._q.view_parquet(name, sorted(folder.glob("*.parquet")))
            else:
                self._q.materialise(name, query)
            return
        self._refuse_if_read_only(name)
        with self._writing() as write:
            folder = write.stage(name)
            self._q.write_parquet(query, folder)
            self._show_staged(name, folder)

    def map_batches(
        self,
        name: str,
        query: exp.Query,
        fn: Callable[[pa.RecordBatch], pa.RecordBatch],
        schema: pa.Schema,
    ) -> None:
        """The engine's own `map_batches` (DuckDB: batches streamed into a spilling table;
        Spark: `mapInArrow` on the executors), then kept like any other table."""
        if not self._stored(name) and self._q.name != "spark":
            self._q.map_batches(name, query, fn, schema)
            return
        working = f"{name}_mapped_{uuid.uuid4().hex[:6]}"
        self._q.map_batches(working, query, fn, schema)
        try:
            self.materialise(name, exp.select("*").from_(working))
        finally:
            self._q.drop(working)

    def _show_staged(self, name: str, folder: Path) -> None:
        files = sorted(folder.glob("*.parquet"))
        if not files:
            raise JoinedupError(f"table {name}: nothing was written to {folder}")
        self._q.view_parquet(name, files)

    def load(self, name: str, data: pa.Table) -> None:
        if not self._stored(name):
            self._q.load(name, data)
            return
        self._refuse_if_read_only(name)
        with self._writing() as write:
            folder = write.stage(name)
            pq.write_table(self._conform(name, data), folder / "part-00000.parquet")
            self._show_staged(name, folder)

    def append(self, name: str, data: pa.Table) -> None:
        """Add rows to table `name` in a new version: the current files (linked, not copied)
        and one more."""
        if not self._stored(name):
            self._q.append(name, data)
            return
        self._refuse_if_read_only(name)
        with self._writing() as write:
            folder = write.staged(name)
            if folder is None:
                folder = write.stage(name)
                entry = self.manifest.tables.get(name)
                for f in self.lake.files(entry) if entry is not None else []:
                    os.link(f, folder / f.name)
            part = folder / f"part-{uuid.uuid4().hex[:8]}.parquet"
            pq.write_table(self._conform(name, data), part)
            self._show_staged(name, folder)

    def _conform(self, name: str, data: pa.Table) -> pa.Table:
        """Rows for table `name` in its registered columns and types, matched by name."""
        table = registry.lookup(name)
        if table is None or table.is_pattern or table.scratch:
            return data
        return loosen(registry.conform(name, data))

    def drop(self, name: str) -> None:
        self._q.drop(name)
        if self._stored(name) and (
            name in self.manifest.tables
            or (self._write is not None and self._write.staged(name) is not None)
        ):
            self._refuse_if_read_only(name)
            with self._writing() as write:
                write.remove(name)

    def run(self, statement: exp.Expression | str) -> None:
        """Statements on the lake's tables become new versions: CREATE TABLE IF NOT EXISTS
        writes an empty table, INSERT adds a part (the current files linked, not copied),
        DELETE and UPDATE rewrite the table; working tables are the engine's own."""
        if isinstance(statement, str):
            raise JoinedupError(
                f"a lake's tables change through syntax trees only ({self.name} over "
                f"{self.lake.root})"
            )
        name = _target(statement)
        if name is None or not self._stored(name):
            self._q.run(statement)
            return
        self._refuse_if_read_only(name)
        if isinstance(statement, exp.Create):
            if name not in self._q.table_names():
                self.load(name, self._registered(name).arrow_schema().empty_table())
        elif isinstance(statement, exp.Alter) and _renames(statement):
            renames = _renames(statement)
            columns = [exp.column(c).as_(renames.get(c, c)) for c in self._columns(name)]
            self._rewrite(name, exp.select(*columns).from_(name))
        elif isinstance(statement, exp.Alter):
            self._check_columns_exist(name, statement)
        elif isinstance(statement, exp.Insert):
            self._insert(name, statement)
        elif isinstance(statement, exp.Delete):
            where = statement.args.get("where")
            keep = (
                exp.Not(this=exp.Coalesce(this=where.this, expressions=[exp.false()]))
                if where is not None
                else exp.false()
            )
            self._rewrite(name, exp.select("*").from_(name).where(keep))
        elif isinstance(statement, exp.Update):
            self._rewrite(name, self._updated(name, statement))
        else:
            raise JoinedupError(f"{type(statement).__name__} on lake table {name} is not supported")

    def _registered(self, name: str) -> registry.Table:
        table = registry.lookup(name)
        if table is None or table.is_pattern or table.scratch:
            raise JoinedupError(f"table {name} has no registered columns to write in a lake")
        return table

    def _columns(self, name: str) -> list[str]:
        return list(self._q.execute(exp.select("*").from_(name).limit(0)).column_names)

    def _check_columns_exist(self, name: str, statement: exp.Alter) -> None:
        have = set(self._columns(name))
        for action in statement.args.get("actions") or []:
            if isinstance(action, exp.ColumnDef) and action.name not in have:
                raise JoinedupError(
                    f"lake table {name} lacks column {action.name}: it was written by another "
                    "version of joinedup; rebuild it"
                )

    def _insert(self, name: str, statement: exp.Insert) -> None:
        """Rows of the INSERT's query, in the table's registered columns and types (by
        name), as one more part of the table's new version."""
        target = statement.this
        named = [c.name for c in target.expressions] if isinstance(target, exp.Schema) else []
        table = self._registered(name)
        if not named:
            named = table.column_names
        source = statement.expression.subquery(
            exp.TableAlias(
                this=exp.to_identifier("q"), columns=[exp.to_identifier(c) for c in named]
            )
        )
        columns = [
            exp.cast(
                exp.column(c.name, "q") if c.name in named else exp.null(),
                # JSON is kept as plain text: any Parquet reader takes it, and DuckDB's and
                # Spark's JSON functions read text.
                exp.DataType.build("VARCHAR" if c.type == "JSON" else c.type, dialect="duckdb"),
            ).as_(c.name)
            for c in table.columns
            if c.name in named or not c.optional
        ]
        rows = exp.select(*columns).from_(source)
        with self._writing() as write:
            folder = write.staged(name)
            if folder is None:
                folder = write.stage(name)
                entry = self.manifest.tables.get(name)
                for f in self.lake.files(entry) if entry is not None else []:
                    os.link(f, folder / f.name)
            part = folder.with_name(f"{folder.name}.part-{uuid.uuid4().hex[:8]}")
            try:
                self._q.write_parquet(rows, part)
                for f in sorted(part.glob("*.parquet")):
                    f.rename(folder / f"part-{uuid.uuid4().hex[:8]}-{f.name}")
            finally:
                shutil.rmtree(part, ignore_errors=True)
            self._show_staged(name, folder)

    def _updated(self, name: str, statement: exp.Update) -> exp.Select:
        where = statement.args.get("where")
        test = where.this if where is not None else exp.true()
        assigned = {
            a.this.name: a.expression for a in statement.expressions if isinstance(a, exp.EQ)
        }
        columns = [
            (
                exp.Case()
                .when(exp.Coalesce(this=test.copy(), expressions=[exp.false()]), assigned[c])
                .else_(exp.column(c))
                .as_(c)
                if c in assigned
                else exp.column(c)
            )
            for c in self._columns(name)
        ]
        return exp.select(*columns).from_(name)

    def _rewrite(self, name: str, query: exp.Select) -> None:
        """Table `name` replaced by `query`'s rows (which may read its current version)."""
        with self._writing() as write:
            folder = write.stage(name)
            self._q.write_parquet(query, folder)
            self._show_staged(name, folder)

    def staging(self, path: Path) -> Any:
        return self._q.staging(path)

    def load_json_lines(self, name: str, files: Any) -> None:
        self._q.load_json_lines(name, files)

    def close(self) -> None:
        try:
            if self.inner is not None:
                self.inner.close()
        finally:
            if self._write_stack is not None:
                self._write_stack.close()
            self._pin.close()
            self._stack.close()


def _renames(statement: exp.Alter) -> dict[str, str]:
    """Old column name to new, when every action of the ALTER renames a column."""
    actions = statement.args.get("actions") or []
    if not actions or not all(isinstance(a, exp.RenameColumn) for a in actions):
        return {}
    return {a.this.name: a.args["to"].name for a in actions}


def _target(statement: exp.Expression) -> str | None:
    """The table a CREATE, ALTER, INSERT, UPDATE or DELETE writes."""
    target = statement.this
    if isinstance(target, exp.Schema):
        target = target.this
    if isinstance(target, exp.Table) and not target.args.get("db"):
        return target.name
    return None


__all__ = ["LakeEngine"]
