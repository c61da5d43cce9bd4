"""SQL-on-FHIR v2 ViewDefinitions: validated, then compiled to one SQL query that runs inside
DuckDB (or Spark) over a table of raw resources (`resource_type`, `resource` JSON).

Every FHIRPath expression becomes a SQL expression whose value is a FHIRPath collection: a
`JSON[]` list. Navigation flattens lists with `list_transform`; `where` is `list_filter`;
`forEach` maps each focus to its rows; a view's rows for one resource are a list of rows
(DuckDB STRUCTs of JSON values), unnested at the end. Nothing is interpreted resource by
resource in Python.

On DuckDB a JSON value is text, parsed again by every read, so the SQL reads little:
- every path of object keys the view reads from the resource (`a`, `a.b`) is read in one
  pass (`_Prefetch`), and a member chain stays a list of values not yet spread (`_values`),
  with each step written for the usual case, a value that is not an array, apart from the
  general one (`_per_branch`); an element FHIR R4 says holds one value is not read whole
  to tell it is not an array: its first array item tells (`_Scope.first_item`);
- the contexts that need less than a whole collection get their own compilers:
  `compile_first` (first item), `_only` (a column's single value), `compile_boolean` (a
  criterion as a SQL boolean);
- a value used several times is bound to a lambda variable once (`_let`), and the parts of a
  resource's rows are computed once, side by side (`_Scope.bind`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from joinedup.errors import InputError
from joinedup.fhir.elements import single_paths
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
from joinedup.fhir.typed import GENERAL_PATH, TYPE_COLUMN, TYPED_SOURCE, typed_plan
from joinedup.warehouse import JSON_DIALECTS, JsonDialect

RESOURCE_TABLE = "fhir_resource"
TOP = "top"  # the list of values prefetched from each resource
PART = "part"  # the parts of a resource's rows, computed once (`_Scope.bind`)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: A path in a resource: object keys, and 0 for the first item of an array.
Path = tuple[str | int, ...]
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


def _string(value: str) -> exp.Expr:
    return exp.Literal.string(value)


def _number(value: int) -> exp.Expr:
    return exp.Literal.number(value)


def _call_sql(name: str, *args: exp.Expr) -> exp.Expr:
    """A function call, built without copying its (often large) arguments."""
    return exp.Anonymous(this=name, expressions=list(args))


def _case(*whens: tuple[exp.Expr, exp.Expr], default: exp.Expr | None = None) -> exp.Case:
    """CASE WHEN condition THEN value ... ELSE default END."""
    case = exp.Case()
    for condition, value in whens:
        case = case.when(condition, value, copy=False)
    return case.else_(default, copy=False) if default is not None else case


def _is_zero(value: exp.Expr) -> exp.Expr:
    return exp.EQ(this=value, expression=_number(0))


def _double(value: exp.Expr) -> exp.Expr:
    return exp.cast(value, exp.DataType.Type.DOUBLE)


#: FHIRPath comparison operators and the sqlglot node of each.
_COMPARISON_NODES: dict[str, type[exp.Binary]] = {
    "=": exp.EQ, "!=": exp.NEQ, "<": exp.LT, ">": exp.GT, "<=": exp.LTE, ">=": exp.GTE,
}  # fmt: skip
#: FHIRPath arithmetic operators on numbers and the sqlglot node of each.
_ARITHMETIC_NODES: dict[str, type[exp.Binary]] = {
    "+": exp.Add, "-": exp.Sub, "*": exp.Mul, "/": exp.Div, "div": exp.IntDiv, "mod": exp.Mod,
}  # fmt: skip


@dataclass
class _Prefetch:
    """The values a view reads from the resource (at chains of object keys, `paths`), all
    read in one pass into the list `r.top` (see `JsonDialect.read_all`)."""

    resource: exp.Expr
    #: Each path read and its position in `r.top`; a path ending in 0 is the first item of
    #: the array at the path before it (see `_Scope.first_item`).
    paths: dict[Path, int] = field(default_factory=dict)
    #: Paths of elements that hold one value in FHIR R4 (`fhir.elements.single_paths`).
    single: frozenset[Path] = frozenset()

    def at(self, position: int) -> exp.Expr:
        # sqlglot counts list positions from 0 and writes DuckDB's from 1
        return exp.Bracket(this=exp.column(TOP, "r"), expressions=[_number(position - 1)])

    def read(self, path: Path) -> exp.Expr:
        """The value at `path`, read with the others in one pass."""
        return self.at(self.paths.setdefault(path, len(self.paths) + 1))

    def path_of(self, value: exp.Expr) -> Path | None:
        """The path of `value` when it is the resource or read from it here."""
        if value == self.resource:
            return ()
        if isinstance(value, exp.Bracket):
            for path, position in self.paths.items():
                if value == self.at(position):
                    return path
        return None


@dataclass
class _Scope:
    """What an expression can see: the resource, view constants, %rowIndex and the engine.

    With a dialect that prefetches, `prefetch` collects what the view reads from the
    resource, and `child` reads it from there."""

    resource: exp.Expr
    constants: dict[str, Any]
    dialect: JsonDialect
    row_index: exp.Expr | None = None
    counter: Iterator[int] = field(default_factory=itertools.count)
    prefetch: _Prefetch | None = None
    #: Values computed once per resource before its rows are put together, as columns
    #: `r.part<i>` of a query of their own; None where that is not possible (in a forEach).
    parts: list[exp.Expr] | None = None

    #: Read each value from the resource on its own, not prefetched (see `_where_values`).
    direct: bool = False

    def __post_init__(self) -> None:
        if self.dialect.prefetch and self.prefetch is None and not self.direct:
            self.prefetch = _Prefetch(self.resource)

    def var(self, prefix: str = "v") -> exp.Expr:
        return exp.column(f"{prefix}{next(self.counter)}")

    def nested(self, row_index: exp.Expr) -> _Scope:
        return _Scope(
            self.resource,
            self.constants,
            self.dialect,
            row_index,
            self.counter,
            self.prefetch,
            direct=self.direct,
        )

    def bind(self, value: exp.Expr) -> exp.Expr:
        """`value`, or the column it is computed into once when that is possible (not for a
        value made from such columns: they are all computed side by side)."""
        if self.parts is None or _cheap(value):
            return value
        if any(c.name.startswith(PART) for c in value.find_all(exp.Column) if c.table == "r"):
            return value
        self.parts.append(value)
        return exp.column(f"{PART}{len(self.parts) - 1}", "r")

    def child(self, item: exp.Expr, name: str) -> exp.Expr:
        """`item`'s child `name` as one JSON value (an array is not spread)."""
        path = self.path_of(item)
        if self.prefetch is None or path is None:
            return self.dialect.child(item, name)
        # `$.a.b` is `b` of `$.a` when `$.a` is an object, and missing (as `b` of it is)
        # when `$.a` is anything else.
        return self.prefetch.read((*path, name))

    def first_item(self, item: exp.Expr) -> tuple[exp.Expr, exp.Expr] | None:
        """For a prefetched `item` at a path FHIR R4 says holds one value: the first item of
        the array there (missing unless `item` is a non-empty array), and `item` read on its
        own (not prefetched). None for any other `item`.

        Serialising an object just to tell it is not an array is most of the cost of
        reading it, and such an element is an object in any valid resource: the first
        item tells instead, and `item` itself is read only where it is an array."""
        path = self.path_of(item)
        if self.prefetch is None or not path or path not in self.prefetch.single:
            return None
        return self.prefetch.read((*path, 0)), self.dialect.read_path(self.resource, path)

    def path_of(self, item: exp.Expr) -> Path | None:
        """The path of `item` in the resource when it is the resource or prefetched."""
        return None if self.prefetch is None else self.prefetch.path_of(item)


#: Builds SQL from SQL (often a lambda's body from its variable).
_Body = Callable[[exp.Expr], exp.Expr]


def _lambda(body: exp.Expr, *variables: exp.Expr) -> exp.Expr:
    return exp.Lambda(this=body, expressions=[exp.to_identifier(v.name) for v in variables])


def _child_text(item: exp.Expr, name: str, scope: _Scope) -> exp.Expr:
    """`item`'s child `name` as text (not spread), read in one step."""
    if scope.path_of(item) is not None:
        return scope.dialect.text(scope.child(item, name))
    return scope.dialect.child_text(item, name)


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


def _one(collection: exp.Expr) -> exp.Expr | None:
    """The item of a list written `[x]`, else None."""
    if isinstance(collection, exp.Array) and len(collection.expressions) == 1:
        item: exp.Expr = collection.expressions[0]
        return item
    return None


def _sole(collection: exp.Expr) -> exp.Expr | None:
    """The item of a list written `[x]` with `x` cheap, else None."""
    item = _one(collection)
    return item if item is not None and _cheap(item) else None


def _map(collection: exp.Expr, scope: _Scope, body: _Body) -> exp.Expr:
    """transform(collection, v -> body(v)): `body` returns one value. Over the rows
    `_union_without_foci` writes, each branch of its CASE is transformed instead, so the
    usual resource's one row stays a list of one written out."""
    if isinstance(collection, exp.Case) and collection.meta.get(_WITHOUT_FOCI):
        [when] = collection.args["ifs"]
        [row] = when.args["true"].expressions
        case = _case(
            (when.this, exp.Array(expressions=[body(row)])),
            default=_map(collection.args["default"], scope, body),
        )
        case.meta[_WITHOUT_FOCI] = True
        return case
    item = _sole(collection)
    if item is not None:
        return exp.Array(expressions=[body(item)])
    var = scope.var()
    return scope.dialect.fn("list_transform", collection, _lambda(body(var), var))


def _each(collection: exp.Expr, scope: _Scope, body: _Body) -> exp.Expr:
    """flatten(transform(collection, v -> body(v))): `body` returns a collection."""
    item = _sole(collection)
    if item is not None:
        return body(item)  # the same, without a lambda
    var = scope.var()
    d = scope.dialect
    return d.fn("flatten", d.fn("list_transform", collection, _lambda(body(var), var)))


