"""Small builders of the sqlglot syntax trees FHIR ingest and export are written in: columns,
literals, CASE maps, IN lists, window ranks. The engines render the trees in their own SQL;
nothing here writes SQL text."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlglot import exp

Value = str | int | float | bool | None


def c(name: str) -> exp.Column:
    """A column, `alias.name` or `name` (names are joinedup's own, never a record's)."""
    table, _, column = name.rpartition(".")
    return exp.column(column, table=table or None)


def lit(value: Value) -> exp.Expr:
    """A literal (string, number, boolean or NULL)."""
    return exp.convert(value)


def t(name: str, alias: str | None = None) -> exp.Table:
    """A table, optionally aliased."""
    table = exp.to_table(name)
    if alias:
        table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    return table


def fn(name: str, *args: exp.Expr) -> exp.Expr:
    """A function call; a name sqlglot knows (coalesce, replace...) becomes its typed node, so
    each engine writes it in its own spelling."""
    return exp.func(name, *args)


def case(*whens: tuple[exp.Expr, exp.Expr], default: exp.Expr | None = None) -> exp.Case:
    """CASE WHEN condition THEN value ... [ELSE default] END."""
    node = exp.Case()
    for condition, value in whens:
        node = node.when(condition, value, copy=False)
    return node.else_(default, copy=False) if default is not None else node


def case_map(
    value: exp.Expr, mapping: Mapping[str, str], default: exp.Expr | None = None
) -> exp.Expr:
    """CASE value WHEN 'k' THEN 'v' ... ELSE default END (default NULL)."""
    return case(
        *((exp.EQ(this=value.copy(), expression=lit(k)), lit(v)) for k, v in mapping.items()),
        default=default,
    )


def isin(value: exp.Expr, values: Iterable[Value]) -> exp.Expr:
    """value IN ('a', 'b', ...)."""
    return exp.In(this=value, expressions=[lit(v) for v in values])


def not_in(value: exp.Expr, values: Iterable[Value]) -> exp.Expr:
    return exp.Not(this=isin(value, values))


def is_null(value: exp.Expr) -> exp.Expr:
    return exp.Is(this=value, expression=exp.null())


def not_null(value: exp.Expr) -> exp.Expr:
    return exp.Not(this=is_null(value))


def coalesce(*values: exp.Expr) -> exp.Expr:
    return exp.Coalesce(this=values[0], expressions=list(values[1:]))


def concat(*parts: exp.Expr) -> exp.Expr:
    """parts joined with `||` (NULL when any part is NULL, as SQL's `||` is)."""
    out = parts[0]
    for part in parts[1:]:
        out = exp.DPipe(this=out, expression=part, safe=False)
    return out


def cast(value: exp.Expr, to: str) -> exp.Expr:
    return exp.cast(value, exp.DataType.build(to))


def try_cast(value: exp.Expr, to: str) -> exp.Expr:
    return exp.TryCast(this=value, to=exp.DataType.build(to), safe=True)


#: Hex digits of an MD5 read into a key: 16 (64 bits), the first kept to 3 bits, so 63.
_KEY_DIGITS = 16


def text_key(value: exp.Expr) -> exp.Expr:
    """A deterministic 63-bit BIGINT key for a text: the first 16 hex digits of its MD5, the
    top bit dropped. Built from `md5`, `substring` and `ascii` alone, which DuckDB and Spark
    share, so both compute the same key (their own `hash()` functions differ). A hex digit's
    value is (code - 48) % 39: `0`-`9` are codes 48-57, `a`-`f` 97-102."""
    digest = exp.MD5(this=value)
    terms: list[exp.Expr] = []
    for position in range(_KEY_DIGITS):
        code = exp.Ascii(
            this=exp.Substring(this=digest.copy(), start=lit(position + 1), length=lit(1))
        )
        digit = exp.Mod(this=exp.paren(exp.Sub(this=code, expression=lit(48))), expression=lit(39))
        if position == 0:
            digit = exp.Mod(this=exp.paren(digit), expression=lit(8))
        weight = 16 ** (_KEY_DIGITS - 1 - position)
        terms.append(exp.Mul(this=cast(exp.paren(digit), "BIGINT"), expression=lit(weight)))
    total = terms[0]
    for term in terms[1:]:
        total = exp.Add(this=total, expression=term)
    return total


def day(value: exp.Expr) -> exp.Expr:
    """The date a FHIR date or dateTime text starts with (NULL when it is not one)."""
    return try_cast(exp.Substring(this=value, start=lit(1), length=lit(10)), "DATE")


def count_star() -> exp.Expr:
    return exp.Count(this=exp.Star())


def ordered(value: exp.Expr, *, desc: bool = False, nulls_first: bool = False) -> exp.Ordered:
    """An ORDER BY item, NULLs last unless asked (said outright, so every engine sorts alike)."""
    return exp.Ordered(this=value, desc=desc, nulls_first=nulls_first)


def row_number(partition: Sequence[exp.Expr], order: Sequence[exp.Ordered]) -> exp.Expr:
    """row_number() OVER (PARTITION BY ... ORDER BY ...)."""
    return exp.Window(
        this=exp.RowNumber(),
        partition_by=list(partition),
        order=exp.Order(expressions=list(order)),
    )


def first_row(partition: Sequence[exp.Expr], order: Sequence[exp.Ordered]) -> exp.Expr:
    """The QUALIFY condition keeping the first row of each partition."""
    return exp.EQ(this=row_number(partition, order), expression=lit(1))


def values_table(rows: Sequence[Sequence[Value]], alias: str, columns: Sequence[str]) -> exp.Expr:
    """(VALUES (...), ...) AS alias(columns)."""
    return exp.Values(
        expressions=[exp.Tuple(expressions=[lit(v) for v in row]) for row in rows],
        alias=exp.TableAlias(
            this=exp.to_identifier(alias), columns=[exp.to_identifier(n) for n in columns]
        ),
    )


def union_all(*queries: exp.Query) -> exp.Query:
    out = queries[0]
    for query in queries[1:]:
        out = exp.union(out, query, distinct=False)
    return out


def exists(query: exp.Query) -> exp.Expr:
    return exp.Exists(this=query)


def scalar(query: exp.Query) -> exp.Expr:
    """A subquery giving one value."""
    return exp.Subquery(this=query)


def insert(table: str, columns: Sequence[str], query: exp.Query) -> exp.Insert:
    """INSERT INTO table (columns) query: rows placed by column name, never by position."""
    return exp.Insert(
        this=exp.Schema(
            this=exp.to_table(table), expressions=[exp.to_identifier(n) for n in columns]
        ),
        expression=query,
    )


def select_columns(source: str, columns: Sequence[str]) -> exp.Select:
    """SELECT columns FROM source."""
    return exp.select(*(c(n) for n in columns)).from_(t(source))
