"""Many new rows into one table inside the caller's transaction, the bulk load's writes: on
PostgreSQL through `COPY ... FROM STDIN` on the transaction's own psycopg connection (a stream
the server parses once, rather than one planned `INSERT` a row), elsewhere one multi-row
`INSERT`. Either way the rows are the transaction's: a failure leaves none of them. See
docs/records.md, "How a chunk is written"."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Table, insert
from sqlalchemy.exc import DBAPIError


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (each with the same columns) into `table` in `conn`'s transaction. Values
    go through the columns' own bind processing (instants as naive UTC, as `UtcDateTime`
    stores them), so the rows are those `insert(table)` writes. A database error is raised as
    SQLAlchemy's (a duplicate key as `IntegrityError`), as an `insert` would raise it."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), rows)
        return
    names = list(rows[0])
    processors = [table.c[name].type.bind_processor(conn.dialect) for name in names]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(n) for n in names)
    )
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)  # PostgreSQL stores connect through psycopg
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(
                    [
                        value if process is None else process(value)
                        for value, process in zip((row[n] for n in names), processors, strict=True)
                    ]
                )
    except psycopg.Error as err:
        raise DBAPIError.instance(
            statement.as_string(raw), None, err, psycopg.Error, dialect=conn.dialect
        ) from err