def _filter(collection: exp.Expr, scope: _Scope, test: _Body) -> exp.Expr:
    var = scope.var()
    return scope.dialect.fn("list_filter", collection, _lambda(test(var), var))


def _single(value: exp.Expr, d: JsonDialect) -> exp.Expr:
    return exp.Array(expressions=[d.value(value)])


def _wrap(value: exp.Expr, d: JsonDialect) -> exp.Expr:
    """A SQL value as a collection: empty when NULL (the value appears once in the SQL)."""
    var = exp.column("w")
    return d.fn(
        "list_filter",
        exp.Array(expressions=[d.value(exp.paren(value))]),
        _lambda(exp.Not(this=var.is_(exp.null())), var),
    )


def _single_of(value: exp.Expr, error: exp.Expr | None) -> exp.Expr:
    """`value`, the first (`error` None) or only item of one value's spread, marked so a
    typed query can read its text from a leaf read as text (`_text_reads`)."""
    value.meta["single_of"] = error
    return value


def _text_value(text: exp.Expr, d: JsonDialect) -> exp.Expr:
    """`text` (SQL text) as a JSON value, marked so a typed query reads its text as `text`
    (`_text_reads`)."""
    value = d.value(text)
    value.meta["text_value"] = True
    return value


def _let(collection: exp.Expr, scope: _Scope, body: _Body) -> exp.Expr:
    """`body(c)` with the collection bound to a lambda variable `c`, so a large expression
    used several times is written (and evaluated) once. `body` returns a collection."""
    if _cheap(collection):
        return body(collection)
    var = scope.var("c")
    d = scope.dialect
    return d.fn(
        "flatten",
        d.fn("list_transform", exp.Array(expressions=[collection]), _lambda(body(var), var)),
    )


def _let_value(collection: exp.Expr, scope: _Scope, body: _Body) -> exp.Expr:
    """`body(c)` for a body giving one value (not a collection), with `c` bound once."""
    if _cheap(collection):
        return body(collection)
    var = scope.var("c")
    d = scope.dialect
    return d.first(
        d.fn("list_transform", exp.Array(expressions=[collection]), _lambda(body(var), var))
    )


def _let_strict(value: exp.Expr, scope: _Scope, body: _Body) -> exp.Expr:
    """`_let_value` for a `body` that gives NULL for NULL: a value `CASE WHEN c THEN x END`
    with `x` cheap (a `where()` read in one pass) becomes `CASE WHEN c THEN body(x) END`,
    with no list and lambda to bind it."""
    ifs = value.args.get("ifs") or [] if isinstance(value, exp.Case) else []
    if len(ifs) == 1 and value.args.get("default") is None and _cheap(ifs[0].args["true"]):
        return _case((ifs[0].this, body(ifs[0].args["true"])))
    return _let_value(value, scope, body)


def _size(collection: exp.Expr, d: JsonDialect) -> exp.Expr:
    return d.fn("len", collection)


def _boolean(collection: exp.Expr, d: JsonDialect) -> exp.Expr:
    """A collection as a SQL boolean: NULL when empty, else its first item's truth."""
    return exp.cast(d.text(d.first(collection)), exp.DataType.Type.BOOLEAN)


_LOGIC = {"and", "or", "xor", "implies"}


def _never_number(node: Node, scope: _Scope) -> bool:
    """Whether `node` is a literal or view constant that is text or a boolean, never a number."""
    value: Any = None
    if isinstance(node, Literal):
        value = node.value
    elif isinstance(node, Constant) and node.name in scope.constants:
        value = scope.constants[node.name]
    return isinstance(value, str | bool)


def _compare(node: Binary, context: exp.Expr, scope: _Scope) -> exp.Expr:
    """`left op right` on singletons as a SQL boolean, numerically when both are numbers;
    NULL (empty) if either is empty."""
    d = scope.dialect
    node_of = _COMPARISON_NODES[node.op]
    a = compile_first(node.left, context, scope)
    b = compile_first(node.right, context, scope)
    if _never_number(node.left, scope) or _never_number(node.right, scope):
        return node_of(this=d.text(a), expression=d.text(b))

    def compare(x: exp.Expr, y: exp.Expr) -> exp.Expr:
        both_numbers = exp.and_(exp.paren(d.is_number(x)), exp.paren(d.is_number(y)))
        return _case(
            (both_numbers, node_of(this=_double(d.text(x)), expression=_double(d.text(y)))),
            default=node_of(this=d.text(x), expression=d.text(y)),
        )

    return _let_value(a, scope, lambda x: _let_value(b, scope, lambda y: compare(x, y)))


def _text_constant(node: Node, scope: _Scope) -> str | None:
    """The text of a literal or view constant that is text, else None."""
    if isinstance(node, Literal) and isinstance(node.value, str):
        return node.value
    if isinstance(node, Constant) and isinstance(scope.constants.get(node.name), str):
        return str(scope.constants[node.name])
    return None


def _child_is(node: Binary, context: exp.Expr, scope: _Scope) -> exp.Expr | None:
    """`name = 'text'` on one item, as the dialect's shortcut (`JsonDialect.first_text_is`), or
    None when there is none. The shortcut may give false where the comparison is empty."""
    for member, other in ((node.left, node.right), (node.right, node.left)):
        text = _text_constant(other, scope)
        item = _sole(context)
        if (
            node.op == "="
            and text is not None
            and isinstance(member, Member)
            and isinstance(member.target, This)
            and item is not None
            and scope.path_of(item) is None
        ):
            return scope.dialect.first_text_is(item, member.name, text)
    return None


def compile_boolean(
    node: Node, context: exp.Expr, scope: _Scope, *, empty_is_false: bool = False
) -> exp.Expr:
    """FHIRPath `node` on `context` as a SQL boolean: NULL when it gives an empty collection,
    else its first item's truth. Logic and comparisons are written as SQL directly, so a
    criterion does not go through a JSON collection and back. With `empty_is_false` (a
    filter, where NULL and false mean the same) the result may be false instead of NULL."""
    d = scope.dialect
    if isinstance(node, Binary) and node.op in _COMPARISON_NODES:
        shortcut = _child_is(node, context, scope) if empty_is_false else None
        return shortcut if shortcut is not None else _compare(node, context, scope)
    if isinstance(node, Binary) and node.op in _LOGIC:
        # `and` and `or` give NULL or false alike when an operand is false rather than NULL.
        monotone = empty_is_false and node.op in ("and", "or")
        left = exp.paren(compile_boolean(node.left, context, scope, empty_is_false=monotone))
        right = exp.paren(compile_boolean(node.right, context, scope, empty_is_false=monotone))
        if node.op == "and":
            return exp.and_(left, right)
        if node.op == "or":
            return exp.or_(left, right)
        if node.op == "xor":
            return exp.NEQ(this=left, expression=right)
        return exp.or_(exp.Not(this=left), right)  # implies
    if isinstance(node, Call) and node.function == "not" and not node.args:
        return exp.Not(this=exp.paren(compile_boolean(node.target, context, scope)))
    return _boolean(compile_path(node, context, scope), d)


def compile_first(node: Node, context: exp.Expr, scope: _Scope) -> exp.Expr:
    """The first item of FHIRPath `node`'s collection on `context` (NULL when empty)."""
    d = scope.dialect
    node = _choice(node)
    if isinstance(node, Member):

        def first(values: exp.Expr) -> exp.Expr:
            value = _one(values)
            if value is not None:
                return _let_strict(value, scope, lambda v: _single_of(d.first_of(v), None))
            return d.first(_spread_all(values, scope))

        return _per_branch(_values(node, context, scope), first)
    if isinstance(node, Call) and node.function == "first" and not node.args:
        return compile_first(node.target, context, scope)
    if isinstance(node, Call) and node.function == "getResourceKey":
        return _text_value(exp.paren(_resource_key_text(scope)), d)  # a value, not a list
    if isinstance(node, Call) and node.function == "getReferenceKey":
        references = _values(Member(node.target, "reference"), context, scope)
        return _reference_key(node).first(references, scope)
    return d.first(compile_path(node, context, scope))


#: Functions whose result has at most one item.
_AT_MOST_ONE = {"first", "last", "exists", "empty", "count", "not", "join", "getResourceKey"}


def _only(node: Node, context: exp.Expr, scope: _Scope, error: exp.Expr) -> exp.Expr:
    """The only item of FHIRPath `node`'s collection on `context`: NULL when it is empty,
    `error` when it has several."""
    d = scope.dialect
    node = _choice(node)
    if isinstance(node, Call) and node.function in _AT_MOST_ONE:
        return compile_first(node, context, scope)

    def only(collection: exp.Expr) -> exp.Expr:
        return _let_value(
            collection,
            scope,
            lambda c: _case(
                (_is_zero(_size(c, d)), d.null_value()),
                (exp.EQ(this=_size(c, d), expression=_number(1)), d.first(c)),
                default=error,
            ),
        )

    if isinstance(node, Member):

        def only_value(values: exp.Expr) -> exp.Expr:
            value = _one(values)
            if value is not None:
                return _let_strict(value, scope, lambda v: _single_of(d.sole_of(v, error), error))
            return only(_spread_all(values, scope))

        return _per_branch(_values(node, context, scope), only_value)
    if isinstance(node, Call) and node.function == "getReferenceKey":
        key = _reference_key(node)

        def only_key(references: exp.Expr) -> exp.Expr:
            if _one(references) is not None:  # one reference has one key at most
                return key.first(references, scope)
            return only(key.collection(references, scope))

        return _per_branch(_values(Member(node.target, "reference"), context, scope), only_key)
    return only(compile_path(node, context, scope))


