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
from typing import Any

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
    """A DuckDB expression from a template whose `{name}` holes are filled with expressions."""
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


def _fn(name: str, *args: exp.Expr) -> exp.Expr:
    """A DuckDB function call, built without copying its (often large) arguments."""
    return exp.Anonymous(this=name, expressions=list(args))


def _string(value: str) -> exp.Expr:
    return exp.Literal.string(value)


EMPTY = "CAST([] AS JSON[])"


@dataclass
class _Scope:
    """What an expression can see: the resource, view constants and %rowIndex."""

    resource: exp.Expr
    constants: dict[str, Any]
    row_index: exp.Expr | None = None
    counter: Iterator[int] = field(default_factory=itertools.count)

    def var(self, prefix: str = "v") -> exp.Expr:
        return exp.column(f"{prefix}{next(self.counter)}")


def _children(item: exp.Expr, name: str) -> exp.Expr:
    """The collection of `item`'s children called `name` (an array is spread out)."""
    return _template(
        "CASE WHEN json_type(json_extract({x}, {p})) = 'ARRAY' "
        "THEN CAST(json_extract({x}, {p}) AS JSON[]) "
        "WHEN json_extract({x}, {p}) IS NULL OR json_type(json_extract({x}, {p})) = 'NULL' "
        f"THEN {EMPTY} ELSE [json_extract({{x}}, {{p}})] END",
        x=item,
        p=_string(f'$."{name}"'),
    )


def _each(collection: exp.Expr, scope: _Scope, body: Any) -> exp.Expr:
    """flatten(list_transform(collection, v -> body(v))): `body` returns a collection."""
    var = scope.var()
    lam = exp.Lambda(this=body(var), expressions=[exp.to_identifier(var.name)])
    return _fn("flatten", _fn("list_transform", collection, lam))


def _filter(collection: exp.Expr, scope: _Scope, test: Any) -> exp.Expr:
    var = scope.var()
    lam = exp.Lambda(this=test(var), expressions=[exp.to_identifier(var.name)])
    return _fn("list_filter", collection, lam)


def _single(value: exp.Expr) -> exp.Expr:
    return exp.Array(expressions=[_fn("to_json", value)])


def _wrap(value: exp.Expr) -> exp.Expr:
    """A SQL value as a collection: empty when NULL."""
    return _template(
        f"CASE WHEN {{v}} IS NULL THEN {EMPTY} ELSE [to_json({{v}})] END", v=exp.paren(value)
    )


def _first(collection: exp.Expr) -> exp.Expr:
    return _template("{c}[1]", c=collection)


def _text(item: exp.Expr) -> exp.Expr:
    return _fn("json_extract_string", item, _string("$"))


def _boolean(collection: exp.Expr) -> exp.Expr:
    """A collection as a SQL boolean: NULL when empty, else its single item's truth."""
    return _template(
        "CASE WHEN len({c}) = 0 THEN NULL "
        "ELSE CAST(json_extract_string({c}[1], '$') AS BOOLEAN) END",
        c=collection,
    )


def _number(item: exp.Expr) -> exp.Expr:
    return exp.cast(_text(item), exp.DataType.Type.DOUBLE)


_NUMERIC = "('UBIGINT', 'BIGINT', 'DOUBLE')"


def _compare(op: str, left: exp.Expr, right: exp.Expr) -> exp.Expr:
    """`left op right` on singletons, numerically when both are numbers; empty if either is."""
    a, b = _first(left), _first(right)
    sql_op = {"=": "=", "!=": "<>", "<": "<", ">": ">", "<=": "<=", ">=": ">="}[op]
    body = (
        f"CASE WHEN len({{l}}) = 0 OR len({{r}}) = 0 THEN NULL "
        f"WHEN json_type({{a}}) IN {_NUMERIC} AND json_type({{b}}) IN {_NUMERIC} "
        f"THEN CAST(json_extract_string({{a}}, '$') AS DOUBLE) {sql_op} "
        f"CAST(json_extract_string({{b}}, '$') AS DOUBLE) "
        f"ELSE json_extract_string({{a}}, '$') {sql_op} json_extract_string({{b}}, '$') END"
    )
    return _wrap(_template(body, l=left, r=right, a=a, b=b))


