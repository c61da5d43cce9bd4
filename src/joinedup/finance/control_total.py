"""The system control total: each NHS organisation's plan and actuals by month, the system's
position, a forecast outturn, variance by cause, and the break-even rule in force.

**Ledger.** One row per organisation, financial year, month (1 = April .. 12 = March) and
category, with the month's plan and, once the month is reported, its actual, in whole pence.
Categories and signs:
- `income`: money in, positive.
- `pay`, `non_pay`, `drugs`: costs, positive. For an ICB, `non_pay` holds the healthcare it
  commissions, `drugs` primary care prescribing and `pay` its running costs.
- `efficiency`: planned savings (the cost improvement programme, CIP), recorded as a
  negative cost, never above zero. Delivering less than planned is an adverse variance.

Surplus = income - (pay + non_pay + drugs + efficiency); a deficit is a negative surplus.
Variance = actual - plan in surplus terms, so favourable is positive: for income it is
actual - plan, for a cost plan - actual.

**Forecast outturn** for the year, from the monthly actual surplus y(1..k) of k months:
- run rate: YTD actual / k x 12;
- trend: YTD actual plus the ordinary least squares line through y(m) against m, summed over
  the months k+1..12; with one month reported it is the run rate.
Both are worked exactly as fractions and rounded once to the nearest penny, halves away from
zero. With no month reported both are the full-year plan. The system's figures are the sums
of its organisations' (so the table adds up); because both methods are linear, they differ
from the forecast of the system's own series by rounding only.

**Break-even rule** by year (`BreakEvenRules`, dates configurable): none before 2023/24 (each
body has its own statutory duties, but no ICS rule); from 2023/24 the ICB and its trusts must
jointly break even (the system forecast is at least zero); from 2026/27 the system and each
organisation must.

Local authorities and voluntary organisations are outside the NHS control total: the
synthetic generator leaves them out.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from pydantic import TypeAdapter, ValidationError, ValidationInfo, field_validator

from joinedup.errors import ConfigurationError, InputError
from joinedup.finance.calendar import (
    MONTH_NAMES,
    FinancialYear,
    month_first_day,
    start_year,
    year_name,
)
from joinedup.finance.money import GBP_TYPE, gbp_text, pence, pounds, split
from joinedup.finance.schema import FinanceModel, Pounds
from joinedup.reference.csvfile import csv_rows

SYSTEM_CODE = "SYSTEM"
SYSTEM_NAME = "System total (NHS organisations in the ledger)"
LEDGER_COLUMNS = (
    "organisation_code", "financial_year", "month", "category", "plan_gbp", "actual_gbp",
)  # fmt: skip
LEDGER_TABLE = "finance_ledger"
CONTROL_TOTAL_TABLE = "finance_control_total"
VARIANCE_TABLE = "finance_variance"
WATERFALL_TABLE = "finance_control_total_waterfall"
_MAX_PROBLEMS = 10
_LIMIT_POUNDS = Decimal(10) ** 12  # £1tn: far above any NHS body, well inside decimal(18, 2)


class Category(StrEnum):
    """Ledger lines: income is money in, the rest are costs (efficiency a negative cost)."""

    INCOME = "income"
    PAY = "pay"
    NON_PAY = "non_pay"
    DRUGS = "drugs"
    EFFICIENCY = "efficiency"


_CATEGORY_ORDER = {c: i for i, c in enumerate(Category)}


def surplus_effect(category: Category, amount_pence: int) -> int:
    """What an amount adds to the surplus: income as it is, a cost with its sign turned."""
    return amount_pence if category is Category.INCOME else -amount_pence


class ForecastMethod(StrEnum):
    """How the outturn is forecast. Trend is the default because a position that is getting
    worse month by month (savings slipping as schemes fall behind a back-loaded plan, agency
    pay building up) goes on getting worse, and a run rate averages that away. A run rate
    is steadier when the months are noisy and show no direction."""

    TREND = "trend"
    RUN_RATE = "run_rate"


class Rule(StrEnum):
    """The break-even rule in force for a year."""

    NONE = "none"
    SYSTEM = "system"
    SYSTEM_AND_EACH = "system and each organisation"


class BreakEvenRules(FinanceModel):
    """When the ICS break-even rules start (financial years). Defaults from NHS England: the
    ICB and its trusts jointly from April 2023, each organisation as well from April 2026."""

    system_from: FinancialYear = "2023/24"
    each_organisation_from: FinancialYear = "2026/27"

    @field_validator("each_organisation_from")
    @classmethod
    def _not_before_system(cls, value: str, info: ValidationInfo) -> str:
        system = info.data.get("system_from")
        if system is not None and start_year(value) < start_year(system):
            raise ValueError(
                f"{value} is before system_from ({system}): organisations cannot have to break "
                "even one by one before the system must jointly"
            )
        return value

    def rule(self, year: str) -> Rule:
        first = start_year(year)
        if first >= start_year(self.each_organisation_from):
            return Rule.SYSTEM_AND_EACH
        if first >= start_year(self.system_from):
            return Rule.SYSTEM
        return Rule.NONE

    def describe(self, year: str) -> str:
        rule = self.rule(year)
        if rule is Rule.NONE:
            return (
                f"no ICS break-even rule in {year} (it starts in {self.system_from}); each body "
                "has its own statutory duties"
            )
        if rule is Rule.SYSTEM:
            return (
                f"in {year} the ICB and its trusts must jointly break even (rule from "
                f"{self.system_from}): the system forecast must be at least zero"
            )
        return (
            f"in {year} the system and each organisation must break even (rule from "
            f"{self.each_organisation_from})"
        )


# Ledger ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerRow:
    """One month of one line for one organisation: plan and actual in pence; the actual is
    None until the month is reported."""

    organisation_code: str
    financial_year: str
    month: int
    category: Category
    plan_pence: int
    actual_pence: int | None = None

    @property
    def plan_surplus_pence(self) -> int:
        return surplus_effect(self.category, self.plan_pence)

    @property
    def actual_surplus_pence(self) -> int | None:
        a = self.actual_pence
        return None if a is None else surplus_effect(self.category, a)


def _row_order(row: LedgerRow) -> tuple[str, str, int, int]:
    return (row.organisation_code, row.financial_year, row.month, _CATEGORY_ORDER[row.category])


class _Problem(NamedTuple):
    order: int
    where: str
    column: str
    reason: str


def _error(problems: Sequence[_Problem]) -> InputError:
    """Up to ten problems as one InputError: the first names where, the rest follow it."""
    ordered = sorted(problems, key=lambda p: p.order)
    shown = ordered[:_MAX_PROBLEMS]
    parts = [f"column {shown[0].column!r}: {shown[0].reason}"]
    parts += [f"{p.where}: column {p.column!r}: {p.reason}" for p in shown[1:]]
    more = len(ordered) - len(shown)
    if more:
        parts.append(f"and {more} more problem{'s' if more > 1 else ''}")
    return InputError(shown[0].where, "; ".join(parts))


def _month_list(months: Sequence[int]) -> str:
    return ", ".join(f"{m} ({MONTH_NAMES[m - 1]})" for m in months)


def _check_year(text: str) -> str:
    try:
        return year_name(start_year(text))
    except InputError as err:
        raise ValueError(f"{text!r}: {err.reason}") from None


def _check_month(month: int) -> int:
    if not 1 <= month <= 12:
        raise ValueError(f"{month} is not a month of the financial year: 1 (April) to 12 (March)")
    return month


def _sign_problems(row: LedgerRow) -> list[tuple[str, str]]:
    if row.category is not Category.EFFICIENCY:
        return []
    found = []
    for column, amount in (("plan_gbp", row.plan_pence), ("actual_gbp", row.actual_pence)):
        if amount is not None and amount > 0:
            found.append(
                (
                    column,
                    f"efficiency is savings recorded as a negative cost: {pounds(amount)} "
                    f"should be {pounds(-amount)}",
                )
            )
    return found


def _structure_problems(
    rows: Sequence[LedgerRow], places: Sequence[tuple[int, str]]
) -> list[_Problem]:
    """Checks across rows: no duplicate, a plan for all 12 months of every line, actuals for
    months 1..k without a gap, and the same k for every line of a year."""
    problems: list[_Problem] = []
    seen: dict[tuple[str, str, int, Category], int] = {}
    groups: dict[tuple[str, str, Category], dict[int, int]] = defaultdict(dict)
    for i, r in enumerate(rows):
        key = (r.organisation_code, r.financial_year, r.month, r.category)
        if key in seen:
            problems.append(
                _Problem(
                    places[i][0],
                    places[i][1],
                    "month",
                    f"duplicate row: {r.organisation_code} {r.category} month {r.month} of "
                    f"{r.financial_year} is already at {places[seen[key]][1]}",
                )
            )
            continue
        seen[key] = i
        groups[(r.organisation_code, r.financial_year, r.category)][r.month] = i
    reported: dict[tuple[str, str, Category], int] = {}
    for (org, year, category), months in sorted(groups.items()):
        missing = [m for m in range(1, 13) if m not in months]
        if missing:
            first = min(months.values())
            problems.append(
                _Problem(
                    places[first][0],
                    places[first][1],
                    "month",
                    f"{org} {category} {year} has no row for month {_month_list(missing)}: a "
                    "plan is needed for all 12 months",
                )
            )
        done = [m for m, i in months.items() if rows[i].actual_pence is not None]
        last = max(done, default=0)
        gaps = [m for m in range(1, last) if m in months and rows[months[m]].actual_pence is None]
        for m in gaps:
            i = months[m]
            problems.append(
                _Problem(
                    places[i][0],
                    places[i][1],
                    "actual_gbp",
                    f"empty, but {org} {category} reports month {last} ({MONTH_NAMES[last - 1]}): "
                    "actuals are reported from month 1 without a gap",
                )
            )
        if not missing and not gaps:
            reported[(org, year, category)] = last
    for year in sorted({key[1] for key in reported}):
        lines = {key: k for key, k in reported.items() if key[1] == year}
        most = max(lines.values())
        example = min(key for key, k in lines.items() if k == most)
        for (org, _, category), k in sorted(lines.items()):
            if k < most:
                i = groups[(org, year, category)][k + 1]
                problems.append(
                    _Problem(
                        places[i][0],
                        places[i][1],
                        "actual_gbp",
                        f"empty, but {most} months of {year} are reported for "
                        f"{example[0]} {example[2]}: every organisation reports every line "
                        "for the same months",
                    )
                )
    return problems


def _value_problems(row: LedgerRow, names: Mapping[str, str]) -> list[tuple[str, str]]:
    """What is wrong with one row built in code, as (column, reason)."""
    found: list[tuple[str, str]] = []
    if row.organisation_code == SYSTEM_CODE:
        found.append(("organisation_code", f"{SYSTEM_CODE!r} is kept for the system total"))
    elif row.organisation_code not in names:
        found.append(("organisation_code", "no name given for this organisation"))
    try:
        if _check_year(row.financial_year) != row.financial_year:
            found.append(("financial_year", f"{row.financial_year!r}: write it like 2025/26"))
    except ValueError as err:
        found.append(("financial_year", str(err)))
    try:
        _check_month(row.month)
    except ValueError as err:
        found.append(("month", str(err)))
    try:
        category = Category(row.category)
    except ValueError:
        found.append(("category", f"unknown category {row.category!r}"))
    else:
        found += _sign_problems(replace(row, category=category))
    return found


@dataclass(frozen=True)
class Ledger:
    """Validated ledger rows in a fixed order, with the names of their organisations. Building
    one checks the same rules as `load_ledger` (InputError naming the rows)."""

    rows: tuple[LedgerRow, ...]
    organisation_names: Mapping[str, str] = field(hash=False)

    def __post_init__(self) -> None:
        checked: list[LedgerRow] = []
        problems: list[_Problem] = []
        for i, r in enumerate(self.rows):
            where = f"ledger row {r.organisation_code} {r.financial_year} month {r.month}"
            found = _value_problems(r, self.organisation_names)
            problems += [_Problem(i, f"{where} {r.category}", c, why) for c, why in found]
            if not found:
                checked.append(replace(r, category=Category(r.category)))
        if problems:
            raise _error(problems)
        rows = tuple(sorted(checked, key=_row_order))
        places = [
            (i, f"ledger row {r.organisation_code} {r.financial_year} month {r.month} {r.category}")
            for i, r in enumerate(rows)
        ]
        problems = _structure_problems(rows, places)
        if problems:
            raise _error(problems)
        codes = sorted({r.organisation_code for r in rows})
        object.__setattr__(self, "rows", rows)
        object.__setattr__(
            self, "organisation_names", {c: self.organisation_names[c] for c in codes}
        )

    @property
    def years(self) -> tuple[str, ...]:
        return tuple(sorted({r.financial_year for r in self.rows}))

    def rows_for(self, year: str) -> tuple[LedgerRow, ...]:
        return tuple(r for r in self.rows if r.financial_year == year)


# CSV ---------------------------------------------------------------------------------------

_POUNDS: TypeAdapter[Decimal] = TypeAdapter(Pounds)


def _money(text: str) -> int:
    try:
        value = _POUNDS.validate_python(text)
    except ValidationError as err:
        raise ValueError(err.errors()[0]["msg"].removeprefix("Value error, ")) from None
    if abs(value) >= _LIMIT_POUNDS:
        raise ValueError(f"{text!r} is £1tn or more: check the units (pounds, not pence)")
    return pence(value)


def _cell(raw: Mapping[str | None, object], column: str) -> str:
    value = raw.get(column)
    return value.strip() if isinstance(value, str) else ""


def _parse(
    raw: Mapping[str | None, object], line: int, where: str, organisations: Mapping[str, str]
) -> tuple[LedgerRow | None, list[_Problem]]:
    problems: list[_Problem] = []

    def problem(column: str, reason: str) -> None:
        problems.append(_Problem(line, where, column, reason))

    if raw.get(None):
        problem("actual_gbp", "more values than columns in the header")
    code = _cell(raw, "organisation_code")
    if not code:
        problem("organisation_code", "empty")
    elif code == SYSTEM_CODE:
        problem("organisation_code", f"{SYSTEM_CODE!r} is kept for the system total")
    elif code not in organisations:
        problem(
            "organisation_code",
            f"unknown organisation {code!r}: not among the {len(organisations)} given",
        )
    year = ""
    try:
        year = _check_year(_cell(raw, "financial_year"))
    except ValueError as err:
        problem("financial_year", str(err))
    month = 0
    text = _cell(raw, "month")
    if not text.isdigit():
        problem("month", f"{text!r} is not a whole number of a month, 1 (April) to 12 (March)")
    else:
        try:
            month = _check_month(int(text))
        except ValueError as err:
            problem("month", str(err))
    category: Category | None = None
    text = _cell(raw, "category")
    try:
        category = Category(text.lower())
    except ValueError:
        problem(
            "category", f"unknown category {text!r}: use one of {', '.join(c for c in Category)}"
        )
    plan: int | None = None
    text = _cell(raw, "plan_gbp")
    if not text:
        problem("plan_gbp", "empty: every month needs a plan")
    else:
        try:
            plan = _money(text)
        except ValueError as err:
            problem("plan_gbp", str(err))
    actual: int | None = None
    text = _cell(raw, "actual_gbp")
    if text:
        try:
            actual = _money(text)
        except ValueError as err:
            problem("actual_gbp", str(err))
    if problems or category is None or plan is None:
        return None, problems
    row = LedgerRow(code, year, month, category, plan, actual)
    return row, [_Problem(line, where, c, reason) for c, reason in _sign_problems(row)]


def load_ledger(path: Path, organisations: Mapping[str, str], year: str | None = None) -> Ledger:
    """Read and check a ledger CSV (columns `LEDGER_COLUMNS`, money in pounds to the penny,
    `actual_gbp` empty until a month is reported). `organisations` maps known codes to names.
    With `year`, only that year's rows are kept (every row is still checked). Problems, up to
    ten, are raised together as one InputError naming `file:line`, the column and the reason;
    checks across rows run once every row reads."""
    wanted = None if year is None else year_name(start_year(year))
    source = str(path)
    parsed: list[tuple[int, LedgerRow]] = []
    problems: list[_Problem] = []
    with csv_rows(path, "ledger file", LEDGER_COLUMNS) as reader:
        for raw in reader:
            line = reader.line_num
            row, found = _parse(raw, line, f"{source}:{line}", organisations)
            problems += found
            if row is not None:
                parsed.append((line, row))
    if not parsed and not problems:
        raise InputError(source, "no ledger rows after the header")
    if not problems:
        rows = [r for _, r in parsed]
        problems = _structure_problems(rows, [(n, f"{source}:{n}") for n, _ in parsed])
    if problems:
        raise _error(problems)
    kept = [r for _, r in parsed if wanted is None or r.financial_year == wanted]
    if not kept:
        held = ", ".join(sorted({r.financial_year for _, r in parsed}))
        raise InputError(source, f"no rows for {wanted} (the file holds {held})")
    return Ledger(
        tuple(kept), {r.organisation_code: organisations[r.organisation_code] for r in kept}
    )


def write_ledger(ledger: Ledger, path: Path) -> None:
    """Write the ledger as the CSV `load_ledger` reads (pounds to the penny), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(LEDGER_COLUMNS)
        for r in ledger.rows:
            actual = "" if r.actual_pence is None else str(pounds(r.actual_pence))
            writer.writerow(
                [r.organisation_code, r.financial_year, r.month, r.category,
                 str(pounds(r.plan_pence)), actual]
            )  # fmt: skip
    tmp.replace(path)


