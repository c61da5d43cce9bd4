"""Apply a disclosure policy to a table of aggregates before anyone sees it.

Counts are suppressed (null) or rounded; a rate follows the counts it is built from; and
wherever cells add up to a published total (the cells of a group, or areas nested in a larger
area) a lone suppressed cell takes the next smallest with it, so subtraction cannot give it
away. `apply` leaves the rates that survive as they were given; `restate` then puts them on the
published counts, since a rate from exact counts next to its rounded denominator gives the
exact numerator back. Pure pyarrow and numpy, so the same control runs after any engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from joinedup.disclosure.policy import DisclosurePolicy
from joinedup.errors import ConfigurationError, InputError

SUPPRESSED_MARK = "*"
"""Shown in place of a suppressed count in printed tables, charts and CSV exports."""

SUPPRESSED_SUFFIX = "_suppressed"
"""`apply` adds `<column>_suppressed` (boolean) beside each count and rate column."""

_NO_RATES: Mapping[str, tuple[str, ...]] = MappingProxyType({})

Ints = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]
#: A published total (row index, or -1 for a total that is not a row) and the rows adding up to it.
Relation = tuple[int, Ints]


@dataclass(frozen=True)
class Nesting:
    """Areas inside areas in one table, so that a parent's row is the sum of its children's.

    Rows whose `level` column is `child` (e.g. "pcn_code") add up to the row whose `level` is
    `parent` (e.g. "place_code") and whose `key` column is the child's parent: `parent_of`
    maps each child key to its parent key, or is one key every child belongs to (e.g. "all"
    for the system row). Rows are matched within each combination of the `within` columns
    (e.g. each measure, or each segment). Children with no parent in the table are left out.
    """

    level: str
    key: str
    child: str
    parent: str
    parent_of: Mapping[str, str] | str
    within: tuple[str, ...] = ()

    def columns(self) -> list[str]:
        return [self.level, self.key, *self.within]

    def relations(self, table: pa.Table) -> list[Relation]:
        """(parent row, child rows) for each parent row with children in `table`."""
        levels = table.column(self.level).to_pylist()
        keys = table.column(self.key).to_pylist()
        scopes = list(zip(*(table.column(c).to_pylist() for c in self.within), strict=True))
        if not self.within:
            scopes = [()] * table.num_rows
        parents: dict[tuple[Any, ...], int] = {}
        for row, (level, key) in enumerate(zip(levels, keys, strict=True)):
            if level == self.parent:
                parents[(*scopes[row], key)] = row
        children: dict[int, list[int]] = {}
        for row, (level, key) in enumerate(zip(levels, keys, strict=True)):
            if level != self.child:
                continue
            up = self.parent_of if isinstance(self.parent_of, str) else self.parent_of.get(key)
            parent = parents.get((*scopes[row], up)) if up is not None else None
            if parent is not None:
                children.setdefault(parent, []).append(row)
        return [(p, np.array(rows, dtype=np.int64)) for p, rows in children.items()]


def apply(
    table: pa.Table,
    policy: DisclosurePolicy,
    *,
    counts: Sequence[str],
    rates: Mapping[str, tuple[str, ...]] = _NO_RATES,
    group_by: Sequence[str] = (),
    nested: Sequence[Nesting] = (),
) -> pa.Table:
    """A copy of `table` that is safe to publish under `policy`.

    Each column in `counts` becomes a nullable int64: null where suppressed, otherwise rounded
    to the nearest `round_to`. Each column in `rates` (keys) is nulled wherever any of the
    count columns it is built from (values, e.g. numerator and denominator) was suppressed;
    otherwise its value is kept unrounded. Secondary suppression works within each partition
    of `group_by` (the whole table when empty) and, for each of `nested`, across areas nested
    in areas: wherever a published total has exactly one hidden part, another part is hidden
    (or, with none left, the total), repeated until no total gives a hidden cell away. Beside
    every count and rate column a boolean `<column>_suppressed` says which cells were hidden,
    so outputs can show "*" there and keep blanks for values that were missing to begin with.
    Rows and other columns are unchanged; `restate` puts surviving rates on the published counts.
    """
    counts = list(counts)
    group_by = list(group_by)
    _check_arguments(table, counts, rates, group_by)
    _check_nesting(table, nested)
    relations = _group_relations(_group_ids(table, group_by))
    for nesting in nested:
        relations += nesting.relations(table)

    published: dict[str, Any] = {}
    hidden: dict[str, Flags] = {}
    for name in counts:
        values, valid = _count_values(table, name)
        rounded, suppressed = _cell_rule(values, valid, policy)
        if policy.secondary_suppression:
            suppressed = _secondary(values, valid, suppressed, relations)
        hidden[name] = suppressed
        published[name] = pa.array(rounded, type=pa.int64(), mask=~valid | suppressed)

    for name, sources in rates.items():
        suppressed = np.zeros(table.num_rows, dtype=np.bool_)
        if policy.rates_follow_counts:
            for source in sources:
                suppressed |= hidden[source]
        hidden[name] = suppressed
        column = table.column(name)
        published[name] = pc.if_else(
            pa.array(suppressed, type=pa.bool_()), pa.nulls(len(column), column.type), column
        )

    names: list[str] = []
    arrays: list[Any] = []
    for name in table.column_names:
        names.append(name)
        arrays.append(published.get(name, table.column(name)))
        if name in hidden:
            names.append(name + SUPPRESSED_SUFFIX)
            arrays.append(pa.array(hidden[name], type=pa.bool_()))
    return pa.Table.from_arrays(arrays, names=names, metadata=table.schema.metadata)


def control_count(value: int, policy: DisclosurePolicy) -> int | None:
    """One count as it may be published: None if suppressed, otherwise rounded.

    Applying it to a published count changes nothing, so it is safe on raw or controlled
    values alike. It cannot do secondary suppression, which needs the rest of the group.
    """
    if value < 0:
        raise InputError("count", f"{value} is negative; a count cannot be")
    rounded, suppressed = _cell_rule(np.array([value], dtype=np.int64), np.array([True]), policy)
    return None if suppressed[0] else int(rounded[0])


def format_count(value: int | None, policy: DisclosurePolicy) -> str:
    """A count for a printed summary: "*" if suppressed, otherwise rounded, e.g. "1,235"."""
    if value is None:
        return SUPPRESSED_MARK
    published = control_count(int(value), policy)
    return SUPPRESSED_MARK if published is None else f"{published:,}"


def _cell_rule(values: Ints, valid: Flags, policy: DisclosurePolicy) -> tuple[Ints, Flags]:
    """Round every cell and flag the ones to suppress on their own value."""
    step = policy.round_to
    # Nearest multiple, halves up, in integers: floor((v + step/2) / step) * step.
    rounded: Ints = (2 * values + step) // (2 * step) * step
    # The rounded value must pass the rule too: a round_to larger than the threshold could
    # turn e.g. 8 into 6, and a policy hiding zeros should not show a 1 rounded to 0.
    small = _too_small(values, policy) | _too_small(rounded, policy)
    return rounded, valid & small


def _too_small(values: Ints, policy: DisclosurePolicy) -> Flags:
    small: Flags = (values >= 1) & (values < policy.suppress_below)
    if policy.suppress_zero:
        small |= values == 0
    return small


def _secondary(
    values: Ints, valid: Flags, suppressed: Flags, relations: Sequence[Relation]
) -> Flags:
    """Wherever a published total (a row, or the implicit total of a group) has exactly one
    suppressed part, suppress its smallest published non-zero part too (a zero only when no
    other is left; the first in row order on a tie), or the total itself when it has no part
    left to take; repeat until no total has a lone suppressed part, since each new suppression
    may leave another total with one."""
    result = suppressed.copy()
    changed = True
    while changed:
        changed = False
        for parent, parts in relations:
            if parent >= 0 and (result[parent] or not valid[parent]):
                continue
            if int(result[parts].sum()) != 1:
                continue
            candidates = parts[valid[parts] & ~result[parts]]
            if candidates.size:
                order = np.lexsort((candidates, values[candidates], values[candidates] == 0))
                result[candidates[order[0]]] = True
            elif parent >= 0:
                result[parent] = True
            else:
                continue
            changed = True
    return result


def _group_relations(groups: Ints) -> list[Relation]:
    """Each group's rows as the parts of a total that is not itself a row."""
    if groups.size == 0:
        return []
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    return [(-1, part.astype(np.int64)) for part in np.split(order, bounds)]


