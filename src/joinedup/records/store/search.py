"""Searches over the index tables, built as SQLAlchemy expressions (never SQL text).

A search is (name, value) pairs: a name given twice must match both (AND), a value with commas
matches any of its parts (OR). `_id`, `_count`, `_offset` and `_sort` (keys by commas, each
`_id`, `_lastUpdated` or a date or string parameter, `-` for descending) are understood
besides the type's own parameters.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, cast
from urllib.parse import parse_qsl

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    false,
    func,
    or_,
    select,
    union,
)

from joinedup.fhir.validate import R4_RESOURCE_TYPES
from joinedup.records.errors import InvalidSearchError
from joinedup.records.parameters import (
    SEARCH_PARAMETERS,
    Link,
    Parameter,
    date_range,
    normalise,
    parameter,
    patient_references,
    split_reference,
)
from joinedup.records.store import withholding
from joinedup.records.store.tables import (
    resources,
    search_dates,
    search_references,
    search_strings,
    search_tokens,
)

#: The most resources one page may hold.
MAX_COUNT = 1000
DEFAULT_COUNT = 50

Query = str | Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Search:
    """A parsed search: the filter on `resources`, the page and the order."""

    where: ColumnElement[bool]
    count: int
    offset: int
    sort: str | None


def pairs(query: Query) -> list[tuple[str, str]]:
    """A query (`a=1&b=2`, a mapping, or pairs) as (name, value) pairs."""
    if isinstance(query, str):
        return parse_qsl(query, keep_blank_values=True)
    if isinstance(query, Mapping):
        found: list[tuple[str, str]] = []
        for name, value in query.items():
            values = [value] if isinstance(value, str) else list(value)
            found.extend((name, v) for v in values)
        return found
    return list(query)


def _number(name: str, value: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise InvalidSearchError(f"{name}: not a whole number from {low} to {high}")
    return int(value)


def parse(resource_type: str, query: Query) -> Search:
    """The filter, page and order of a search, or InvalidSearchError naming the parameter."""
    shaped = _shaped(resource_type, query)
    values = iter(shaped.values)
    where = _where(resource_type, shaped.shapes, lambda: next(values))
    return Search(where, shaped.count, shaped.offset, shaped.sort)


@dataclass(frozen=True)
class Prepared:
    """A search as statements built once for every search of its shape (the same type,
    parameters, modifiers, kinds of value and order), with this search's values to bind."""

    page: Select[Any]
    total: Select[Any]
    values: dict[str, Any]
    count: int
    offset: int


def prepared(resource_type: str, query: Query) -> Prepared:
    """`parse`'s search as its page (bound: `page_count`, `page_offset`) and count
    statements, taken from a cache of one pair a shape, and the values to execute them with;
    building and keying a new statement each request cost more CPU than running it."""
    shaped = _shaped(resource_type, query)
    page, total = _statements(resource_type, shaped.shapes, shaped.sort)
    values = {f"p{i}": value for i, value in enumerate(shaped.values)}
    values.update(page_count=shaped.count, page_offset=shaped.offset)
    return Prepared(page, total, values, shaped.count, shaped.offset)


@lru_cache(maxsize=512)
def _statements(
    resource_type: str, shapes: tuple[Shape, ...], sort: str | None
) -> tuple[Select[Any], Select[Any]]:
    numbers = itertools.count()
    where = _where(resource_type, shapes, lambda: bindparam(f"p{next(numbers)}"))
    page = ordered(select(resources.c.body).where(where), resource_type, sort)
    count, offset = bindparam("page_count", type_=Integer), bindparam("page_offset", type_=Integer)
    page = page.limit(count).offset(offset)
    return page, select(func.count()).select_from(resources).where(where)


#: What decides a condition's SQL, never its values: (parameter, kind, one tag for each of
#: its alternatives); the values go apart, in the order the condition is built with them.
Shape = tuple[Any, ...]
#: Gives the next value as the condition is built: the value itself, or a bound parameter.
Take = Callable[[], object]


@dataclass(frozen=True)
class _Shaped:
    shapes: tuple[Shape, ...]
    values: list[Any]
    count: int
    offset: int
    sort: str | None