def _arithmetic(op: str, left: exp.Expr, right: exp.Expr, d: JsonDialect) -> exp.Expr:
    a, b = d.first(left), d.first(right)
    if op == "&":
        empty_text = _string("")
        joined = exp.DPipe(
            this=exp.func("coalesce", d.text(a), empty_text),
            expression=exp.func("coalesce", d.text(b), empty_text.copy()),
        )
        return _single(joined, d)
    numeric = d.value(_ARITHMETIC_NODES[op](this=_double(d.text(a)), expression=_double(d.text(b))))
    either_empty = (exp.or_(_is_zero(_size(left, d)), _is_zero(_size(right, d))), exp.null())
    if op == "+":
        concat = d.value(exp.DPipe(this=d.text(a), expression=d.text(b)))
        value = _case(either_empty, (d.is_string(a), concat), default=numeric)
    else:
        value = _case(either_empty, default=numeric)
    return _case((value.is_(exp.null()), d.empty()), default=exp.Array(expressions=[value.copy()]))


_ID = r"/[A-Za-z0-9\-\.]{1,64}"


@dataclass(frozen=True)
class _ReferenceKey:
    """How to find the `Type/id` key of a literal reference (relative or absolute URL) of
    type `wanted` (any type when None).

    `search`'s group 1 is the key. It is anchored at the end, so it matches at most once.
    Its leftmost match starts after a non-letter (else it would also match one letter
    earlier), so `(^|non-letter)Type/` finds the key of a wanted type, and none when the key
    is of another type; `check` is the type still to check when that does not hold (the type
    `history`, which `/_history/v` would match). A reference that is just `Type/id`,
    `plain`, is its own key, which a match of the whole text tells faster than a search."""

    wanted: str | None

    @property
    def _in_pattern(self) -> bool:
        return (
            self.wanted is not None
            and re.fullmatch("[A-Za-z]+", self.wanted) is not None
            and self.wanted != "history"
        )

    @property
    def search(self) -> str:
        tail = _ID + ")(?:/_history/[^/]+)?$"
        if self._in_pattern:
            return f"(?:^|[^A-Za-z])({self.wanted}" + tail
        return "([A-Za-z]+" + tail

    @property
    def plain(self) -> str:
        return (self.wanted if self.wanted and self._in_pattern else "[A-Za-z]+") + _ID

    @property
    def check(self) -> str | None:
        return None if self.wanted is None or self._in_pattern else self.wanted

    def keys_in(self, text: exp.Expr, scope: _Scope) -> exp.Expr:
        """The keys (at most one) in a reference's text, as a list of text."""
        d = scope.dialect
        text = d.fn("coalesce", text, _string(""))  # no reference: no key
        found = _case(
            (d.matches_fully(text, self.plain), exp.Array(expressions=[text])),
            default=d.fn("regexp_extract_all", text, _string(self.search), _number(1)),
        )
        if self.check is None:
            return found
        key = scope.var("k")
        wanted = d.fn("starts_with", key, _string(f"{self.check}/"))
        return d.fn("list_filter", found, _lambda(wanted, key))

    def first_in(self, text: exp.Expr, scope: _Scope) -> exp.Expr:
        """The key (at most one) in a reference's text, as text; NULL when there is none."""
        if self.check is not None:
            return scope.dialect.first(self.keys_in(text, scope))
        d = scope.dialect
        found = d.first(d.fn("regexp_extract_all", text, _string(self.search), _number(1)))
        return _case((d.matches_fully(text, self.plain), text.copy()), default=found)

    def collection(self, references: exp.Expr, scope: _Scope) -> exp.Expr:
        """The keys of `references` (Reference.reference values, see `_values`)."""
        d = scope.dialect

        def keys(references: exp.Expr) -> exp.Expr:
            ref = _one(references)
            if ref is not None:
                found = _let_value(ref, scope, lambda v: self.keys_in(d.text(v), scope))
            else:
                var = scope.var()
                found = d.fn(
                    "flatten",
                    d.fn(
                        "list_transform", references, _lambda(self.keys_in(d.text(var), scope), var)
                    ),
                )
            key = scope.var("k")
            return d.fn("list_transform", found, _lambda(d.value(key), key))

        return _per_branch(references, keys)

    def first(self, references: exp.Expr, scope: _Scope) -> exp.Expr:
        """The first key of `references`; the only one when there is one reference."""
        d = scope.dialect

        def first(references: exp.Expr) -> exp.Expr:
            ref = _one(references)
            if ref is None:
                return d.first(self.collection(references, scope))
            return _text_value(self.first_in(d.text(ref), scope), d)

        return _per_branch(references, first)


def _reference_key(node: Call) -> _ReferenceKey:
    """How `getReferenceKey([Type])` finds keys."""
    args = node.args
    return _ReferenceKey(args[0].name if args and isinstance(args[0], TypeName) else None)


_TYPE_TESTS = {"string": "is_string", "boolean": "is_boolean", "integer": "is_number",
               "decimal": "is_number"}  # fmt: skip


def _choice(node: Node) -> Node:
    """`x.name.ofType(T)` as the choice element it reads, `x.nameT` (`value.ofType(Quantity)`
    is `valueQuantity`); any other node as it is."""
    if (
        isinstance(node, Call)
        and node.function == "ofType"
        and isinstance(node.target, Member)
        and len(node.args) == 1
    ):
        arg = node.args[0]
        type_name = arg.name if isinstance(arg, TypeName) else ""
        member = node.target
        return Member(member.target, member.name + type_name[:1].upper() + type_name[1:])
    return node


def compile_path(node: Node, context: exp.Expr, scope: _Scope) -> exp.Expr:
    """The SQL (a collection of JSON values) of FHIRPath `node` evaluated on `context`."""
    d = scope.dialect
    node = _choice(node)
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
        return _spread_all(_values(node, context, scope), scope)
    if isinstance(node, Index):
        target = compile_path(node.target, context, scope)
        index = compile_path(node.index, context, scope)
        position = exp.Add(
            this=exp.cast(d.text(d.first(index)), exp.DataType.Type.BIGINT),
            expression=_number(1),
        )
        return d.slice(target, position)
    if isinstance(node, Binary):
        return _binary(node, context, scope)
    if isinstance(node, Call):
        return _call(node, context, scope)
    raise InputError("FHIRPath", f"cannot compile {node}")


def _values(node: Member, context: exp.Expr, scope: _Scope) -> exp.Expr:
    """Member `node` as a list of JSON values, not yet spread: the collection is every value's
    `spread`, in order. A chain of members stays in this form, so each step reads each value
    once: the children of all of an array's items come from one read of the array."""
    names: list[str] = []
    target: Node = node
    while isinstance(target, Member):
        names.insert(0, target.name)
        target = _choice(target.target)
    found = _where_values(target, names, context, scope)
    if found is not None:
        return found
    items = compile_path(target, context, scope)
    item = _sole(items)
    if item is not None:
        return _chain(item, names, scope)
    if len(names) == 1:
        return _map(items, scope, lambda item: scope.child(item, names[0]))
    return scope.dialect.fn("flatten", _map(items, scope, lambda item: _chain(item, names, scope)))


def _where_test(node: Node, scope: _Scope) -> tuple[Node, str, tuple[str, ...]] | None:
    """For `a.b.where(f = 'text')`, `a.b.where(f = 'x' or f = 'y')` or
    `a.b.extension('text')`: (`a.b`, `f`, the texts); None for any other node."""
    if not isinstance(node, Call) or len(node.args) != 1:
        return None
    if node.function == "extension":
        text = _text_constant(node.args[0], scope)
        return None if text is None else (Member(node.target, "extension"), "url", (text,))
    found = _equal_texts(node.args[0], scope) if node.function == "where" else None
    return None if found is None else (node.target, found[0], found[1])


def _equal_texts(criterion: Node, scope: _Scope) -> tuple[str, tuple[str, ...]] | None:
    """For `f = 'text'`, or such tests of the same `f` joined by `or`: (`f`, the texts)."""
    if not isinstance(criterion, Binary):
        return None
    if criterion.op == "or":
        left, right = _equal_texts(criterion.left, scope), _equal_texts(criterion.right, scope)
        if left is None or right is None or left[0] != right[0]:
            return None
        return left[0], left[1] + right[1]
    if criterion.op != "=":
        return None
    for member, other in ((criterion.left, criterion.right), (criterion.right, criterion.left)):
        text = _text_constant(other, scope)
        if text is not None and isinstance(member, Member) and isinstance(member.target, This):
            return member.name, (text,)
    return None


