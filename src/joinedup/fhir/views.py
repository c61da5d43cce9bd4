"""SQL-on-FHIR v2 ViewDefinitions: validated, then compiled to one SQL query that runs inside
DuckDB over a table of raw resources (`resource_type`, `resource` JSON).

Every FHIRPath expression becomes a SQL expression whose value is a FHIRPath collection: a
`JSON[]` list. Navigation flattens lists with `list_transform`; `where` is `list_filter`;
`forEach` maps each focus to its rows; a view's rows for one resource are a list of JSON
objects, unnested at the end. Nothing is interpreted resource by resource in Python.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import sqlglot
from sqlglot import exp

from joinedup.errors import InputError
from joinedup.fhir.fhirpath import (
    Binary,
    Call,
    Constant,
    Index,
    Literal,
    Member,
    Node,
    This,
    TypeName,
    parse,
)

RESOURCE_TABLE = "fhir_resource"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PRIMITIVE_TYPES = {
    "boolean": "BOOLEAN",
    "integer": "BIGINT",
    "positiveInt": "BIGINT",
    "unsignedInt": "BIGINT",
    "integer64": "BIGINT",
    "decimal": "DOUBLE",
}
_TEXT_TYPES = {
    "string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "base64Binary",
    "date", "dateTime", "instant", "time",
}  # fmt: skip


def _template(sql: str, **parts: exp.Expr) -> exp.Expr:
    """A generic SQL expression (CASE, comparisons, casts) whose `{name}` holes are filled
    with expressions; engine-specific pieces always come in through the holes."""
    text = re.sub(r"\{(\w+)\}", lambda m: f"__p_{m.group(1)}__", sql)
    tree = sqlglot.parse_one(f"SELECT {text}", read="duckdb").expressions[0]

    def fill(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table:
            match = re.fullmatch(r"__p_(\w+)__", node.name)
            if match:
                return parts[match.group(1)].copy()
        return node

    filled: exp.Expr = tree.transform(fill)
    return filled


def _string(value: str) -> exp.Expr:
    return exp.Literal.string(value)


def _number(value: int) -> exp.Expr:
    return exp.Literal.number(value)


def _call_sql(name: str, *args: exp.Expr) -> exp.Expr:
    """A function call, built without copying its (often large) arguments."""
    return exp.Anonymous(this=name, expressions=list(args))


class Dialect:
    """How one engine holds FHIR JSON and works on lists of it. The compiler only ever uses
    these primitives, so a view compiles to either engine."""

    name = "duckdb"
    #: DuckDB list function names; other engines translate them in `fn`.
    names: ClassVar[dict[str, str]] = {}

    #: Whether the resource's top-level children are all read in one pass (`children`).
    #: DuckDB parses JSON text again on every read, so reading each child separately would
    #: parse the whole resource once per column.
    prefetch = True

    def fn(self, name: str, *args: exp.Expr) -> exp.Expr:
        return _call_sql(self.names.get(name, name), *args)

    # JSON values
    def child(self, item: exp.Expr, name: str) -> exp.Expr:
        return _call_sql("json_extract", item, _string(f'$."{name}"'))

    def children(self, item: exp.Expr, names: list[str]) -> exp.Expr:
        """A list of `item`'s children `names` (NULL where missing), read in one pass."""
        paths = exp.Array(expressions=[_string(f'$."{n}"') for n in names])
        return _call_sql("json_extract", item, paths)

    def spread(self, value: exp.Expr) -> exp.Expr:
        """The collection a child read by `child` stands for: nothing when it is missing or
        null, its items when it is an array, else itself. `json_extract` writes compact JSON,
        so the first character tells the type without parsing the value again."""
        return _template(
            "CASE WHEN {v} IS NULL OR {v} = 'null' THEN {empty} "
            "WHEN starts_with({v}, '[') THEN CAST({v} AS JSON[]) ELSE [{v}] END",
            v=value,
            empty=self.empty(),
        )

    def is_array(self, item: exp.Expr) -> exp.Expr:
        return _template("json_type({v}) = 'ARRAY'", v=item)

    def is_null(self, item: exp.Expr) -> exp.Expr:
        return _template("{v} IS NULL OR json_type({v}) = 'NULL'", v=item)

    def is_number(self, item: exp.Expr) -> exp.Expr:
        return _template("json_type({v}) IN ('UBIGINT', 'BIGINT', 'DOUBLE')", v=item)

    def is_string(self, item: exp.Expr) -> exp.Expr:
        return _template("json_type({v}) = 'VARCHAR'", v=item)

    def is_boolean(self, item: exp.Expr) -> exp.Expr:
        return _template("json_type({v}) = 'BOOLEAN'", v=item)

    def as_list(self, item: exp.Expr) -> exp.Expr:
        return _template("CAST({v} AS JSON[])", v=item)

    def text(self, item: exp.Expr) -> exp.Expr:
        return _call_sql("json_extract_string", item, _string("$"))

    def value(self, scalar: exp.Expr) -> exp.Expr:
        return _call_sql("to_json", scalar)

    def empty(self) -> exp.Expr:
        return _template("CAST([] AS JSON[])")

    def first(self, collection: exp.Expr) -> exp.Expr:
        return _template("{c}[1]", c=collection)

    def position(self, index: exp.Expr) -> exp.Expr:
        """A list lambda's index argument as a 0-based position (DuckDB counts from 1)."""
        return exp.Sub(this=index, expression=_number(1))

    def slice(self, collection: exp.Expr, start: exp.Expr) -> exp.Expr:
        """The single item at 1-based `start` (negative: from the end), as a collection."""
        return _call_sql("list_slice", collection, start, start.copy())

    def parse(self, text: exp.Expr) -> exp.Expr:
        return exp.cast(text, exp.DataType.build("JSON", dialect="duckdb"))

    # rows: a STRUCT of JSON values, so building, merging and reading rows parses nothing
    def row(self, pairs: list[tuple[str, exp.Expr]]) -> exp.Expr:
        return _call_sql(
            "struct_pack",
            *[exp.PropertyEQ(this=exp.to_identifier(k), expression=v) for k, v in pairs],
        )

    def blank_row(self, names: list[str]) -> exp.Expr:
        """A row whose columns `names` are all null (a row without columns is never read)."""
        if not names:
            return _template("CAST('{}' AS JSON)")
        return self.row([(n, _template("CAST(NULL AS JSON)")) for n in names])

    def merge(self, a: exp.Expr, b: exp.Expr) -> exp.Expr:
        return _call_sql("struct_concat", a, b)

    def row_get(self, row: exp.Expr, name: str) -> exp.Expr:
        return _call_sql("struct_extract", row, _string(name))

    def null_value(self) -> exp.Expr:
        return exp.null()

    def list_value(self, collection: exp.Expr) -> exp.Expr:
        return _call_sql("to_json", collection)

    def json_text(self, item: exp.Expr) -> exp.Expr:
        return item

    def error(self, message: str) -> exp.Expr:
        return _call_sql("error", _string(message))