def _arithmetic(op: str, left: exp.Expr, right: exp.Expr) -> exp.Expr:
    a, b = _first(left), _first(right)
    if op == "&":
        body = (
            "coalesce(json_extract_string({a}, '$'), '') "
            "|| coalesce(json_extract_string({b}, '$'), '')"
        )
        return _single(_template(body, a=a, b=b))
    sql_op = {"+": "+", "-": "-", "*": "*", "/": "/", "div": "//", "mod": "%"}[op]
    body = (
        f"CASE WHEN len({{l}}) = 0 OR len({{r}}) = 0 THEN NULL "
        f"WHEN json_type({{a}}) = 'VARCHAR' AND '{op}' = '+' "
        f"THEN to_json(json_extract_string({{a}}, '$') || json_extract_string({{b}}, '$')) "
        f"ELSE to_json(CAST(json_extract_string({{a}}, '$') AS DOUBLE) {sql_op} "
        f"CAST(json_extract_string({{b}}, '$') AS DOUBLE)) END"
    )
    value = _template(body, l=left, r=right, a=a, b=b)
    return _template(f"CASE WHEN {{v}} IS NULL THEN {EMPTY} ELSE [{{v}}] END", v=value)


def _reference_key(item: exp.Expr, type_name: str | None) -> exp.Expr:
    """`Type/id` from a Reference's literal reference (relative or absolute URL); NULL when
    there is none or it is not of `type_name`."""
    key = _template(
        "nullif(regexp_extract(json_extract_string({x}, '$.reference'), "
        "'([A-Za-z]+/[A-Za-z0-9\\-\\.]{1,64})(/_history/[^/]+)?$', 1), '')",
        x=item,
    )
    if type_name is None:
        return key
    return _template(
        "CASE WHEN starts_with({k}, {t}) THEN {k} END", k=key, t=_string(f"{type_name}/")
    )


def _constant(value: Any) -> exp.Expr:
    return _single(exp.convert(value))


_FUNCTIONS_WITHOUT_ARGS = {"exists", "empty", "first", "last", "count", "not", "getResourceKey",
                           "join", "hasValue", "lowBoundary", "highBoundary"}  # fmt: skip


def compile_path(node: Node, context: exp.Expr, scope: _Scope) -> exp.Expr:
    """The SQL (a JSON[] collection) of FHIRPath `node` evaluated on collection `context`."""
    if isinstance(node, This):
        return context
    if isinstance(node, Literal):
        return _constant(node.value)
    if isinstance(node, Constant):
        if node.name == "rowIndex":
            if scope.row_index is None:
                return _constant(0)
            return _single(scope.row_index)
        if node.name not in scope.constants:
            raise InputError(f"%{node.name}", "no such constant in the view")
        return _constant(scope.constants[node.name])
    if isinstance(node, Member):
        target = compile_path(node.target, context, scope)
        return _each(target, scope, lambda v: _children(v, node.name))
    if isinstance(node, Index):
        target = compile_path(node.target, context, scope)
        index = compile_path(node.index, context, scope)
        position = _template("CAST(json_extract_string({i}[1], '$') AS BIGINT) + 1", i=index)
        return _fn("list_slice", target, position, position.copy())
    if isinstance(node, Binary):
        return _binary(node, context, scope)
    if isinstance(node, Call):
        return _call(node, context, scope)
    raise InputError("FHIRPath", f"cannot compile {node}")


def _binary(node: Binary, context: exp.Expr, scope: _Scope) -> exp.Expr:
    left = compile_path(node.left, context, scope)
    right = compile_path(node.right, context, scope)
    op = node.op
    if op in ("and", "or"):
        sql = exp.and_ if op == "and" else exp.or_
        return _wrap(sql(exp.paren(_boolean(left)), exp.paren(_boolean(right))))
    if op == "xor":
        return _wrap(exp.NEQ(this=_boolean(left), expression=_boolean(right)))
    if op == "implies":
        return _wrap(exp.or_(exp.Not(this=exp.paren(_boolean(left))), exp.paren(_boolean(right))))
    if op in ("=", "!=", "<", ">", "<=", ">="):
        return _compare(op, left, right)
    if op in ("+", "-", "*", "/", "div", "mod", "&"):
        return _arithmetic(op, left, right)
    if op == "|":
        return _fn("list_distinct", _fn("list_concat", left, right))
    if op in ("in", "contains"):
        item, coll = (left, right) if op == "in" else (right, left)
        return _wrap(
            _template(
                "CASE WHEN len({i}) = 0 THEN NULL ELSE list_contains("
                "list_transform({c}, lambda q: json_extract_string(q, '$')), "
                "json_extract_string({i}[1], '$')) END",
                i=item,
                c=coll,
            )
        )
    raise InputError("FHIRPath", f"operator {op!r} is not supported")


