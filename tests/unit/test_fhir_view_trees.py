"""The compiler builds its queries in place, without copying at each step, yet every node of
a compiled query is in one place with the right parent: a later in-place change of the
query (sqlglot's `transform(copy=False)` or `replace`) reaches every node it should."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from sqlglot import exp

from joinedup.fhir import views
from joinedup.fhir.ingest import shipped_views

#: A view with a `unionAll` of one row and a `forEach`, and one with the union inside an
#: iteration, beside the shipped views.
_UNIONS = {
    "union": {
        "resourceType": "ViewDefinition", "resource": "Observation", "status": "active",
        "select": [
            {"column": [{"name": "id", "path": "id", "type": "id"}]},
            {"unionAll": [
                {"column": [{"name": "part", "path": "'own'", "type": "string"},
                            {"name": "code", "path": "code.coding.first().code",
                             "type": "code"}]},
                {"forEach": "component",
                 "column": [{"name": "part", "path": "'component'", "type": "string"},
                            {"name": "code", "path": "code.coding.first().code",
                             "type": "code"}]},
            ]},
        ],
    },
    "union in forEach": {
        "resourceType": "ViewDefinition", "resource": "Patient", "status": "active",
        "select": [
            {"forEach": "contact",
             "unionAll": [
                 {"column": [{"name": "name", "path": "name.family", "type": "string"}]},
                 {"forEach": "telecom",
                  "column": [{"name": "name", "path": "value", "type": "string"}]},
             ]},
        ],
    },
}  # fmt: skip


def _nodes(tree: exp.Expr) -> Iterator[tuple[exp.Expr, exp.Expr]]:
    """Every (parent, child) pair, read from the arguments, not from `parent`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for value in node.args.values():
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, exp.Expr):
                    yield node, child
                    stack.append(child)


@pytest.mark.parametrize("dialect", ["duckdb", "spark"])
@pytest.mark.parametrize("name", [*sorted(shipped_views()), *_UNIONS])
def test_every_node_of_a_compiled_query_is_in_one_place(name: str, dialect: str) -> None:
    view = shipped_views().get(name) or _UNIONS[name]
    compiled = views.compile_view(view, dialect=dialect)
    queries = [compiled.query] + ([compiled.typed.query] if compiled.typed else [])
    seen: Counter[int] = Counter()
    for query in queries:
        for parent, child in _nodes(query):
            seen[id(child)] += 1
            assert child.parent is parent, f"{child.sql(dialect)[:80]} has another parent"
    assert max(seen.values()) == 1  # none in two places, nor shared by the two queries
    # so an in-place change reaches every CASE, as it would on a copy
    for query in queries:
        changed = query.transform(
            lambda n: exp.Literal.number(0) if isinstance(n, exp.Case) else n, copy=False
        )
        assert not any(isinstance(child, exp.Case) for _, child in _nodes(changed))
