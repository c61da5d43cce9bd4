"""Indicator definitions as data: what each figure counts, how it is computed and judged.

The shipped definitions are `definitions.yaml` beside this module; each is validated here
(pydantic), so a bad entry fails at load naming the indicator, the field and the reason.
Numerators and denominators are said in words and as what they count: people meeting
conditions on `phm_person` columns, events summed from a count column, or deaths.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from joinedup.errors import InputError, describe_validation_error
from joinedup.population.stats import ESP2013, ESP2013_BANDS
from joinedup.warehouse.registry import lookup

Unit = Literal["per cent", "per 1,000", "per 100,000"]
Method = Literal["crude", "dsr"]
CiMethod = Literal["wilson", "byars", "dobson"]
Polarity = Literal["lower is better", "higher is better", "unknown"]
#: `point`: people as they stand on the period's last day; `year`: events over the period.
PeriodType = Literal["point", "year"]
Operator = Literal["=", "!=", "<", "<=", ">", ">="]

#: Multiplier of each unit.
PER: dict[str, int] = {"per cent": 100, "per 1,000": 1000, "per 100,000": 100_000}

METHOD_WORDS: dict[str, str] = {
    "crude": "Crude: numerator / denominator",
    "dsr": "Directly age-standardised to the European Standard Population 2013 (five-year bands)",
}
CI_WORDS: dict[str, str] = {
    "wilson": "95% Wilson score interval",
    "byars": "95% interval from Byar's approximation to the Poisson (exact below 10 events)",
    "dobson": "95% Dobson interval (Byar's limits for the count, exact below 10 events)",
}


def _phm_person_columns() -> frozenset[str]:
    table = lookup("phm_person")
    return frozenset(table.column_names if table else ())


class Condition(BaseModel):
    """One test on a `phm_person` column; a missing value fails every test."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    op: Operator
    value: float

    @model_validator(mode="after")
    def _known_column(self) -> Condition:
        if self.column not in _phm_person_columns():
            raise ValueError(f"{self.column!r} is not a column of phm_person")
        return self

    def words(self) -> str:
        number = int(self.value) if self.value == int(self.value) else self.value
        return f"{self.column} {self.op} {number}"


class Count(BaseModel):
    """A numerator or denominator: in words, and as what it counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    words: str = Field(min_length=1)
    #: people meeting `where`; events: `sum_of` added up over them; deaths: of them in the period.
    counts: Literal["people", "events", "deaths"]
    where: tuple[Condition, ...] = ()
    sum_of: str | None = None

    @model_validator(mode="after")
    def _sum_only_for_events(self) -> Count:
        if (self.counts == "events") != (self.sum_of is not None):
            raise ValueError("sum_of names the column of events, and only events have one")
        if self.sum_of is not None and self.sum_of not in _phm_person_columns():
            raise ValueError(f"sum_of {self.sum_of!r} is not a column of phm_person")
        return self


class DisclosureRule(BaseModel):
    """How the indicator is published beyond the policy's rule for every count."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: No value or interval is published from fewer published events than this.
    min_numerator: int = Field(0, ge=0)