def _call(node: Call, context: exp.Expr, scope: _Scope) -> exp.Expr:
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
            "json_extract_string({r}, '$.resourceType') || '/' || json_extract_string({r}, '$.id')",
            r=scope.resource,
        )
        return _wrap(key)
    target = compile_path(node.target, context, scope)
    if name == "getReferenceKey":
        wanted = args[0].name if args and isinstance(args[0], TypeName) else None
        return _each(target, scope, lambda v: _wrap(_reference_key(v, wanted)))
    if name == "exists":
        if args:
            target = _filter(target, scope, lambda v: _truthy(args[0], v, scope))
        return _single(exp.GT(this=_fn("len", target), expression=exp.Literal.number(0)))
    if name == "empty":
        return _single(exp.EQ(this=_fn("len", target), expression=exp.Literal.number(0)))
    if name == "count":
        return _single(_fn("len", target))
    if name == "first":
        return _fn("list_slice", target, exp.Literal.number(1), exp.Literal.number(1))
    if name == "last":
        return _fn("list_slice", target, exp.Literal.number(-1), exp.Literal.number(-1))
    if name == "not":
        return _wrap(exp.Not(this=exp.paren(_boolean(target))))
    if name == "where" and len(args) == 1:
        return _filter(target, scope, lambda v: _truthy(args[0], v, scope))
    if name == "select" and len(args) == 1:
        return _each(
            target, scope, lambda v: compile_path(args[0], exp.Array(expressions=[v]), scope)
        )
    if name == "join":
        separator: exp.Expr = _string("")
        if args:
            sep = compile_path(args[0], context, scope)
            separator = _text(_first(sep))
        var = scope.var()
        texts = _fn(
            "list_transform",
            target,
            exp.Lambda(this=_text(var), expressions=[exp.to_identifier(var.name)]),
        )
        return _single(_fn("array_to_string", texts, separator))
    if name == "extension" and len(args) == 1:
        url = compile_path(args[0], context, scope)
        extensions = _each(target, scope, lambda v: _children(v, "extension"))
        return _filter(
            extensions,
            scope,
            lambda v: exp.EQ(
                this=_fn("json_extract_string", v, _string("$.url")),
                expression=_text(_first(url)),
            ),
        )
    if name == "ofType" and len(args) == 1 and isinstance(args[0], TypeName):
        json_types = {
            "string": "('VARCHAR')",
            "boolean": "('BOOLEAN')",
            "integer": "('UBIGINT', 'BIGINT')",
            "decimal": _NUMERIC,
        }.get(args[0].name)
        if json_types is None:
            return target
        return _filter(target, scope, lambda v: _template(f"json_type({{v}}) IN {json_types}", v=v))
    raise InputError(f"FHIRPath function {name}()", "is not supported")


def _truthy(criteria: Node, item: exp.Expr, scope: _Scope) -> exp.Expr:
    """Whether `criteria` is true for one item (empty counts as false)."""
    value = compile_path(criteria, exp.Array(expressions=[item]), scope)
    return _fn("coalesce", _boolean(value), exp.false())


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

    def sql(self) -> str:
        return self.query.sql(dialect="duckdb")


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


def _rows(select: dict[str, Any], node: exp.Expr, scope: _Scope) -> exp.Expr:
    """The rows (a JSON[] of objects) one selection makes from one node."""
    if "forEach" in select or "forEachOrNull" in select:
        source = str(select.get("forEach", select.get("forEachOrNull")))
        foci = compile_path(parse(source), exp.Array(expressions=[node]), scope)
        var, index = scope.var("f"), scope.var("i")
        inner = _Scope(scope.resource, scope.constants, index, scope.counter)
        body = _product(select, var, inner)
        lam = exp.Lambda(
            this=body, expressions=[exp.to_identifier(var.name), exp.to_identifier(index.name)]
        )
        rows: exp.Expr = _fn("flatten", _fn("list_transform", foci, lam))
        if "forEachOrNull" in select:
            rows = _template(
                "CASE WHEN len({foci}) = 0 THEN [CAST('{}' AS JSON)] ELSE {rows} END",
                foci=foci.copy(),
                rows=rows,
            )
        return rows
    return _product(select, node, scope)


