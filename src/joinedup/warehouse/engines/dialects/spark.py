"""Spark's FHIR JSON dialect for the ViewDefinition compiler (Spark 4: VARIANT)."""

from __future__ import annotations

from typing import ClassVar

from sqlglot import exp

from joinedup.warehouse.engines.dialects.base import (
    JsonDialect,
    call,
    lambda_,
    number,
    string,
    template,
)


class SparkJson(JsonDialect):
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
        return call("variant_get", item, string(f'$["{name}"]'))

    def child_text(self, item: exp.Expr, name: str) -> exp.Expr:
        return self.text(self.child(item, name))

    def each_child(self, value: exp.Expr, name: str, var: exp.Expr, own: exp.Expr) -> exp.Expr:
        return self.fn("list_transform", self.spread(value), lambda_(self.child(var, name), var))

    def first_text_is(self, item: exp.Expr, name: str, text: str) -> exp.Expr | None:
        return None

    def matches_fully(self, text: exp.Expr, pattern: str) -> exp.Expr:
        return exp.RegexpLike(this=text, expression=string(f"^(?:{pattern})$"))

    def first_of(self, value: exp.Expr) -> exp.Expr:
        return self.first(self.spread(value))

    def sole_of(self, value: exp.Expr, error: exp.Expr) -> exp.Expr:
        return template(
            "CASE WHEN {n} = 0 THEN {null} WHEN {n} = 1 THEN {one} ELSE {err} END",
            n=self.fn("len", self.spread(value)),
            null=self.null_value(),
            one=self.first(self.spread(value)),
            err=error,
        )

    def spread(self, value: exp.Expr) -> exp.Expr:
        return template(
            "CASE WHEN {isnull} THEN {empty} WHEN {isarray} THEN {aslist} ELSE [{v}] END",
            isnull=self.is_null(value),
            empty=self.empty(),
            isarray=self.is_array(value),
            aslist=self.as_list(value),
            v=value,
        )

    def _schema(self, item: exp.Expr) -> exp.Expr:
        return call("schema_of_variant", item)

    def is_array(self, item: exp.Expr) -> exp.Expr:
        return template("startswith({s}, 'ARRAY')", s=self._schema(item))

    def is_null(self, item: exp.Expr) -> exp.Expr:
        return template("{v} IS NULL OR is_variant_null({v})", v=item)

    def is_number(self, item: exp.Expr) -> exp.Expr:
        return template(
            "{s} IN ('BIGINT', 'INT', 'SMALLINT', 'TINYINT', 'DOUBLE', 'FLOAT') "
            "OR startswith({s}, 'DECIMAL')",
            s=self._schema(item),
        )

    def is_string(self, item: exp.Expr) -> exp.Expr:
        return template("{s} = 'STRING'", s=self._schema(item))

    def is_boolean(self, item: exp.Expr) -> exp.Expr:
        return template("{s} = 'BOOLEAN'", s=self._schema(item))

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
        return call("try_element_at", collection, number(1))

    def position(self, index: exp.Expr) -> exp.Expr:
        return index

    def slice(self, collection: exp.Expr, start: exp.Expr) -> exp.Expr:
        return template(
            "CASE WHEN {p} = 0 OR abs({p}) > size({c}) THEN {e} ELSE slice({c}, {p}, 1) END",
            p=start,
            c=collection,
            e=self.empty(),
        )

    def parse(self, text: exp.Expr) -> exp.Expr:
        return call("parse_json", text)

    def row(self, pairs: list[tuple[str, exp.Expr]]) -> exp.Expr:
        return call("map", *[x for k, v in pairs for x in (string(k), self._as_variant(v))])

    def _as_variant(self, value: exp.Expr) -> exp.Expr:
        return exp.cast(value, exp.DataType.build("VARIANT", dialect="spark"))

    def blank_row(self, names: list[str], given: dict[str, exp.Expr] | None = None) -> exp.Expr:
        """A map of the columns `given` (a column missing from a map reads as null)."""
        if given:
            return self.row(list(given.items()))
        return exp.cast(call("map"), exp.DataType.build("MAP<STRING, VARIANT>", dialect="spark"))

    def merge(self, a: exp.Expr, b: exp.Expr) -> exp.Expr:
        return call("map_concat", a, b)

    def row_get(self, row: exp.Expr, name: str) -> exp.Expr:
        return call("try_element_at", row, string(name))

    def null_value(self) -> exp.Expr:
        return exp.cast(exp.null(), exp.DataType.build("VARIANT", dialect="spark"))

    def list_value(self, collection: exp.Expr) -> exp.Expr:
        return call("parse_json", call("to_json", collection))

    def json_text(self, item: exp.Expr) -> exp.Expr:
        return call("to_json", item)

    def error(self, message: str) -> exp.Expr:
        return exp.cast(
            call("raise_error", string(message)),
            exp.DataType.build("VARIANT", dialect="spark"),
        )

    def unnest(self, rows: exp.Expr) -> exp.Expr:
        return exp.Explode(this=rows)
