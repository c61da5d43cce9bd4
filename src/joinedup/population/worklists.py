"""Case-finding worklists: the people each configured cohort finds, per PCN, with the reasons
they qualified. For direct care, so identifiable (NHS number) and including people with a
national data opt-out, who are never left out of their own care.
"""

from __future__ import annotations

from sqlglot import exp

from joinedup.population.config import Criterion, Worklist
from joinedup.warehouse.analytics.cohort import col, table

W = "w"


def _value(value: object) -> exp.Expr:
    if isinstance(value, float) and value.is_integer():
        return exp.Literal.number(int(value))
    return exp.convert(value)


def _test(c: Criterion) -> exp.Expr:
    field = col(c.field, W)
    op, value = c.operator, c.value
    if op == "in":
        return exp.In(this=field, expressions=[_value(v) for v in value])
    cls = {
        "equals": exp.EQ,
        "not_equals": exp.NEQ,
        "at_least": exp.GTE,
        "at_most": exp.LTE,
        "above": exp.GT,
        "below": exp.LT,
    }[op]
    return cls(this=field, expression=_value(value))


def _shown(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value)
    return str(value)


def _reason(c: Criterion) -> exp.Expr:
    """'<field>: <the person's value> (<operator> <target>)', e.g. 'ltc_count: 3 (at least 2)'."""
    target = f" ({c.operator.replace('_', ' ')} {_shown(c.value)})"
    value = exp.Coalesce(
        this=exp.cast(col(c.field, W), exp.DataType.Type.VARCHAR),
        expressions=[exp.convert("none")],
    )
    return exp.func("concat", exp.convert(f"{c.field}: "), value, exp.convert(target))


def _joined(reasons: list[exp.Expr]) -> exp.Expr:
    out = reasons[0]
    for r in reasons[1:]:
        out = exp.func("concat", out, exp.convert("; "), r)
    return out


def worklist_source(person: str = "phm_person", risk: str = "phm_risk") -> exp.Select:
    """Everything a criterion can test, per person: `phm_person` with the risk score and tier
    and the derived physical health check flag."""
    check = exp.and_(
        exp.EQ(this=col("bp_recorded_12m", "p"), expression=exp.Literal.number(1)),
        exp.EQ(this=col("bmi_recorded_12m", "p"), expression=exp.Literal.number(1)),
        exp.EQ(this=col("smoking_recorded_12m", "p"), expression=exp.Literal.number(1)),
    )
    return (
        exp.select(
            exp.Column(this=exp.Star(), table=exp.to_identifier("p")),
            col("risk_score", "r").as_("risk_score"),
            col("risk_tier", "r").as_("risk_tier"),
            exp.cast(
                exp.Case().when(check, exp.Literal.number(1)).else_(exp.Literal.number(0)),
                exp.DataType.Type.INT,
            ).as_("physical_health_check_12m"),
        )
        .from_(table(person, "p"))
        .join(
            table(risk, "r"),
            on=exp.EQ(this=col("person_id", "p"), expression=col("person_id", "r")),
            join_type="LEFT",
        )
    )


def worklist_rows(
    worklists: list[Worklist], person: str = "phm_person", risk: str = "phm_risk"
) -> exp.Query:
    """Every person each worklist finds: worklist_id, pcn_code, practice_code, person_id,
    nhs_number, age, sex, risk_tier, risk_score, reasons. Opted-out people are included."""
    identity = (
        exp.select(
            col("person_id", "i").as_("person_id"),
            exp.Min(this=col("nhs_number", "i")).as_("nhs_number"),
        )
        .from_(table("identity", "i"))
        .group_by(col("person_id", "i"))
    )
    parts: list[exp.Select] = []
    for wl in worklists:
        parts.append(
            exp.select(
                exp.convert(wl.id).as_("worklist_id"),
                col("pcn_code", W).as_("pcn_code"),
                col("practice_code", W).as_("practice_code"),
                col("person_id", W).as_("person_id"),
                col("nhs_number", "id").as_("nhs_number"),
                col("age", W).as_("age"),
                col("sex", W).as_("sex"),
                col("risk_tier", W).as_("risk_tier"),
                col("risk_score", W).as_("risk_score"),
                _joined([_reason(c) for c in wl.criteria]).as_("reasons"),
            )
            .from_(worklist_source(person, risk).subquery(W))
            .join(
                identity.subquery("id"),
                on=exp.EQ(this=col("person_id", W), expression=col("person_id", "id")),
                join_type="LEFT",
            )
            .where(*[_test(c) for c in wl.criteria])
        )
    union: exp.Query = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    u = "u"
    return (
        exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier(u)))
        .from_(union.subquery(u))
        .order_by(
            col("worklist_id", u),
            col("pcn_code", u),
            exp.Ordered(this=col("risk_score", u), desc=True, nulls_first=False),
            col("person_id", u),
        )
    )
