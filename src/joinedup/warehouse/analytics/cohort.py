"""Building blocks every analytic shares: dates as literals, age, age bands, who counts, rates.

Each is written once as a sqlglot expression so that every engine computes the same thing.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from datetime import date

from sqlglot import exp

from joinedup.errors import ConfigurationError

#: Lower edges of the 5-year bands '0-4', '5-9', ..., '85-89', '90+'.
FIVE_YEAR_BANDS: tuple[int, ...] = tuple(range(0, 95, 5))
#: Lower edges of the broad bands '0-17', '18-64', '65-74', '75-84', '85+'.
BROAD_BANDS: tuple[int, ...] = (0, 18, 65, 75, 85)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

DateLike = date | exp.Expr


def table(name: str, alias: str | None = None) -> exp.Table:
    """A table reference, refusing anything that is not a plain identifier."""
    if not _IDENTIFIER.fullmatch(name):
        raise ConfigurationError(f"table name {name!r} must be a plain identifier")
    return exp.Table(
        this=exp.to_identifier(name),
        alias=exp.TableAlias(this=exp.to_identifier(alias)) if alias else None,
    )


def date_literal(value: date) -> exp.Expr:
    """A DATE literal for a Python date."""
    if not isinstance(value, date):
        raise ConfigurationError(f"expected a date, got {value!r}")
    return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.Type.DATE)


def as_date(value: DateLike) -> exp.Expr:
    return date_literal(value) if isinstance(value, date) else value


def col(name: str, alias: str = "p") -> exp.Column:
    return exp.column(name, table=alias)


def bigint(value: exp.Expr) -> exp.Expr:
    return exp.cast(value, exp.DataType.Type.BIGINT)


def count_rows() -> exp.Expr:
    return bigint(exp.Count(this=exp.Star()))


def count_if(condition: exp.Expr) -> exp.Expr:
    """A BIGINT count of rows meeting `condition` (the same on every engine)."""
    case = exp.Case().when(condition, exp.Literal.number(1)).else_(exp.Literal.number(0))
    return bigint(exp.Coalesce(this=exp.Sum(this=case), expressions=[exp.Literal.number(0)]))


def age_at(when: DateLike, alias: str = "p") -> exp.Expr:
    """Whole years of age at `when` from birth year and month (birthday taken as the 1st)."""
    if isinstance(when, date):
        year: exp.Expr = exp.Literal.number(when.year)
        month: exp.Expr = exp.Literal.number(when.month)
    else:
        year, month = exp.Year(this=when), exp.Month(this=when)
    before_birthday = (
        exp.Case()
        .when(exp.GT(this=col("birth_month", alias), expression=month), exp.Literal.number(1))
        .else_(exp.Literal.number(0))
    )
    age = exp.Sub(
        this=exp.Sub(this=year, expression=col("birth_year", alias)), expression=before_birthday
    )
    return exp.cast(age, exp.DataType.Type.INT)


def born_by(when: date, alias: str = "p") -> exp.Expr:
    """Born in or before the month of `when`."""
    # As INT: a SMALLINT year times 12 is too close to SMALLINT's limit on some engines.
    year = exp.cast(col("birth_year", alias), exp.DataType.Type.INT)
    born = exp.Add(
        this=exp.Mul(this=year, expression=exp.Literal.number(12)),
        expression=col("birth_month", alias),
    )
    return exp.LTE(this=born, expression=exp.Literal.number(when.year * 12 + when.month))


def alive_at(when: date, alias: str = "p") -> exp.Expr:
    """Born by `when` and not dead on or before it."""
    death = col("death_date", alias)
    not_dead = exp.or_(death.is_(exp.null()), exp.GT(this=death, expression=date_literal(when)))
    return exp.and_(born_by(when, alias), exp.paren(not_dead))


def opt_out_filter(exclude_opted_out: bool, alias: str = "p") -> exp.Expr:
    """TRUE, or 'not opted out' when national data opt-outs are to be excluded."""
    if not exclude_opted_out:
        return exp.true()
    return exp.Not(this=col("national_data_opt_out", alias))


def band_labels(edges: Sequence[int]) -> list[str]:
    """Labels for bands with these lower edges: (0, 18, 65) -> ['0-17', '18-64', '65+']."""
    check_bands(edges)
    labels = [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(edges)]
    return [*labels, f"{edges[-1]}+"]


def check_bands(edges: Sequence[int]) -> None:
    if not edges or edges[0] != 0:
        raise ConfigurationError(f"age bands must start at 0, got {list(edges)}")
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise ConfigurationError(f"age band edges must increase, got {list(edges)}")


def age_band(age: exp.Expr, edges: Sequence[int]) -> exp.Expr:
    """The band label for `age`; ages below zero fall in the first band."""
    labels = band_labels(edges)
    case = exp.Case()
    for lo, label in reversed(list(zip(edges, labels, strict=True))[1:]):
        case = case.when(exp.GTE(this=age, expression=exp.Literal.number(lo)), exp.convert(label))
    return case.else_(exp.convert(labels[0]))


def band_order(band: exp.Expr, edges: Sequence[int]) -> exp.Expr:
    """Sort key putting band labels in age order rather than string order."""
    case = exp.Case()
    for i, label in enumerate(band_labels(edges)):
        case = case.when(exp.EQ(this=band, expression=exp.convert(label)), exp.Literal.number(i))
    return case.else_(exp.Literal.number(len(edges)))


def rate(numerator: exp.Expr, denominator: exp.Expr, per: int = 1, places: int = 6) -> exp.Expr:
    """numerator / denominator * per, rounded half up to `places` decimals, as DOUBLE.

    Rounded in integer arithmetic so DuckDB and Spark agree to the last bit; NULL when the
    denominator is zero. Both inputs must be non-negative whole numbers.
    """
    scale = per * 10**places
    den = exp.Nullif(this=bigint(denominator), expression=exp.Literal.number(0))
    top = exp.Add(
        this=exp.Mul(this=bigint(numerator), expression=exp.Literal.number(2 * scale)),
        expression=den,
    )
    whole = exp.IntDiv(
        this=exp.paren(top),
        expression=exp.paren(exp.Mul(this=exp.Literal.number(2), expression=den)),
    )
    return exp.Div(
        this=exp.cast(whole, exp.DataType.Type.DOUBLE),
        expression=exp.Literal.number(f"{10**places}.0"),
    )