def _where_values(
    node: Node, names: list[str], context: exp.Expr, scope: _Scope
) -> exp.Expr | None:
    """The values (see `_values`) of the members `names` of FHIRPath `node` when it is a
    `where(f = 'text')` (or `extension('text')`) over a chain of members of the resource, read
    in the one pass that reads the resource (`_Prefetch`); None for any other node.

    Each step of the chain then usually holds one item: an array of one, or an object where
    FHIR R4 says the element holds one value. Only that item's `f` and value are read (at
    `a[0].f`), so neither the array nor its item is serialised, parsed again and filtered.
    Where a step holds more than one item (its second item, or for an element FHIR R4 says
    holds one value its first, is present), where `f` is at another place (`a.f`: an object
    where an array belongs) or `f` is an array, the general path, read on its own from the
    resource, gives the values."""
    test = _where_test(node, scope)
    item = _sole(context)
    base = None if item is None or scope.prefetch is None else scope.path_of(item)
    if test is None or base is None or scope.prefetch is None or not names:
        return None
    target, name, texts = test
    chain: list[str] = []
    while isinstance(target, Member):
        chain.insert(0, target.name)
        target = _choice(target.target)
    if not isinstance(target, This) or not chain or any(t.startswith("[") for t in texts):
        return None
    prefetch = scope.prefetch
    guards: list[Path] = []  # paths that are all missing when every step holds one item
    paths: list[Path] = [base]  # where that one item may be (at most one exists)
    for step in chain:
        if all(_named((*path, step)) in prefetch.single for path in paths):
            guards += [(*path, step, 0) for path in paths]
            paths = [(*path, step) for path in paths]
            continue
        guards += [(*path, step, 1) for path in paths]
        paths = [p for path in paths for p in ((*path, step), (*path, step, 0))]
    d = scope.dialect
    # The last place is the one a valid resource uses (each step an array, or an object where
    # FHIR R4 says it holds one value); `f` at any other place, or an array `f`, takes the
    # general path, so only this place's `f` and value are read and compared.
    leaf = prefetch.read((*paths[-1], name))
    # JSON writing is canonical, so two strings are equal exactly when their JSON is, and no
    # other value's JSON is a string's: compared as JSON, `f` is not parsed again. Tests
    # joined by `or` on one value are true when any is (an empty `f` makes each empty).
    matched = exp.or_(*[exp.EQ(this=leaf.copy(), expression=d.value(_string(t))) for t in texts])
    # An extension's `value[x]` holds one value (R4: 0..1): its child is read in the same pass,
    # not the value serialised and parsed again; a value that is an array is its first item's
    # guard.
    deep = names[:2] if len(names) > 1 and names[0].startswith("value") else names[:1]
    if len(deep) > 1:
        guards.append((*paths[-1], names[0], 0))
    one: exp.Expr = exp.Array(expressions=[_case((matched, prefetch.read((*paths[-1], *deep))))])
    for step in names[len(deep) :]:
        one = _per_branch(one, functools.partial(_children_of, name=step, scope=scope))
    single = exp.and_(
        *[prefetch.read(guard).is_(exp.null()) for guard in guards],
        *[prefetch.read((*path, name)).is_(exp.null()) for path in paths[:-1]],
        exp.Not(this=exp.func("coalesce", d.is_array(leaf.copy()), exp.false())),
    )
    direct = _Scope(scope.resource, scope.constants, d, scope.row_index, scope.counter, direct=True)
    members = Member(node, names[0])
    for step in names[1:]:
        members = Member(members, step)
    return _case((single, one), default=_values(members, context, direct))


def _named(path: Path) -> Path:
    """`path` without its array positions: the element it reaches, by name."""
    return tuple(step for step in path if isinstance(step, str))


def _chain(item: exp.Expr, names: list[str], scope: _Scope) -> exp.Expr:
    """The values (see `_values`) of the chain of members `names` on one item."""
    values: exp.Expr = exp.Array(expressions=[scope.child(item, names[0])])
    for name in names[1:]:
        values = _per_branch(values, functools.partial(_children_of, name=name, scope=scope))
    return values


def _children_of(values: exp.Expr, name: str, scope: _Scope) -> exp.Expr:
    """The values of the children `name` of the items the values `values` stand for."""
    d = scope.dialect

    def children(value: exp.Expr) -> exp.Expr:
        first = scope.first_item(value)
        if first is not None:
            return d.each_child_of_single(first[0], first[1], name, scope.child(value, name))
        return d.each_child(value, name, scope.var(), scope.child(value, name))

    value = _one(values)
    if value is not None:
        return _let_value(value, scope, children)
    var = scope.var()
    return d.fn("flatten", d.fn("list_transform", values, _lambda(children(var), var)))


def _per_branch(values: exp.Expr, body: _Body) -> exp.Expr:
    """`body(values)`, written once per branch when `values` is a CASE choosing between lists
    (as `each_child` writes them), so that each branch is simplified on its own: the usual
    one, one value that is not an array, then needs no lambda."""
    if isinstance(values, exp.Case) and values.args.get("default") is not None:
        return exp.Case(
            ifs=[
                exp.If(this=case.this.copy(), true=_per_branch(case.args["true"], body))
                for case in values.args["ifs"]
            ],
            default=_per_branch(values.args["default"], body),
        )
    return body(values)


def _spread_all(values: exp.Expr, scope: _Scope) -> exp.Expr:
    """The collection a list of values from `_values` stands for."""
    d = scope.dialect

    def spread(values: exp.Expr) -> exp.Expr:
        value = _one(values)
        if value is not None:
            return _let_value(value, scope, d.spread)
        var = scope.var()
        return d.fn("flatten", d.fn("list_transform", values, _lambda(d.spread(var), var)))

    return _per_branch(values, spread)


def _binary(node: Binary, context: exp.Expr, scope: _Scope) -> exp.Expr:
    if node.op in _COMPARISON_NODES or node.op in _LOGIC:
        return _wrap(compile_boolean(node, context, scope), scope.dialect)
    left = compile_path(node.left, context, scope)
    right = compile_path(node.right, context, scope)
    return _let(left, scope, lambda a: _let(right, scope, lambda b: _operate(node.op, a, b, scope)))


def _operate(op: str, left: exp.Expr, right: exp.Expr, scope: _Scope) -> exp.Expr:
    """A binary operator on two (bound) collections."""
    d = scope.dialect
    if op in ("+", "-", "*", "/", "div", "mod", "&"):
        return _arithmetic(op, left, right, d)
    if op == "|":
        return d.fn("list_concat", left, right)
    if op in ("in", "contains"):
        item, coll = (left, right) if op == "in" else (right, left)
        var = scope.var()
        texts = d.fn("list_transform", coll, _lambda(d.text(var), var))
        has = d.fn("list_contains", texts, d.text(d.first(item)))
        return _wrap(_case((_is_zero(_size(item, d)), exp.null()), default=has), d)
    raise InputError("FHIRPath", f"operator {op!r} is not supported")  # pragma: no cover


def _call(node: Call, context: exp.Expr, scope: _Scope) -> exp.Expr:
    """A function call: those that read their target's elements themselves get the context,
    the rest the target's collection."""
    own = _READS_TARGET.get(node.function)
    if own is not None and (node.function != "extension" or len(node.args) == 1):
        return own(node, context, scope)
    compiler = _FUNCTIONS.get(node.function)
    if compiler is None:
        raise InputError(f"FHIRPath function {node.function}()", "is not supported")
    return compiler(node, compile_path(node.target, context, scope), context, scope)


def _unsupported(node: Call) -> InputError:
    return InputError(f"FHIRPath function {node.function}()", "is not supported")


def _resource_key_text(scope: _Scope) -> exp.Expr:
    """`Type/id` of the resource as text; NULL without an id."""
    d = scope.dialect
    return exp.DPipe(
        this=exp.DPipe(
            this=d.text(scope.child(scope.resource, "resourceType")), expression=_string("/")
        ),
        expression=d.text(scope.child(scope.resource, "id")),
    )


def _resource_key(node: Call, context: exp.Expr, scope: _Scope) -> exp.Expr:
    return _wrap(_resource_key_text(scope), scope.dialect)


def _reference_keys(node: Call, context: exp.Expr, scope: _Scope) -> exp.Expr:
    references = _values(Member(node.target, "reference"), context, scope)
    return _reference_key(node).collection(references, scope)


def _extensions(node: Call, context: exp.Expr, scope: _Scope) -> exp.Expr:
    d = scope.dialect
    url = d.text(d.first(compile_path(node.args[0], context, scope)))
    extensions = compile_path(Member(node.target, "extension"), context, scope)
    return _filter(
        extensions,
        scope,
        lambda v: exp.EQ(this=_child_text(v, "url", scope), expression=url.copy()),
    )


#: Functions that read their target's elements themselves (`extension(url)` is
#: `extension.where(url = ...)`; the key functions read `reference`, `resourceType` and `id`).
_READS_TARGET: dict[str, Callable[[Call, exp.Expr, _Scope], exp.Expr]] = {
    "getResourceKey": _resource_key,
    "getReferenceKey": _reference_keys,
    "extension": _extensions,
}


def _exists(node: Call, target: exp.Expr, context: exp.Expr, scope: _Scope) -> exp.Expr:
    if node.args:
        target = _filter(target, scope, lambda v: _truthy(node.args[0], v, scope))
    return _single(exp.GT(this=_size(target, scope.dialect), expression=_number(0)), scope.dialect)


def _where_fn(node: Call, target: exp.Expr, context: exp.Expr, scope: _Scope) -> exp.Expr:
    if len(node.args) != 1:
        raise _unsupported(node)
    return _filter(target, scope, lambda v: _truthy(node.args[0], v, scope))


def _select_fn(node: Call, target: exp.Expr, context: exp.Expr, scope: _Scope) -> exp.Expr:
    if len(node.args) != 1:
        raise _unsupported(node)
    return _each(
        target, scope, lambda v: compile_path(node.args[0], exp.Array(expressions=[v]), scope)
    )


def _join(node: Call, target: exp.Expr, context: exp.Expr, scope: _Scope) -> exp.Expr:
    d = scope.dialect
    separator: exp.Expr = _string("")
    if node.args:
        separator = d.text(d.first(compile_path(node.args[0], context, scope)))
    var = scope.var()
    texts = d.fn("list_transform", target, _lambda(d.text(var), var))
    return _single(d.fn("array_to_string", texts, separator), d)


def _of_type(node: Call, target: exp.Expr, context: exp.Expr, scope: _Scope) -> exp.Expr:
    if len(node.args) != 1 or not isinstance(node.args[0], TypeName):
        raise _unsupported(node)
    test = _TYPE_TESTS.get(node.args[0].name)
    if test is None:
        return target
    return _filter(target, scope, getattr(scope.dialect, test))


#: Functions of their target's collection: (call, target, context, scope) to a collection.
_FUNCTIONS: dict[str, Callable[[Call, exp.Expr, exp.Expr, _Scope], exp.Expr]] = {
    "exists": _exists,
    "empty": lambda n, t, c, s: _single(_is_zero(_size(t, s.dialect)), s.dialect),
    "count": lambda n, t, c, s: _single(_size(t, s.dialect), s.dialect),
    "first": lambda n, t, c, s: s.dialect.slice(t, _number(1)),
    "last": lambda n, t, c, s: s.dialect.slice(t, _number(-1)),
    "not": lambda n, t, c, s: _wrap(compile_boolean(n, c, s), s.dialect),
    "where": _where_fn,
    "select": _select_fn,
    "join": _join,
    "ofType": _of_type,
    "lowBoundary": lambda n, t, c, s: _boundary(n, t, s, high=False),
    "highBoundary": lambda n, t, c, s: _boundary(n, t, s, high=True),
}