class SparkDialect(Dialect):
    """Spark 4: FHIR JSON as VARIANT (`parse_json`), lists as ARRAY<VARIANT>, rows as
    MAP<STRING, VARIANT>."""

    name = "spark"
    prefetch = False
    names: ClassVar[dict[str, str]] = {
        "list_transform": "transform",
        "list_filter": "filter",
        "len": "size",
        "array_to_string": "array_join",
        "list_concat": "concat",
        "list_distinct": "array_distinct",
        "list_contains": "array_contains",
        "starts_with": "startswith",
    }

    def child(self, item: exp.Expr, name: str) -> exp.Expr:
        return _call_sql("variant_get", item, _string(f'$["{name}"]'))

    def spread(self, value: exp.Expr) -> exp.Expr:
        return _template(
            "CASE WHEN {isnull} THEN {empty} WHEN {isarray} THEN {aslist} ELSE [{v}] END",
            isnull=self.is_null(value),
            empty=self.empty(),
            isarray=self.is_array(value),
            aslist=self.as_list(value),
            v=value,
        )

    def _schema(self, item: exp.Expr) -> exp.Expr:
        return _call_sql("schema_of_variant", item)

    def is_array(self, item: exp.Expr) -> exp.Expr:
        return _template("startswith({s}, 'ARRAY')", s=self._schema(item))

    def is_null(self, item: exp.Expr) -> exp.Expr:
        return _template("{v} IS NULL OR is_variant_null({v})", v=item)

    def is_number(self, item: exp.Expr) -> exp.Expr:
        return _template(
            "{s} IN ('BIGINT', 'INT', 'SMALLINT', 'TINYINT', 'DOUBLE', 'FLOAT') "
            "OR startswith({s}, 'DECIMAL')",
            s=self._schema(item),
        )

    def is_string(self, item: exp.Expr) -> exp.Expr:
        return _template("{s} = 'STRING'", s=self._schema(item))

    def is_boolean(self, item: exp.Expr) -> exp.Expr:
        return _template("{s} = 'BOOLEAN'", s=self._schema(item))

    def as_list(self, item: exp.Expr) -> exp.Expr:
        return exp.cast(item, exp.DataType.build("ARRAY<VARIANT>", dialect="spark"))

    def text(self, item: exp.Expr) -> exp.Expr:
        return exp.cast(item, exp.DataType.Type.VARCHAR)

    def value(self, scalar: exp.Expr) -> exp.Expr:
        return exp.cast(scalar, exp.DataType.build("VARIANT", dialect="spark"))

    def empty(self) -> exp.Expr:
        return exp.cast(
            exp.Array(expressions=[]), exp.DataType.build("ARRAY<VARIANT>", dialect="spark")
        )

    def first(self, collection: exp.Expr) -> exp.Expr:
        return _call_sql("try_element_at", collection, _number(1))

    def position(self, index: exp.Expr) -> exp.Expr:
        return index

    def slice(self, collection: exp.Expr, start: exp.Expr) -> exp.Expr:
        return _template(
            "CASE WHEN {p} = 0 OR abs({p}) > size({c}) THEN {e} ELSE slice({c}, {p}, 1) END",
            p=start,
            c=collection,
            e=self.empty(),
        )

    def parse(self, text: exp.Expr) -> exp.Expr:
        return _call_sql("parse_json", text)

    def row(self, pairs: list[tuple[str, exp.Expr]]) -> exp.Expr:
        return _call_sql("map", *[x for k, v in pairs for x in (_string(k), self._as_variant(v))])

    def _as_variant(self, value: exp.Expr) -> exp.Expr:
        return exp.cast(value, exp.DataType.build("VARIANT", dialect="spark"))

    def blank_row(self, names: list[str]) -> exp.Expr:
        return exp.cast(
            _call_sql("map"), exp.DataType.build("MAP<STRING, VARIANT>", dialect="spark")
        )

    def merge(self, a: exp.Expr, b: exp.Expr) -> exp.Expr:
        return _call_sql("map_concat", a, b)

    def row_get(self, row: exp.Expr, name: str) -> exp.Expr:
        return _call_sql("try_element_at", row, _string(name))

    def null_value(self) -> exp.Expr:
        return exp.cast(exp.null(), exp.DataType.build("VARIANT", dialect="spark"))

    def list_value(self, collection: exp.Expr) -> exp.Expr:
        return _call_sql("parse_json", _call_sql("to_json", collection))

    def json_text(self, item: exp.Expr) -> exp.Expr:
        return _call_sql("to_json", item)

    def error(self, message: str) -> exp.Expr:
        return exp.cast(
            _call_sql("raise_error", _string(message)),
            exp.DataType.build("VARIANT", dialect="spark"),
        )