def _product(select: dict[str, Any], node: exp.Expr, scope: _Scope) -> exp.Expr:
    """The Cartesian product of a selection's parts (its columns, each nested select, and its
    unionAll branches), each part a list of partial rows, merged into whole rows."""
    parts: list[exp.Expr] = []
    columns = select.get("column") or []
    if columns:
        pairs: list[exp.Expr] = []
        for col in columns:
            value = compile_path(parse(col["path"]), exp.Array(expressions=[node]), scope)
            cell: exp.Expr
            if col.get("collection"):
                cell = _fn("to_json", value)
            else:
                cell = _template(
                    "CASE WHEN len({v}) = 0 THEN NULL WHEN len({v}) = 1 THEN {v}[1] "
                    "ELSE error({msg}) END",
                    v=value,
                    msg=_string(
                        f"column {col['name']}: multiple values found but not expected "
                        "(set collection: true)"
                    ),
                )
            pairs += [_string(col["name"]), cell]
        parts.append(exp.Array(expressions=[_fn("json_object", *pairs)]))
    for sub in select.get("select") or []:
        parts.append(_rows(sub, node, scope))
    branches = select.get("unionAll") or []
    if branches:
        parts.append(
            _fn("flatten", exp.Array(expressions=[_rows(b, node, scope) for b in branches]))
        )
    acc: exp.Expr = _template("[CAST('{}' AS JSON)]")
    for part in parts:
        a, b = scope.var("a"), scope.var("b")
        merged = _fn("json_merge_patch", a, b)
        inner = _fn(
            "list_transform", part, exp.Lambda(this=merged, expressions=[exp.to_identifier(b.name)])
        )
        acc = _fn(
            "flatten",
            _fn(
                "list_transform",
                acc,
                exp.Lambda(this=inner, expressions=[exp.to_identifier(a.name)]),
            ),
        )
    return acc


def _output(col: Column, row: exp.Expr) -> exp.Expr:
    value = _fn("json_extract", row, _string(f'$."{col.name}"'))
    if col.collection:
        return value
    if col.type in _PRIMITIVE_TYPES:
        return exp.cast(_text(value), _PRIMITIVE_TYPES[col.type])
    if col.type in _TEXT_TYPES:
        return _text(value)
    return value


def compile_view(view: Any, table: str = RESOURCE_TABLE) -> CompiledView:
    """Validate a ViewDefinition (as parsed JSON) and compile it to one query over `table`
    (`resource_type`, `resource` JSON). Raises InputError naming what is wrong."""
    if not isinstance(view, dict) or not view:
        raise _invalid("a ViewDefinition must be a non-empty object")
    resource = view.get("resource")
    if not isinstance(resource, str) or not resource:
        raise _invalid("resource: the resource type the view reads is required")
    if not view.get("select"):
        raise _invalid("select: at least one select is required")
    columns = _columns_of({"select": view["select"]}, "view")
    constants = _constants(view)
    wheres = []
    for i, where in enumerate(view.get("where") or []):
        if not isinstance(where, dict) or not isinstance(where.get("path"), str):
            raise _invalid(f"where[{i}]: needs a FHIRPath path")
        wheres.append((i, where["path"], parse(where["path"])))
    r = exp.column("resource", "r")
    scope = _Scope(r, constants)
    rows = _rows({"select": view["select"]}, r, scope)
    conditions: list[exp.Expr] = [
        exp.EQ(this=exp.column("resource_type", "r"), expression=_string(resource))
    ]
    for i, path, node in wheres:
        value = compile_path(node, exp.Array(expressions=[r]), scope)
        conditions.append(
            _template(
                "CASE WHEN len({v}) = 0 THEN FALSE WHEN json_type({v}[1]) = 'BOOLEAN' "
                "THEN CAST(json_extract_string({v}[1], '$') AS BOOLEAN) ELSE error({msg}) END",
                v=value,
                msg=_string(f"where[{i}] {path!r} does not give a boolean"),
            )
        )
    unnested = (
        exp.select(_fn("unnest", rows).as_("row"))
        .from_(exp.to_table(table).as_("r"))
        .where(*conditions)
    )
    row = exp.column("row", "u")
    query = exp.select(*[_output(c, row).as_(c.name) for c in columns]).from_(
        unnested.subquery("u")
    )
    return CompiledView(resource, tuple(columns), query)