def _shaped(resource_type: str, query: Query) -> _Shaped:
    """A search checked (InvalidSearchError naming the parameter) and taken apart into the
    shape of each condition and their values."""
    if resource_type not in R4_RESOURCE_TYPES:
        raise InvalidSearchError(f"{resource_type}: not a FHIR R4 resource type")
    shapes: list[Shape] = []
    values: list[Any] = []
    count, offset, sort = DEFAULT_COUNT, 0, None
    for name, value in pairs(query):
        if name == "_count":
            count = _number(name, value, 0, MAX_COUNT)
        elif name == "_offset":
            offset = _number(name, value, 0, 10**9)
        elif name == "_sort":
            for key in value.split(","):
                _sort_key(resource_type, key)
            sort = value
        else:
            shapes.append(_condition(resource_type, name, value, values))
    return _Shaped(tuple(shapes), values, count, offset, sort)


def _where(resource_type: str, shapes: tuple[Shape, ...], take: Take) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = [
        resources.c.resource_type == resource_type,
        resources.c.deleted == false(),
    ]
    conditions += [_built(resource_type, shape, take) for shape in shapes]
    return and_(*conditions)


def or_values(value: str) -> list[str]:
    """The values a search value joins by commas (OR), `\\,` being a comma within one."""
    return [part.replace("\\,", ",") for part in re.split(r"(?<!\\),", value)]


_TABLES = {
    "token": search_tokens,
    "string": search_strings,
    "date": search_dates,
    "reference": search_references,
}


def _condition(resource_type: str, name: str, value: str, values: list[Any]) -> Shape:
    """One parameter's condition checked: its shape, its values added to `values`."""
    base, _, modifier = name.partition(":")
    alternatives = or_values(value)
    if base == "_id":
        values.append(alternatives)
        return ("_id",)
    known = parameter(resource_type, base)
    tags = tuple(_match(known, base, modifier, v, values) for v in alternatives)
    return (base, known.kind, tags)


def _built(resource_type: str, shape: Shape, take: Take) -> ColumnElement[bool]:
    if shape[0] == "_id":
        alternatives = take()
        if isinstance(alternatives, BindParameter):  # a list bound as one: expanding
            return resources.c.resource_id.in_(bindparam(alternatives.key, expanding=True))
        return resources.c.resource_id.in_(cast(list[str], alternatives))
    base, kind, tags = shape
    table = _TABLES[kind]
    matches = [_MATCHES[tag[0]](tag, take) for tag in tags]
    rows = select(table.c.resource_id).where(
        table.c.resource_type == resource_type, table.c.parameter == base, or_(*matches)
    )
    return resources.c.resource_id.in_(rows)


def _match(known: Parameter, name: str, modifier: str, value: str, values: list[Any]) -> Shape:
    if known.kind == "token":
        return _token(name, modifier, value, values)
    if known.kind == "string":
        return _string(name, modifier, value, values)
    if known.kind == "date":
        return _date(name, modifier, value, values)
    return _reference(known, name, modifier, value, values)


def _unsupported(name: str, modifier: str) -> InvalidSearchError:
    return InvalidSearchError(f"{name}:{modifier}: the store does not support this modifier")


def _token(name: str, modifier: str, value: str, values: list[Any]) -> Shape:
    if modifier:
        raise _unsupported(name, modifier)
    if "|" not in value:
        values.append(value)
        return ("code",)
    system, code = value.split("|", 1)
    if not system:
        values.append(code)
        return ("code without system",)
    if not code:
        values.append(system)
        return ("system",)
    values += [system, code]
    return ("system and code",)


def _string(name: str, modifier: str, value: str, values: list[Any]) -> Shape:
    if modifier not in ("", "contains"):
        raise _unsupported(name, modifier)
    # escaped here, as autoescape would a literal, so that the value can be bound
    text = normalise(value).replace("/", "//").replace("%", "/%").replace("_", "/_")
    values.append(text)
    return ("contains" if modifier else "starts",)


_PREFIX = re.compile(r"(eq|ne|lt|gt|le|ge|sa|eb)?(.+)")


def _date(name: str, modifier: str, value: str, values: list[Any]) -> Shape:
    """FHIR's date prefixes over ranges: [low, high) of the resource against the same of the
    value; `eq` (the default) when the resource's range lies within the value's."""
    if modifier:
        raise _unsupported(name, modifier)
    match = _PREFIX.fullmatch(value)
    try:
        low, high = date_range(match.group(2) if match else value)
    except ValueError as err:
        raise InvalidSearchError(f"{name}: {err}") from None
    values += [low, high]
    return ("date", (match.group(1) if match else None) or "eq")