def restate(
    raw: pa.Table,
    published: pa.Table,
    ratios: Mapping[str, tuple[str, str | None]],
    *,
    digits: int | None = None,
) -> pa.Table:
    """`published` (from `apply(raw, ...)`) with each surviving ratio put on the published
    counts: `ratios` maps a rate column to its (numerator, denominator) count columns (None
    for a denominator that is not in the table, e.g. a share of a total), and each value is
    scaled by published/exact numerator and exact/published denominator, so a rate of
    numerator / denominator × k becomes published numerator / published denominator × k and
    gives back no more than the rounded counts. A rate whose published numerator is 0 becomes
    0; one whose denominator was published as 0 becomes null. `digits` rounds the result."""
    columns: dict[str, Any] = {}
    for rate, (numerator, denominator) in ratios.items():
        value = _floats(published.column(rate))
        mask = np.isnan(value)
        factor = _scale(raw, published, numerator)
        if denominator is not None:
            down = _scale(raw, published, denominator)
            mask |= down == 0
            factor = factor / np.where(down == 0, 1.0, down)
        restated = value * factor
        if digits is not None:
            restated = np.round(restated, digits)
        columns[rate] = pa.array(restated, type=pa.float64(), mask=mask)
    arrays = [columns.get(name, published.column(name)) for name in published.column_names]
    return pa.Table.from_arrays(
        arrays, names=published.column_names, metadata=published.schema.metadata
    )