DIALECTS: dict[str, Dialect] = {"duckdb": Dialect(), "spark": SparkDialect()}


@dataclass
class _Scope:
    """What an expression can see: the resource, view constants, %rowIndex and the engine.

    `top` names the resource's top-level children the view reads; with a dialect that
    prefetches, they are read in one pass into `r.top` and `child` reads them from there."""

    resource: exp.Expr
    constants: dict[str, Any]
    dialect: Dialect
    row_index: exp.Expr | None = None
    counter: Iterator[int] = field(default_factory=itertools.count)
    top: dict[str, int] = field(default_factory=dict)

    def var(self, prefix: str = "v") -> exp.Expr:
        return exp.column(f"{prefix}{next(self.counter)}")

    def nested(self, row_index: exp.Expr) -> _Scope:
        return _Scope(
            self.resource, self.constants, self.dialect, row_index, self.counter, self.top
        )

    def child(self, item: exp.Expr, name: str) -> exp.Expr:
        """`item`'s child `name` as one JSON value (an array is not spread)."""
        if self.dialect.prefetch and item == self.resource:
            position = self.top.setdefault(name, len(self.top) + 1)
            return _template(f"{{top}}[{position}]", top=exp.column(TOP, "r"))
        return self.dialect.child(item, name)


TOP = "top"


def _lambda(body: exp.Expr, *variables: exp.Expr) -> exp.Expr:
    return exp.Lambda(this=body, expressions=[exp.to_identifier(v.name) for v in variables])


def _children(item: exp.Expr, name: str, scope: _Scope) -> exp.Expr:
    """The collection of `item`'s children called `name` (an array is spread out)."""
    return scope.dialect.spread(scope.child(item, name))


def _cheap(value: exp.Expr) -> bool:
    """Whether `value` costs (next to) nothing to compute again: a column or variable, an
    item of one, a constant, or a list of those. Such a value is written wherever it is used
    rather than bound to a lambda variable."""
    if not any(isinstance(n, exp.Column) for n in value.walk()):
        return True  # a constant, folded once by the engine
    if isinstance(value, exp.Column):
        return True
    if isinstance(value, exp.Array):
        return all(_cheap(e) for e in value.expressions)
    if isinstance(value, exp.Bracket):
        return _cheap(value.this) and all(_cheap(e) for e in value.expressions)
    return False


