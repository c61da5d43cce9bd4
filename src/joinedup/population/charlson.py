"""The Charlson Comorbidity Index from ICD-10 codes: Quan 2005 coding, Charlson 1987 or Quan 2011
weights, and the age-adjusted score.

Written once as a sqlglot tree, so it runs on any engine. Codes are matched to the code list by
prefix through equi-joins on LEFT(code, n), one join per prefix length in the list, so an engine
can hash-join instead of scanning every code against every prefix. The code list enters the tree
as an inline VALUES table, so no session table is needed.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any, Literal, get_args

import pyarrow as pa
from sqlglot import exp

from joinedup.errors import ConfigurationError
from joinedup.warehouse import Engine
from joinedup.warehouse.analytics.cohort import (
    age_at,
    alive_at,
    bigint,
    col,
    count_rows,
    date_literal,
    opt_out_filter,
    table,
)

Weighting = Literal["charlson", "quan"]
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)

CODELIST_NAME = "charlson_icd10_quan2005"
_INPUT_TABLE = "charlson_input"


@dataclass(frozen=True)
class Condition:
    """One Charlson condition and its weight under each scheme."""

    name: str
    label: str
    charlson_weight: int
    quan_weight: int

    def weight(self, weighting: Weighting) -> int:
        return self.charlson_weight if weighting == "charlson" else self.quan_weight


#: The 17 conditions in the order of Quan 2005, with Charlson (1987) and Quan (2011) weights.
CONDITIONS: tuple[Condition, ...] = (
    Condition("myocardial_infarction", "Myocardial infarction", 1, 0),
    Condition("congestive_heart_failure", "Congestive heart failure", 1, 2),
    Condition("peripheral_vascular_disease", "Peripheral vascular disease", 1, 0),
    Condition("cerebrovascular_disease", "Cerebrovascular disease", 1, 0),
    Condition("dementia", "Dementia", 1, 2),
    Condition("chronic_pulmonary_disease", "Chronic pulmonary disease", 1, 1),
    Condition("rheumatic_disease", "Rheumatic disease", 1, 1),
    Condition("peptic_ulcer_disease", "Peptic ulcer disease", 1, 0),
    Condition("mild_liver_disease", "Mild liver disease", 1, 2),
    Condition("diabetes_without_complications", "Diabetes without chronic complications", 1, 0),
    Condition("diabetes_with_complications", "Diabetes with chronic complications", 2, 1),
    Condition("hemiplegia_or_paraplegia", "Hemiplegia or paraplegia", 2, 2),
    Condition("renal_disease", "Renal disease", 2, 1),
    Condition("any_malignancy", "Any malignancy", 2, 2),
    Condition("moderate_or_severe_liver_disease", "Moderate or severe liver disease", 3, 4),
    Condition("metastatic_solid_tumour", "Metastatic solid tumour", 6, 6),
    Condition("aids_hiv", "AIDS/HIV", 6, 4),
)
CONDITION_NAMES: tuple[str, ...] = tuple(c.name for c in CONDITIONS)

#: (milder, more severe): the milder form scores nothing when the more severe is present.
#: Both flags are still reported, as comorbidipy and the R package comorbidity do.
HIERARCHY: tuple[tuple[str, str], ...] = (
    ("mild_liver_disease", "moderate_or_severe_liver_disease"),
    ("diabetes_without_complications", "diabetes_with_complications"),
    ("any_malignancy", "metastatic_solid_tumour"),
)

#: Lower edges of the score bands of `charlson_distribution`: '0', '1-2', '3-4', '5+'.
SCORE_BANDS: tuple[int, ...] = (0, 1, 3, 5)


@dataclass(frozen=True)
class CodeList:
    """A Charlson code list: (condition, code_prefix) rows and where they came from."""

    rows: tuple[tuple[str, str], ...]
    provenance: dict[str, Any]

    @property
    def prefix_lengths(self) -> tuple[int, ...]:
        return tuple(sorted({len(prefix) for _, prefix in self.rows}))


def charlson_codelist() -> CodeList:
    """The shipped Quan 2005 ICD-10 code list, checked as it is read."""
    folder = resources.files("joinedup.population").joinpath("codelists")
    text = folder.joinpath(f"{CODELIST_NAME}.csv").read_text(encoding="utf-8")
    provenance = json.loads(folder.joinpath(f"{CODELIST_NAME}.meta.json").read_text("utf-8"))
    rows = tuple(
        (r["condition"], normalise_code(r["code_prefix"]))
        for r in csv.DictReader(io.StringIO(text))
    )
    unknown = sorted({c for c, _ in rows} - set(CONDITION_NAMES))
    if unknown:
        raise ConfigurationError(f"{CODELIST_NAME}.csv: unknown condition(s) {unknown}")
    return CodeList(rows, provenance)


def normalise_code(code: str) -> str:
    """A code as the analytic compares it: upper case, without dots or spaces."""
    return code.upper().replace(".", "").replace(" ", "")


def _normalised(code: exp.Expr) -> exp.Expr:
    """`normalise_code` as SQL."""
    cleaned: exp.Expr = exp.Upper(this=code)
    for ch in (".", " "):
        cleaned = exp.func("replace", cleaned, exp.Literal.string(ch), exp.Literal.string(""))
    return cleaned


def _prefixes(codelist: CodeList, length: int) -> exp.Expr:
    """The code list's prefixes of one length as an inline table (condition, code_prefix)."""
    rows = sorted({(c, p) for c, p in codelist.rows if len(p) == length})
    return exp.values(rows, alias=f"l{length}", columns=["condition", "code_prefix"])