def _reference(known: Parameter, name: str, modifier: str, value: str, values: list[Any]) -> Shape:
    if modifier and modifier not in (known.targets or {modifier}):
        raise InvalidSearchError(f"{name}:{modifier}: this parameter cannot point to {modifier}")
    found = split_reference(value)
    if found is None and "/" not in value:
        found = (modifier, value) if modifier else ("", value)
    if found is None:
        raise InvalidSearchError(f"{name}: not a reference (Type/id or id)")
    target_type, target_id = found
    if target_type and known.targets and target_type not in known.targets:
        return ("nothing",)  # a type this parameter never points to: nothing matches
    if not target_type:
        values.append(target_id)
        return ("id",)
    values += [target_type, target_id]
    return ("type and id",)


def _token_sql(tag: Shape, take: Take) -> ColumnElement[bool]:
    columns = search_tokens.c
    if tag[0] == "code":
        return columns.code == take()
    if tag[0] == "code without system":
        return and_(columns.system.is_(None), columns.code == take())
    if tag[0] == "system":
        return columns.system == take()
    return and_(columns.system == take(), columns.code == take())


def _string_sql(tag: Shape, take: Take) -> ColumnElement[bool]:
    column = search_strings.c.value
    if tag[0] == "starts":
        return column.startswith(take(), escape="/")
    return column.contains(take(), escape="/")


def _date_sql(tag: Shape, take: Take) -> ColumnElement[bool]:
    low, high = take(), take()
    columns = search_dates.c
    prefix = tag[1]
    if prefix == "eq":
        return and_(columns.low >= low, columns.high <= high)
    if prefix == "ne":
        return or_(columns.low < low, columns.high > high)
    found: ColumnElement[bool] = {
        "lt": columns.low < low,
        "le": columns.low < high,
        "gt": columns.high > high,
        "ge": columns.high > low,
        "sa": columns.low >= high,
        "eb": columns.high <= low,
    }[prefix]
    return found


def _reference_sql(tag: Shape, take: Take) -> ColumnElement[bool]:
    columns = search_references.c
    if tag[0] == "nothing":
        return false()
    if tag[0] == "id":
        return columns.target_id == take()
    return and_(columns.target_type == take(), columns.target_id == take())


_MATCHES: dict[str, Callable[[Shape, Take], ColumnElement[bool]]] = {
    "code": _token_sql,
    "code without system": _token_sql,
    "system": _token_sql,
    "system and code": _token_sql,
    "starts": _string_sql,
    "contains": _string_sql,
    "date": _date_sql,
    "nothing": _reference_sql,
    "id": _reference_sql,
    "type and id": _reference_sql,
}


def patients_found(kind: str, query: Query) -> Select[Any]:
    """The Patient ids a search finds: the Patients themselves, or the targets of the type's
    `patient` parameter. Never correlated with an enclosing query over the same tables."""
    parsed = parse(kind, query)
    if kind == "Patient":
        return select(resources.c.resource_id).where(parsed.where).correlate(None)
    refs = search_references.c
    matched = select(resources.c.resource_id).where(parsed.where).correlate(None)
    return (
        select(refs.target_id)
        .where(
            refs.resource_type == kind,
            refs.parameter == "patient",
            refs.target_type == "Patient",
            refs.resource_id.in_(matched),
        )
        .correlate(None)
    )


def of_patients(resource_type: str, searches: Sequence[tuple[str, Query]]) -> ColumnElement[bool]:
    """Resources of `resource_type` that belong to a patient one of `searches` (type, query)
    finds: the Patients themselves, or resources whose `patient` parameter points to one; a
    type without a `patient` parameter belongs to nobody, so none pass. When `searches` are
    `withholding.Permitted`, less what their withholding keeps back (objections to sharing,
    sensitive categories recorded by other organisations: records.consent)."""
    found = _belonging(resource_type, searches)
    if isinstance(searches, withholding.Permitted):
        return and_(found, withholding.shown(resource_type, searches.withholding))
    return found


def _belonging(resource_type: str, searches: Sequence[tuple[str, Query]]) -> ColumnElement[bool]:
    if not searches:
        return false()
    found = [patients_found(kind, query) for kind, query in searches]
    patients = union(*found) if len(found) > 1 else found[0]
    if resource_type == "Patient":
        return resources.c.resource_id.in_(patients)
    if "patient" not in SEARCH_PARAMETERS.get(resource_type, {}):
        return false()
    refs = search_references.c
    return resources.c.resource_id.in_(
        select(refs.resource_id).where(
            refs.resource_type == resource_type,
            refs.parameter == "patient",
            refs.target_type == "Patient",
            refs.target_id.in_(patients),
        )
    )


