"""Case-finding worklists: the people each configured cohort finds, per PCN, with the reasons
they qualified. For direct care, so identifiable (NHS number) and including people with a
national data opt-out, who are never left out of their own care.
"""

from __future__ import annotations

from datetime import date

from sqlglot import exp

from joinedup.population.codelists import PhmCodeLists
from joinedup.population.config import WORKLIST_FIELDS, Criterion, Worklist
from joinedup.warehouse.analytics.cohort import col, date_literal, table

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


def _text(value: exp.Expr) -> exp.Expr:
    return exp.Coalesce(
        this=exp.cast(value, exp.DataType.Type.VARCHAR), expressions=[exp.convert("unknown")]
    )


def _when(field: str, cases: dict[int, str], other: exp.Expr) -> exp.Expr:
    case = exp.Case()
    for value, words in cases.items():
        case = case.when(
            exp.EQ(this=col(field, W), expression=exp.Literal.number(value)), exp.convert(words)
        )
    return case.else_(other)


def _day(field: str) -> exp.Expr:
    """A date as '12 Feb 2026' (the same text on DuckDB and Spark)."""
    return exp.TimeToStr(this=col(field, W), format=exp.Literal.string("%d %b %Y"))


def _concat(*parts: exp.Expr | str) -> exp.Expr:
    return exp.func("concat", *[exp.convert(p) if isinstance(p, str) else p for p in parts])


_FRAILTY = {0: "Frailty none", 1: "Frailty mild", 2: "Frailty moderate", 3: "Frailty severe"}
_TIER = {"very_high": "very high", "high": "high", "moderate": "moderate", "low": "low"}


def _gp_contact() -> exp.Expr:
    last = (
        exp.Case()
        .when(
            col("last_gp_contact_date", W).is_(exp.null()),
            exp.convert("no GP consultation on record"),
        )
        .else_(_concat("last GP consultation ", _day("last_gp_contact_date")))
    )
    return last


def _phrase(field: str) -> exp.Expr:
    """The person's value of `field` in plain English, with the date or reading behind it
    where the person-level table holds one ('Frailty moderate', 'Fall recorded in the last 6
    months', 'No GP consultation in 6 months; last GP consultation 03 Mar 2025')."""
    value = col(field, W)
    if field == "frailty_level":
        return _when(field, _FRAILTY, _concat("Frailty level ", _text(value)))
    if field == "risk_tier":
        case = exp.Case()
        for key, words in _TIER.items():
            case = case.when(exp.EQ(this=value, expression=exp.convert(key)), exp.convert(words))
        return _concat("Emergency admission risk ", case.else_(_text(value)))
    if field in ("prior_gp_6m_count", "prior_gp_12m_count"):
        months = "6" if "6m" in field else "12"
        count = _when(
            field,
            {0: f"No GP consultation in {months} months"},
            _concat(_text(value), f" GP consultations in {months} months"),
        )
        return _concat(count, "; ", _gp_contact())
    if field == "raised_bp_days_24m_count":
        latest = _concat(
            _text(exp.cast(col("latest_systolic_bp", W), exp.DataType.Type.INT)),
            "/",
            _text(exp.cast(col("latest_diastolic_bp", W), exp.DataType.Type.INT)),
            " mmHg",
        )
        return _concat(
            "Raised blood pressure on ", _text(value), " days in 2 years (latest ", latest, ")"
        )
    if field == "ltc_count":
        return _concat(_text(value), " long-term conditions")
    if field == "age":
        return _concat("Aged ", _text(value))
    label = WORKLIST_FIELDS[field]
    if "(1/0)" in label or "1 if present" in label:
        words = label.replace(" (1/0)", "").split(": 1 if present")[0]
        unknown = exp.convert(f"{words}: unknown")
        return _when(field, {1: f"{words}: yes", 0: f"{words}: no"}, unknown)
    return _concat(label, ": ", _text(value))


#: Plain words for the flags the shipped worklists test, as a clinician would say them.
_FLAG_WORDS: dict[str, tuple[str, str]] = {
    "fall_6m": ("Fall recorded in the last 6 months", "No fall recorded in the last 6 months"),
    "hypertension": ("Hypertension diagnosed", "No hypertension diagnosis"),
    "psychosis_bipolar": (
        "Schizophrenia, bipolar disorder or other psychosis recorded",
        "No severe mental illness recorded",
    ),
    "physical_health_check_12m": (
        "Blood pressure, BMI and smoking all recorded in 12 months",
        "No full physical health check in 12 months (blood pressure, BMI and smoking)",
    ),
}