def _sole(collection: exp.Expr) -> exp.Expr | None:
    """The item of a collection written `[x]` with `x` cheap, else None."""
    if isinstance(collection, exp.Array) and len(collection.expressions) == 1:
        item = collection.expressions[0]
        if _cheap(item):
            return item
    return None


def _each(collection: exp.Expr, scope: _Scope, body: Any) -> exp.Expr:
    """flatten(transform(collection, v -> body(v))): `body` returns a collection."""
    item = _sole(collection)
    if item is not None:
        return body(item)  # the same, without a lambda
    var = scope.var()
    d = scope.dialect
    return d.fn("flatten", d.fn("list_transform", collection, _lambda(body(var), var)))


def _filter(collection: exp.Expr, scope: _Scope, test: Any) -> exp.Expr:
    var = scope.var()
    return scope.dialect.fn("list_filter", collection, _lambda(test(var), var))


def _single(value: exp.Expr, d: Dialect) -> exp.Expr:
    return exp.Array(expressions=[d.value(value)])


def _wrap(value: exp.Expr, d: Dialect) -> exp.Expr:
    """A SQL value as a collection: empty when NULL (the value appears once in the SQL)."""
    var = exp.column("w")
    return d.fn(
        "list_filter",
        exp.Array(expressions=[d.value(exp.paren(value))]),
        _lambda(exp.Not(this=var.is_(exp.null())), var),
    )


def _let(collection: exp.Expr, scope: _Scope, body: Any) -> exp.Expr:
    """`body(c)` with the collection bound to a lambda variable `c`, so a large expression
    used several times is written (and evaluated) once. `body` returns a collection."""
    if _cheap(collection):
        return body(collection)  # type: ignore[no-any-return]
    var = scope.var("c")
    d = scope.dialect
    return d.fn(
        "flatten",
        d.fn("list_transform", exp.Array(expressions=[collection]), _lambda(body(var), var)),
    )


def _let_value(collection: exp.Expr, scope: _Scope, body: Any) -> exp.Expr:
    """`body(c)` for a body giving one value (not a collection), with `c` bound once."""
    if _cheap(collection):
        return body(collection)  # type: ignore[no-any-return]
    var = scope.var("c")
    d = scope.dialect
    return d.first(
        d.fn("list_transform", exp.Array(expressions=[collection]), _lambda(body(var), var))
    )


def _size(collection: exp.Expr, d: Dialect) -> exp.Expr:
    return d.fn("len", collection)


def _boolean(collection: exp.Expr, d: Dialect) -> exp.Expr:
    """A collection as a SQL boolean: NULL when empty, else its first item's truth."""
    return exp.cast(d.text(d.first(collection)), exp.DataType.Type.BOOLEAN)


def _compare(op: str, left: exp.Expr, right: exp.Expr, d: Dialect) -> exp.Expr:
    """`left op right` on singletons, numerically when both are numbers; empty if either is."""
    a, b = d.first(left), d.first(right)
    sql_op = {"=": "=", "!=": "<>", "<": "<", ">": ">", "<=": "<=", ">=": ">="}[op]
    body = (
        "CASE WHEN ({an}) AND ({bn}) "
        f"THEN CAST({{at}} AS DOUBLE) {sql_op} CAST({{bt}} AS DOUBLE) "
        f"ELSE {{at}} {sql_op} {{bt}} END"
    )
    value = _template(
        body,
        an=d.is_number(a),
        bn=d.is_number(b),
        at=d.text(a),
        bt=d.text(b),
    )
    return _wrap(value, d)


def _arithmetic(op: str, left: exp.Expr, right: exp.Expr, d: Dialect) -> exp.Expr:
    a, b = d.first(left), d.first(right)
    if op == "&":
        body = "coalesce({at}, '') || coalesce({bt}, '')"
        return _single(_template(body, at=d.text(a), bt=d.text(b)), d)
    sql_op = {"+": "+", "-": "-", "*": "*", "/": "/", "div": "DIV", "mod": "%"}[op]
    numeric = _template(
        f"CAST({{at}} AS DOUBLE) {sql_op} CAST({{bt}} AS DOUBLE)", at=d.text(a), bt=d.text(b)
    )
    if op == "+":
        value = _template(
            "CASE WHEN {nl} = 0 OR {nr} = 0 THEN NULL WHEN {astr} THEN {concat} ELSE {num} END",
            nl=_size(left, d),
            nr=_size(right, d),
            astr=d.is_string(a),
            concat=d.value(_template("{at} || {bt}", at=d.text(a), bt=d.text(b))),
            num=d.value(numeric),
        )
    else:
        value = _template(
            "CASE WHEN {nl} = 0 OR {nr} = 0 THEN NULL ELSE {num} END",
            nl=_size(left, d),
            nr=_size(right, d),
            num=d.value(numeric),
        )
    return _template("CASE WHEN {v} IS NULL THEN {empty} ELSE [{v}] END", v=value, empty=d.empty())


