"""DuckDB: the embedded default engine, over a warehouse file or in memory."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from joinedup.errors import JoinedupError
from joinedup.warehouse.engines.base import Engine
from joinedup.warehouse.locks import WarehouseInUseError
from joinedup.warehouse.schema import Table


def _ddl(table: Table) -> str:
    """CREATE TABLE for a canonical table, built as a syntax tree."""
    schema = exp.Schema(
        this=exp.to_table(table.name),
        expressions=[
            exp.ColumnDef(
                this=exp.to_identifier(c.name),
                kind=exp.DataType.build(c.type, dialect="duckdb"),
                constraints=[]
                if c.nullable
                else [exp.ColumnConstraint(kind=exp.NotNullColumnConstraint())],
            )
            for c in table.columns
        ],
    )
    return exp.Create(this=schema, kind="TABLE", replace=True).sql(dialect="duckdb")


class DuckDBEngine(Engine):
    """Runs analytics in DuckDB. `path=None` is an in-memory database."""

    dialect = "duckdb"
    name = "duckdb"

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        read_only: bool = False,
        threads: int | None = None,
        memory_limit: str | None = None,
        bulk_load: bool = False,
        temp_directory: Path | None = None,
    ) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None and read_only and not self.path.exists():
            raise JoinedupError(
                f"warehouse {self.path} does not exist: build one with `joinedup synth` "
                "or point --warehouse (or JOINEDUP_WAREHOUSE) at an existing file"
            )
        config: dict[str, str | bool | int | float | list[str]] = {}
        if threads is not None:
            config["threads"] = threads
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        if temp_directory is not None:  # where a query larger than memory spills
            config["temp_directory"] = str(temp_directory)
        if bulk_load:  # loads need not keep row order, which lets DuckDB insert in parallel
            config["preserve_insertion_order"] = "false"
        try:
            self.con = duckdb.connect(
                ":memory:" if self.path is None else str(self.path),
                read_only=read_only,
                config=config,
            )
        except duckdb.Error as err:
            held = _LOCKED_BY.search(str(err))
            if held and self.path is not None:
                raise WarehouseInUseError(self.path, int(held.group(1))) from err
            raise JoinedupError(f"cannot open warehouse {self.path}: {err}") from err
        # Every session in UTC (DuckDB has ICU time zones; the setting needs it loaded, so it
        # is set after connecting), so a TIMESTAMPTZ prints, truncates and compares the same
        # whatever the machine's zone.
        self.con.execute("SET TimeZone = 'UTC'")

    def create(self, table: Table) -> None:
        """Create an empty canonical table with its types and NOT NULL constraints."""
        self.con.execute(_ddl(table))

    def load(self, name: str, data: pa.Table) -> None:
        self._from_arrow(data, _create(name, temporary=False))

    def load_session(self, name: str, data: pa.Table) -> None:
        """A TEMPORARY table: gone when the connection closes, allowed on a read-only file."""
        self._from_arrow(data, _create(name, temporary=True))

    def append(self, name: str, data: pa.Table) -> None:
        """Append Arrow rows to an existing table, column by name (a column the table has
        and `data` lacks is NULL)."""
        columns = data.column_names
        insert = exp.Insert(
            this=exp.Schema(
                this=exp.to_table(name), expressions=[exp.to_identifier(c) for c in columns]
            ),
            expression=exp.select(*[exp.column(c) for c in columns]).from_(_INCOMING),
        )
        self._from_arrow(data, insert)

    def _from_arrow(self, data: pa.Table, statement: exp.Expression) -> None:
        """Run `statement`, which reads the Arrow table `data` as `_INCOMING`."""
        self.con.register(_INCOMING, data)
        try:
            self.con.execute(statement.sql(dialect="duckdb"))
        finally:
            self.con.unregister(_INCOMING)

    def load_parquet(self, name: str, files: Iterable[Path]) -> None:
        self.con.execute(
            exp.Create(
                this=exp.to_table(name),
                kind="TABLE",
                replace=True,
                expression=exp.select("*").from_(_read_parquet(files)),
            ).sql(dialect="duckdb")
        )

    def view_parquet(self, name: str, files: Iterable[Path]) -> None:
        """Table `name` as a view over Parquet `files` (a lake's current version): read where
        it lies, never copied into the database."""
        self._clear(name)
        self.con.execute(
            exp.Create(
                this=exp.to_table(name),
                kind="VIEW",
                replace=True,
                expression=exp.select("*").from_(_read_parquet(files)),
            ).sql(dialect="duckdb")
        )

    def write_parquet(self, query: exp.Query, folder: Path) -> None:
        """Write the rows of `query` into `folder` as Parquet, streaming (DuckDB spills to
        disk rather than hold a large result in memory)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.con.execute(
            exp.Copy(
                this=query.subquery(),
                kind=False,
                files=[exp.Literal.string(str(folder / "part-00000.parquet"))],
                params=[exp.CopyParameter(this=exp.var("FORMAT"), expression=exp.var("PARQUET"))],
            ).sql(dialect="duckdb")
        )

    def _kind(self, name: str) -> str | None:
        """'BASE TABLE', 'VIEW' or 'LOCAL TEMPORARY' for an object called `name`, or None."""
        query = (
            exp.select("table_type")
            .from_(exp.to_table("information_schema.tables"))
            .where(exp.column("table_name").eq(exp.Literal.string(name)))
        )
        rows = self.con.execute(query.sql(dialect="duckdb")).fetchall()
        return str(rows[0][0]) if rows else None

    def _clear(self, name: str) -> None:
        """Drop a view called `name` before a table of that name replaces it, or a table
        before a view does (DuckDB will not replace one kind with the other)."""
        kind = self._kind(name)
        if kind is not None:
            what = "VIEW" if kind == "VIEW" else "TABLE"
            drop = exp.Drop(tables=[exp.to_table(name)], kind=what)
            self.con.execute(drop.sql(dialect="duckdb"))

    def insert_parquet(self, name: str, columns: list[str], files: Iterable[Path]) -> None:
        """Insert Parquet rows into an existing table, column by name."""
        insert = exp.Insert(
            this=exp.Schema(
                this=exp.to_table(name), expressions=[exp.to_identifier(c) for c in columns]
            ),
            expression=exp.select(*[exp.column(c) for c in columns]).from_(_read_parquet(files)),
        )
        self.con.execute(insert.sql(dialect="duckdb"))

    def append_parquet(self, name: str, files: Iterable[Path]) -> None:
        """Insert Parquet rows into an existing (typed) canonical table."""
        self.con.execute(
            exp.insert(exp.select("*").from_(_read_parquet(files)), name).sql(dialect="duckdb")
        )

    def export_parquet(self, name: str, path: Path) -> None:
        """Write table `name` to one Parquet file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.con.execute(
            exp.Copy(
                this=exp.to_table(name),
                kind=False,
                files=[exp.Literal.string(str(path))],
                params=[exp.CopyParameter(this=exp.var("FORMAT"), expression=exp.var("PARQUET"))],
            ).sql(dialect="duckdb")
        )

    def execute(self, query: exp.Query) -> pa.Table:
        try:
            return self.con.sql(query.sql(dialect=self.dialect)).to_arrow_table()
        except duckdb.CatalogException as err:
            raise JoinedupError(f"the warehouse lacks a table this needs: {err}") from err

    def materialise(self, name: str, query: exp.Query) -> None:
        """CREATE OR REPLACE TABLE name AS query, inside DuckDB."""
        statement = exp.Create(
            this=exp.to_table(name), kind="TABLE", replace=True, expression=query
        )
        try:
            self.con.execute(statement.sql(dialect=self.dialect))
        except duckdb.CatalogException as err:
            raise JoinedupError(f"the warehouse lacks a table this needs: {err}") from err

    def map_batches(
        self,
        name: str,
        query: exp.Query,
        fn: Callable[[pa.RecordBatch], pa.RecordBatch],
        schema: pa.Schema,
    ) -> None:
        """Number the rows of `query` into a session scratch table, then read it back a range
        of numbers at a time through `fn`, appending each result to `name`. (A connection
        serves one open result, so the query cannot be streamed while batches are written;
        DuckDB spills the scratch table when large, and it goes with the transaction. Row
        ids will not do: inside a transaction new rows have ids in a range of their own.)"""
        row_number = exp.Window(this=exp.RowNumber()).as_(_MAP_ROW)
        numbered = exp.select(exp.Star(), row_number).from_(query.subquery("q"))
        create = exp.Create(
            this=exp.to_table(_MAP_SCRATCH),
            kind="TABLE",
            replace=True,
            properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
            expression=numbered,
        )
        try:
            self.con.execute(create.sql(dialect=self.dialect))
        except duckdb.CatalogException as err:
            raise JoinedupError(f"the warehouse lacks a table this needs: {err}") from err
        try:
            self.load(name, schema.empty_table())
            columns = [exp.to_identifier(f.name) for f in schema]
            insert = exp.insert(
                exp.select(*columns).from_(_INCOMING), name, columns=[f.name for f in schema]
            )
            row = exp.column(_MAP_ROW)
            for first in range(1, self.count(_MAP_SCRATCH) + 1, _MAP_ROWS):
                chunk = (
                    exp.select("*")
                    .from_(_MAP_SCRATCH)
                    .where(row.copy().between(first, first + _MAP_ROWS - 1))
                    .order_by(row.copy())
                )
                rows = self.con.sql(chunk.sql(dialect=self.dialect)).to_arrow_table()
                for batch in rows.drop_columns([_MAP_ROW]).to_batches():
                    out = fn(batch)
                    if out.schema.names != schema.names:
                        raise JoinedupError(
                            f"table {name}: the batch function returned columns "
                            f"{out.schema.names}, not {schema.names}"
                        )
                    self._from_arrow(pa.Table.from_batches([out]), insert)
        finally:
            drop = exp.Drop(tables=[exp.to_table(_MAP_SCRATCH)], kind="TABLE", exists=True)
            self.con.execute(drop.sql(dialect=self.dialect))

    def execute_text(self, sql: str) -> pa.Table:
        return self.con.sql(sql).to_arrow_table()

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql).fetchall()

    def stream(self, query: exp.Query | str, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        sql = query if isinstance(query, str) else query.sql(dialect=self.dialect)
        yield from self.con.sql(sql).to_arrow_reader(batch_rows)

    def run(self, statement: exp.Expression | str) -> None:
        sql = statement if isinstance(statement, str) else statement.sql(dialect=self.dialect)
        self.con.execute(sql)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT, or ROLLBACK when the block raises (or is interrupted)."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def load_json_lines(self, name: str, files: Iterable[Path]) -> None:
        """A TEMPORARY view of `read_ndjson_objects` over the files (gzip read as such): the
        files are read, once, by the query that reads the view (a table would copy every line
        once more before that query, doubling the cost of loading)."""
        paths = exp.Array(expressions=[exp.Literal.string(str(f)) for f in files])
        lines = exp.select("json").from_(exp.func("read_ndjson_objects", paths))
        statement = exp.Create(
            this=exp.to_table(name),
            kind="VIEW",
            replace=True,
            properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
            expression=lines,
        )
        self.con.execute(statement.sql(dialect=self.dialect))

    def read_json_columns(
        self,
        name: str,
        files: Iterable[Path],
        columns: dict[str, exp.DataType],
        *,
        filename: bool = False,
    ) -> None:
        """A TEMPORARY view of `read_json` with a column schema: DuckDB reads each line into
        those columns as it parses it (no JSON text is written out for a STRUCT or list) and
        fails on a value of another shape."""
        paths = exp.Array(expressions=[exp.Literal.string(str(f)) for f in files])
        schema = exp.Struct(
            expressions=[
                exp.PropertyEQ(
                    this=exp.Literal.string(key),
                    expression=exp.Literal.string(kind.sql(dialect=self.dialect)),
                )
                for key, kind in columns.items()
            ]
        )
        options = {
            "format": exp.Literal.string("newline_delimited"),
            # each line an object whose keys are the columns: said, not detected, as DuckDB
            # otherwise parses a sample of 20,480 lines of every file when the view is made
            # (0.1 CPU s a large file, each time)
            "records": exp.Boolean(this=True),
            "columns": schema,
            "filename": exp.Boolean(this=filename),
        }
        read = exp.Anonymous(
            this="read_json",
            expressions=[paths]
            + [exp.EQ(this=exp.column(k), expression=v) for k, v in options.items()],
        )
        statement = exp.Create(
            this=exp.to_table(name),
            kind="VIEW",
            replace=True,
            properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
            expression=exp.select(exp.Star()).from_(exp.Table(this=read)),
        )
        self.con.execute(statement.sql(dialect=self.dialect))

    @contextmanager
    def staging(self, path: Path) -> Iterator[str | None]:
        """The DuckDB file `path` attached as schema `joinedup_staging` (its tables spill to
        that file, not the warehouse's), detached when the block ends."""
        schema = "joinedup_staging"
        attach = exp.Attach(this=exp.alias_(exp.Literal.string(str(path)), schema))
        self.con.execute(attach.sql(dialect=self.dialect))
        try:
            yield schema
        finally:
            self.con.execute(exp.Detach(this=exp.var(schema)).sql(dialect=self.dialect))

    def drop(self, name: str) -> None:
        """Drop table (or view) `name` if there is one."""
        self._clear(name)

    def table_names(self) -> list[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
        return sorted(str(r[0]) for r in rows)

    def checkpoint(self) -> None:
        self.con.execute("CHECKPOINT")

    def splink_api(self) -> Any:
        """Splink's DuckDB API over this engine's connection: its tables are Splink's tables."""
        from splink import DuckDBAPI  # noqa: PLC0415 - only linkage loads Splink

        return DuckDBAPI(connection=self.con)

    def close(self) -> None:
        self.con.close()


_INCOMING = "_joinedup_incoming"
#: `map_batches`'s scratch table, and the rows it passes to the function at a time.
_MAP_SCRATCH = "_joinedup_map_scratch"
_MAP_ROW = "_joinedup_map_row"
_MAP_ROWS = 100_000
# How DuckDB says that another process has the file open (its id in brackets).
_LOCKED_BY = re.compile(r"Could not set lock on file.*?\(PID (\d+)\)", re.DOTALL)


def _create(name: str, *, temporary: bool) -> exp.Create:
    """CREATE OR REPLACE [TEMPORARY] TABLE name AS SELECT * FROM the incoming Arrow table."""
    props = exp.Properties(expressions=[exp.TemporaryProperty()]) if temporary else None
    return exp.Create(
        this=exp.to_table(name),
        kind="TABLE",
        replace=True,
        properties=props,
        expression=exp.select("*").from_(_INCOMING),
    )


def _read_parquet(files: Iterable[Path]) -> exp.Func:
    paths = [exp.Literal.string(str(f)) for f in files]
    if not paths:
        raise JoinedupError("no Parquet files to read")
    return exp.func("read_parquet", exp.Array(expressions=paths))