def _scale(raw: pa.Table, published: pa.Table, name: str) -> npt.NDArray[np.float64]:
    """published / exact for one count column; 1 where the exact count is 0 or missing, or the
    count is hidden (its rates are hidden too, unless the policy lets them through)."""
    exact = _floats(raw.column(name))
    shown = _floats(published.column(name))
    usable = (exact > 0) & ~np.isnan(shown)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale: npt.NDArray[np.float64] = np.where(usable, shown / exact, 1.0)
    return scale


def _group_ids(table: pa.Table, group_by: list[str]) -> Ints:
    """A dense group number per row from the `group_by` columns (nulls form their own group)."""
    rows = table.num_rows
    if not group_by or rows == 0:
        return np.zeros(rows, dtype=np.int64)
    codes = []
    for name in group_by:
        column = table.column(name).combine_chunks()
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        codes.append(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64))
    _, inverse = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
    ids: Ints = inverse.reshape(-1).astype(np.int64)
    return ids


def _floats(column: Any) -> npt.NDArray[np.float64]:
    """A numeric column as floats, NaN for nulls."""
    cast = pc.fill_null(pc.cast(column, pa.float64()), np.nan)
    values: npt.NDArray[np.float64] = cast.to_numpy(zero_copy_only=False).astype(np.float64)
    return values


def _check_nesting(table: pa.Table, nested: Sequence[Nesting]) -> None:
    present = set(table.column_names)
    for nesting in nested:
        missing = sorted({c for c in nesting.columns() if c not in present})
        if missing:
            raise ConfigurationError(
                f"nesting of {nesting.child} in {nesting.parent} names column(s) not in the "
                f"table: {', '.join(missing)}"
            )


def _count_values(table: pa.Table, name: str) -> tuple[Ints, Flags]:
    """The count column as int64 values (nulls as 0) and a mask of the non-null cells."""
    column = table.column(name)
    kind = column.type
    whole_decimal = pa.types.is_decimal(kind) and kind.scale == 0
    if not (pa.types.is_integer(kind) or whole_decimal or pa.types.is_null(kind)):
        raise InputError(
            f"column {name!r}", f"a count must be a whole-number column, but this is {kind}"
        )
    try:
        column = pc.cast(column, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise InputError(f"column {name!r}", f"counts do not fit in 64 bits ({err})") from err
    valid: Flags = pc.is_valid(column).to_numpy(zero_copy_only=False).astype(np.bool_)
    values: Ints = pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    negative = np.flatnonzero(values < 0)
    if negative.size:
        raise InputError(
            f"column {name!r}",
            f"{negative.size} negative count(s), first at row {negative[0]} "
            f"({values[negative[0]]}); counts cannot be negative",
        )
    return values, valid


def _check_arguments(
    table: pa.Table,
    counts: list[str],
    rates: Mapping[str, tuple[str, ...]],
    group_by: list[str],
) -> None:
    """Catch column lists that do not fit the table before any value is touched."""
    present = set(table.column_names)
    if not counts:
        raise ConfigurationError("disclosure control needs at least one count column")
    named = [*counts, *rates, *group_by] + [s for sources in rates.values() for s in sources]
    missing = sorted({name for name in named if name not in present})
    if missing:
        raise ConfigurationError(
            f"disclosure control names column(s) not in the table: {', '.join(missing)}; "
            f"the table has {', '.join(table.column_names) or 'no columns'}"
        )
    roles = [*counts, *rates, *group_by]
    repeated = sorted({name for name in roles if roles.count(name) > 1})
    if repeated:
        raise ConfigurationError(
            f"column(s) {', '.join(repeated)} given more than one role "
            "(count, rate or group) in disclosure control"
        )
    for rate, sources in rates.items():
        if not sources:
            raise ConfigurationError(f"rate {rate!r} must name the count columns it is built from")
        strays = [s for s in sources if s not in counts]
        if strays:
            raise ConfigurationError(
                f"rate {rate!r} is built from {', '.join(strays)}, which must also be "
                "listed as count columns so they are controlled"
            )
    clashes = sorted(
        name + SUPPRESSED_SUFFIX
        for name in [*counts, *rates]
        if name + SUPPRESSED_SUFFIX in present
    )
    if clashes:
        raise ConfigurationError(
            f"the table already has {', '.join(clashes)}; has disclosure control been applied "
            "twice?"
        )
