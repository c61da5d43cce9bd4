"""Names, full dates of birth and postcodes live only in `identity`: after `synth` and
`phm run` no other table has such a column or holds such a value, and nothing printed does."""

from __future__ import annotations

import re
from collections.abc import Iterator

import duckdb
import pytest
from cli_run import PhmWarehouse
from sqlglot import exp

IDENTITY_ONLY = ("given_name", "family_name", "birth_date", "postcode")
#: The practice's own address is reference data about an organisation, not a person.
ORGANISATION_POSTCODES = {("practice", "postcode")}


@pytest.fixture(scope="module")
def con(phm_warehouse: PhmWarehouse) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(str(phm_warehouse.path), read_only=True) as connection:
        yield connection


def _rows(con: duckdb.DuckDBPyConnection, query: exp.Query) -> list[tuple[object, ...]]:
    return con.sql(query.sql("duckdb")).fetchall()


def _columns(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """(table, column, type) of every column of every table in the warehouse file."""
    query = exp.select("table_name", "column_name", "data_type").from_(
        exp.to_table("information_schema.columns")
    )
    return [(str(t), str(c), str(d)) for t, c, d in _rows(con, query)]


def _identity_texts(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Every person's postcode and full name as they would appear in a leak."""
    full_name = exp.func("concat_ws", exp.Literal.string(" "), "given_name", "family_name")
    query = exp.select("postcode", full_name).from_("identity")
    return {str(v) for row in _rows(con, query) for v in row if v is not None}


def test_identity_holds_every_persons_details(con: duckdb.DuckDBPyConnection) -> None:
    counts = exp.select(
        exp.func("count", exp.Star()), *(exp.func("count", c) for c in IDENTITY_ONLY)
    ).from_("identity")
    (row,) = _rows(con, counts)
    people = row[0]
    assert isinstance(people, int)
    assert people > 30_000
    assert row[1:] == (people,) * len(IDENTITY_ONLY)


def test_no_other_table_has_an_identity_column(con: duckdb.DuckDBPyConnection) -> None:
    columns = _columns(con)
    assert {"phm_person", "phm_worklist", "person"} <= {t for t, _, _ in columns}
    found = [
        (table, column)
        for table, column, _ in columns
        if column in IDENTITY_ONLY
        and table != "identity"
        and (table, column) not in ORGANISATION_POSTCODES
    ]
    assert found == []


def test_no_other_table_holds_a_persons_postcode_or_name(
    con: duckdb.DuckDBPyConnection,
) -> None:
    texts = _identity_texts(con)
    assert len(texts) > 30_000
    leaks: list[str] = []
    for table, column, data_type in _columns(con):
        if table == "identity" or data_type != "VARCHAR":
            continue
        values = exp.select(exp.column(column)).distinct().from_(exp.to_table(table))
        found = {str(v) for (v,) in _rows(con, values)} & texts
        leaks += [f"{table}.{column}: {len(found)} value(s)"] if found else []
    assert leaks == []


def test_nothing_printed_holds_a_persons_postcode_or_name(
    con: duckdb.DuckDBPyConnection, phm_warehouse: PhmWarehouse
) -> None:
    texts = _identity_texts(con)
    printed = phm_warehouse.run.stdout + phm_warehouse.run.stderr
    assert printed.strip()
    postcode_like = set(re.findall(r"\b[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}\b", printed))
    assert postcode_like & texts == set()
    words = re.findall(r"[A-Z][a-z]+(?:-[A-Z][a-z]+)? [A-Z][a-z']+", printed)
    assert set(words) & texts == set()