# --- lowBoundary() and highBoundary() ----------------------------------------------------------

_DATE = r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?"
_TIME = r"[0-9]{2}(:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?"
_ZONE = r"(Z|[+-][0-9]{2}:[0-9]{2})"
#: FHIR R4 elements of type dateTime or instant that are not `[x]` choices (those end in
#: `DateTime` once `ofType` has chosen): a date-shaped value of one of these is a dateTime.
_DATETIME_ELEMENTS = frozenset(
    {"authoredOn", "created", "dateAsserted", "issued", "lastUpdated", "recorded",
     "recordedDate", "dateTime", "instant"}
)  # fmt: skip
#: The most digits a boundary keeps when no precision is asked (FHIRPath: 8 for decimals,
#: the millisecond for times), and the length of the text each precision keeps.
_DECIMAL_DIGITS = 8
_DATE_LENGTHS = {4: 4, 6: 7, 8: 10}
_TIME_LENGTHS = {2: 2, 4: 5, 6: 8, 9: 12}
_DATETIME_LENGTHS = {4: 4, 6: 7, 8: 10, 10: 13, 12: 16, 14: 19, 17: 23}


def _precision(node: Call) -> int | None:
    if not node.args:
        return None
    arg = node.args[0]
    if len(node.args) == 1 and isinstance(arg, Literal) and type(arg.value) is int:
        return arg.value
    raise InputError(f"FHIRPath function {node.function}()", "precision must be an integer")


def _is_datetime(node: Node) -> bool:
    """Whether `node` reads a dateTime element, so `2010-10-10` means a day's instants."""
    node = _choice(node)
    if isinstance(node, Member):
        return node.name.endswith("DateTime") or node.name in _DATETIME_ELEMENTS
    return False


def _length(text: exp.Expr) -> exp.Expr:
    return exp.Length(this=text)


def _padded(text: exp.Expr, filler: str) -> exp.Expr:
    """`text` completed from the same position of `filler` (`2014` and `0000-01-01` give
    `2014-01-01`): the earliest or latest value the given digits allow."""
    rest = exp.Substring(
        this=_string(filler), start=exp.Add(this=_length(text.copy()), expression=_number(1))
    )
    return exp.DPipe(this=text, expression=rest)


def _date_high(text: exp.Expr) -> exp.Expr:
    """The last day a date of any precision covers (the month's length from the calendar)."""
    month = exp.cast(_padded(text.copy(), "0000-12-01"), exp.DataType.Type.DATE)
    last = exp.cast(exp.LastDay(this=month), exp.DataType.Type.VARCHAR)
    return _case((exp.EQ(this=_length(text.copy()), expression=_number(10)), text), default=last)


def _cut(text: exp.Expr, lengths: dict[int, int], precision: int | None) -> exp.Expr:
    """`text` to `precision` (FHIRPath digits), NULL for a precision the type does not have."""
    if precision is None:
        return text
    if precision not in lengths:
        return exp.null()
    return exp.Substring(this=text, start=_number(1), length=_number(lengths[precision]))


def _decimal_boundary(value: exp.Expr, high: bool, precision: int | None) -> exp.Expr:
    """A decimal's boundary: half a unit of its last digit away (1.587 lies in [1.5865,
    1.5875)), then to `precision` digits, rounding away from the value."""
    point = exp.StrPosition(this=value.copy(), substr=_string("."))
    decimals = _case(
        (
            exp.GT(this=point, expression=_number(0)),
            exp.Sub(this=_length(value.copy()), expression=point.copy()),
        ),
        default=_number(0),
    )
    half = exp.Div(
        this=exp.Literal.number(0.5), expression=exp.Pow(this=_number(10), expression=decimals)
    )
    bound: exp.Expr = (exp.Add if high else exp.Sub)(this=_double(value), expression=half)
    if precision is None:
        return exp.Round(this=bound, decimals=_number(_DECIMAL_DIGITS))
    scale = exp.Pow(this=_number(10), expression=_number(precision))
    # rounded first, as a product of doubles carries noise in its last bits (-55.00000000001)
    scaled = exp.Round(
        this=exp.Mul(this=exp.paren(bound), expression=scale), decimals=_number(_DECIMAL_DIGITS)
    )
    rounded = exp.Ceil(this=scaled) if high else exp.Floor(this=scaled)
    return exp.Div(this=rounded, expression=scale.copy())


def _datetime_boundary(text: exp.Expr, high: bool, precision: int | None) -> exp.Expr:
    """A dateTime's boundary: its date and time completed, in its own zone or, when it has
    none, the zone that makes it earliest (+14:00) or latest (-12:00)."""
    zone = exp.RegexpExtract(this=text.copy(), expression=_string(_ZONE + "$"), group=_number(1))
    body = exp.Substring(
        this=text.copy(),
        start=_number(1),
        length=exp.Sub(this=_length(text.copy()), expression=_length(zone.copy())),
    )
    day = exp.RegexpExtract(this=body, expression=_string("^([^T]*)"), group=_number(1))
    clock = exp.RegexpExtract(this=body.copy(), expression=_string("T(.*)$"), group=_number(1))
    if high:
        parts = [_date_high(day), _string("T"), _padded(clock, "23:59:59.999")]
    else:
        parts = [_padded(day, "0000-01-01"), _string("T"), _padded(clock, "00:00:00.000")]
    stamp = exp.DPipe(this=exp.DPipe(this=parts[0], expression=parts[1]), expression=parts[2])
    if precision is not None and precision != 17:
        return _cut(stamp, _DATETIME_LENGTHS, precision)
    own_zone = _case(
        (exp.EQ(this=zone.copy(), expression=_string("")), _string("-12:00" if high else "+14:00")),
        default=zone,
    )
    return exp.DPipe(this=stamp, expression=own_zone)


def _boundary(node: Call, target: exp.Expr, scope: _Scope, *, high: bool) -> exp.Expr:
    """`lowBoundary([precision])` / `highBoundary([precision])` of decimals, dates, dateTimes
    and times (FHIRPath 2.0): the least or greatest value the given digits could stand for.
    Anything else has no boundary (empty)."""
    d = scope.dialect
    precision = _precision(node)
    as_datetime = _is_datetime(node.target)

    def boundary(item: exp.Expr) -> exp.Expr:
        text = d.text(item)
        date = _date_high(text.copy()) if high else _padded(text.copy(), "0000-01-01")
        clock = _padded(text.copy(), "23:59:59.999" if high else "00:00:00.000")
        datetime = _datetime_boundary(text.copy(), high, precision)
        dated = datetime.copy() if as_datetime else _cut(date, _DATE_LENGTHS, precision)
        stamp = f"{_DATE}T{_TIME}{_ZONE}?"
        return _case(
            (d.is_number(item), d.value(_decimal_boundary(text.copy(), high, precision))),
            (d.matches_fully(text.copy(), _DATE), d.value(dated)),
            (d.matches_fully(text.copy(), _TIME), d.value(_cut(clock, _TIME_LENGTHS, precision))),
            (d.matches_fully(text.copy(), stamp), d.value(datetime)),
            default=d.null_value(),
        )

    found = _map(target, scope, boundary)
    var = scope.var("b")
    return d.fn("list_filter", found, _lambda(exp.Not(this=var.is_(exp.null())), var))


def _truthy(criteria: Node, item: exp.Expr, scope: _Scope) -> exp.Expr:
    """Whether `criteria` is true for one item (empty counts as false)."""
    value = compile_boolean(criteria, exp.Array(expressions=[item]), scope, empty_is_false=True)
    return exp.func("coalesce", value, exp.false())


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
    _check_iteration(select, where)
    out = _own_columns(select, where)
    for i, sub in enumerate(select.get("select") or []):
        out += _columns_of(sub, f"{where}.select[{i}]")
    out += _union_columns(select.get("unionAll") or [], where)
    seen: set[str] = set()
    for col in out:
        if col.name in seen:
            raise _invalid(f"{where}: column {col.name!r} is defined twice")
        seen.add(col.name)
    return out


def _check_iteration(select: dict[str, Any], where: str) -> None:
    """At most one of forEach, forEachOrNull and repeat, each made of FHIRPath that parses."""
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


def _own_columns(select: dict[str, Any], where: str) -> list[Column]:
    """A selection's `column` list, each with a valid name and a FHIRPath path that parses."""
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
    return out


def _union_columns(branches: list[Any], where: str) -> list[Column]:
    """The columns of unionAll branches, which must all have the same names in order."""
    if not branches:
        return []
    first = _columns_of(branches[0], f"{where}.unionAll[0]")
    for i, branch in enumerate(branches[1:], start=1):
        names = [c.name for c in _columns_of(branch, f"{where}.unionAll[{i}]")]
        if names != [c.name for c in first]:
            raise _invalid(f"{where}.unionAll[{i}]: columns differ from unionAll[0]")
    return first


@dataclass(frozen=True)
class TypedQuery:
    """The same view read from NDJSON with a column schema (`fhir.typed`): `query` reads
    the session view `typed.TYPED_SOURCE` of the lines, read into `columns`. It fails where
    a resource needs the general path; `query` then gives the rows."""

    columns: dict[str, exp.DataType]
    query: exp.Query


@dataclass(frozen=True)
class CompiledView:
    """A validated view: its output columns and the query that produces its rows (and, on an
    engine that reads NDJSON typed, a faster query for the usual shapes)."""

    resource: str
    columns: tuple[Column, ...]
    #: The query as built, in place: a node may be in two places, or keep a parent from a
    #: tree it is no longer in (`query` is the same query with neither).
    built: exp.Query = field(repr=False)
    dialect: str = "duckdb"
    typed: TypedQuery | None = None

    @functools.cached_property
    def query(self) -> exp.Query:
        """The view's query over the table of resources: `built`, copied once when first
        asked for, so that each place has its own node with the right parent and a later
        in-place transform reaches every node. A view read typed never asks for it, and
        so never pays for the copy."""
        return self.built.copy()

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
    rows, names, _ = _rows_and_foci(select, node, scope)
    return rows, names


