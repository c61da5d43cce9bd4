"""What was known about each person on an index date: their registration, coded diagnoses,
prescriptions, measurements and use of services, all strictly before that date.

Every builder here takes the index date and reads only rows dated before it (the outcome
builder is the one exception, and says so), so a model trained on these features cannot see
the future. Each returns a sqlglot query with one row per person, for any engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlglot import exp

from joinedup.population.codelists import (
    DIAGNOSIS_GROUPS,
    MEDICINE_GROUPS,
    PhmCodeLists,
)
from joinedup.warehouse.analytics.cohort import (
    age_at,
    alive_at,
    bigint,
    col,
    count_if,
    date_literal,
    table,
)

ZERO = exp.Literal.number(0)
ONE = exp.Literal.number(1)


@dataclass(frozen=True)
class Window:
    """An index date and the look-back dates every rule measures from."""

    index_date: date
    #: Last day of the data: open-ended prescriptions are taken to run until it.
    extract_date: date

    def days_before(self, days: int) -> date:
        return self.index_date - timedelta(days=days)

    @property
    def year_ago(self) -> date:
        return self.days_before(365)

    @property
    def index(self) -> exp.Expr:
        return date_literal(self.index_date)

    def before_index(self, column: exp.Expr) -> exp.Expr:
        return exp.LT(this=column, expression=self.index)

    def on_or_after(self, column: exp.Expr, when: date) -> exp.Expr:
        return exp.GTE(this=column, expression=date_literal(when))


def days_between(later: exp.Expr, earlier: exp.Expr) -> exp.Expr:
    """Whole days from `earlier` to `later` (DATEDIFF on every engine)."""
    return exp.cast(
        exp.DateDiff(this=later, expression=earlier, unit=exp.var("DAY")), exp.DataType.Type.INT
    )


def case_when(condition: exp.Expr, then: exp.Expr, otherwise: exp.Expr | None = None) -> exp.Expr:
    case = exp.Case().when(condition, then)
    return case.else_(otherwise) if otherwise is not None else case


def eq(column: exp.Expr, value: str | int) -> exp.Expr:
    return exp.EQ(this=column, expression=exp.convert(value))


def normalised_code(code: exp.Expr) -> exp.Expr:
    """A code as code lists hold it: trimmed, upper case, without dots or spaces."""
    cleaned: exp.Expr = exp.Upper(this=exp.Trim(this=code))
    for ch in (".", " "):
        cleaned = exp.func("replace", cleaned, exp.Literal.string(ch), exp.Literal.string(""))
    return cleaned


def registered(window: Window) -> exp.Select:
    """Everyone alive and registered with a practice on the index date, with who they are and
    where they live: age, sex, ethnicity, deprivation, practice, PCN and place."""
    reg = table("registration", "r")
    covering = (
        exp.select(
            col("person_id", "r").as_("person_id"),
            exp.Max(this=col("practice_code", "r")).as_("practice_code"),
        )
        .from_(reg)
        .where(
            exp.LTE(this=col("start_date", "r"), expression=window.index),
            exp.or_(
                col("end_date", "r").is_(exp.null()),
                exp.GTE(this=col("end_date", "r"), expression=window.index),
            ),
        )
        .group_by(col("person_id", "r"))
    )
    decile = col("imd_decile", "p")
    quintile = exp.cast(
        exp.IntDiv(
            this=exp.paren(exp.Add(this=exp.cast(decile, exp.DataType.Type.INT), expression=ONE)),
            expression=exp.Literal.number(2),
        ),
        exp.DataType.Type.INT,
    )
    return (
        exp.select(
            col("person_id", "p").as_("person_id"),
            age_at(window.index_date).as_("age"),
            col("sex", "p").as_("sex"),
            col("ethnic_category", "p").as_("ethnic_category"),
            ethnic_group(col("ethnic_category", "p")).as_("ethnic_group"),
            col("lsoa_code", "p").as_("lsoa_code"),
            exp.cast(decile, exp.DataType.Type.INT).as_("imd_decile"),
            quintile.as_("imd_quintile"),
            col("practice_code", "r").as_("practice_code"),
            col("pcn_code", "pr").as_("pcn_code"),
            col("place_code", "pr").as_("place_code"),
            col("national_data_opt_out", "p").as_("national_data_opt_out"),
        )
        .from_(table("person", "p"))
        .join(
            covering.subquery("r"),
            on=exp.EQ(this=col("person_id", "p"), expression=col("person_id", "r")),
        )
        .join(
            table("practice", "pr"),
            on=exp.EQ(this=col("practice_code", "r"), expression=col("practice_code", "pr")),
            join_type="LEFT",
        )
        .where(alive_at(window.index_date))
    )


#: Ethnic group (the five Census 2021 high-level groups, and not stated) by NHS category letter.
ETHNIC_GROUPS: dict[str, str] = {
    **dict.fromkeys("ABC", "White"),
    **dict.fromkeys("DEFG", "Mixed"),
    **dict.fromkeys("HJKL", "Asian"),
    **dict.fromkeys("MNP", "Black"),
    **dict.fromkeys("RS", "Other"),
    "Z": "Not stated",
}


def ethnic_group(category: exp.Expr) -> exp.Expr:
    case = exp.Case()
    for group in dict.fromkeys(ETHNIC_GROUPS.values()):
        letters = [k for k, v in ETHNIC_GROUPS.items() if v == group]
        case = case.when(
            exp.In(this=category, expressions=[exp.convert(x) for x in letters]), exp.convert(group)
        )
    return case.else_(exp.convert("Not stated"))


def _group_columns(groups: tuple[str, ...], first: bool) -> list[exp.Expr]:
    out: list[exp.Expr] = []
    for g in groups:
        is_g = eq(col("grp", "m"), g)
        if first:
            out.append(exp.Min(this=case_when(is_g, col("first_date", "m"))).as_(f"{g}_first"))
        out.append(exp.Max(this=case_when(is_g, col("last_date", "m"))).as_(f"{g}_last"))
    return out


def diagnoses(window: Window, codes: PhmCodeLists) -> exp.Select:
    """Per person, the first and last date each diagnosis group was recorded before the index
    date (`<group>_first`, `<group>_last`; NULL when never). SNOMED codes match exactly,
    ICD-10 codes by prefix after removing dots and spaces."""
    parts: list[exp.Select] = []
    snomed = sorted({(g, c) for g, s, c in codes.diagnoses if s == "snomed"})
    d = table("diagnosis", "d")
    dated = window.before_index(col("diagnosis_date", "d"))
    if snomed:
        listed = exp.values(snomed, alias="l", columns=["grp", "code"])
        parts.append(
            exp.select(
                col("person_id", "d").as_("person_id"),
                col("grp", "l").as_("grp"),
                col("diagnosis_date", "d").as_("diagnosis_date"),
            )
            .from_(d)
            .join(listed, on=exp.EQ(this=col("code", "d"), expression=col("code", "l")))
            .where(eq(col("code_system", "d"), "snomed"), dated)
        )
    for n in codes.icd10_prefix_lengths():
        rows = sorted({(g, c) for g, s, c in codes.diagnoses if s == "icd10" and len(c) == n})
        listed = exp.values(rows, alias=f"l{n}", columns=["grp", "code"])
        on = exp.EQ(
            this=exp.Left(this=normalised_code(col("code", "d")), expression=exp.Literal.number(n)),
            expression=col("code", f"l{n}"),
        )
        parts.append(
            exp.select(
                col("person_id", "d").as_("person_id"),
                col("grp", f"l{n}").as_("grp"),
                col("diagnosis_date", "d").as_("diagnosis_date"),
            )
            .from_(table("diagnosis", "d"))
            .join(listed, on=on)
            .where(eq(col("code_system", "d"), "icd10"), dated.copy())
        )
    union: exp.Query = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    per_group = (
        exp.select(
            col("person_id", "u").as_("person_id"),
            col("grp", "u").as_("grp"),
            exp.Min(this=col("diagnosis_date", "u")).as_("first_date"),
            exp.Max(this=col("diagnosis_date", "u")).as_("last_date"),
        )
        .from_(union.subquery("u"))
        .group_by(col("person_id", "u"), col("grp", "u"))
    )
    return (
        exp.select(
            col("person_id", "m").as_("person_id"), *_group_columns(DIAGNOSIS_GROUPS, first=True)
        )
        .from_(per_group.subquery("m"))
        .group_by(col("person_id", "m"))
    )


def issues_in_window(window: Window, m: str = "m") -> tuple[exp.Expr, list[exp.Expr]]:
    """Estimated issues of each `medication` row (alias `m`) in the 12 months before the index
    date, and the conditions that keep only BNF courses overlapping those months.

    A course that ended before the index date has its issues spread evenly from first to last
    issue; those in the window are its issue count times the share of its days inside the
    window, rounded half up (integer arithmetic, the same on every engine). A course still
    running on the index date (or with no end date) counts one issue per 28 days from its start
    or the window's start, whichever is later, so nothing after the index date is used.
    """
    end = exp.Coalesce(this=col("end_date", m), expressions=[date_literal(window.extract_date)])
    start = col("start_date", m)
    year_ago = date_literal(window.year_ago)
    last_day = date_literal(window.days_before(1))
    course_days = exp.Greatest(
        this=exp.paren(exp.Add(this=days_between(end, start), expression=ONE)), expressions=[ONE]
    )
    overlap = exp.paren(
        exp.Add(
            this=days_between(
                exp.Least(this=end.copy(), expressions=[last_day]),
                exp.Greatest(this=start.copy(), expressions=[year_ago]),
            ),
            expression=ONE,
        )
    )
    two = exp.Literal.number(2)
    issues: exp.Expr = exp.IntDiv(
        this=exp.paren(
            exp.Add(
                this=exp.Mul(
                    this=exp.Mul(this=bigint(col("issue_count", m)), expression=overlap),
                    expression=two,
                ),
                expression=course_days,
            )
        ),
        expression=exp.paren(exp.Mul(this=two.copy(), expression=course_days.copy())),
    )
    # A course still running on the index date: how many issues it will have had is future
    # knowledge, so count one issue per 28 days (the usual repeat interval) up to the index.
    still_running = exp.GTE(this=end.copy(), expression=window.index)
    every_28_days = exp.IntDiv(
        this=exp.paren(exp.Add(this=overlap.copy(), expression=exp.Literal.number(27))),
        expression=exp.Literal.number(28),
    )
    issues = case_when(still_running, every_28_days, issues)
    in_window = [
        eq(col("code_system", m), "bnf"),
        window.before_index(start.copy()),
        exp.GTE(this=end.copy(), expression=year_ago.copy()),
    ]
    return issues, in_window


def prescriptions(window: Window, codes: PhmCodeLists) -> exp.Select:
    """Per person, issues of each medicine group in the 12 months before the index date
    (`<group>_issues_count`) and the number of different repeat medicines still being issued in the
    90 days before it (`medicines_count`). Issues are estimated by `issues_in_window`.
    """
    m = "m"
    issues, in_window = issues_in_window(window, m)
    start = col("start_date", m)
    end = exp.Coalesce(this=col("end_date", m), expressions=[date_literal(window.extract_date)])
    parts: list[exp.Select] = []
    for n in codes.bnf_prefix_lengths():
        rows = sorted({(g, c) for g, c in codes.medicines if len(c) == n})
        listed = exp.values(rows, alias=f"l{n}", columns=["grp", "prefix"])
        on = exp.EQ(
            this=exp.Left(this=exp.Upper(this=col("code", m)), expression=exp.Literal.number(n)),
            expression=col("prefix", f"l{n}"),
        )
        parts.append(
            exp.select(
                col("person_id", m).as_("person_id"),
                col("grp", f"l{n}").as_("grp"),
                bigint(issues.copy()).as_("issues"),
            )
            .from_(table("medication", m))
            .join(listed, on=on)
            .where(*[c.copy() for c in in_window])
        )
    union: exp.Query = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    per_group = exp.select(
        col("person_id", "u").as_("person_id"),
        *[
            bigint(
                exp.Coalesce(
                    this=exp.Sum(this=case_when(eq(col("grp", "u"), g), col("issues", "u"))),
                    expressions=[ZERO],
                )
            ).as_(f"{g}_issues_count")
            for g in MEDICINE_GROUPS
        ],
    )
    grouped = per_group.from_(union.subquery("u")).group_by(col("person_id", "u"))
    active = exp.and_(
        col("is_repeat", m),
        window.before_index(start.copy()),
        exp.GTE(this=end.copy(), expression=date_literal(window.days_before(90))),
    )
    repeats = (
        exp.select(
            col("person_id", m).as_("person_id"),
            bigint(exp.Count(this=exp.Distinct(expressions=[col("code", m)]))).as_(
                "medicines_count"
            ),
        )
        .from_(table("medication", m))
        .where(active)
        .group_by(col("person_id", m))
    )
    people = exp.union(
        exp.select(col("person_id", "g").as_("person_id")).from_(grouped.subquery("g")),
        exp.select(col("person_id", "a").as_("person_id")).from_(repeats.subquery("a")),
        distinct=True,
    )
    return (
        exp.select(
            col("person_id", "k").as_("person_id"),
            *[
                bigint(exp.Coalesce(this=col(f"{g}_issues_count", "g"), expressions=[ZERO])).as_(
                    f"{g}_issues_count"
                )
                for g in MEDICINE_GROUPS
            ],
            bigint(exp.Coalesce(this=col("medicines_count", "a"), expressions=[ZERO])).as_(
                "medicines_count"
            ),
        )
        .from_(people.subquery("k"))
        .join(
            grouped.subquery("g"),
            on=exp.EQ(this=col("person_id", "k"), expression=col("person_id", "g")),
            join_type="LEFT",
        )
        .join(
            repeats.subquery("a"),
            on=exp.EQ(this=col("person_id", "k"), expression=col("person_id", "a")),
            join_type="LEFT",
        )
    )


def _latest_two(window: Window, observation_type: str, prefix: str) -> exp.Select:
    """The latest two readings of one numeric observation before the index date: value and
    date of each (`<prefix>_latest`, `<prefix>_latest_date`, `<prefix>_previous`, ...)."""
    o = "o"
    rank = exp.Window(
        this=exp.RowNumber(),
        partition_by=[col("person_id", o)],
        order=exp.Order(
            expressions=[
                exp.Ordered(this=col("observation_date", o), desc=True),
                exp.Ordered(this=col("value", o), desc=False),
            ]
        ),
    )
    ranked = (
        exp.select(
            col("person_id", o).as_("person_id"),
            col("observation_date", o).as_("observation_date"),
            col("value", o).as_("value"),
            rank.as_("rn"),
        )
        .from_(table("observation", o))
        .where(
            eq(col("observation_type", o), observation_type),
            window.before_index(col("observation_date", o)),
            exp.Not(this=col("value", o).is_(exp.null())),
        )
    )
    pick: list[exp.Expr] = []
    for n, name in ((1, "latest"), (2, "previous")):
        is_n = exp.EQ(this=col("rn", "x"), expression=exp.Literal.number(n))
        pick.append(exp.Max(this=case_when(is_n, col("value", "x"))).as_(f"{prefix}_{name}"))
        pick.append(
            exp.Max(this=case_when(is_n.copy(), col("observation_date", "x"))).as_(
                f"{prefix}_{name}_date"
            )
        )
    return (
        exp.select(col("person_id", "x").as_("person_id"), *pick)
        .from_(ranked.subquery("x"))
        .where(exp.LTE(this=col("rn", "x"), expression=exp.Literal.number(2)))
        .group_by(col("person_id", "x"))
    )


def observations(window: Window) -> exp.Select:
    """Per person: the latest two eGFR results and the latest blood pressure before the index
    date; days with a raised reading (systolic 140+ or diastolic 90+) in the 2 years before it;
    and whether blood pressure, BMI and smoking status were recorded in the last 12 months."""
    o = "o"
    kind = col("observation_type", o)
    value = col("value", o)
    two_years = window.on_or_after(col("observation_date", o), window.days_before(730))
    raised = exp.and_(
        two_years,
        exp.or_(
            exp.and_(eq(kind, "systolic_bp"), exp.GTE(this=value, expression=exp.convert(140))),
            exp.and_(
                eq(kind.copy(), "diastolic_bp"),
                exp.GTE(this=value.copy(), expression=exp.convert(90)),
            ),
        ),
    )

    def recorded(name: str) -> exp.Expr:
        this_year = window.on_or_after(col("observation_date", o), window.year_ago)
        return exp.Max(
            this=case_when(exp.and_(eq(kind.copy(), name), this_year), ONE.copy(), ZERO.copy())
        )

    counts = (
        exp.select(
            col("person_id", o).as_("person_id"),
            bigint(
                exp.Count(
                    this=exp.Distinct(expressions=[case_when(raised, col("observation_date", o))])
                )
            ).as_("raised_bp_days_24m_count"),
            recorded("systolic_bp").as_("bp_recorded_12m"),
            recorded("bmi").as_("bmi_recorded_12m"),
            recorded("smoking_status").as_("smoking_recorded_12m"),
        )
        .from_(table("observation", o))
        .where(window.before_index(col("observation_date", o)))
        .group_by(col("person_id", o))
    )
    egfr = _latest_two(window, "egfr", "egfr")
    systolic = _latest_two(window, "systolic_bp", "systolic")
    diastolic = _latest_two(window, "diastolic_bp", "diastolic")
    return (
        exp.select(
            col("person_id", "c").as_("person_id"),
            col("raised_bp_days_24m_count", "c").as_("raised_bp_days_24m_count"),
            col("bp_recorded_12m", "c").as_("bp_recorded_12m"),
            col("bmi_recorded_12m", "c").as_("bmi_recorded_12m"),
            col("smoking_recorded_12m", "c").as_("smoking_recorded_12m"),
            col("egfr_latest", "e").as_("egfr_latest"),
            col("egfr_latest_date", "e").as_("egfr_latest_date"),
            col("egfr_previous", "e").as_("egfr_previous"),
            col("egfr_previous_date", "e").as_("egfr_previous_date"),
            col("systolic_latest", "s").as_("latest_systolic_bp"),
            col("diastolic_latest", "dia").as_("latest_diastolic_bp"),
        )
        .from_(counts.subquery("c"))
        .join(
            egfr.subquery("e"),
            on=exp.EQ(this=col("person_id", "c"), expression=col("person_id", "e")),
            join_type="LEFT",
        )
        .join(
            systolic.subquery("s"),
            on=exp.EQ(this=col("person_id", "c"), expression=col("person_id", "s")),
            join_type="LEFT",
        )
        .join(
            diastolic.subquery("dia"),
            on=exp.EQ(this=col("person_id", "c"), expression=col("person_id", "dia")),
            join_type="LEFT",
        )
    )


#: Service use counted over the 12 months before the index date, by output column.
PRIOR_USE: dict[str, tuple[str, ...]] = {
    "prior_ae_12m_count": ("ae_attendance",),
    "prior_emergency_12m_count": ("emergency_admission",),
    "prior_elective_12m_count": ("elective_admission", "day_case"),
    "prior_outpatient_12m_count": ("outpatient_attendance",),
    "prior_gp_12m_count": ("gp_consultation",),
    "prior_community_12m_count": ("community_contact",),
    "prior_mental_health_12m_count": ("mental_health_contact",),
}


def service_use(window: Window) -> exp.Select:
    """Per person, contacts of each kind in the 12 months before the index date, GP contacts in
    the 6 months before it, and the date of the last GP contact ever."""
    a = "a"
    kind = col("activity_type", a)
    start = col("start_date", a)
    year = window.on_or_after(start, window.year_ago)
    counts = [
        count_if(
            exp.and_(
                exp.In(this=kind.copy(), expressions=[exp.convert(k) for k in kinds]), year.copy()
            )
        ).as_(name)
        for name, kinds in PRIOR_USE.items()
    ]
    gp = eq(kind.copy(), "gp_consultation")
    return (
        exp.select(
            col("person_id", a).as_("person_id"),
            *counts,
            count_if(exp.and_(gp, window.on_or_after(start.copy(), window.days_before(183)))).as_(
                "prior_gp_6m_count"
            ),
            exp.Max(this=case_when(gp.copy(), start.copy())).as_("last_gp_contact_date"),
        )
        .from_(table("activity", a))
        .where(window.before_index(start.copy()))
        .group_by(col("person_id", a))
    )


def emergency_outcome(window: Window, days: int = 365) -> exp.Select:
    """Per person with any, emergency admissions in the `days` FROM the index date on: the
    outcome a risk model predicts. The only builder that looks past the index date."""
    a = "a"
    start = col("start_date", a)
    return (
        exp.select(
            col("person_id", a).as_("person_id"),
            bigint(exp.Count(this=exp.Star())).as_("next_emergency_admissions"),
        )
        .from_(table("activity", a))
        .where(
            eq(col("activity_type", a), "emergency_admission"),
            exp.GTE(this=start, expression=window.index),
            exp.LT(
                this=start.copy(),
                expression=date_literal(window.index_date + timedelta(days=days)),
            ),
        )
        .group_by(col("person_id", a))
    )