#: Sort keys every type has, beside its own date and string parameters.
_SORTED_BY_RESOURCE = ("_id", "_lastUpdated")


def _sort_key(resource_type: str, key: str) -> tuple[str, bool]:
    """One key of `_sort` (`name` or `-name`: descending) checked: `_id`, `_lastUpdated`, or a
    date or string parameter the store indexes for the type; (name, descending)."""
    name = key.strip().removeprefix("-")
    if name not in _SORTED_BY_RESOURCE:
        kind = parameter(resource_type, name).kind if name else None
        if kind not in ("date", "string"):
            raise InvalidSearchError(
                f"_sort: the store sorts by _id, _lastUpdated or a date or string parameter "
                f"of {resource_type}, not {key.strip() or '(nothing)'}"
            )
    return name, key.strip().startswith("-")


def ordered(query: Select[Any], resource_type: str, sort: str | None) -> Select[Any]:
    """`query` (over `resources`) in the order `sort` asks for (keys checked by `_sort_key`),
    ties broken by id. A resource with several values of a parameter sorts by its earliest
    ascending, its latest descending (a date by the start or end of its range); one with none
    comes last."""
    for key in sort.split(",") if sort else ():
        name, descending = _sort_key(resource_type, key)
        if name in _SORTED_BY_RESOURCE:
            column = resources.c.last_updated if name == "_lastUpdated" else resources.c.resource_id
            query = query.order_by(column.desc() if descending else column.asc())
            continue
        table = search_dates if parameter(resource_type, name).kind == "date" else search_strings
        value = (
            (table.c.high if descending else table.c.low)
            if table is search_dates
            else table.c.value
        )
        # looked up through the index on (type, id) for the resources the page holds
        bound = (
            select(func.max(value) if descending else func.min(value))
            .where(
                table.c.resource_type == resource_type,
                table.c.resource_id == resources.c.resource_id,
                table.c.parameter == name,
            )
            .scalar_subquery()
        )
        query = query.order_by((bound.desc() if descending else bound.asc()).nulls_last())
    return query.order_by(resources.c.resource_id)


def linked_targets(link: Link, source_ids: Sequence[str]) -> Select[Any]:
    """The (type, id) of what `source_ids` (of `link.source`) point to through the link's
    parameters (an `_include`), each once, in order."""
    refs = search_references.c
    query = select(refs.target_type, refs.target_id).where(
        refs.resource_type == link.source,
        refs.parameter.in_(link.names),
        refs.resource_id.in_(source_ids),
    )
    if link.target is not None:
        query = query.where(refs.target_type == link.target)
    return query.distinct().order_by(refs.target_type, refs.target_id)


def linking_to(link: Link, target_ids: Sequence[str]) -> ColumnElement[bool]:
    """Live resources of `link.source` that point to `target_ids` (of `link.target`) through
    the link's parameters (a `_revinclude`)."""
    refs = search_references.c
    pointing = select(refs.resource_id).where(
        refs.resource_type == link.source,
        refs.parameter.in_(link.names),
        refs.target_type == link.target,
        refs.target_id.in_(target_ids),
    )
    return and_(
        resources.c.resource_type == link.source,
        resources.c.deleted == false(),
        resources.c.resource_id.in_(pointing),
    )


Scope = Sequence[tuple[str, Query]] | None


def everything(
    kind: str, patient_ids: Sequence[str], scope: Scope, since: datetime | None
) -> ColumnElement[bool] | None:
    """Live resources of `kind` in `Patient/$everything`: the Patients `patient_ids` (the
    asked one, and the same person's through the person index), or those that point to them
    through a parameter that may point to a Patient (the reference index), kept
    to the patients `scope`'s searches find (None: not kept), updated at or after `since`
    when given; None for a type that never points to a patient."""
    refs = search_references.c
    follows = patient_references()
    if kind == "Patient":
        found = resources.c.resource_id.in_(patient_ids)
    elif kind in follows:
        pointing = select(refs.resource_id).where(
            refs.resource_type == kind,
            refs.parameter.in_(follows[kind]),
            refs.target_type == "Patient",
            refs.target_id.in_(patient_ids),
        )
        found = resources.c.resource_id.in_(pointing)
    else:
        return None
    conditions = [resources.c.resource_type == kind, resources.c.deleted == false(), found]
    if scope is not None:
        conditions.append(of_patients(kind, scope))
    if since is not None:
        conditions.append(resources.c.last_updated >= since)
    return and_(*conditions)