def _rows_and_foci(
    select: dict[str, Any], node: exp.Expr, scope: _Scope
) -> tuple[exp.Expr, list[str], exp.Expr | None]:
    """`_rows`, and for a `forEach` the collection it iterates (no rows where it is empty),
    else None."""
    d = scope.dialect
    if _iterates(select):
        if "repeat" in select:
            foci = _repeat([parse(p) for p in select["repeat"]], node, scope, 1)
        else:
            source = str(select.get("forEach", select.get("forEachOrNull")))
            foci = compile_path(parse(source), exp.Array(expressions=[node]), scope)
        var, index = scope.var("f"), scope.var("i")
        body, names = _product(select, var, scope.nested(d.position(index)))
        rows: exp.Expr = d.fn("flatten", d.fn("list_transform", foci, _lambda(body, var, index)))
        if "forEachOrNull" in select:
            # With no foci there is one row of nulls, but for %rowIndex, which is 0 there.
            zero = d.value(_number(0))
            blank = d.blank_row(names, {n: zero.copy() for n in _row_index_columns(select)})
            rows = _let(
                foci,
                scope,
                lambda c: _case(
                    (_is_zero(_size(c, d)), exp.Array(expressions=[blank])),
                    default=d.fn("flatten", d.fn("list_transform", c, _lambda(body, var, index))),
                ),
            )
        return rows, names, foci if "forEach" in select else None
    rows, names = _product(select, node, scope)
    return rows, names, None


def _iterates(select: dict[str, Any]) -> bool:
    return "repeat" in select or "forEach" in select or "forEachOrNull" in select


def _row_index_columns(select: dict[str, Any]) -> list[str]:
    """The columns that are `%rowIndex` of this selection's own iteration: its columns and
    those of nested selects and unionAll branches that do not iterate themselves."""
    found = [col["name"] for col in select.get("column") or [] if parse(col["path"]) == _ROW_INDEX]
    for sub in (*(select.get("select") or []), *(select.get("unionAll") or [])):
        if not _iterates(sub):
            found += _row_index_columns(sub)
    return found


_ROW_INDEX = Constant("rowIndex")


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
            path, context = parse(col["path"]), exp.Array(expressions=[node])
            cell: exp.Expr
            if col.get("collection"):
                cell = d.list_value(compile_path(path, context, scope))
            else:
                message = (
                    f"column {col['name']}: multiple values found but not expected "
                    "(set collection: true)"
                )
                cell = _only(path, context, scope, d.error(message))
            pairs.append((col["name"], cell))
        parts.append((exp.Array(expressions=[d.row(pairs)]), [name for name, _ in pairs]))

    # A part is computed once per resource (`_Scope.bind`), rather than inside a lambda over
    # the rows of the parts before it, only when those always give one row: only then is it
    # always computed (and its errors raised) without binding too.
    def scope_after(before: list[tuple[exp.Expr, list[str]]]) -> _Scope:
        always = all(_one(rows) is not None for rows, _ in before)
        return scope if always else dataclasses.replace(scope, parts=None)

    for sub in select.get("select") or []:
        parts.append(_rows(sub, node, scope_after(parts)))
    branches = select.get("unionAll") or []
    if branches:
        union_scope = scope_after(parts)
        unions = [_rows_and_foci(b, node, union_scope) for b in branches]
        union = d.fn("flatten", exp.Array(expressions=[rows for rows, _, _ in unions]))
        parts.append((_union_without_foci(branches, unions, union, d), unions[0][1]))
    if not parts:
        return exp.Array(expressions=[d.blank_row([])]), []
    bound = [
        (_bind_rows(rows, scope_after(parts[:i])), part_names)
        for i, (rows, part_names) in enumerate(parts)
    ]
    acc, names = bound[0]
    for part, part_names in bound[1:]:
        acc = _cross(acc, bool(names), part, bool(part_names), scope)
        names = names + part_names
    return acc, names


#: Marks the CASE `_union_without_foci` writes, which `_map` may take apart.
_WITHOUT_FOCI = "rows_without_foci"


def _union_without_foci(
    branches: list[dict[str, Any]],
    unions: list[tuple[exp.Expr, list[str], exp.Expr | None]],
    union: exp.Expr,
    d: JsonDialect,
) -> exp.Expr:
    """`union` (the branches' rows, flattened) as `CASE WHEN every forEach's collection is
    empty THEN [the one-row branch's row] ELSE union END` where one branch gives one row and
    every other is a `forEach` (an Observation's own row and one a component): the usual
    resource, with nothing to iterate, then takes no lists, lambdas or flattening. The rows
    are the same: a `forEach` over nothing gives none, and the one row is the union's
    whole. A collection is computed again only where it is not empty."""
    single = [rows for b, (rows, _, _) in zip(branches, unions, strict=True) if not _iterates(b)]
    foci = [f for _, _, f in unions if f is not None]
    row = _one(single[0]) if len(single) == 1 else None
    if row is None or not foci or len(single) + len(foci) != len(unions):
        return union
    empty = exp.and_(*[_is_zero(_size(f.copy(), d)) for f in foci], copy=False)
    case = _case((empty, exp.Array(expressions=[row.copy()])), default=union)
    case.meta[_WITHOUT_FOCI] = True
    return case


def _cross(
    left: exp.Expr, has_left: bool, right: exp.Expr, has_right: bool, scope: _Scope
) -> exp.Expr:
    """Every row of `left` merged with every row of `right` (a side without columns only
    repeats rows; its empty rows are not merged). A one-row side is merged into each row of
    the other."""
    d = scope.dialect

    def merge(a: exp.Expr, b: exp.Expr) -> exp.Expr:
        return d.merge(a, b) if has_left and has_right else a if has_left else b

    one_left, one_right = _sole(left), _sole(right)
    # (a copy of the one row each time: `_map` may write the merge twice)
    if one_left is not None:
        return _map(right, scope, lambda b: merge(one_left.copy(), b))
    if one_right is not None:
        return _map(left, scope, lambda a: merge(a, one_right.copy()))
    a, b = scope.var("a"), scope.var("b")
    inner = d.fn("list_transform", right, _lambda(merge(a, b), b))
    return d.fn("flatten", d.fn("list_transform", left, _lambda(inner, a)))


def _bind_rows(rows: exp.Expr, scope: _Scope) -> exp.Expr:
    """A list of rows with its items bound when it is one row, else the list bound."""
    row = _one(rows)
    if row is not None:
        return exp.Array(expressions=[scope.bind(row)])
    return scope.bind(rows)


def _output(col: Column, row: exp.Expr, d: JsonDialect) -> exp.Expr:
    return _output_value(col, d.row_get(row, col.name), d)


def _output_value(col: Column, value: exp.Expr, d: JsonDialect) -> exp.Expr:
    """Column `col`'s value (JSON) read out with its type."""
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


def _where(node: Node, message: str, scope: _Scope) -> exp.Expr:
    """A view's `where` path as a SQL condition: false when empty, an error (`message`) when
    it does not give a boolean."""
    d = scope.dialect

    def condition(c: exp.Expr) -> exp.Expr:
        return _case(
            (_is_zero(_size(c, d)), exp.false()),
            (d.is_boolean(d.first(c)), exp.cast(d.text(d.first(c)), exp.DataType.Type.BOOLEAN)),
            default=exp.Not(this=d.error(message).is_(exp.null())),
        )

    return _let_value(
        compile_path(node, exp.Array(expressions=[scope.resource]), scope), scope, condition
    )


def _used_paths(prefetch: _Prefetch, *trees: Any) -> list[Path]:
    """The paths `trees` read from `r.top`, in order, with the trees renumbered to read them
    there: a path read while compiling may have been left unused (`_Scope.first_item`)."""
    used: set[int] = set()
    reads: dict[int, exp.Bracket] = {}  # by identity: a node is renumbered once
    top = exp.column(TOP, "r")
    for tree in trees:
        for item in tree if isinstance(tree, list) else [tree] if tree is not None else []:
            for node in item.find_all(exp.Bracket):
                if node.this == top:
                    reads[id(node)] = node
                    used.add(int(node.expressions[0].name) + 1)
    kept = [(path, pos) for path, pos in prefetch.paths.items() if pos in used]
    renumbered = {old: new for new, (_, old) in enumerate(kept, start=1)}
    for node in reads.values():
        node.set("expressions", [_number(renumbered[int(node.expressions[0].name) + 1] - 1)])
    return [path for path, _ in kept]


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
    if dialect not in JSON_DIALECTS:
        raise _invalid(f"no {dialect!r} dialect; choose from {', '.join(JSON_DIALECTS)}")
    d = JSON_DIALECTS[dialect]
    columns = _columns_of({"select": view["select"]}, "view")
    constants = _constants(view)
    wheres = []
    for i, where in enumerate(view.get("where") or []):
        if not isinstance(where, dict) or not isinstance(where.get("path"), str):
            raise _invalid(f"where[{i}]: needs a FHIRPath path")
        wheres.append((i, where["path"], parse(where["path"])))
    r = exp.column("resource", "r")
    scope = _Scope(r, constants, d, parts=[])
    if scope.prefetch is not None:
        scope.prefetch.single = single_paths(resource)
    rows, _ = _rows({"select": view["select"]}, r, scope)
    conditions = [
        _where(node, f"where[{i}] {path!r} does not give a boolean", scope)
        for i, path, node in wheres
    ]
    source = (
        exp.select(exp.column("resource"))
        .from_(exp.to_table(table))
        .where(exp.EQ(this=exp.column("resource_type"), expression=_string(resource)))
    )
    top = _used_paths(scope.prefetch, rows, conditions, scope.parts) if scope.prefetch else []
    parts = scope.parts or []
    typed = None
    if d.typed_reads and top:
        typed = _typed_query(resource, top, rows, parts, conditions, columns, d)
    if top:
        source = source.select(d.read_all(exp.column("resource"), top).as_(TOP))
    passed = [exp.column("resource", "r")] + ([exp.column(TOP, "r")] if top else [])
    # Built in place, its parts may share a node or keep a parent from the typed query's
    # build: `CompiledView.query` copies it once when first asked for (the typed query has
    # neither).
    built = _assembled(source, rows, parts, conditions, columns, d, passed)
    return CompiledView(resource, tuple(columns), built, dialect, typed)