def _reference_key(item: exp.Expr, type_name: str | None, scope: _Scope) -> exp.Expr:
    """`Type/id` from a Reference's literal reference (relative or absolute URL); NULL when
    there is none or it is not of `type_name`."""
    d = scope.dialect
    key = d.fn(
        "nullif",
        d.fn(
            "regexp_extract",
            d.text(scope.child(item, "reference")),
            _string(r"([A-Za-z]+/[A-Za-z0-9\-\.]{1,64})(/_history/[^/]+)?$"),
            _number(1),
        ),
        _string(""),
    )
    if type_name is None:
        return key
    return _template(
        "CASE WHEN {starts} THEN {k} END",
        starts=d.fn("starts_with", key, _string(f"{type_name}/")),
        k=key,
    )


_TYPE_TESTS = {"string": "is_string", "boolean": "is_boolean", "integer": "is_number",
               "decimal": "is_number"}  # fmt: skip


def compile_path(node: Node, context: exp.Expr, scope: _Scope) -> exp.Expr:
    """The SQL (a collection of JSON values) of FHIRPath `node` evaluated on `context`."""
    d = scope.dialect
    if isinstance(node, This):
        return context
    if isinstance(node, Literal):
        return _single(exp.convert(node.value), d)
    if isinstance(node, Constant):
        if node.name == "rowIndex":
            return _single(scope.row_index if scope.row_index is not None else _number(0), d)
        if node.name not in scope.constants:
            raise InputError(f"%{node.name}", "no such constant in the view")
        return _single(exp.convert(scope.constants[node.name]), d)
    if isinstance(node, Member):
        target = compile_path(node.target, context, scope)
        return _each(target, scope, lambda v: _children(v, node.name, scope))
    if isinstance(node, Index):
        target = compile_path(node.target, context, scope)
        index = compile_path(node.index, context, scope)
        position = _template("CAST({t} AS BIGINT) + 1", t=d.text(d.first(index)))
        return d.slice(target, position)
    if isinstance(node, Binary):
        return _binary(node, context, scope)
    if isinstance(node, Call):
        return _call(node, context, scope)
    raise InputError("FHIRPath", f"cannot compile {node}")


def _binary(node: Binary, context: exp.Expr, scope: _Scope) -> exp.Expr:
    left = compile_path(node.left, context, scope)
    right = compile_path(node.right, context, scope)
    return _let(left, scope, lambda a: _let(right, scope, lambda b: _operate(node.op, a, b, scope)))


def _operate(op: str, left: exp.Expr, right: exp.Expr, scope: _Scope) -> exp.Expr:
    """A binary operator on two (bound) collections."""
    d = scope.dialect
    if op in ("and", "or"):
        sql = exp.and_ if op == "and" else exp.or_
        return _wrap(sql(exp.paren(_boolean(left, d)), exp.paren(_boolean(right, d))), d)
    if op == "xor":
        return _wrap(exp.NEQ(this=_boolean(left, d), expression=_boolean(right, d)), d)
    if op == "implies":
        return _wrap(
            exp.or_(exp.Not(this=exp.paren(_boolean(left, d))), exp.paren(_boolean(right, d))), d
        )
    if op in ("=", "!=", "<", ">", "<=", ">="):
        return _compare(op, left, right, d)
    if op in ("+", "-", "*", "/", "div", "mod", "&"):
        return _arithmetic(op, left, right, d)
    if op == "|":
        return d.fn("list_concat", left, right)
    if op in ("in", "contains"):
        item, coll = (left, right) if op == "in" else (right, left)
        var = scope.var()
        texts = d.fn("list_transform", coll, _lambda(d.text(var), var))
        return _wrap(
            _template(
                "CASE WHEN {n} = 0 THEN NULL ELSE {has} END",
                n=_size(item, d),
                has=d.fn("list_contains", texts, d.text(d.first(item))),
            ),
            d,
        )
    raise InputError("FHIRPath", f"operator {op!r} is not supported")  # pragma: no cover