class Indicator(BaseModel):
    """One indicator's definition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str = Field(min_length=1)
    numerator: Count
    denominator: Count
    #: Whose figures: people registered at the period's `end` (most) or `start` (deaths).
    population: Literal["end", "start"] = "end"
    min_age: int | None = Field(None, ge=0)
    max_age: int | None = Field(None, ge=0)
    unit: Unit
    method: Method
    ci_method: CiMethod
    polarity: Polarity
    period_type: PeriodType
    source: str = Field(min_length=1)
    disclosure: DisclosureRule = DisclosureRule()

    @model_validator(mode="after")
    def _consistent(self) -> Indicator:
        if self.denominator.counts != "people":
            raise ValueError("the denominator counts people")
        if self.min_age is not None and self.max_age is not None and self.max_age < self.min_age:
            raise ValueError(f"max_age {self.max_age} is below min_age {self.min_age}")
        if self.numerator.counts == "deaths" and self.population != "start":
            raise ValueError("deaths are counted among people registered at the period's start")
        if self.unit == "per cent":
            if (self.method, self.ci_method, self.numerator.counts) != (
                "crude",
                "wilson",
                "people",
            ):
                raise ValueError(
                    "a percentage is a crude proportion of people with a Wilson interval"
                )
        elif self.method == "crude" and self.ci_method != "byars":
            raise ValueError("a crude rate has Byar's interval (ci_method: byars)")
        if (self.method == "dsr") != (self.ci_method == "dobson"):
            raise ValueError("a directly standardised rate, and only one, has a Dobson interval")
        if self.method == "dsr":
            low = self.min_age or 0
            if low % 5 or (self.max_age is not None and (self.max_age + 1) % 5):
                raise ValueError("a standardised rate's ages must be whole five-year bands")
        return self

    @property
    def per(self) -> int:
        return PER[self.unit]

    def bands(self) -> list[int]:
        """Positions of the ESP 2013 bands within the indicator's ages."""
        low = self.min_age or 0
        high = 200 if self.max_age is None else self.max_age
        return [i for i, edge in enumerate(ESP2013_BANDS) if low <= edge <= high]

    def standard(self) -> list[int]:
        """ESP 2013 weights of the indicator's bands."""
        return [ESP2013[i] for i in self.bands()]

    def ages_in_words(self) -> str:
        if self.min_age is None and self.max_age is None:
            return "all ages"
        if self.max_age is None:
            return f"aged {self.min_age} and over"
        if self.min_age is None:
            return f"aged under {self.max_age + 1}"
        return f"aged {self.min_age} to {self.max_age}"

    def method_words(self) -> str:
        return METHOD_WORDS[self.method]

    def ci_words(self) -> str:
        return CI_WORDS[self.ci_method]

    def disclosure_words(self) -> str:
        base = (
            "Numerator and denominator pass the disclosure policy (small counts suppressed, "
            "others rounded), with secondary suppression across practice, PCN, place and "
            "system; the value and interval are computed from the published counts"
        )
        if self.disclosure.min_numerator:
            base += f", and not shown under {self.disclosure.min_numerator} events"
        return base + "."


class Definitions(BaseModel):
    """The registry: every indicator, in order, ids unique."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    indicators: tuple[Indicator, ...]

    @model_validator(mode="after")
    def _unique(self) -> Definitions:
        ids = [i.id for i in self.indicators]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"indicator id(s) given more than once: {', '.join(repeated)}")
        return self

    def __iter__(self) -> Iterator[Indicator]:  # type: ignore[override]
        return iter(self.indicators)

    def __len__(self) -> int:
        return len(self.indicators)

    def get(self, indicator_id: str) -> Indicator:
        """The indicator `indicator_id`; InputError naming the known ids if there is none."""
        for indicator in self.indicators:
            if indicator.id == indicator_id:
                return indicator
        known = ", ".join(i.id for i in self.indicators)
        raise InputError("indicator", f"no indicator {indicator_id!r}; known: {known}")


def parse_definitions(raw: object, source: str) -> Definitions:
    """Definitions from parsed YAML (a list of indicators); InputError naming the source, the
    indicator (by id where it has one) and the field when any is wrong."""
    if not isinstance(raw, list) or not raw:
        raise InputError(source, "expected a list of indicator definitions")
    indicators: list[Indicator] = []
    for position, item in enumerate(raw, start=1):
        name = item.get("id") if isinstance(item, dict) else None
        where = f"{source}: indicator {name or f'#{position}'}"
        try:
            indicators.append(Indicator.model_validate(item))
        except ValidationError as err:
            raise InputError(where, describe_validation_error(err)) from err
    try:
        return Definitions(indicators=tuple(indicators))
    except ValidationError as err:
        raise InputError(source, describe_validation_error(err)) from err


def load_definitions(path: Path | None = None) -> Definitions:
    """The definitions in `path`, or the shipped ones."""
    if path is None:
        return shipped_definitions()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(str(path), f"cannot read: {err.strerror or err}") from err
    return _parse_text(text, str(path))


def _parse_text(text: str, source: str) -> Definitions:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(source, f"not valid YAML: {err}") from err
    return parse_definitions(raw, source)


@cache
def shipped_definitions() -> Definitions:
    """The definitions shipped with joinedup (`definitions.yaml`)."""
    text = resources.files(__package__).joinpath("definitions.yaml").read_text(encoding="utf-8")
    return _parse_text(text, "joinedup/indicators/definitions.yaml")