def _matches(codes: exp.Query, codelist: CodeList) -> exp.Query:
    """Distinct (person_id, condition) for each code matching a prefix of the list."""
    parts: list[exp.Query] = []
    for n in codelist.prefix_lengths:
        alias = f"l{n}"
        on = exp.EQ(
            this=exp.Left(this=exp.column("code", "c"), expression=exp.Literal.number(n)),
            expression=exp.column("code_prefix", alias),
        )
        parts.append(
            exp.select(
                exp.column("person_id", "c").as_("person_id"),
                exp.column("condition", alias).as_("condition"),
            )
            .from_(codes.subquery("c"))
            .join(_prefixes(codelist, n), on=on)
        )
    union = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=True)
    return union


def _flag(name: str) -> exp.Expr:
    case = (
        exp.Case()
        .when(
            exp.EQ(this=exp.column("condition", "m"), expression=exp.Literal.string(name)),
            exp.Literal.number(1),
        )
        .else_(exp.Literal.number(0))
    )
    return exp.cast(exp.Max(this=case), exp.DataType.Type.INT)


def _scored(name: str) -> exp.Expr:
    """A condition's flag as it counts towards the score, after the hierarchy rules."""
    flag = exp.column(name, "s")
    for milder, severe in HIERARCHY:
        if name == milder:
            return (
                exp.Case()
                .when(
                    exp.EQ(this=exp.column(severe, "s"), expression=exp.Literal.number(1)),
                    exp.Literal.number(0),
                )
                .else_(flag)
            )
    return flag


def _score(weighting: Weighting) -> exp.Expr:
    terms = [
        exp.Mul(this=exp.paren(_scored(c.name)), expression=exp.Literal.number(c.weight(weighting)))
        for c in CONDITIONS
        if c.weight(weighting) != 0
    ]
    total: exp.Expr = terms[0]
    for term in terms[1:]:
        total = exp.Add(this=total, expression=term)
    return exp.cast(total, exp.DataType.Type.INT)


def age_points(age: exp.Expr) -> exp.Expr:
    """Points for age: one per decade from 50, at most four (under 50: 0, 50-59: 1, 60-69: 2,
    70-79: 3, 80+: 4); NULL without an age. comorbidipy's rule, floor((age - 40) / 10) clipped
    to 0..4, gives the same for every age, whole or not."""
    years = exp.cast(age, exp.DataType.Type.DOUBLE)
    case = exp.Case().when(years.is_(exp.null()), exp.null())
    for points, lower in ((4, 80), (3, 70), (2, 60), (1, 50)):
        case = case.when(
            exp.GTE(this=years.copy(), expression=exp.Literal.number(lower)),
            exp.Literal.number(points),
        )
    return exp.cast(case.else_(exp.Literal.number(0)), exp.DataType.Type.INT)