def _typed_query(
    resource: str,
    top: list[Path],
    rows: exp.Expr,
    parts: list[exp.Expr],
    conditions: list[exp.Expr],
    columns: list[Column],
    d: JsonDialect,
) -> TypedQuery:
    """The view over its lines read typed (`fhir.typed`): each prefetched value is read from
    the typed columns where it is used, so the engine simplifies what the usual shape makes
    constant (a position in an object, a key in an array), and the resource itself, which a
    typed read does not have, fails the query where the general path reads it.

    A leaf the view reads only as text is read as text (`_text_reads`). When each resource
    gives one row, its columns are read out of their values directly, with no row STRUCT of
    JSON values between, so a column that is such a leaf's text is read out as it is."""
    cells, row_part = _row_cells(rows, parts, columns)
    outputs = None if cells is None else [_output_value(c, cells[c.name], d) for c in columns]
    kept = [(i, p) for i, p in enumerate(parts) if i != row_part]
    if outputs is None:  # rows of values read out, so their leaves can be read as text
        rows = _rows_read_out(rows, columns, d)
        kept = [(i, _rows_read_out(p, columns, d)) for i, p in kept]
    trees: list[exp.Expr] = [*(outputs or [rows]), *(p for _, p in kept), *conditions]
    single = single_paths(resource)
    candidates = _list_reads(trees, top, single)
    # the children read from a list's items are JSON, as the general path's are
    requested = frozenset(_named(p) for p in top if p and p[0] != TYPE_COLUMN) - {
        (*_named(top[i]), name) for i, names in candidates.items() for name in names
    }
    listed = {top[i]: names for i, names in candidates.items()}
    numbers = _number_leaves(trees, top, d)
    # a tree is rewritten again only where what it reads is read otherwise than last time
    reads_of = [frozenset(int(b.expressions[0].name) for b in _top_reads(t)) for t in trees]
    rewritten: dict[int, tuple[Any, exp.Expr]] = {}
    while True:  # fewer leaves as text until every read of each is as text
        plan = typed_plan(resource, top, single, d, "r", requested, listed, numbers)
        lists = {i: names for i, names in candidates.items() if top[i] in plan.lists}
        read = []
        for k, t in enumerate(trees):
            how = (
                plan.text & reads_of[k],
                tuple((i, lists[i]) for i in sorted(reads_of[k] & lists.keys())),
            )
            if k not in rewritten or rewritten[k][0] != how:
                rewritten[k] = (how, _listed(_text_reads(t, top, plan.text, resource, d), lists, d))
            read.append(rewritten[k][1])
        left = {int(b.expressions[0].name) for t in read for b in _top_reads(t)}
        mixed = {_named(top[i]) for i in plan.text & left}
        if not mixed:
            break
        requested -= mixed
    r = exp.column("resource", "r")
    top_column = exp.column(TOP, "r")
    # nothing (a position in an object, a key in a list) is written where it is used, so
    # the engine folds away the guards it makes always pass. Other values stay columns:
    # written in place, DuckDB evaluates a cast in a CASE branch for rows that do not take
    # it (and folds a constant's at planning), and fails.
    # Nor where the value's items' children are read (`json_extract(value, '$[*]."x"')`):
    # DuckDB binds that of a NULL written in place as JSON, not a list of JSON, and the
    # `list_transform` over it fails the whole query, so the view would never be read typed
    # (a list read as a list of STRUCTs leaves such a read of the same element, as an
    # object, for when it is missing: an Organization's `type.coding`).
    children = {
        position
        for t in read
        for b in t.find_all(exp.Bracket)
        if (position := _top_position(b)) is not None and _wildcard_child(b) is not None
    }
    constant = {
        i
        for i, v in enumerate(plan.values)
        if isinstance(v, exp.Cast) and isinstance(v.this, exp.Null) and i not in children
    }

    def typed(tree: exp.Expr) -> exp.Expr:
        def swap(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Bracket) and node.this == top_column:
                position = int(node.expressions[0].name)
                if position in constant:
                    return plan.values[position].copy()
                return exp.column(f"{TOP}{position}", "r")
            if node == r:
                return d.present_or_error(exp.true(), GENERAL_PATH)
            return node

        return tree.transform(swap)

    values = [(i, v) for i, v in enumerate(plan.values) if i not in constant]
    kind = exp.column(TYPE_COLUMN, "r", quoted=True)
    lines = (
        exp.select(*([v.as_(f"{TOP}{i}") for i, v in values] or [kind]))
        .from_(exp.alias_(exp.to_table(TYPED_SOURCE), "r"), copy=False)
        .where(kind.copy().eq(_string(resource)), copy=False)
    )
    passed = [exp.column(f"{TOP}{i}", "r") for i, _ in values] or [kind.copy()]
    typed_trees = [typed(t) for t in read]
    found = typed_trees[: len(columns) if outputs is not None else 1]
    typed_parts = typed_trees[len(found) : len(found) + len(kept)]
    typed_conditions = typed_trees[len(found) + len(kept) :]
    if outputs is None:
        query = _assembled(
            lines, found[0], typed_parts, typed_conditions, columns, d, passed, read_out=True
        )
        return TypedQuery(plan.columns, query)
    # built in place, not copied at each step (these trees are this query's alone)
    source = lines
    if kept:
        source = (
            exp.select(
                *passed,
                *[
                    p.as_(f"{PART}{i}", copy=False)
                    for (i, _), p in zip(kept, typed_parts, strict=True)
                ],
            )
            .from_(lines.subquery("r", copy=False), copy=False)
            .where(*typed_conditions, copy=False)
        )
        typed_conditions = []
    query = (
        exp.select(*[o.as_(c.name, copy=False) for o, c in zip(found, columns, strict=True)])
        .from_(source.subquery("r", copy=False), copy=False)
        .where(*typed_conditions, copy=False)
    )
    return TypedQuery(plan.columns, query)


def _number_leaves(trees: list[exp.Expr], top: list[Path], d: JsonDialect) -> frozenset[Path]:
    """The leaves (by name) whose text the view casts to a number (a `decimal` or `integer`
    column's value): a hint that they usually hold numbers, which the typed read reads as
    JSON rather than VARCHAR (`typed_plan`'s `numbers`). Only a hint: the text is the same
    either way."""
    reads = _TextReads(top, frozenset(), "", d)
    found: set[Path] = set()
    for tree in trees:
        for cast in tree.find_all(exp.Cast):
            if not cast.to.is_type(exp.DataType.Type.DOUBLE, exp.DataType.Type.DECIMAL):
                continue
            text = cast.this
            if not (
                isinstance(text, exp.Anonymous)
                and text.name.lower() == "json_extract_string"
                and len(text.expressions) == 2
                and text.expressions[1] == _string("$")
            ):
                continue
            for value in _results(text.expressions[0]):
                position = reads.leaf(value)
                if position is not None and top[position] and top[position][0] != TYPE_COLUMN:
                    found.add(_named(top[position]))
    return frozenset(found)


def _results(value: exp.Expr) -> Iterator[exp.Expr]:
    """The values `value` may give: each result of a CASE (not its conditions), else itself."""
    if isinstance(value, exp.Paren):
        yield from _results(value.this)
    elif isinstance(value, exp.Case) and value.args.get("this") is None:
        for branch in value.args.get("ifs") or []:
            yield from _results(branch.args["true"])
        default = value.args.get("default")
        if default is not None:
            yield from _results(default)
    else:
        yield value


def _top_position(node: exp.Expr) -> int | None:
    """The position of the prefetched value `node` is (`r.top[i]`), else None."""
    if isinstance(node, exp.Bracket) and node.this == exp.column(TOP, "r"):
        return int(node.expressions[0].name)
    return None


_WILDCARD_CHILD = re.compile(r'^\$\[\*\]\."([A-Za-z][A-Za-z0-9_]*)"$')


def _wildcard_child(read: exp.Expr) -> str | None:
    """`name` when `read` is the value of `json_extract(read, '$[*]."name"')` (the children
    of an array's items, as `JsonDialect.each_child` reads them), else None."""
    parent = read.parent
    if not (isinstance(parent, exp.Anonymous) and parent.name.lower() == "json_extract"):
        return None
    args = parent.expressions
    if len(args) != 2 or args[0] is not read or not isinstance(args[1], exp.Literal):
        return None
    match = _WILDCARD_CHILD.match(str(args[1].this)) if args[1].is_string else None
    return None if match is None else match.group(1)


def _array_test(read: exp.Expr) -> bool:
    """Whether `read` is only tested for being an array (`starts_with(read, '[')`) where
    NULL and false mean the same: a CASE's condition, or `coalesce(test, false)`."""
    test = read.parent
    if not isinstance(test, exp.StartsWith) or test.this is not read:
        return False
    if test.expression != _string("["):
        return False
    where = test.parent
    if isinstance(where, exp.If):
        return where.this is test
    return (
        isinstance(where, exp.Coalesce)
        and where.this is test
        and where.expressions == [exp.false()]
    )


