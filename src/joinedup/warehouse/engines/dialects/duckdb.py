"""DuckDB's FHIR JSON dialect for the ViewDefinition compiler.

On DuckDB a JSON value is text, parsed again by every read, so this dialect reads all the
paths a view needs from a resource in one pass (`read_all`) and tells an array from its
first character (`json_extract` writes compact JSON).
"""

from __future__ import annotations

from sqlglot import exp

from joinedup.warehouse.engines.dialects.base import JsonDialect, call, number, string, template


def _json_path(path: tuple[str | int, ...]) -> str:
    """A JSONPath of object keys (quoted) and array positions."""
    return "$" + "".join(f"[{step}]" if isinstance(step, int) else f'."{step}"' for step in path)


class DuckDBJson(JsonDialect):
    """DuckDB: FHIR JSON as JSON text, collections as JSON[] lists, rows as STRUCTs of JSON
    values (so building, merging and reading rows parses nothing)."""

    name = "duckdb"
    #: Whether the paths a view reads from the resource are all read in one pass (`read_all`).
    #: DuckDB parses JSON text again on every read, so reading each path separately would
    #: parse the whole resource once per column.
    prefetch = True

    #: `read_json` with a column schema reads NDJSON into STRUCTs, lists and JSON leaves.
    typed_reads = True

    def typed_field(self, value: exp.Expr, name: str) -> exp.Expr:
        return call("struct_extract", value, string(name))

    def typed_item(self, value: exp.Expr, position: int) -> exp.Expr:
        return call("list_extract", value, number(position + 1))

    def present_or_error(self, value: exp.Expr, message: str) -> exp.Expr:
        """CASE evaluates its branch only for the rows that take it, so the error is raised
        only where `value` is there."""
        return template(
            "CASE WHEN {v} IS NOT NULL THEN CAST({err} AS JSON) END",
            v=value,
            err=self.error(message),
        )

    def longer_or_error(self, value: exp.Expr, length: int, message: str) -> exp.Expr:
        """The list's length, where `present_or_error` of an item would copy the item out
        of the list first (its whole STRUCT, lists inside it included) only to test it for
        NULL: a sixth to a third less CPU for each such check."""
        return template(
            "CASE WHEN len({v}) > {n} THEN CAST({err} AS JSON) END",
            v=value,
            n=number(length),
            err=self.error(message),
        )

    def text_or_error(self, value: exp.Expr, message: str) -> exp.Expr:
        """`read_json` reads any JSON value into a VARCHAR leaf without complaint: an array
        or object as its JSON text, a number as DuckDB writes it. The general path's text of
        an array is its items, so an array (and an object) fails here; a number's text is
        the same both ways unless DuckDB writes it with an exponent (`1e+21`, where
        `json_extract_string` writes `1e21`, `1e-07` for `1e-7`), which fails too. A string
        of that shape fails with them and takes the general path: the rows stay the same.
        The first character's code tells (`[` 91, `{` 123, a number's below 58) at a fifth
        of the cost of `starts_with` twice."""
        return template(
            "CASE WHEN ascii({v}) IN (91, 123) OR (ascii({v}) < 58 AND contains({v}, 'e') "
            "AND regexp_full_match({v}, '-?[0-9]+([.][0-9]+)?e[-+][0-9]+')) THEN {err} "
            "ELSE {v} END",
            v=value,
            err=exp.cast(self.error(message), exp.DataType.build("VARCHAR")),
        )

    def number_text_or_error(self, value: exp.Expr, message: str) -> exp.Expr:
        """`read_json` writes a JSON leaf as `json_extract` writes it (`1e21`, `1.5e-7`,
        `100000000000000000000.0`), so the text of a number, `true` or `false` is that JSON
        text as it is, and needs no check; a string's is its unescaped text, read as the
        general path reads it (`json_extract_string`). An array or object fails. Writing a
        number into JSON costs less than into VARCHAR (DuckDB's own number formatting)."""
        return template(
            "CASE WHEN ascii({v}) IN (91, 123) THEN {err} "
            "WHEN ascii({v}) = 34 THEN json_extract_string({v}, '$') "
            "ELSE CAST({v} AS VARCHAR) END",
            v=value,
            err=exp.cast(self.error(message), exp.DataType.build("VARCHAR")),
        )

    # JSON values
    def child(self, item: exp.Expr, name: str) -> exp.Expr:
        return call("json_extract", item, string(f'$."{name}"'))

    def read_all(self, item: exp.Expr, paths: list[tuple[str | int, ...]]) -> exp.Expr:
        """A list of the values at `paths` (each a chain of object keys and array positions)
        in `item`, NULL where there is none, read in one pass."""
        texts = [_json_path(path) for path in paths]
        return call("json_extract", item, exp.Array(expressions=[string(t) for t in texts]))

    def read_path(self, item: exp.Expr, path: tuple[str | int, ...]) -> exp.Expr:
        return call("json_extract", item, string(_json_path(path)))

    def each_child_of_single(
        self, first_item: exp.Expr, value: exp.Expr, name: str, own: exp.Expr
    ) -> exp.Expr:
        """`each_child` of a value that is usually an object: `first_item` is missing unless
        it is a non-empty array, and only then is `value` read (CASE evaluates a branch for
        the rows that take it). A missing, null or empty value gives `[own]` with `own`
        missing, which stands for nothing, as the empty list `each_child` gives does."""
        return template(
            "CASE WHEN {first} IS NOT NULL THEN {items} ELSE [{own}] END",
            first=first_item,
            items=call("json_extract", value, string(f'$[*]."{name}"')),
            own=own,
        )

    def resource_type(self, resource: exp.Expr) -> exp.Expr:
        """A resource's `resourceType` as text. Bulk NDJSON writes it first, as plain
        letters: a match anchored at the start reads it without parsing the whole resource
        (which adds 40 % to reading the file). When a key appears twice,
        `json_extract_string` reads the first, as the match does. Any other text is parsed."""
        found = call(
            "regexp_extract", resource, string('^[{]"resourceType":"([A-Za-z]+)"'), number(1)
        )
        return call(
            "coalesce", call("nullif", found, string("")), self.child_text(resource, "resourceType")
        )

    def is_array(self, value: exp.Expr) -> exp.Expr:
        """Whether `value`, read by `read_all` (compact JSON), is an array: its first
        character tells, with no parse."""
        return call("starts_with", value, string("["))

    def child_text(self, item: exp.Expr, name: str) -> exp.Expr:
        """`text(child(item, name))` in one step."""
        return call("json_extract_string", item, string(f'$."{name}"'))

    # `json_extract` writes compact JSON, so the first character of a value it read tells
    # whether it is an array without parsing it again. `value` below is always such a value.
    def each_child(self, value: exp.Expr, name: str, var: exp.Expr, own: exp.Expr) -> exp.Expr:
        """The child `name` of every item of `spread(value)`, not spread (a list of values,
        possibly with NULLs). `own` is `child(value, name)`, which may be read already; an
        array's items' children are read in one pass."""
        return template(
            "CASE WHEN starts_with({v}, '[') THEN {items} ELSE [{own}] END",
            v=value,
            items=call("json_extract", value, string(f'$[*]."{name}"')),
            own=own,
        )

    def matches_fully(self, text: exp.Expr, pattern: str) -> exp.Expr:
        """Whether all of `text` matches the regular expression `pattern`."""
        return call("regexp_full_match", text, string(pattern))

    def first_text_is(self, item: exp.Expr, name: str, text: str) -> exp.Expr | None:
        """Whether the text of the first of `item`'s children `name` is `text`, possibly
        false (not NULL) when there are none; None when there is no shortcut for it.

        One read gives the child's text and its first item's text: a child that is not an
        array has no first item, and an array's text starts with `[`."""
        if text.startswith("["):
            return None
        texts = call(
            "json_extract_string",
            item,
            exp.Array(expressions=[string(f'$."{name}"'), string(f'$."{name}"[0]')]),
        )
        return call("list_contains", texts, string(text))

    def first_of(self, value: exp.Expr) -> exp.Expr:
        """The first item of `spread(value)` (NULL when there is none)."""
        return template(
            "CASE WHEN {v} = 'null' THEN NULL WHEN starts_with({v}, '[') "
            "THEN CAST({v} AS JSON[])[1] ELSE {v} END",
            v=value,
        )

    def sole_of(self, value: exp.Expr, error: exp.Expr) -> exp.Expr:
        """The only item of `spread(value)`: NULL when there is none, `error` when several."""
        return template(
            "CASE WHEN {v} IS NULL OR {v} = 'null' THEN NULL "
            "WHEN starts_with({v}, '[') THEN CASE len(CAST({v} AS JSON[])) WHEN 0 THEN NULL "
            "WHEN 1 THEN CAST({v} AS JSON[])[1] ELSE {err} END ELSE {v} END",
            v=value,
            err=error,
        )

    def spread(self, value: exp.Expr) -> exp.Expr:
        """The collection a child read by `child` stands for: nothing when it is missing or
        null, its items when it is an array, else itself."""
        return template(
            "CASE WHEN {v} IS NULL OR {v} = 'null' THEN {empty} "
            "WHEN starts_with({v}, '[') THEN CAST({v} AS JSON[]) ELSE [{v}] END",
            v=value,
            empty=self.empty(),
        )

    def is_number(self, item: exp.Expr) -> exp.Expr:
        return template("json_type({v}) IN ('UBIGINT', 'BIGINT', 'DOUBLE')", v=item)

    def is_string(self, item: exp.Expr) -> exp.Expr:
        return template("json_type({v}) = 'VARCHAR'", v=item)

    def is_boolean(self, item: exp.Expr) -> exp.Expr:
        return template("json_type({v}) = 'BOOLEAN'", v=item)

    def text(self, item: exp.Expr) -> exp.Expr:
        return call("json_extract_string", item, string("$"))

    def value(self, scalar: exp.Expr) -> exp.Expr:
        return call("to_json", scalar)

    def empty(self) -> exp.Expr:
        return template("CAST([] AS JSON[])")

    def first(self, collection: exp.Expr) -> exp.Expr:
        return template("{c}[1]", c=collection)

    def position(self, index: exp.Expr) -> exp.Expr:
        """A list lambda's index argument as a 0-based position (DuckDB counts from 1)."""
        return exp.Sub(this=index, expression=number(1))

    def slice(self, collection: exp.Expr, start: exp.Expr) -> exp.Expr:
        """The single item at 1-based `start` (negative: from the end), as a collection."""
        return call("list_slice", collection, start, start.copy())

    def parse(self, text: exp.Expr) -> exp.Expr:
        return exp.cast(text, exp.DataType.build("JSON", dialect="duckdb"))

    # rows: a STRUCT of JSON values, so building, merging and reading rows parses nothing
    def row(self, pairs: list[tuple[str, exp.Expr]]) -> exp.Expr:
        return call(
            "struct_pack",
            *[exp.PropertyEQ(this=exp.to_identifier(k), expression=v) for k, v in pairs],
        )

    def blank_row(self, names: list[str], given: dict[str, exp.Expr] | None = None) -> exp.Expr:
        """A row whose columns `names` are all null but those `given` (a row without columns
        is never read). Its columns are in the order of `names`, as a STRUCT's must be."""
        if not names:
            return template("CAST('{}' AS JSON)")
        given = given or {}
        return self.row([(n, given.get(n) or template("CAST(NULL AS JSON)")) for n in names])

    def merge(self, a: exp.Expr, b: exp.Expr) -> exp.Expr:
        return call("struct_concat", a, b)

    def row_get(self, row: exp.Expr, name: str) -> exp.Expr:
        return call("struct_extract", row, string(name))

    def null_value(self) -> exp.Expr:
        return exp.null()

    def list_value(self, collection: exp.Expr) -> exp.Expr:
        return call("to_json", collection)

    def json_text(self, item: exp.Expr) -> exp.Expr:
        return item

    def error(self, message: str) -> exp.Expr:
        return call("error", string(message))

    def unnest(self, rows: exp.Expr) -> exp.Expr:
        return call("unnest", rows)