def _check_weighting(weighting: str) -> Weighting:
    if weighting not in WEIGHTINGS:
        raise ConfigurationError(
            f"unknown weighting {weighting!r}; choose from {', '.join(WEIGHTINGS)}"
        )
    return weighting  # type: ignore[return-value]


def _charlson(
    codes: exp.Query, people: exp.Query, codelist: CodeList | None, weighting: str
) -> exp.Query:
    """Per person in `people` (person_id, age): flags, score and age-adjusted score from the
    `codes` (person_id, code) they have."""
    chosen = _check_weighting(weighting)
    listed = codelist or charlson_codelist()
    flags = (
        exp.select(
            exp.column("person_id", "m").as_("person_id"),
            *[_flag(name).as_(name) for name in CONDITION_NAMES],
        )
        .from_(_matches(codes, listed).subquery("m"))
        .group_by(exp.column("person_id", "m"))
    )
    zero = exp.Literal.number(0)
    per_person = (
        exp.select(
            exp.column("person_id", "pp").as_("person_id"),
            exp.column("age", "pp").as_("age"),
            *[
                exp.cast(
                    exp.Coalesce(this=exp.column(name, "f"), expressions=[zero]),
                    exp.DataType.Type.INT,
                ).as_(name)
                for name in CONDITION_NAMES
            ],
        )
        .from_(people.subquery("pp"))
        .join(
            flags.subquery("f"),
            on=exp.EQ(this=exp.column("person_id", "pp"), expression=exp.column("person_id", "f")),
            join_type="LEFT",
        )
    )
    score = _score(chosen)
    adjusted = exp.cast(
        exp.Add(this=score.copy(), expression=age_points(exp.column("age", "s"))),
        exp.DataType.Type.INT,
    )
    return (
        exp.select(
            exp.column("person_id", "s").as_("person_id"),
            *[exp.column(name, "s").as_(name) for name in CONDITION_NAMES],
            score.as_("charlson_score"),
            adjusted.as_("charlson_age_adjusted"),
        )
        .from_(per_person.subquery("s"))
        .order_by(exp.column("person_id", "s"))
    )


def charlson_scores(
    source: str,
    *,
    id_col: str = "person_id",
    code_col: str = "code",
    age_col: str | None = None,
    weighting: str = "quan",
    codelist: CodeList | None = None,
) -> exp.Query:
    """Charlson flags and scores for every person in table `source` of (id, code[, age]) rows.

    Output, one row per id ordered by it: person_id, a 0/1 column per condition (as recorded,
    before the hierarchy rules), charlson_score (with them) and charlson_age_adjusted (NULL
    without an age). People whose codes match nothing score 0. Rows with a NULL id are ignored;
    a person with several ages takes the largest.
    """
    src = table(source, "src")
    person = exp.column(id_col, "src")
    has_id = exp.Not(this=person.is_(exp.null()))
    codes = (
        exp.select(person.as_("person_id"), _normalised(exp.column(code_col, "src")).as_("code"))
        .from_(src)
        .where(has_id, exp.Not(this=exp.column(code_col, "src").is_(exp.null())))
    )
    age: exp.Expr = (
        exp.Max(this=exp.column(age_col, "src"))
        if age_col
        else exp.cast(exp.null(), exp.DataType.Type.DOUBLE)
    )
    people = (
        exp.select(person.as_("person_id"), age.as_("age"))
        .from_(table(source, "src"))
        .where(has_id)
        .group_by(person)
    )
    return _charlson(codes, people, codelist, weighting)


def score_table(
    engine: Engine,
    data: pa.Table,
    *,
    age: bool,
    weighting: str = "quan",
    codelist: CodeList | None = None,
) -> pa.Table:
    """`charlson_scores` over an Arrow table of (person_id, code[, age]) rows, on `engine`.

    The rows are loaded for this session only, as a table no canonical table is called."""
    engine.load_session(_INPUT_TABLE, data)
    return engine.execute(
        charlson_scores(
            _INPUT_TABLE, age_col="age" if age else None, weighting=weighting, codelist=codelist
        )
    )


