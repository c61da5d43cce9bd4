"""The interface every engine's FHIR JSON dialect gives the ViewDefinition compiler, and the
small builders the dialects share."""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from typing import ClassVar

import sqlglot
from sqlglot import exp


@functools.lru_cache(maxsize=1024)
def _parsed(sql: str, dialect: str) -> exp.Expr:
    """A template's SQL, parsed once (never changed: `template` fills a copy)."""
    text = re.sub(r"\{(\w+)\}", lambda m: f"__p_{m.group(1)}__", sql)
    tree: exp.Expr = sqlglot.parse_one(f"SELECT {text}", read=dialect).expressions[0]
    return tree


def template(sql: str, dialect: str = "duckdb", **parts: exp.Expr) -> exp.Expr:
    """An expression in the engine's own SQL whose `{name}` holes are filled with
    expressions. Only the engine dialects write SQL this way."""
    tree = _parsed(sql, dialect)

    def fill(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table:
            match = re.fullmatch(r"__p_(\w+)__", node.name)
            if match:
                return parts[match.group(1)].copy()
        return node

    filled: exp.Expr = tree.transform(fill)
    return filled


def call(name: str, *args: exp.Expr) -> exp.Expr:
    """A function call, built without copying its (often large) arguments."""
    return exp.Anonymous(this=name, expressions=list(args))


def string(value: str) -> exp.Expr:
    return exp.Literal.string(value)


def number(value: int) -> exp.Expr:
    return exp.Literal.number(value)


def lambda_(body: exp.Expr, *variables: exp.Expr) -> exp.Expr:
    return exp.Lambda(this=body, expressions=[exp.to_identifier(v.name) for v in variables])


class JsonDialect(ABC):
    """How one engine holds FHIR JSON and works on lists of it. A FHIRPath collection is a
    list of JSON values; a view's row is a record of JSON values."""

    name = ""
    #: List function names as the compiler writes them (DuckDB's); others translate in `fn`.
    names: ClassVar[dict[str, str]] = {}
    #: Whether the paths a view reads from the resource are all read in one pass (`read_all`).
    prefetch = False

    def fn(self, name: str, *args: exp.Expr) -> exp.Expr:
        """A list or text function, by its DuckDB name, in this engine's spelling."""
        return call(self.names.get(name, name), *args)

    def read_all(self, item: exp.Expr, paths: list[tuple[str | int, ...]]) -> exp.Expr:
        """A list of the values at `paths` (chains of object keys, and array positions) in
        `item`, read in one pass; only dialects that `prefetch` have it."""
        raise NotImplementedError(f"the {self.name} dialect reads each path on its own")

    def read_path(self, item: exp.Expr, path: tuple[str | int, ...]) -> exp.Expr:
        """The value at `path` (object keys and array positions) in `item`, as one JSON
        value; only dialects that `prefetch` have it."""
        raise NotImplementedError(f"the {self.name} dialect reads each path on its own")

    def each_child_of_single(
        self, first_item: exp.Expr, value: exp.Expr, name: str, own: exp.Expr
    ) -> exp.Expr:
        """`each_child` of a value that is usually not an array, told by `first_item` (its
        first item, missing unless it is a non-empty array) without reading `value` itself
        unless it is one; only dialects that `prefetch` have it."""
        raise NotImplementedError(f"the {self.name} dialect reads each path on its own")

    #: Whether the engine can read NDJSON straight into typed columns (`typed_field`,
    #: `typed_item`, `present_or_error`), so a view can skip the table of parsed resources.
    typed_reads = False

    def typed_field(self, value: exp.Expr, name: str) -> exp.Expr:
        """Field `name` of a STRUCT read typed from NDJSON; only dialects with `typed_reads`."""
        raise NotImplementedError(f"the {self.name} dialect reads no typed NDJSON")

    def typed_item(self, value: exp.Expr, position: int) -> exp.Expr:
        """Item `position` (0-based) of a list read typed from NDJSON, NULL past its end;
        only dialects with `typed_reads`."""
        raise NotImplementedError(f"the {self.name} dialect reads no typed NDJSON")

    def present_or_error(self, value: exp.Expr, message: str) -> exp.Expr:
        """NULL (as JSON) when `value` is NULL, else an error with `message`; only dialects
        with `typed_reads`."""
        raise NotImplementedError(f"the {self.name} dialect reads no typed NDJSON")

    def longer_or_error(self, value: exp.Expr, length: int, message: str) -> exp.Expr:
        """NULL (as JSON) when the list `value` read typed from NDJSON holds at most `length`
        items, else an error with `message`; only dialects with `typed_reads`."""
        raise NotImplementedError(f"the {self.name} dialect reads no typed NDJSON")

    def text_or_error(self, value: exp.Expr, message: str) -> exp.Expr:
        """A leaf read typed as text, or an error with `message` where that text may not be
        what the general path reads as the leaf's text (an array's or object's JSON, a
        number written another way); only dialects with `typed_reads`."""
        raise NotImplementedError(f"the {self.name} dialect reads no typed NDJSON")

    def number_text_or_error(self, value: exp.Expr, message: str) -> exp.Expr:
        """The text of a leaf read typed as JSON (one that usually holds a number), as the
        general path reads it, or an error with `message` where it is an array or object;
        only dialects with `typed_reads`."""
        raise NotImplementedError(f"the {self.name} dialect reads no typed NDJSON")

    def resource_type(self, resource: exp.Expr) -> exp.Expr:
        """A resource's `resourceType` as text."""
        return self.child_text(resource, "resourceType")

    def is_array(self, value: exp.Expr) -> exp.Expr:
        """Whether `value`, read by `read_all`, is an array; only dialects that `prefetch`
        have it."""
        raise NotImplementedError(f"the {self.name} dialect reads each path on its own")

    # JSON values
    @abstractmethod
    def child(self, item: exp.Expr, name: str) -> exp.Expr:
        """`item`'s child `name` as one JSON value (an array is not spread)."""

    @abstractmethod
    def child_text(self, item: exp.Expr, name: str) -> exp.Expr:
        """`text(child(item, name))` in one step."""

    @abstractmethod
    def each_child(self, value: exp.Expr, name: str, var: exp.Expr, own: exp.Expr) -> exp.Expr:
        """The child `name` of every item of `spread(value)`, not spread; `own` is
        `child(value, name)`."""

    @abstractmethod
    def matches_fully(self, text: exp.Expr, pattern: str) -> exp.Expr:
        """Whether all of `text` matches the regular expression `pattern`."""

    @abstractmethod
    def first_text_is(self, item: exp.Expr, name: str, text: str) -> exp.Expr | None:
        """Whether the text of the first of `item`'s children `name` is `text`; None when
        the dialect has no shortcut for it."""

    @abstractmethod
    def first_of(self, value: exp.Expr) -> exp.Expr:
        """The first item of `spread(value)` (NULL when there is none)."""

    @abstractmethod
    def sole_of(self, value: exp.Expr, error: exp.Expr) -> exp.Expr:
        """The only item of `spread(value)`: NULL when none, `error` when several."""

    @abstractmethod
    def spread(self, value: exp.Expr) -> exp.Expr:
        """The collection a child value stands for: nothing when missing or null, its items
        when an array, else itself."""

    @abstractmethod
    def is_number(self, item: exp.Expr) -> exp.Expr: ...

    @abstractmethod
    def is_string(self, item: exp.Expr) -> exp.Expr: ...

    @abstractmethod
    def is_boolean(self, item: exp.Expr) -> exp.Expr: ...

    @abstractmethod
    def text(self, item: exp.Expr) -> exp.Expr:
        """A JSON scalar as text (a JSON string without its quotes)."""

    @abstractmethod
    def value(self, scalar: exp.Expr) -> exp.Expr:
        """A SQL scalar as a JSON value."""

    @abstractmethod
    def empty(self) -> exp.Expr:
        """The empty collection."""

    @abstractmethod
    def first(self, collection: exp.Expr) -> exp.Expr:
        """The first item of a collection (NULL when empty)."""

    @abstractmethod
    def position(self, index: exp.Expr) -> exp.Expr:
        """A list lambda's index argument as a 0-based position."""

    @abstractmethod
    def slice(self, collection: exp.Expr, start: exp.Expr) -> exp.Expr:
        """The single item at 1-based `start` (negative: from the end), as a collection."""

    @abstractmethod
    def parse(self, text: exp.Expr) -> exp.Expr:
        """JSON text as the engine's JSON."""

    # rows
    @abstractmethod
    def row(self, pairs: list[tuple[str, exp.Expr]]) -> exp.Expr: ...

    @abstractmethod
    def blank_row(self, names: list[str], given: dict[str, exp.Expr] | None = None) -> exp.Expr:
        """A row whose columns `names` are all null but those `given` (JSON values)."""

    @abstractmethod
    def merge(self, a: exp.Expr, b: exp.Expr) -> exp.Expr: ...

    @abstractmethod
    def row_get(self, row: exp.Expr, name: str) -> exp.Expr: ...

    @abstractmethod
    def null_value(self) -> exp.Expr: ...

    @abstractmethod
    def list_value(self, collection: exp.Expr) -> exp.Expr:
        """A collection as one JSON array value."""

    @abstractmethod
    def json_text(self, item: exp.Expr) -> exp.Expr:
        """A JSON value as JSON text."""

    @abstractmethod
    def error(self, message: str) -> exp.Expr:
        """An expression that fails the query with `message` when evaluated."""

    @abstractmethod
    def unnest(self, rows: exp.Expr) -> exp.Expr:
        """One output row per item of the list `rows` (a SELECT item)."""
