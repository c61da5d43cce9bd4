"""The Cambridge Multimorbidity Score for an analyst's own extract of (person, code) rows.

An extract of codes carries no dates or prescriptions, so each of the 18 code-defined
conditions counts when any of its codes is present (SNOMED CT exactly, ICD-10 by prefix), and
the two prescription-defined conditions (constipation, painful condition) cannot be scored and
are reported as 0. The warehouse pipeline (`phm_person`) applies the full rules.
"""

from __future__ import annotations

from sqlglot import exp

from joinedup.population.codelists import PhmCodeLists
from joinedup.population.conditions import CMS_CONDITIONS
from joinedup.population.history import normalised_code
from joinedup.warehouse.analytics.cohort import col, table

#: Conditions a code extract can show (the others need prescriptions).
CODE_DEFINED: tuple[str, ...] = tuple(
    c.name for c in CMS_CONDITIONS if c.name not in {"constipation", "painful_condition"}
)


def cms_scores(source: str, codes: PhmCodeLists) -> exp.Query:
    """Per person in table `source` of (person_id, code) rows: a 0/1 column per CMS condition,
    ltc_count, cms_general and cms_mortality (Payne et al. 2020 weights), ordered by id."""
    src = "src"
    cleaned = (
        exp.select(
            col("person_id", src).as_("person_id"), normalised_code(col("code", src)).as_("code")
        )
        .from_(table(source, src))
        .where(
            exp.Not(this=col("person_id", src).is_(exp.null())),
            exp.Not(this=col("code", src).is_(exp.null())),
        )
    )
    wanted = set(CODE_DEFINED)
    parts: list[exp.Select] = []
    snomed = sorted({(g, c) for g, s, c in codes.diagnoses if s == "snomed" and g in wanted})
    listed = exp.values(snomed, alias="l", columns=["grp", "code"])
    parts.append(
        exp.select(col("person_id", "c").as_("person_id"), col("grp", "l").as_("grp"))
        .from_(cleaned.subquery("c"))
        .join(listed, on=exp.EQ(this=col("code", "c"), expression=col("code", "l")))
    )
    for n in codes.icd10_prefix_lengths():
        rows = sorted(
            {(g, c) for g, s, c in codes.diagnoses if s == "icd10" and len(c) == n and g in wanted}
        )
        if not rows:
            continue
        alias = f"l{n}"
        on = exp.EQ(
            this=exp.Left(this=col("code", "c"), expression=exp.Literal.number(n)),
            expression=col("code", alias),
        )
        parts.append(
            exp.select(col("person_id", "c").as_("person_id"), col("grp", alias).as_("grp"))
            .from_(cleaned.subquery("c"))
            .join(exp.values(rows, alias=alias, columns=["grp", "code"]), on=on)
        )
    union: exp.Query = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=True)
    people = (
        exp.select(col("person_id", src).as_("person_id"))
        .from_(table(source, src))
        .where(exp.Not(this=col("person_id", src).is_(exp.null())))
        .distinct()
    )

    def flag(name: str) -> exp.Expr:
        if name not in wanted:
            return exp.Literal.number(0)
        hit = exp.EQ(this=col("grp", "m"), expression=exp.convert(name))
        return exp.Coalesce(
            this=exp.Max(
                this=exp.Case().when(hit, exp.Literal.number(1)).else_(exp.Literal.number(0))
            ),
            expressions=[exp.Literal.number(0)],
        )

    flags = (
        exp.select(
            col("person_id", "pp").as_("person_id"),
            *[exp.cast(flag(c.name), exp.DataType.Type.INT).as_(c.name) for c in CMS_CONDITIONS],
        )
        .from_(people.subquery("pp"))
        .join(
            union.subquery("m"),
            on=exp.EQ(this=col("person_id", "pp"), expression=col("person_id", "m")),
            join_type="LEFT",
        )
        .group_by(col("person_id", "pp"))
    )

    def total(attr: str | None) -> exp.Expr:
        out: exp.Expr = exp.Literal.number(0)
        for c in CMS_CONDITIONS:
            term = col(c.name, "f")
            weight = getattr(c, attr) if attr else 1
            out = exp.Add(this=out, expression=exp.Mul(this=term, expression=exp.convert(weight)))
        if attr is None:
            return exp.cast(out, exp.DataType.Type.INT)
        return exp.Div(
            this=exp.cast(out, exp.DataType.Type.DOUBLE), expression=exp.Literal.number("100.0")
        )

    return (
        exp.select(
            exp.Column(this=exp.Star(), table=exp.to_identifier("f")),
            total(None).as_("ltc_count"),
            total("general").as_("cms_general"),
            total("mortality").as_("cms_mortality"),
        )
        .from_(flags.subquery("f"))
        .order_by(col("person_id", "f"))
    )
