"""Statements with their constant values written into the SQL text, for PostgreSQL to plan
once: a statement sent with every value bound (SQLAlchemy binds each constant it is
compared with) gets a generic plan that knows none of them, which PostgreSQL rightly judges
worse than planning each execution afresh, and planning a statement of many arms costs more
than running it (records.store.withholding, records.store.person_links)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import BindParameter, ColumnElement, Select, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal, replacement_traverse

__all__ = ["inlined"]


class _Written(ColumnElement[Any]):
    """A value written into the statement's SQL text when it is compiled (escaped by the
    dialect, as SQLAlchemy writes a literal), not sent as a bound parameter. Part of the
    statement's cache key, so statements with different values are compiled apart."""

    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy's declaration, a list
        ("value", InternalTraversal.dp_plain_obj),
        ("type", InternalTraversal.dp_type),
        ("expanding", InternalTraversal.dp_boolean),
    ]

    def __init__(self, bound: BindParameter[Any]) -> None:
        value: Any = bound.value
        self.value = tuple(value) if bound.expanding else value
        self.type = bound.type
        self.expanding = bound.expanding


@compiles(_Written)
def _write(element: _Written, compiler: SQLCompiler, **kw: Any) -> str:
    kw.pop("literal_binds", None)
    given: Any = element.value
    value = list(given) if element.expanding else given
    bound = bindparam(None, value, type_=element.type, expanding=element.expanding)
    return compiler.process(bound, literal_binds=True, **kw)


def inlined(statement: Select[Any], *, keep: frozenset[str] = frozenset()) -> Select[Any]:
    """`statement` with every value written into its SQL text (the identifier systems, the
    parameters' names, the organisations) but the parameters named in `keep`. PostgreSQL
    then plans it knowing them: as bound parameters (81 in the person objection check) a
    generic plan knows none of them and is far worse than a custom one, so every execution
    of the prepared statement was planned afresh (2 ms to plan, 0.3 ms to run the read's
    check); with them in the text the plan made once is kept and reused. Written when the
    statement is compiled, not at each execution (SQLAlchemy's `literal_execute` would
    render them again every time: 0.3 ms of CPU a read's check)."""

    def written(element: Any, **_: Any) -> Any:
        if (
            isinstance(element, BindParameter)
            and element.key not in keep
            and element.callable is None
            and not (element.expanding and not element.value)
        ):
            return _Written(element)
        return None

    options: dict[str, Any] = {}
    return cast(Select[Any], replacement_traverse(statement, options, written))