def _call(node: Call, context: exp.Expr, scope: _Scope) -> exp.Expr:
    d = scope.dialect
    name, args = node.function, node.args
    if name == "ofType" and isinstance(node.target, Member) and len(args) == 1:
        type_arg = args[0]
        type_name = type_arg.name if isinstance(type_arg, TypeName) else ""
        choice = Member(
            node.target.target, node.target.name + type_name[:1].upper() + type_name[1:]
        )
        return compile_path(choice, context, scope)
    if name == "getResourceKey":
        key = _template(
            "{t} || '/' || {i}",
            t=d.text(scope.child(scope.resource, "resourceType")),
            i=d.text(scope.child(scope.resource, "id")),
        )
        return _wrap(key, d)
    target = compile_path(node.target, context, scope)
    if name == "getReferenceKey":
        wanted = args[0].name if args and isinstance(args[0], TypeName) else None
        return _each(target, scope, lambda v: _wrap(_reference_key(v, wanted, scope), d))
    if name == "exists":
        if args:
            target = _filter(target, scope, lambda v: _truthy(args[0], v, scope))
        return _single(exp.GT(this=_size(target, d), expression=_number(0)), d)
    if name == "empty":
        return _single(exp.EQ(this=_size(target, d), expression=_number(0)), d)
    if name == "count":
        return _single(_size(target, d), d)
    if name == "first":
        return d.slice(target, _number(1))
    if name == "last":
        return d.slice(target, _number(-1))
    if name == "not":
        return _wrap(exp.Not(this=exp.paren(_boolean(target, d))), d)
    if name == "where" and len(args) == 1:
        return _filter(target, scope, lambda v: _truthy(args[0], v, scope))
    if name == "select" and len(args) == 1:
        return _each(
            target, scope, lambda v: compile_path(args[0], exp.Array(expressions=[v]), scope)
        )
    if name == "join":
        separator: exp.Expr = _string("")
        if args:
            separator = d.text(d.first(compile_path(args[0], context, scope)))
        var = scope.var()
        texts = d.fn("list_transform", target, _lambda(d.text(var), var))
        return _single(d.fn("array_to_string", texts, separator), d)
    if name == "extension" and len(args) == 1:
        url = d.text(d.first(compile_path(args[0], context, scope)))
        extensions = _each(target, scope, lambda v: _children(v, "extension", scope))
        return _filter(
            extensions,
            scope,
            lambda v: exp.EQ(this=d.text(scope.child(v, "url")), expression=url.copy()),
        )
    if name == "ofType" and len(args) == 1 and isinstance(args[0], TypeName):
        test = _TYPE_TESTS.get(args[0].name)
        if test is None:
            return target
        return _filter(target, scope, getattr(d, test))
    raise InputError(f"FHIRPath function {name}()", "is not supported")


def _truthy(criteria: Node, item: exp.Expr, scope: _Scope) -> exp.Expr:
    """Whether `criteria` is true for one item (empty counts as false)."""
    value = compile_path(criteria, exp.Array(expressions=[item]), scope)
    return exp.func("coalesce", _boolean(value, scope.dialect), exp.false())


# --- ViewDefinitions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    path: Node
    source: str
    type: str | None
    collection: bool


def _invalid(reason: str) -> InputError:
    return InputError("ViewDefinition", reason)


def _columns_of(select: dict[str, Any], where: str) -> list[Column]:
    """Validate one selection's columns, nested selects and unionAll branches (the spec's
    ValidateColumns) and return its columns in output order."""
    if not isinstance(select, dict):
        raise _invalid(f"{where}: a select must be an object")
    for key in ("forEach", "forEachOrNull"):
        if key in select and not isinstance(select[key], str):
            raise _invalid(f"{where}.{key}: must be a FHIRPath expression (text)")
    if "forEach" in select and "forEachOrNull" in select:
        raise _invalid(f"{where}: forEach and forEachOrNull cannot both be given")
    for key in ("forEach", "forEachOrNull"):
        if key in select:
            parse(select[key])
    if "repeat" in select:
        paths = select["repeat"]
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise _invalid(f"{where}.repeat: must be a list of FHIRPath expressions")
        if "forEach" in select or "forEachOrNull" in select:
            raise _invalid(f"{where}: repeat cannot be combined with forEach or forEachOrNull")
        for path in paths:
            parse(path)
    out: list[Column] = []
    for i, col in enumerate(select.get("column") or []):
        if not isinstance(col, dict) or not isinstance(col.get("name"), str):
            raise _invalid(f"{where}.column[{i}]: needs a name")
        if not _NAME.fullmatch(col["name"]):
            raise _invalid(f"{where}.column[{i}]: {col['name']!r} is not a valid column name")
        if not isinstance(col.get("path"), str):
            raise _invalid(f"{where}.column[{i}] ({col['name']}): needs a FHIRPath path")
        out.append(
            Column(
                col["name"],
                parse(col["path"]),
                col["path"],
                col.get("type"),
                bool(col.get("collection", False)),
            )
        )
    for i, sub in enumerate(select.get("select") or []):
        out += _columns_of(sub, f"{where}.select[{i}]")
    branches = select.get("unionAll") or []
    if branches:
        first = _columns_of(branches[0], f"{where}.unionAll[0]")
        for i, branch in enumerate(branches[1:], start=1):
            names = [c.name for c in _columns_of(branch, f"{where}.unionAll[{i}]")]
            if names != [c.name for c in first]:
                raise _invalid(f"{where}.unionAll[{i}]: columns differ from unionAll[0]")
        out += first
    seen: set[str] = set()
    for col in out:
        if col.name in seen:
            raise _invalid(f"{where}: column {col.name!r} is defined twice")
        seen.add(col.name)
    return out


