"""A view's prefetched values read from NDJSON into typed columns, not from parsed JSON text.

The compiler reads every value a view needs from a resource at chains of object keys and
array positions (`views._Prefetch`). On an engine that can read NDJSON with a column schema
(DuckDB's `read_json`), those paths give the schema: an element FHIR R4 says holds one value
(`fhir.elements`), or one only stepped through by name, is a STRUCT; one stepped through by
position is a list; a value read whole stays JSON, written exactly as `json_extract` writes
it, and so does every leaf but those the compiler reads only as text (`text`), which are
VARCHAR (or JSON read as text, for those that usually hold numbers: `numbers`). Each line
is then parsed once, into those columns only, and the
view reads fields instead of parsing text again.

The schema is a bet on the usual shape, never a rule: a line whose values have another
shape fails the read, and a value that only the general path can handle (a second item of
an array, an array read whole) fails the query where it occurs. Either way the caller runs
the view's general query over the table of parsed resources instead, with the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from joinedup.warehouse import JsonDialect

#: The session view the typed query reads: the files holding the view's resource type.
TYPED_SOURCE = "fhir_typed_lines"
#: The column naming each line's resource type (read as text, never JSON).
TYPE_COLUMN = "resourceType"
#: Raised inside a typed query where a resource needs the general path.
GENERAL_PATH = "typed read: this resource needs the general path"

Path = tuple[str | int, ...]


@dataclass
class _Node:
    """The paths below one element: its children by name and position, and whether a path
    ends at it (it is read whole)."""

    children: dict[str | int, _Node] = field(default_factory=dict)
    whole: bool = False

    def add(self, steps: Path) -> None:
        node = self
        for step in steps:
            node = node.children.setdefault(step, _Node())
        node.whole = True

    def merged(self, other: _Node) -> _Node:
        out = _Node(dict(self.children), self.whole or other.whole)
        for step, child in other.children.items():
            mine = out.children.get(step)
            out.children[step] = child if mine is None else mine.merged(child)
        return out


@dataclass(frozen=True)
class _Json:
    """A value kept as JSON text."""


@dataclass(frozen=True)
class _Struct:
    fields: dict[str, _Kind]


@dataclass(frozen=True)
class _List:
    item: _Kind


@dataclass(frozen=True)
class _Text:
    """A leaf read as VARCHAR: the compiler reads it only as text (`typed_plan`'s `text`)."""


@dataclass(frozen=True)
class _Number:
    """A leaf read only as text that usually holds a number (`typed_plan`'s `numbers`): read
    as JSON, which writes a number as the general path does, and more cheaply than VARCHAR."""


_Kind = _Json | _Text | _Number | _Struct | _List
_JSON = _Json()
_TEXT = _Text()
_NUMBER = _Number()


def _names(node: _Node) -> dict[str, _Node]:
    return {k: v for k, v in node.children.items() if isinstance(k, str)}


def _items(node: _Node) -> _Node | None:
    """Every position's paths merged: a list's items share one type."""
    found: _Node | None = None
    for step, child in node.children.items():
        if isinstance(step, int):
            found = child if found is None else found.merged(child)
    return found


def _kind(
    node: _Node,
    path: Path | None,
    single: frozenset[Path],
    text: frozenset[Path] = frozenset(),
    numbers: frozenset[Path] = frozenset(),
) -> _Kind:
    """How an element reached by name is read: VARCHAR when a leaf read only as text
    (`path` in `text`), JSON read as text when such a leaf usually holds a number (in
    `numbers` too); JSON when read whole or another leaf; a STRUCT when
    FHIR R4 says it holds one value or it is read by name and not through an item; a list
    when read through an item; else JSON."""
    names = _names(node)
    if not node.children and path is not None and path in text:
        return _NUMBER if path in numbers else _TEXT
    if node.whole or not node.children:
        return _JSON
    items = _items(node)
    if items is not None and items.children and names and path is None:
        return _JSON  # read by name and through an item, with no R4 hint which it holds
    if names and (path in single or items is None or not items.children):
        # read by name; a position read whole is a guard the compiler puts on an element
        # that usually holds one value (`$.subject[0]`), nothing in an object
        return _Struct(
            {
                name: _kind(child, None if path is None else (*path, name), single, text, numbers)
                for name, child in names.items()
            }
        )
    if items is not None and items.children:  # read through an item (`$.identifier[0].value`)
        return _List(_item_kind(items, path, single, text, numbers))
    return _JSON


def _item_kind(
    item: _Node,
    path: Path | None,
    single: frozenset[Path],
    text: frozenset[Path],
    numbers: frozenset[Path],
) -> _Kind:
    """An item of the array at `path` (by name): a STRUCT when read by name below it (a
    whole read of one then needs the general path), else JSON."""
    names = _names(item)
    if not names or _items(item) is not None:
        return _JSON
    return _Struct(
        {
            name: _kind(child, None if path is None else (*path, name), single, text, numbers)
            for name, child in names.items()
        }
    )


def _data_type(kind: _Kind) -> exp.DataType:
    if isinstance(kind, (_Json, _Number)):
        return exp.DataType.build("JSON")
    if isinstance(kind, _Text):
        return exp.DataType.build("VARCHAR")
    if isinstance(kind, _List):
        return exp.DataType(
            this=exp.DataType.Type.ARRAY, expressions=[_data_type(kind.item)], nested=True
        )
    return exp.DataType(
        this=exp.DataType.Type.STRUCT,
        expressions=[
            exp.ColumnDef(this=exp.to_identifier(name, quoted=True), kind=_data_type(child))
            for name, child in kind.fields.items()
        ],
        nested=True,
    )


def _null() -> exp.Expr:
    return exp.cast(exp.null(), exp.DataType.build("JSON"))


@dataclass
class _JsonReads:
    """The paths read below each value kept as JSON, so that value is parsed once for all
    of them: first collected (`done` false), then read."""

    below: dict[str, list[Path]] = field(default_factory=dict)
    done: bool = False

    def read(self, value: exp.Expr, steps: Path, d: JsonDialect) -> exp.Expr:
        paths = self.below.setdefault(value.sql(), [])
        if not self.done and steps not in paths:
            paths.append(steps)
        if not self.done or len(paths) == 1:
            return d.read_path(value, steps)
        # the same list written for each path: the engine computes it once per row
        return d.typed_item(d.read_all(value, paths), paths.index(steps))


def _value(
    value: exp.Expr, kind: _Kind, steps: Path, d: JsonDialect, reads: _JsonReads
) -> exp.Expr:
    """What `json_extract` gives at `steps` below `value`, from the typed read. A key on an
    array and a position on an object give nothing, as they do in `json_extract`."""
    if not steps:
        if not reads.done:  # the pass that only collects `reads`: its values are dropped
            return value
        if isinstance(kind, _Text):
            return d.text_or_error(value, GENERAL_PATH)
        if isinstance(kind, _Number):
            return d.number_text_or_error(value, GENERAL_PATH)
        return value if isinstance(kind, _Json) else d.present_or_error(value, GENERAL_PATH)
    if isinstance(kind, (_Text, _Number)):  # nothing is read below a leaf read as text
        return _null()
    if isinstance(kind, _Json):
        return reads.read(value, steps, d)
    step, rest = steps[0], steps[1:]
    if isinstance(kind, _Struct):
        if isinstance(step, int):
            return _null()
        return _value(d.typed_field(value, step), kind.fields[step], rest, d, reads)
    if isinstance(step, str):
        return _null()
    if not rest and isinstance(kind.item, (_Struct, _List)):
        # An item read whole is only ever an error or NULL (`present_or_error`), so the list's
        # length tells, not the item copied out. It is stricter where the item is a JSON
        # `null` (FHIR allows none in an array): that resource takes the general path, whose
        # rows are the same.
        return d.longer_or_error(value, step, GENERAL_PATH) if reads.done else value
    return _value(d.typed_item(value, step), kind.item, rest, d, reads)


@dataclass(frozen=True)
class TypedPlan:
    """The columns to read each line into, and the value at each prefetched path."""

    columns: dict[str, exp.DataType]
    values: list[exp.Expr]
    #: The positions of the paths read as text (`typed_plan`'s `text`).
    text: frozenset[int] = frozenset()
    #: The paths read as lists of STRUCTs (those of `typed_plan`'s `lists` it could).
    lists: frozenset[Path] = frozenset()


def typed_plan(
    resource_type: str,
    paths: list[Path],
    single: frozenset[Path],
    d: JsonDialect,
    table: str,
    text: frozenset[Path] = frozenset(),
    lists: dict[Path, tuple[str, ...]] | None = None,
    numbers: frozenset[Path] = frozenset(),
) -> TypedPlan:
    """The typed read for the prefetched `paths` of a view of `resource_type`; the values
    read the columns of `table`. A leaf whose path by name is in `text` is read as VARCHAR,
    and its value is that text, or an error where the text may not be the general path's
    (`JsonDialect.text_or_error`): the compiler reads such a leaf only as text. One also
    in `numbers` (a leaf that usually holds a number) is read as JSON instead, and its value
    is the same text (`JsonDialect.number_text_or_error`): a hint for speed, never for rows.

    A path in `lists` (a value the compiler reads whole only to tell an array and to read
    its items' children `lists[path]`, as `code.coding.code` does) is read as a list of
    STRUCTs holding those children as JSON, not as JSON text, and its value is that list
    (an object, a text or an item that is not an object there fails the read). One that
    is below a value kept as JSON stays JSON, and is not in the plan's `lists`."""
    lists = dict(lists or {})
    while True:  # fewer lists until each is read as one (not below a value kept as JSON)
        kinds = _kinds(paths, single, text, lists, numbers)
        kept = {path: names for path, names in lists.items() if _list_at(path, kinds)}
        if kept == lists:
            break
        lists = kept
    columns = {TYPE_COLUMN: exp.DataType.build("VARCHAR")}
    columns.update({name: _data_type(kind) for name, kind in kinds.items()})
    reads = _JsonReads()
    for done in (False, True):  # collect the paths read below JSON values, then read them
        reads.done = done
        values = [
            _list_value(path, kinds, table, d)
            if path in lists
            else _path_value(path, resource_type, kinds, d, table, reads)
            for path in paths
        ]
    read_as_text = frozenset(i for i, path in enumerate(paths) if _is_text(kinds, path))
    return TypedPlan(columns, values, read_as_text, frozenset(lists))


def _kinds(
    paths: list[Path],
    single: frozenset[Path],
    text: frozenset[Path],
    lists: dict[Path, tuple[str, ...]],
    numbers: frozenset[Path] = frozenset(),
) -> dict[str, _Kind]:
    """How each top-level element is read, the values at `lists` read as lists of STRUCTs
    with the children named there."""
    root = _Node()
    for path in paths:
        if path and path[0] != TYPE_COLUMN:
            root.add(path)
    for path, names in lists.items():
        for name in names:
            root.add((*path, 0, name))
        node = root
        for step in path:
            node = node.children[step]
        node.whole = False
    return {
        name: _kind(child, (name,), single, text, numbers) for name, child in _names(root).items()
    }


def _list_at(path: Path, kinds: dict[str, _Kind]) -> bool:
    """Whether the value at `path` is read as a list, through STRUCTs and lists only."""
    kind: _Kind | None = kinds.get(str(path[0])) if path else None
    for step in path[1:]:
        if isinstance(kind, _Struct) and isinstance(step, str):
            kind = kind.fields.get(step)
        elif isinstance(kind, _List) and isinstance(step, int):
            kind = kind.item
        else:
            return False
    return isinstance(kind, _List)


def _is_text(kinds: dict[str, _Kind], path: Path) -> bool:
    """Whether the value at `path` is a leaf read as text."""
    if not path or not isinstance(path[0], str) or path[0] not in kinds:
        return False
    kind: _Kind = kinds[path[0]]
    for step in path[1:]:
        if isinstance(kind, _Struct) and isinstance(step, str) and step in kind.fields:
            kind = kind.fields[step]
        elif isinstance(kind, _List) and isinstance(step, int):
            kind = kind.item
        else:
            return False
    return isinstance(kind, (_Text, _Number))


def _list_value(path: Path, kinds: dict[str, _Kind], table: str, d: JsonDialect) -> exp.Expr:
    """The list read at `path` (one of `typed_plan`'s `lists`), by the names on the way."""
    value: exp.Expr = exp.column(str(path[0]), table, quoted=True)
    kind = kinds[str(path[0])]
    for step in path[1:]:  # `_list_at` holds: a STRUCT's field or a list's item each step
        if isinstance(kind, _Struct) and isinstance(step, str):
            value, kind = d.typed_field(value, step), kind.fields[step]
        elif isinstance(kind, _List) and isinstance(step, int):
            value, kind = d.typed_item(value, step), kind.item
    return value


def _path_value(
    path: Path,
    resource_type: str,
    kinds: dict[str, _Kind],
    d: JsonDialect,
    table: str,
    reads: _JsonReads,
) -> exp.Expr:
    if not path:
        return d.present_or_error(exp.column(TYPE_COLUMN, table, quoted=True), GENERAL_PATH)
    if path[0] == TYPE_COLUMN:  # the filter keeps only `resource_type`'s lines
        return _value(d.value(exp.Literal.string(resource_type)), _JSON, path[1:], d, reads)
    if isinstance(path[0], int):
        return _null()  # a resource is an object
    column = exp.column(path[0], table, quoted=True)
    return _value(column, kinds[path[0]], path[1:], d, reads)