# Synthetic ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """How a kind of organisation's money looks: default planned expenditure in pounds (drawn
    from a range for acute trusts), pay and drugs as shares of costs before savings, CIP as a
    share of planned expenditure, winter swing, planned surplus margin (drawn from a range),
    share of the CIP delivered (drawn) and how far income strays from plan."""

    size_pounds: tuple[int, int]
    pay: float
    drugs: float
    cip: float
    winter: float
    margin: tuple[float, float]
    delivery: tuple[float, float]
    income_noise: float


_M = 1_000_000
_SHAPES: dict[str, _Shape] = {
    "acute_trust": _Shape((400 * _M, 700 * _M), 0.60, 0.10, 0.045, 0.05, (-0.002, 0.006),
                          (0.8, 1.1), 0.003),
    "community_trust": _Shape((100 * _M, 100 * _M), 0.65, 0.03, 0.04, 0.02, (-0.002, 0.006),
                              (0.8, 1.1), 0.002),
    "mental_health_trust": _Shape((150 * _M, 150 * _M), 0.68, 0.02, 0.04, 0.01,
                                  (-0.002, 0.006), (0.8, 1.1), 0.002),
    "ambulance_trust": _Shape((200 * _M, 200 * _M), 0.65, 0.01, 0.04, 0.06, (-0.002, 0.006),
                              (0.8, 1.1), 0.002),
    # The ICB's £2bn allocation: a 0.5% planned surplus leaves £1.99bn to spend, almost all
    # of it commissioned care (non_pay) and primary care prescribing (drugs).
    "icb": _Shape((1_990 * _M, 1_990 * _M), 0.01, 0.12, 0.02, 0.02, (0.005, 0.005),
                  (0.8, 1.0), 0.0),
}  # fmt: skip
EXCLUDED_KINDS = frozenset({"local_authority", "voluntary_sector"})


def _phase(total: int, weights: Sequence[float]) -> list[int]:
    """An annual amount phased over months 1..12 by `weights`, summing exactly (money.split)."""
    parts = split(abs(total), {f"{m:02d}": w for m, w in enumerate(weights, start=1)})
    sign = -1 if total < 0 else 1
    return [sign * parts[f"{m:02d}"] for m in range(1, 13)]


def synthetic_ledger(
    organisations: Sequence[tuple[str, str, str]],
    year: str,
    months_reported: int,
    seed: int,
    scale_gbp: Mapping[str, int] | None = None,
) -> Ledger:
    """A plausible NHS ledger for a demo: `organisations` are (code, name, kind) with kinds
    as `OrganisationType` values; `scale_gbp` gives annual planned expenditure in pence by
    code (defaults by kind). Plans are near break-even with winter-heavy costs and back-loaded
    savings; actuals drift (agency pay, drugs) and savings slip, so some organisations fall
    into deficit. The same seed gives the same ledger; local authorities and voluntary
    organisations are left out (they are not in the NHS control total)."""
    year = year_name(start_year(year))
    if not 0 <= months_reported <= 12:
        raise ConfigurationError(f"months_reported must be 0 to 12, not {months_reported}")
    scale = dict(scale_gbp or {})
    codes = [code for code, _, _ in organisations]
    repeated = sorted({c for c in codes if codes.count(c) > 1})
    if repeated:
        raise ConfigurationError(f"organisation codes appear twice: {', '.join(repeated)}")
    unknown = sorted(set(scale) - set(codes))
    if unknown:
        raise ConfigurationError(f"scale_gbp names unknown organisations: {', '.join(unknown)}")
    bad = sorted(code for code, amount in scale.items() if amount <= 0)
    if bad:
        raise ConfigurationError(f"scale_gbp must be positive pence for {', '.join(bad)}")
    rng = np.random.default_rng(seed)
    rows: list[LedgerRow] = []
    names: dict[str, str] = {}
    for code, name, kind in organisations:
        if kind in EXCLUDED_KINDS:
            if code in scale:
                raise ConfigurationError(f"{code} is a {kind}: not in the NHS control total")
            continue
        shape = _SHAPES.get(str(kind))
        if shape is None:
            known = ", ".join(sorted(set(_SHAPES) | EXCLUDED_KINDS))
            raise ConfigurationError(f"{code}: unknown organisation kind {kind!r} ({known})")
        names[code] = name
        # A fixed number of draws per organisation, so one's figures never move another's.
        size = int(rng.integers(shape.size_pounds[0] // _M, shape.size_pounds[1] // _M + 1))
        margin = float(rng.uniform(*shape.margin))
        drift = {
            Category.INCOME: float(rng.normal(0.0, shape.income_noise)),
            Category.PAY: float(rng.normal(0.001, 0.004)),
            Category.NON_PAY: float(rng.normal(0.0, 0.008)),
            Category.DRUGS: float(rng.normal(0.005, 0.015)),
        }
        delivery = float(rng.uniform(*shape.delivery))
        noise = rng.normal(0.0, 0.004, size=(len(Category), 12))
        spend = scale.get(code, size * _M * 100)
        cip = round(spend * shape.cip)
        gross = spend + cip
        pay = round(gross * shape.pay)
        drugs = round(gross * shape.drugs)
        annual = {
            Category.INCOME: spend + round(spend * margin),
            Category.PAY: pay,
            Category.NON_PAY: gross - pay - drugs,
            Category.DRUGS: drugs,
            Category.EFFICIENCY: -cip,
        }
        season = [1 + shape.winter * float(np.cos(2 * np.pi * (m - 10) / 12)) for m in range(1, 13)]
        weights = {
            Category.PAY: [1 + 0.3 * (s - 1) for s in season],
            Category.NON_PAY: season,
            Category.DRUGS: season,
            Category.EFFICIENCY: [1 + (m - 1) / 22 for m in range(1, 13)],  # back-loaded
        }
        plans = {category: _phase(annual[category], w) for category, w in weights.items()}
        # Income follows the net cost profile (activity-based income, winter money, an
        # allocation drawn as it is spent), so the planned surplus is steady month to month.
        net = [sum(plans[c][m] for c in plans) for m in range(12)]
        plans[Category.INCOME] = _phase(annual[Category.INCOME], net)
        for c, category in enumerate(Category):
            for m, plan in enumerate(plans[category], start=1):
                actual: int | None = None
                if m <= months_reported:
                    wobble = float(noise[c, m - 1])
                    if category is Category.EFFICIENCY:
                        actual = min(0, round(plan * delivery * (1 + wobble)))
                    elif category is Category.INCOME and shape.income_noise == 0:
                        actual = plan  # an allocation arrives as planned
                    else:
                        # Pressures build as the year goes on (agency cover, drug costs).
                        growing = drift[category] * (0.5 + m / 12)
                        actual = round(plan * (1 + growing + wobble))
                rows.append(LedgerRow(code, year, m, category, plan, actual))
    if not names:
        raise ConfigurationError("no NHS organisation to build a ledger for")
    return Ledger(tuple(rows), names)


# Position and forecast -----------------------------------------------------------------------


def _round(value: Fraction) -> int:
    """To the nearest penny, halves away from zero."""
    whole = (abs(value) * 2 + 1) // 2
    return int(whole) if value >= 0 else -int(whole)


def run_rate_forecast(monthly_pence: Sequence[int], plan_full_year_pence: int) -> int:
    """YTD / k x 12 for k reported months; the plan when none is reported."""
    k = len(monthly_pence)
    if k == 0:
        return plan_full_year_pence
    return _round(Fraction(sum(monthly_pence) * 12, k))


def trend_forecast(monthly_pence: Sequence[int], plan_full_year_pence: int) -> int:
    """YTD plus the least squares line y = a + b m through the k reported months, summed over
    months k+1..12; the run rate when k is 1, the plan when k is 0."""
    k = len(monthly_pence)
    if k <= 1:
        return run_rate_forecast(monthly_pence, plan_full_year_pence)
    mean_m = Fraction(k + 1, 2)
    mean_y = Fraction(sum(monthly_pence), k)
    sxx = sum(((m - mean_m) * (m - mean_m) for m in range(1, k + 1)), Fraction(0))
    sxy = sum((m - mean_m) * y for m, y in enumerate(monthly_pence, start=1))
    b = sxy / sxx
    a = mean_y - b * mean_m
    rest = (12 - k) * a + b * sum(range(k + 1, 13))
    return sum(monthly_pence) + _round(rest)


@dataclass(frozen=True)
class OrganisationPosition:
    """An organisation's (or the system's) year: money in pence, surplus terms."""

    organisation_code: str
    organisation_name: str
    financial_year: str
    months_reported: int
    plan_ytd_pence: int
    actual_ytd_pence: int
    plan_full_year_pence: int
    forecast_run_rate_pence: int
    forecast_trend_pence: int
    forecast_pence: int
    forecast_method: ForecastMethod
    forecast_variance_pence: int
    rule: Rule
    must_break_even: bool
    meets_rule: bool | None
    explanation: str


@dataclass(frozen=True)
class Variance:
    """Year-to-date variance of one line: plan and actual as recorded (costs positive), the
    variance in surplus terms (actual - plan for income, plan - actual for costs)."""

    organisation_code: str
    financial_year: str
    category: Category
    plan_ytd_pence: int
    actual_ytd_pence: int
    variance_pence: int

    @property
    def favourable(self) -> bool:
        """True unless adverse: exactly on plan counts as favourable."""
        return self.variance_pence >= 0


@dataclass(frozen=True)
class ControlTotalResult:
    financial_year: str
    rule: Rule
    forecast_method: ForecastMethod
    positions: tuple[OrganisationPosition, ...]  # organisations by code, then the system
    variances: tuple[Variance, ...]  # by organisation (the system last) and category
    met: bool | None  # None when no rule is in force
    failing: tuple[str, ...]
    explanation: str

    @property
    def system(self) -> OrganisationPosition:
        return self.positions[-1]

    def position(self, code: str) -> OrganisationPosition:
        for p in self.positions:
            if p.organisation_code == code:
                return p
        raise KeyError(code)


def _explain(p: OrganisationPosition, rules_text: str) -> str:
    gap = p.forecast_variance_pence
    other = (
        f"run rate {gbp_text(p.forecast_run_rate_pence)}"
        if p.forecast_method is ForecastMethod.TREND
        else f"trend {gbp_text(p.forecast_trend_pence)}"
    )
    text = (
        f"{p.organisation_name} ({p.organisation_code}): {p.months_reported} of 12 months "
        f"reported; surplus to date {gbp_text(p.actual_ytd_pence)} against a plan of "
        f"{gbp_text(p.plan_ytd_pence)}; forecast outturn {gbp_text(p.forecast_pence)} by "
        f"{p.forecast_method.value.replace('_', ' ')} ({other}) against a full-year plan of "
        f"{gbp_text(p.plan_full_year_pence)}, {gbp_text(abs(gap))} "
        f"{'favourable' if gap >= 0 else 'adverse'}"
    )
    if not p.must_break_even:
        return f"{text}; no break-even rule applies to it alone ({rules_text})."
    verdict = "met" if p.meets_rule else f"not met: forecast deficit {gbp_text(-p.forecast_pence)}"
    return f"{text}; must break even ({rules_text}): {verdict}."


def control_total(
    ledger: Ledger,
    year: str,
    rules: BreakEvenRules | None = None,
    method: ForecastMethod = ForecastMethod.TREND,
) -> ControlTotalResult:
    """The year's position for each organisation and the system, forecasts by both methods
    (`method` chooses the one judged), the break-even rule and whether it is met."""
    rules = rules or BreakEvenRules()
    method = ForecastMethod(method)
    year = year_name(start_year(year))
    rows = ledger.rows_for(year)
    if not rows:
        raise InputError(year, f"the ledger has no rows for it ({', '.join(ledger.years)})")
    rule = rules.rule(year)
    rules_text = rules.describe(year)
    by_org: dict[str, list[LedgerRow]] = defaultdict(list)
    for r in rows:
        by_org[r.organisation_code].append(r)
    positions: list[OrganisationPosition] = []
    variances: list[Variance] = []
    system_lines: dict[Category, list[int]] = defaultdict(lambda: [0, 0])
    for code in sorted(by_org):
        org_rows = by_org[code]
        months = max((r.month for r in org_rows if r.actual_pence is not None), default=0)
        plan = [0] * 12
        actual = [0] * months
        # Every line the organisation has, even with nothing reported yet: [plan, actual].
        lines = {r.category: [0, 0] for r in org_rows}
        for r in org_rows:
            plan[r.month - 1] += r.plan_surplus_pence
            if r.month <= months:
                actual[r.month - 1] += r.actual_surplus_pence or 0
                lines[r.category][0] += r.plan_pence
                lines[r.category][1] += r.actual_pence or 0
        plan_fy = sum(plan)
        run_rate = run_rate_forecast(actual, plan_fy)
        trend = trend_forecast(actual, plan_fy)
        positions.append(
            _position(
                code, ledger.organisation_names[code], year, months, sum(plan[:months]),
                sum(actual), plan_fy, run_rate, trend, method, rule,
                rule is Rule.SYSTEM_AND_EACH, rules_text,
            )
        )  # fmt: skip
        for category in sorted(lines, key=_CATEGORY_ORDER.__getitem__):
            p, a = lines[category]
            variances.append(Variance(code, year, category, p, a, surplus_effect(category, a - p)))
            system_lines[category][0] += p
            system_lines[category][1] += a
    total = {
        name: sum(getattr(p, name) for p in positions)
        for name in (
            "plan_ytd_pence", "actual_ytd_pence", "plan_full_year_pence",
            "forecast_run_rate_pence", "forecast_trend_pence",
        )
    }  # fmt: skip
    system = _position(
        SYSTEM_CODE, SYSTEM_NAME, year, positions[0].months_reported,
        total["plan_ytd_pence"], total["actual_ytd_pence"], total["plan_full_year_pence"],
        total["forecast_run_rate_pence"], total["forecast_trend_pence"], method, rule,
        rule is not Rule.NONE, rules_text,
    )  # fmt: skip
    positions.append(system)
    for category in sorted(system_lines, key=_CATEGORY_ORDER.__getitem__):
        p, a = system_lines[category]
        variances.append(
            Variance(SYSTEM_CODE, year, category, p, a, surplus_effect(category, a - p))
        )
    failing = tuple(x.organisation_code for x in positions if x.meets_rule is False)
    met = None if rule is Rule.NONE else not failing
    if met is None:
        verdict = f"system forecast {gbp_text(system.forecast_pence)}"
    elif met:
        verdict = f"met: system forecast {gbp_text(system.forecast_pence)}"
    else:
        verdict = f"not met by {', '.join(failing)}"
    explanation = f"{year}: {rules_text}; by {method.value.replace('_', ' ')}, {verdict}."
    return ControlTotalResult(
        year, rule, method, tuple(positions), tuple(variances), met, failing, explanation
    )


def _position(
    code: str,
    name: str,
    year: str,
    months: int,
    plan_ytd: int,
    actual_ytd: int,
    plan_fy: int,
    run_rate: int,
    trend: int,
    method: ForecastMethod,
    rule: Rule,
    must: bool,
    rules_text: str,
) -> OrganisationPosition:
    forecast = trend if method is ForecastMethod.TREND else run_rate
    position = OrganisationPosition(
        code, name, year, months, plan_ytd, actual_ytd, plan_fy, run_rate, trend, forecast,
        method, forecast - plan_fy, rule, must, (forecast >= 0) if must else None, "",
    )  # fmt: skip
    return replace(position, explanation=_explain(position, rules_text))


@dataclass(frozen=True)
class WaterfallStep:
    """One bar: the first is the planned surplus, the last the forecast outturn (both
    totals); between them the changes, each with the running total after it."""

    step: int
    label: str
    amount_pence: int
    running_total_pence: int


_LABELS = {
    Category.INCOME: "Income",
    Category.PAY: "Pay",
    Category.NON_PAY: "Non-pay",
    Category.DRUGS: "Drugs",
    Category.EFFICIENCY: "Efficiency (CIP)",
}


def waterfall(result: ControlTotalResult) -> list[WaterfallStep]:
    """From the system's planned surplus through each cause's year-to-date variance and the
    rest of the year's forecast against plan, to the forecast outturn; the changes sum
    exactly from the first bar to the last."""
    s = result.system
    method = result.forecast_method.value.replace("_", " ")
    steps = [WaterfallStep(1, f"Planned surplus {s.financial_year}", s.plan_full_year_pence,
                           s.plan_full_year_pence)]  # fmt: skip
    running = s.plan_full_year_pence
    changes = [
        (f"{_LABELS[v.category]} variance to date", v.variance_pence)
        for v in result.variances
        if v.organisation_code == SYSTEM_CODE
    ]
    rest = (s.forecast_pence - s.actual_ytd_pence) - (s.plan_full_year_pence - s.plan_ytd_pence)
    changes.append((f"Rest of year: {method} forecast against plan", rest))
    for label, amount in changes:
        running += amount
        steps.append(WaterfallStep(len(steps) + 1, label, amount, running))
    steps.append(
        WaterfallStep(len(steps) + 1, f"Forecast outturn ({method})", s.forecast_pence, running)
    )
    return steps


# Tables ------------------------------------------------------------------------------------

LEDGER_SCHEMA = pa.schema(
    [
        ("organisation_code", pa.string()),
        ("financial_year", pa.string()),
        ("month", pa.int8()),
        ("month_start_date", pa.date32()),
        ("category", pa.string()),
        ("plan_gbp", GBP_TYPE),
        ("actual_gbp", GBP_TYPE),
    ]
)
CONTROL_TOTAL_SCHEMA = pa.schema(
    [
        ("organisation_code", pa.string()),
        ("organisation_name", pa.string()),
        ("financial_year", pa.string()),
        ("months_reported_count", pa.int8()),
        ("plan_ytd_gbp", GBP_TYPE),
        ("actual_ytd_gbp", GBP_TYPE),
        ("plan_full_year_gbp", GBP_TYPE),
        ("forecast_run_rate_gbp", GBP_TYPE),
        ("forecast_trend_gbp", GBP_TYPE),
        ("forecast_gbp", GBP_TYPE),
        ("forecast_method", pa.string()),
        ("forecast_variance_gbp", GBP_TYPE),
        ("rule", pa.string()),
        ("must_break_even", pa.bool_()),
        ("meets_rule", pa.bool_()),
        ("explanation", pa.string()),
    ]
)
VARIANCE_SCHEMA = pa.schema(
    [
        ("organisation_code", pa.string()),
        ("financial_year", pa.string()),
        ("category", pa.string()),
        ("plan_ytd_gbp", GBP_TYPE),
        ("actual_ytd_gbp", GBP_TYPE),
        ("variance_gbp", GBP_TYPE),
        ("favourable", pa.bool_()),
    ]
)
WATERFALL_SCHEMA = pa.schema(
    [
        ("financial_year", pa.string()),
        ("step", pa.int16()),
        ("label", pa.string()),
        ("amount_gbp", GBP_TYPE),
        ("running_total_gbp", GBP_TYPE),
    ]
)


def _gbp_or_none(amount: int | None) -> Decimal | None:
    return None if amount is None else pounds(amount)


def ledger_table(ledger: Ledger) -> pa.Table:
    """The ledger as `finance_ledger`: one row per organisation, year, month and category."""
    rows = ledger.rows
    return pa.table(
        {
            "organisation_code": [r.organisation_code for r in rows],
            "financial_year": [r.financial_year for r in rows],
            "month": [r.month for r in rows],
            "month_start_date": [month_first_day(r.financial_year, r.month) for r in rows],
            "category": [r.category.value for r in rows],
            "plan_gbp": [pounds(r.plan_pence) for r in rows],
            "actual_gbp": [_gbp_or_none(r.actual_pence) for r in rows],
        },
        schema=LEDGER_SCHEMA,
    )


def control_total_tables(result: ControlTotalResult) -> dict[str, pa.Table]:
    """`finance_control_total`, `finance_variance` and `finance_control_total_waterfall`."""
    ps = result.positions
    vs = result.variances
    steps = waterfall(result)
    return {
        CONTROL_TOTAL_TABLE: pa.table(
            {
                "organisation_code": [p.organisation_code for p in ps],
                "organisation_name": [p.organisation_name for p in ps],
                "financial_year": [p.financial_year for p in ps],
                "months_reported_count": [p.months_reported for p in ps],
                "plan_ytd_gbp": [pounds(p.plan_ytd_pence) for p in ps],
                "actual_ytd_gbp": [pounds(p.actual_ytd_pence) for p in ps],
                "plan_full_year_gbp": [pounds(p.plan_full_year_pence) for p in ps],
                "forecast_run_rate_gbp": [pounds(p.forecast_run_rate_pence) for p in ps],
                "forecast_trend_gbp": [pounds(p.forecast_trend_pence) for p in ps],
                "forecast_gbp": [pounds(p.forecast_pence) for p in ps],
                "forecast_method": [p.forecast_method.value for p in ps],
                "forecast_variance_gbp": [pounds(p.forecast_variance_pence) for p in ps],
                "rule": [p.rule.value for p in ps],
                "must_break_even": [p.must_break_even for p in ps],
                "meets_rule": [p.meets_rule for p in ps],
                "explanation": [p.explanation for p in ps],
            },
            schema=CONTROL_TOTAL_SCHEMA,
        ),
        VARIANCE_TABLE: pa.table(
            {
                "organisation_code": [v.organisation_code for v in vs],
                "financial_year": [v.financial_year for v in vs],
                "category": [v.category.value for v in vs],
                "plan_ytd_gbp": [pounds(v.plan_ytd_pence) for v in vs],
                "actual_ytd_gbp": [pounds(v.actual_ytd_pence) for v in vs],
                "variance_gbp": [pounds(v.variance_pence) for v in vs],
                "favourable": [v.favourable for v in vs],
            },
            schema=VARIANCE_SCHEMA,
        ),
        WATERFALL_TABLE: pa.table(
            {
                "financial_year": [result.financial_year] * len(steps),
                "step": [s.step for s in steps],
                "label": [s.label for s in steps],
                "amount_gbp": [pounds(s.amount_pence) for s in steps],
                "running_total_gbp": [pounds(s.running_total_pence) for s in steps],
            },
            schema=WATERFALL_SCHEMA,
        ),
    }