def _list_reads(
    trees: list[exp.Expr], top: list[Path], single: frozenset[Path]
) -> dict[int, tuple[str, ...]]:
    """The prefetched values a typed read can read as lists of STRUCTs, each with the
    children read from its items: values read whole (`code.coding`, a Patient's `address`)
    only to tell an array and to read the children of its items (`each_child`), as a
    member chain through a list does (`code.coding.code`). Such a value must be reached by
    elements FHIR R4 says hold one value or the items of lists, none of them read whole
    (`typed_plan` keeps only such lists); the list of STRUCTs is a bet on the usual shape,
    and any other fails the typed read."""
    uses: dict[int, list[exp.Expr]] = {}
    for tree in trees:
        for node in tree.find_all(exp.Bracket):
            position = _top_position(node)
            if position is not None:
                uses.setdefault(position, []).append(node)
    found: dict[int, tuple[str, ...]] = {}
    for position, reads in uses.items():
        path = top[position]
        if not path or path[0] == TYPE_COLUMN or _named(path) in single:
            continue
        names = [_wildcard_child(r) for r in reads]
        tests = [n is not None or _array_test(r) for n, r in zip(names, reads, strict=True)]
        if not any(names) or not all(tests):
            continue
        found[position] = tuple(dict.fromkeys(n for n in names if n is not None))
    return found


def _listed(tree: exp.Expr, lists: dict[int, tuple[str, ...]], d: JsonDialect) -> exp.Expr:
    """`tree` with the values `_list_reads` found read as lists of STRUCTs: the array test
    is whether the list is there (missing and JSON null are both NULL, and each gives no
    items either way), and the children of its items are their fields, the missing and
    null ones dropped as `json_extract` drops the missing ones (a null stands for nothing
    on either path)."""
    if not lists:
        return tree

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.StartsWith) and _top_position(node.this) in lists:
            return exp.paren(exp.Not(this=node.this.is_(exp.null())))
        if (
            isinstance(node, exp.Anonymous)
            and node.name.lower() == "json_extract"
            and _top_position(node.expressions[0]) in lists
        ):
            read = node.expressions[0]
            name = _wildcard_child(read)
            if name is None:  # pragma: no cover - `_list_reads` admits no other read
                raise ValueError(f"{node.sql()}: not a read of an array's items' children")
            item, child = exp.column("li"), exp.column("lc")
            children = d.fn("list_transform", read, _lambda(d.typed_field(item, name), item))
            present = exp.Not(this=child.is_(exp.null()))
            return d.fn("list_filter", children, _lambda(present, child))
        return node

    return tree.transform(swap, copy=False)


def _rows_read_out(tree: exp.Expr, columns: list[Column], d: JsonDialect) -> exp.Expr:
    """`tree` with every row it builds (`JsonDialect.row`) holding its columns' values read
    out with their types (`_output_value`), not JSON: the same values, read out before the
    rows are unnested rather than after. Every row of a column then holds the same type, as
    the rows of `unionAll` branches must."""
    by_name = {c.name: c for c in columns}

    def read_out(node: exp.Expr) -> exp.Expr:
        if not (isinstance(node, exp.Anonymous) and node.name.lower() == "struct_pack"):
            return node
        pairs = node.expressions
        if not all(isinstance(p, exp.PropertyEQ) and p.this.name in by_name for p in pairs):
            return node
        return d.row(
            [(p.this.name, _output_value(by_name[p.this.name], p.expression, d)) for p in pairs]
        )

    return tree.transform(read_out)


def _row_cells(
    rows: exp.Expr, parts: list[exp.Expr], columns: list[Column]
) -> tuple[dict[str, exp.Expr] | None, int | None]:
    """When `rows` is always one row built of its columns' values (a resource gives one
    row): those values by column, and the part the row is computed in (None if none)."""
    row, index = _one(rows), None
    if isinstance(row, exp.Column) and row.table == "r" and row.name.startswith(PART):
        index = int(row.name[len(PART) :])
        row = parts[index]
    if not isinstance(row, exp.Anonymous) or row.name.lower() != "struct_pack":
        return None, None
    cells = {
        pair.this.name: pair.expression
        for pair in row.expressions
        if isinstance(pair, exp.PropertyEQ)
    }
    if len(cells) != len(row.expressions) or set(cells) != {c.name for c in columns}:
        return None, None
    return cells, index


def _json_string(value: exp.Expr) -> str | None:
    """The text of `to_json('text')` when no other JSON value's text could be that text
    (it is not itself JSON: a number, `true`, an array...), else None. A leaf read as text
    holds a number's or `true`'s text as it is, so it equals such a text exactly when the
    general path's JSON string would."""
    if not (isinstance(value, exp.Anonymous) and value.name.lower() == "to_json"):
        return None
    literal = value.expressions[0] if len(value.expressions) == 1 else None
    if not isinstance(literal, exp.Literal) or not literal.is_string:
        return None
    text = str(literal.this)
    try:
        json.loads(text)
    except ValueError:
        return text
    return None


def _top_reads(tree: exp.Expr) -> list[exp.Bracket]:
    """The prefetched values `tree` reads (`r.top[i]`)."""
    top = exp.column(TOP, "r")
    return [b for b in tree.find_all(exp.Bracket) if b.this == top]


def _text_reads(
    tree: exp.Expr, top: list[Path], text: frozenset[int], resource: str, d: JsonDialect
) -> exp.Expr:
    """`tree` with the text of each prefetched leaf read as text (positions `text`) read
    from its column: the text of the value itself, or of the first or only item of its
    spread, which for a leaf that is not an array (else the typed read fails) is the same.
    The resource type's text is the view's own (the typed read keeps only its lines)."""
    reads = _TextReads(top, text, resource, d)
    return tree.copy().transform(reads.swap, copy=False)


def _top_item(position: int) -> exp.Expr:
    """The prefetched value at `position` (`r.top[position]`)."""
    return exp.Bracket(this=exp.column(TOP, "r"), expressions=[_number(position)])


@functools.lru_cache(maxsize=4096)
def _single_item(d: JsonDialect, position: int, error: exp.Expr | None) -> exp.Expr:
    """The first (`error` None) or only item of the prefetched value at `position`, as
    `_single_of` marks it: built once for each, and only compared (`_TextReads.leaf`),
    never put in a tree."""
    item = _top_item(position)
    return d.first_of(item) if error is None else d.sole_of(item, error)


@dataclass(frozen=True)
class _TextReads:
    """How `_text_reads` rewrites one node."""

    top: list[Path]
    text: frozenset[int]
    resource: str
    d: JsonDialect

    def leaf(self, value: exp.Expr) -> int | None:
        """The position of the prefetched leaf `value` is, or is the first or only item of
        (`_single_of`); None for any other value."""
        if not isinstance(value, exp.Bracket) and value.meta_get("single_of", False) is False:
            return None  # neither a leaf nor one's first or only item: nothing to walk
        reads = {int(b.expressions[0].name) for b in _top_reads(value)}
        if len(reads) != 1:
            return None
        position = reads.pop()
        if isinstance(value, exp.Bracket):
            return position if value == _top_item(position) else None
        again = _single_item(self.d, position, value.meta["single_of"])
        return position if again == value else None

    def column(self, value: exp.Expr) -> exp.Expr | None:
        """The column of the leaf read as text that `value` is, else None."""
        position = self.leaf(value) if isinstance(value, exp.Bracket) else None
        return None if position not in self.text else exp.column(f"{TOP}{position}", "r")

    def swap(self, node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.EQ):  # `f = 'text'` in a one-pass where(): see `_json_string`
            mine, other = self.column(node.this), _json_string(node.expression)
            return node if mine is None or other is None else mine.eq(_string(other))
        if not isinstance(node, exp.Anonymous) or len(node.expressions) != 2:
            return node
        name, (value, arg) = node.name.lower(), node.expressions
        if name == "starts_with" and arg == _string("["):  # is_array: never, as the read holds
            mine = self.column(value)
            return node if mine is None else exp.paren(exp.and_(mine.is_(exp.null()), exp.null()))
        if name == "json_extract_string" and arg == _string("$"):
            return self.text_of(value, node)
        return node

    def text_of(self, value: exp.Expr, node: exp.Expr) -> exp.Expr:
        """`node`, the text of `value`, read from a leaf read as text where it can be."""
        if "text_value" in value.meta:  # the JSON string of a text: that text
            inner: exp.Expr = value.expressions[0]
            return inner.transform(self.swap, copy=False)
        position = self.leaf(value)
        if position is None and isinstance(value, exp.Case):  # each branch's value's text
            default = value.args.get("default")
            spread = exp.Case(
                this=value.args.get("this"),
                ifs=[
                    exp.If(this=c.this, true=self.d.text(c.args["true"])) for c in value.args["ifs"]
                ],
                default=None if default is None else self.d.text(default),
            )
            return spread.transform(self.swap, copy=False)
        if position is not None and self.top[position] == (TYPE_COLUMN,):
            return _string(self.resource)
        if position is not None and position in self.text:
            return exp.column(f"{TOP}{position}", "r")
        return node


def _assembled(
    source: exp.Select,
    rows: exp.Expr,
    parts: list[exp.Expr],
    conditions: list[exp.Expr],
    columns: list[Column],
    d: JsonDialect,
    passed: Sequence[exp.Expr],
    *,
    read_out: bool = False,
) -> exp.Query:
    """The view's query: `source` (what each resource gives, `passed` on to the rows), the
    parts computed once per resource, the rows unnested, each column read out with its
    type."""
    # built in place, not copied at each step: the caller copies the finished query where
    # a tree may be in two places (`compile_view`)
    if parts:
        source = (
            exp.select(*passed, *[p.as_(f"{PART}{i}", copy=False) for i, p in enumerate(parts)])
            .from_(source.subquery("r", copy=False), copy=False)
            .where(*conditions, copy=False)
        )
        conditions = []
    one = _one(rows)  # one row per resource: nothing to unnest
    each_row = (one if one is not None else d.unnest(rows)).as_("row", copy=False)
    unnested = (
        exp.select(each_row)
        .from_(source.subquery("r", copy=False), copy=False)
        .where(*conditions, copy=False)
    )

    def row() -> exp.Expr:  # one of its own for each column
        return exp.column("row", "u")

    outputs = [d.row_get(row(), c.name) if read_out else _output(c, row(), d) for c in columns]
    return exp.select(
        *[o.as_(c.name, copy=False) for o, c in zip(outputs, columns, strict=True)]
    ).from_(unnested.subquery("u", copy=False), copy=False)