def _warehouse_people(ref_date: date, exclude_opted_out: bool) -> exp.Select:
    return (
        exp.select(col("person_id").as_("person_id"), age_at(ref_date).as_("age"))
        .from_(table("person", "p"))
        .where(alive_at(ref_date), opt_out_filter(exclude_opted_out))
    )


def _warehouse_codes(ref_date: date) -> exp.Select:
    return (
        exp.select(
            col("person_id", "d").as_("person_id"), _normalised(col("code", "d")).as_("code")
        )
        .from_(table("diagnosis", "d"))
        .where(
            exp.EQ(this=col("code_system", "d"), expression=exp.Literal.string("icd10")),
            exp.LTE(this=col("diagnosis_date", "d"), expression=date_literal(ref_date)),
        )
    )


def charlson_from_warehouse(
    ref_date: date,
    weighting: str = "quan",
    exclude_opted_out: bool = True,
    codelist: CodeList | None = None,
) -> exp.Query:
    """Per-person Charlson flags and scores for everyone alive at `ref_date`, from ICD-10
    diagnoses recorded on or before it, with age at `ref_date`. Pseudonymous, not for
    publication: publish `charlson_distribution` instead."""
    return _charlson(
        _warehouse_codes(ref_date),
        _warehouse_people(ref_date, exclude_opted_out),
        codelist,
        weighting,
    )


def _band_labels(edges: Sequence[int]) -> list[str]:
    labels = [str(lo) if hi - lo == 1 else f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(edges)]
    return [*labels, f"{edges[-1]}+"]


def charlson_distribution(
    ref_date: date,
    weighting: str = "quan",
    age_adjusted: bool = False,
    exclude_opted_out: bool = True,
) -> exp.Query:
    """People alive at `ref_date` by Charlson score band ('0', '1-2', '3-4', '5+').

    Scores use ICD-10 diagnoses recorded on or before `ref_date` (Quan 2005 coding; `weighting`
    'quan' for Quan 2011 or 'charlson' for Charlson 1987; `age_adjusted` adds age points).
    Output: charlson_band, people; every band appears, with 0 when empty. No rows when nobody
    is alive at `ref_date`.
    """
    scores = charlson_from_warehouse(ref_date, weighting, exclude_opted_out)
    scores.set("order", None)
    value = exp.column("charlson_age_adjusted" if age_adjusted else "charlson_score", "sc")
    labels = _band_labels(SCORE_BANDS)
    band = exp.Case()
    for lo, label in reversed(list(zip(SCORE_BANDS, labels, strict=True))[1:]):
        band = band.when(exp.GTE(this=value, expression=exp.Literal.number(lo)), exp.convert(label))
    band = band.else_(exp.convert(labels[0]))
    counted = (
        exp.select(band.as_("charlson_band"), count_rows().as_("people"))
        .from_(scores.subquery("sc"))
        .group_by(band.copy())
    )
    grid = exp.values(
        [(label, i) for i, label in enumerate(labels)], alias="b", columns=["label", "position"]
    )
    total = exp.select(count_rows().as_("denominator")).from_(
        _warehouse_people(ref_date, exclude_opted_out).subquery("pop")
    )
    people = bigint(
        exp.Coalesce(this=exp.column("people", "n"), expressions=[exp.Literal.number(0)])
    )
    return (
        exp.select(exp.column("label", "b").as_("charlson_band"), people.as_("people"))
        .from_(grid)
        .join(total.subquery("t"), join_type="CROSS")
        .join(
            counted.subquery("n"),
            on=exp.EQ(this=exp.column("label", "b"), expression=exp.column("charlson_band", "n")),
            join_type="LEFT",
        )
        .where(exp.GT(this=exp.column("denominator", "t"), expression=exp.Literal.number(0)))
        .order_by(exp.column("position", "b"))
    )