@dataclass(frozen=True)
class CompiledView:
    """A validated view: its output columns and the query that produces its rows."""

    resource: str
    columns: tuple[Column, ...]
    query: exp.Query
    dialect: str = "duckdb"

    def sql(self) -> str:
        return self.query.sql(dialect=self.dialect)


def _constants(view: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, const in enumerate(view.get("constant") or []):
        if not isinstance(const, dict) or not isinstance(const.get("name"), str):
            raise _invalid(f"constant[{i}]: needs a name")
        values = [v for k, v in const.items() if k.startswith("value")]
        if len(values) != 1:
            raise _invalid(f"constant[{i}] ({const['name']}): needs exactly one value[x]")
        out[const["name"]] = values[0]
    return out


#: How deep `repeat` follows its paths. SQL has no recursion inside an expression, so the
#: traversal is unrolled to this depth (QuestionnaireResponse items rarely nest past five).
REPEAT_DEPTH = 10


def _repeat(paths: list[Node], item: exp.Expr, scope: _Scope, depth: int) -> exp.Expr:
    """Every node reached from `item` by applying `paths` again and again (not `item`
    itself), depth first, as the spec's traverse() gives them."""
    d = scope.dialect
    found: exp.Expr = compile_path(paths[0], exp.Array(expressions=[item]), scope)
    for path in paths[1:]:
        found = d.fn(
            "list_concat", found, compile_path(path, exp.Array(expressions=[item.copy()]), scope)
        )
    if depth >= REPEAT_DEPTH:
        return found
    var = scope.var("k")
    below = d.fn("list_concat", exp.Array(expressions=[var]), _repeat(paths, var, scope, depth + 1))
    return d.fn("flatten", d.fn("list_transform", found, _lambda(below, var)))


def _rows(select: dict[str, Any], node: exp.Expr, scope: _Scope) -> tuple[exp.Expr, list[str]]:
    """The rows (a list of rows) one selection makes from one node, and their columns."""
    d = scope.dialect
    if "repeat" in select or "forEach" in select or "forEachOrNull" in select:
        if "repeat" in select:
            foci = _repeat([parse(p) for p in select["repeat"]], node, scope, 1)
        else:
            source = str(select.get("forEach", select.get("forEachOrNull")))
            foci = compile_path(parse(source), exp.Array(expressions=[node]), scope)
        var, index = scope.var("f"), scope.var("i")
        body, names = _product(select, var, scope.nested(d.position(index)))
        rows: exp.Expr = d.fn("flatten", d.fn("list_transform", foci, _lambda(body, var, index)))
        if "forEachOrNull" in select:
            # With no foci there is one row of nulls.
            rows = _let(
                foci,
                scope,
                lambda c: _template(
                    "CASE WHEN {n} = 0 THEN [{blank}] ELSE {rows} END",
                    n=_size(c, d),
                    blank=d.blank_row(names),
                    rows=d.fn("flatten", d.fn("list_transform", c, _lambda(body, var, index))),
                ),
            )
        return rows, names
    return _product(select, node, scope)


def _product(select: dict[str, Any], node: exp.Expr, scope: _Scope) -> tuple[exp.Expr, list[str]]:
    """The Cartesian product of a selection's parts (its columns, each nested select, and its
    unionAll branches), each part a list of partial rows, merged into whole rows; and the
    columns of those rows."""
    d = scope.dialect
    parts: list[tuple[exp.Expr, list[str]]] = []
    columns = select.get("column") or []
    if columns:
        pairs: list[tuple[str, exp.Expr]] = []
        for col in columns:
            value = compile_path(parse(col["path"]), exp.Array(expressions=[node]), scope)
            cell: exp.Expr
            if col.get("collection"):
                cell = d.list_value(value)
            else:
                message = (
                    f"column {col['name']}: multiple values found but not expected "
                    "(set collection: true)"
                )
                cell = _let_value(
                    value,
                    scope,
                    lambda c, message=message: _template(
                        "CASE WHEN {n} = 0 THEN {null} WHEN {n} = 1 THEN {one} ELSE {err} END",
                        n=_size(c, d),
                        null=d.null_value(),
                        one=d.first(c),
                        err=d.error(message),
                    ),
                )
            pairs.append((col["name"], cell))
        parts.append((exp.Array(expressions=[d.row(pairs)]), [name for name, _ in pairs]))
    for sub in select.get("select") or []:
        parts.append(_rows(sub, node, scope))
    branches = [_rows(b, node, scope) for b in select.get("unionAll") or []]
    if branches:
        union = d.fn("flatten", exp.Array(expressions=[rows for rows, _ in branches]))
        parts.append((union, branches[0][1]))
    if not parts:
        return exp.Array(expressions=[d.blank_row([])]), []
    acc, names = parts[0]
    for part, part_names in parts[1:]:
        a, b = scope.var("a"), scope.var("b")
        # A part without columns only repeats rows; its (empty) rows are not merged.
        merged = d.merge(a, b) if names and part_names else a if names else b
        inner = d.fn("list_transform", part, _lambda(merged, b))
        acc = d.fn("flatten", d.fn("list_transform", acc, _lambda(inner, a)))
        names = names + part_names
    return acc, names


def _output(col: Column, row: exp.Expr, d: Dialect) -> exp.Expr:
    value = d.row_get(row, col.name)
    if col.collection:
        return d.json_text(value)
    if col.type in _PRIMITIVE_TYPES:
        target = _PRIMITIVE_TYPES[col.type]
        text = d.text(value)
        if target == "BIGINT":  # arithmetic gives '3.0'; read it as a number first
            text = exp.cast(text, exp.DataType.build("DECIMAL(38, 9)"))
        return exp.cast(text, target)
    if col.type in _TEXT_TYPES:
        return d.text(value)
    return d.json_text(value)


def compile_view(view: Any, table: str = RESOURCE_TABLE, dialect: str = "duckdb") -> CompiledView:
    """Validate a ViewDefinition (as parsed JSON) and compile it to one query over `table`
    (`resource_type`, `resource` as the engine's JSON) in `dialect` (duckdb or spark).
    Raises InputError naming what is wrong."""
    if not isinstance(view, dict) or not view:
        raise _invalid("a ViewDefinition must be a non-empty object")
    resource = view.get("resource")
    if not isinstance(resource, str) or not resource:
        raise _invalid("resource: the resource type the view reads is required")
    if not view.get("select"):
        raise _invalid("select: at least one select is required")
    if dialect not in DIALECTS:
        raise _invalid(f"no {dialect!r} dialect; choose from {', '.join(DIALECTS)}")
    d = DIALECTS[dialect]
    columns = _columns_of({"select": view["select"]}, "view")
    constants = _constants(view)
    wheres = []
    for i, where in enumerate(view.get("where") or []):
        if not isinstance(where, dict) or not isinstance(where.get("path"), str):
            raise _invalid(f"where[{i}]: needs a FHIRPath path")
        wheres.append((i, where["path"], parse(where["path"])))
    r = exp.column("resource", "r")
    scope = _Scope(r, constants, d)
    rows, _ = _rows({"select": view["select"]}, r, scope)
    conditions: list[exp.Expr] = []
    for i, path, node in wheres:
        value = compile_path(node, exp.Array(expressions=[r]), scope)
        message = f"where[{i}] {path!r} does not give a boolean"
        conditions.append(
            _let_value(
                value,
                scope,
                lambda c, message=message: _template(
                    "CASE WHEN {n} = 0 THEN FALSE WHEN {isbool} THEN CAST({t} AS BOOLEAN) "
                    "ELSE {err} IS NOT NULL END",
                    n=_size(c, d),
                    isbool=d.is_boolean(d.first(c)),
                    t=d.text(d.first(c)),
                    err=d.error(message),
                ),
            )
        )
    source = (
        exp.select(exp.column("resource"))
        .from_(exp.to_table(table))
        .where(exp.EQ(this=exp.column("resource_type"), expression=_string(resource)))
    )
    if scope.top:
        source = source.select(d.children(exp.column("resource"), list(scope.top)).as_(TOP))
    unnested = (
        exp.select(
            exp.Explode(this=rows).as_("row")
            if dialect == "spark"
            else _call_sql("unnest", rows).as_("row")
        )
        .from_(source.subquery("r"))
        .where(*conditions)
    )
    row = exp.column("row", "u")
    query = exp.select(*[_output(c, row, d).as_(c.name) for c in columns]).from_(
        unnested.subquery("u")
    )
    return CompiledView(resource, tuple(columns), query, dialect)