def _reason(c: Criterion) -> exp.Expr:
    """One criterion as the person's own value in plain English, e.g. 'Frailty moderate',
    'Fall recorded in the last 6 months', '3 long-term conditions'."""
    if c.field == "fall_6m":
        recorded = exp.Case().when(
            exp.And(
                this=exp.EQ(this=col("fall_6m", W), expression=exp.Literal.number(1)),
                expression=exp.Not(this=col("fall_date", W).is_(exp.null())),
            ),
            _concat("Fall recorded ", _day("fall_date")),
        )
        yes, no = _FLAG_WORDS["fall_6m"]
        return recorded.else_(_when("fall_6m", {1: yes, 0: no}, exp.convert(f"{yes}: unknown")))
    if c.field == "frailty_level":
        coded = _concat(" (coded ", _day("frailty_date"), ")")
        return _concat(
            _phrase("frailty_level"),
            exp.Case()
            .when(
                exp.And(
                    this=exp.GT(this=col("frailty_level", W), expression=exp.Literal.number(0)),
                    expression=exp.Not(this=col("frailty_date", W).is_(exp.null())),
                ),
                coded,
            )
            .else_(exp.convert("")),
        )
    if c.field in _FLAG_WORDS:
        yes, no = _FLAG_WORDS[c.field]
        return _when(c.field, {1: yes, 0: no}, exp.convert(f"{yes}: unknown"))
    return _phrase(c.field)


def _joined(reasons: list[exp.Expr]) -> exp.Expr:
    out = reasons[0]
    for r in reasons[1:]:
        out = exp.func("concat", out, exp.convert("; "), r)
    return out


#: The coded events behind a flag or level, as `phm_worklist` columns: the date of the latest
#: code of these code list groups before the index date. `fall_6m` is 1 when the latest fall
#: is within 6 months; `frailty_level` is the level of the latest frailty code.
EVIDENCE: dict[str, tuple[str, tuple[str, ...]]] = {
    "fall_date": ("fall_6m", ("fall",)),
    "frailty_date": ("frailty_level", ("frailty_mild", "frailty_moderate", "frailty_severe")),
}


def worklist_evidence(codes: PhmCodeLists, index_date: date) -> exp.Select | None:
    """Per person, the date of the latest code behind each EVIDENCE column (SNOMED codes,
    recorded before `index_date`); None when the code lists have none of them."""
    pairs = sorted(
        {
            (name, code)
            for name, (_, groups) in EVIDENCE.items()
            for group, system, code in codes.diagnoses
            if group in groups and system == "snomed"
        }
    )
    if not pairs:
        return None
    listed = exp.values(pairs, alias="l", columns=["evidence", "code"])
    latest = [
        exp.Max(
            this=exp.Case().when(
                exp.EQ(this=col("evidence", "l"), expression=exp.convert(name)),
                col("diagnosis_date", "d"),
            )
        ).as_(name)
        for name in EVIDENCE
    ]
    return (
        exp.select(col("person_id", "d").as_("person_id"), *latest)
        .from_(table("diagnosis", "d"))
        .join(listed, on=exp.EQ(this=col("code", "d"), expression=col("code", "l")))
        .where(
            exp.EQ(this=col("code_system", "d"), expression=exp.convert("snomed")),
            exp.LT(this=col("diagnosis_date", "d"), expression=date_literal(index_date)),
        )
        .group_by(col("person_id", "d"))
    )


def worklist_source(
    person: str = "phm_person", risk: str = "phm_risk", evidence: exp.Select | None = None
) -> exp.Select:
    """Everything a criterion can test, per person: `phm_person` with the risk score and tier
    and the derived physical health check flag; and the EVIDENCE dates (NULL without
    `evidence`)."""
    check = exp.and_(
        exp.EQ(this=col("bp_recorded_12m", "p"), expression=exp.Literal.number(1)),
        exp.EQ(this=col("bmi_recorded_12m", "p"), expression=exp.Literal.number(1)),
        exp.EQ(this=col("smoking_recorded_12m", "p"), expression=exp.Literal.number(1)),
    )
    source = (
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
    if evidence is None:
        return source.select(
            *[exp.cast(exp.null(), exp.DataType.Type.DATE).as_(name) for name in EVIDENCE]
        )
    return source.select(*[col(name, "ev").as_(name) for name in EVIDENCE]).join(
        evidence.subquery("ev"),
        on=exp.EQ(this=col("person_id", "p"), expression=col("person_id", "ev")),
        join_type="LEFT",
    )


def worklist_rows(
    worklists: list[Worklist],
    person: str = "phm_person",
    risk: str = "phm_risk",
    *,
    evidence: exp.Select | None = None,
) -> exp.Query:
    """Every person each worklist finds: worklist_id, pcn_code, practice_code, person_id,
    nhs_number, age, sex, risk_tier, risk_score, reasons, and the EVIDENCE dates (from
    `worklist_evidence`, read only for worklists testing their fields). Opted-out people are
    included."""
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
        tested = {c.field for c in wl.criteria}
        needed = evidence if any(f in tested for f, _ in EVIDENCE.values()) else None
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
                *[col(name, W).as_(name) for name in EVIDENCE],
            )
            .from_(worklist_source(person, risk, needed).subquery(W))
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
