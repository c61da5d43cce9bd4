"""Conditions, the Cambridge Multimorbidity Score and Bridges to Health segments, per person on
an index date: the `phm_person` table every other population health output reads.

Condition rules follow the CPRD @ Cambridge definitions behind the Cambridge Multimorbidity
Score (Payne et al., CMAJ 2020;192:E107-14): some conditions need a code ever, some a code in
the last year, cancer a first code in the last five years, and some are defined by repeat
prescriptions. Simplifications are listed in docs/population.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from sqlglot import exp

from joinedup.population.codelists import DIAGNOSIS_GROUPS, MEDICINE_GROUPS, PhmCodeLists
from joinedup.population.history import (
    PRIOR_USE,
    Window,
    case_when,
    days_between,
    diagnoses,
    observations,
    prescriptions,
    registered,
    service_use,
)
from joinedup.warehouse.analytics.cohort import bigint, col, date_literal

ZERO = exp.Literal.number(0)
ONE = exp.Literal.number(1)
H = "h"  # alias of the joined history every rule reads


def _ever(group: str) -> exp.Expr:
    return exp.Not(this=col(f"{group}_last", H).is_(exp.null()))


def _since(group: str, when: date) -> exp.Expr:
    return exp.GTE(this=col(f"{group}_last", H), expression=date_literal(when))


def _first_since(group: str, when: date) -> exp.Expr:
    return exp.GTE(this=col(f"{group}_first", H), expression=date_literal(when))


def _issues(group: str, at_least: int) -> exp.Expr:
    return exp.GTE(this=col(f"{group}_issues_count", H), expression=exp.Literal.number(at_least))


Rule = Callable[[Window], exp.Expr]


@dataclass(frozen=True)
class CmsCondition:
    """One of the 20 conditions of the Cambridge Multimorbidity Score, its rule and weights.

    Weights are in hundredths (Payne et al. 2020, general outcome and mortality models) so the
    score is summed in integers and is the same on every engine."""

    name: str
    label: str
    definition: str
    general: int
    mortality: int
    rule: Rule


def _code_ever(group: str) -> Rule:
    return lambda w: _ever(group)


def _ckd(w: Window) -> exp.Expr:
    latest, previous = col("egfr_latest", H), col("egfr_previous", H)
    two_low = exp.and_(
        exp.LT(this=latest, expression=exp.convert(60)),
        exp.LT(this=previous, expression=exp.convert(60)),
        exp.GTE(
            this=days_between(col("egfr_latest_date", H), col("egfr_previous_date", H)),
            expression=exp.convert(90),
        ),
    )
    return exp.or_(_ever("chronic_kidney_disease"), exp.paren(two_low))


CMS_CONDITIONS: tuple[CmsCondition, ...] = (
    CmsCondition(
        "alcohol_problems",
        "Alcohol problems",
        "code ever",
        65,
        1272,
        _code_ever("alcohol_problems"),
    ),
    CmsCondition(
        "anxiety_depression",
        "Anxiety or depression",
        "code in the last 12 months, or a code ever and 4+ antidepressant or anxiolytic/hypnotic "
        "issues in the last 12 months",
        50,
        704,
        lambda w: exp.or_(
            _since("anxiety_depression", w.year_ago),
            exp.and_(
                _ever("anxiety_depression"),
                exp.paren(
                    exp.or_(_issues("antidepressants", 4), _issues("anxiolytics_hypnotics", 4))
                ),
            ),
        ),
    ),
    CmsCondition(
        "asthma",
        "Asthma",
        "code ever and an asthma medicine issued in the last 12 months",
        19,
        -273,
        lambda w: exp.and_(_ever("asthma"), _issues("asthma_medicines", 1)),
    ),
    CmsCondition(
        "atrial_fibrillation",
        "Atrial fibrillation",
        "code ever",
        134,
        2214,
        _code_ever("atrial_fibrillation"),
    ),
    CmsCondition(
        "cancer",
        "Cancer (new diagnosis in the last 5 years)",
        "first code in the last 5 years",
        153,
        6200,
        lambda w: _first_since("cancer", w.days_before(1826)),
    ),
    CmsCondition(
        "chronic_kidney_disease",
        "Chronic kidney disease (stages 3-5)",
        "stage 3-5 code ever, or the two latest eGFR results both under 60 and 90+ days apart",
        53,
        1661,
        _ckd,
    ),
    CmsCondition(
        "connective_tissue_disorder",
        "Connective tissue disorder",
        "code ever",
        43,
        -39,
        _code_ever("connective_tissue_disorder"),
    ),
    CmsCondition(
        "constipation",
        "Constipation (treated)",
        "4+ laxative issues in the last 12 months",
        112,
        3542,
        lambda w: _issues("laxatives", 4),
    ),
    CmsCondition(
        "copd", "Chronic obstructive pulmonary disease", "code ever", 146, 4250, _code_ever("copd")
    ),
    CmsCondition(
        "coronary_heart_disease",
        "Coronary heart disease",
        "code ever",
        49,
        422,
        _code_ever("coronary_heart_disease"),
    ),
    CmsCondition("dementia", "Dementia", "code ever", 250, 12442, _code_ever("dementia")),
    CmsCondition("diabetes", "Diabetes", "code ever", 75, 1023, _code_ever("diabetes")),
    CmsCondition(
        "epilepsy",
        "Epilepsy (treated)",
        "code ever and an antiepileptic issued in the last 12 months",
        92,
        1826,
        lambda w: exp.and_(_ever("epilepsy"), _issues("antiepileptics", 1)),
    ),
    CmsCondition("hearing_loss", "Hearing loss", "code ever", 9, -394, _code_ever("hearing_loss")),
    CmsCondition(
        "heart_failure", "Heart failure", "code ever", 118, 4347, _code_ever("heart_failure")
    ),
    CmsCondition("hypertension", "Hypertension", "code ever", 8, -209, _code_ever("hypertension")),
    CmsCondition(
        "irritable_bowel",
        "Irritable bowel syndrome",
        "code ever, or 4+ antispasmodic issues in the last 12 months",
        21,
        -133,
        lambda w: exp.or_(_ever("irritable_bowel"), _issues("antispasmodics", 4)),
    ),
    CmsCondition(
        "painful_condition",
        "Painful condition",
        "4+ analgesic issues in the last 12 months, or 4+ antiepileptic issues with no "
        "epilepsy code ever",
        92,
        1646,
        lambda w: exp.or_(
            _issues("analgesics", 4),
            exp.and_(_issues("antiepileptics", 4), exp.Not(this=exp.paren(_ever("epilepsy")))),
        ),
    ),
    CmsCondition(
        "psychosis_bipolar",
        "Schizophrenia, bipolar disorder or other psychosis",
        "code ever, or lithium issued in the last 12 months",
        64,
        720,
        lambda w: exp.or_(_ever("psychosis_bipolar"), _issues("lithium", 1)),
    ),
    CmsCondition("stroke_tia", "Stroke or TIA", "code ever", 80, 2063, _code_ever("stroke_tia")),
)
CMS_NAMES: tuple[str, ...] = tuple(c.name for c in CMS_CONDITIONS)


def _flag(condition: exp.Expr) -> exp.Expr:
    """1 when `condition` holds, else 0 (a NULL comparison counts as not holding)."""
    return exp.cast(case_when(condition, ONE.copy(), ZERO.copy()), exp.DataType.Type.INT)


def _frailty_level() -> exp.Expr:
    """The level of the most recent frailty code (3 severe, 2 moderate, 1 mild, 0 none); on a
    tie the more severe wins."""
    far = date_literal(date(1800, 1, 1))

    def last(level: str) -> exp.Expr:
        return exp.Coalesce(this=col(f"frailty_{level}_last", H), expressions=[far.copy()])

    def latest(level: str, *others: str) -> exp.Expr:
        return exp.and_(
            _ever(f"frailty_{level}"),
            *[exp.GTE(this=last(level), expression=last(o)) for o in others],
        )

    return exp.cast(
        exp.Case()
        .when(latest("severe", "moderate", "mild"), exp.convert(3))
        .when(latest("moderate", "mild"), exp.convert(2))
        .when(_ever("frailty_mild"), exp.convert(1))
        .else_(ZERO.copy()),
        exp.DataType.Type.INT,
    )


@dataclass(frozen=True)
class SegmentRule:
    name: str
    test: Callable[[Window], exp.Expr]


@dataclass(frozen=True)
class Segment:
    """A Bridges to Health segment (Lynn et al., Milbank Q 2007;85:185-208) and the rules that
    place a person in it, in the order they are tried."""

    key: str
    label: str
    lynn_number: int
    rules: tuple[SegmentRule, ...]


def _flag_is(name: str) -> Callable[[Window], exp.Expr]:
    return lambda w: exp.EQ(this=col(name, "f"), expression=ONE.copy())


def _at_least(name: str, n: int) -> Callable[[Window], exp.Expr]:
    return lambda w: exp.GTE(this=col(name, "f"), expression=exp.Literal.number(n))


#: Segments in priority order: a person goes in the first whose rule they meet.
SEGMENTS: tuple[Segment, ...] = (
    Segment(
        "short_decline",
        "Short period of decline before dying",
        6,
        (
            SegmentRule("palliative care code in the last 12 months", _flag_is("palliative_12m")),
            SegmentRule(
                "secondary cancer coded in the last 12 months", _flag_is("secondary_cancer_12m")
            ),
        ),
    ),
    Segment(
        "frailty_dementia",
        "Frailty and dementia (long decline)",
        8,
        (
            SegmentRule("dementia", _flag_is("dementia")),
            SegmentRule(
                "severe frailty",
                lambda w: exp.EQ(this=col("frailty_level", "f"), expression=exp.convert(3)),
            ),
            SegmentRule(
                "moderate frailty",
                lambda w: exp.EQ(this=col("frailty_level", "f"), expression=exp.convert(2)),
            ),
        ),
    ),
    Segment(
        "organ_failure",
        "Limited reserve and serious exacerbations (organ failure)",
        7,
        (
            SegmentRule("heart failure", _flag_is("heart_failure")),
            SegmentRule("COPD", _flag_is("copd")),
            SegmentRule("CKD stage 4-5 (latest eGFR under 30)", _flag_is("ckd_stage_4_5")),
            SegmentRule("liver failure or cirrhosis", _flag_is("liver_failure")),
        ),
    ),
    Segment(
        "disability",
        "Stable but serious disability",
        5,
        (
            SegmentRule("learning disability", _flag_is("learning_disability")),
            SegmentRule("physical disability", _flag_is("physical_disability")),
        ),
    ),
    Segment(
        "long_term_conditions",
        "Chronic conditions, normal function",
        4,
        (SegmentRule("long-term condition (Cambridge list)", _at_least("ltc_count", 1)),),
    ),
    Segment(
        "maternal_infant",
        "Maternal and infant health",
        2,
        (
            SegmentRule("pregnancy coded in the last 9 months", _flag_is("pregnant")),
            SegmentRule(
                "infant under 1", lambda w: exp.LT(this=col("age", "f"), expression=ONE.copy())
            ),
        ),
    ),
    Segment(
        "acutely_ill",
        "Acutely ill, likely to recover",
        3,
        (
            SegmentRule(
                "emergency admission in the last 12 months",
                _at_least("prior_emergency_12m_count", 1),
            ),
            SegmentRule("A&E attendance in the last 12 months", _at_least("prior_ae_12m_count", 1)),
        ),
    ),
    Segment(
        "healthy", "Generally healthy", 1, (SegmentRule("none of the above", lambda w: exp.true()),)
    ),
)
SEGMENT_KEYS: tuple[str, ...] = tuple(s.key for s in SEGMENTS)


def _segment_case(window: Window, rule_text: bool) -> exp.Expr:
    case = exp.Case()
    for segment in SEGMENTS:
        for rule in segment.rules:
            case = case.when(
                rule.test(window), exp.convert(rule.name if rule_text else segment.key)
            )
    return case


def _coalesced(name: str, alias: str) -> exp.Expr:
    return bigint(exp.Coalesce(this=col(name, alias), expressions=[ZERO.copy()])).as_(name)


def phm_person_steps(
    index_date: date, codes: PhmCodeLists, extract_date: date | None = None, *, prefix: str
) -> tuple[list[tuple[str, exp.Query]], exp.Query]:
    """`phm_person` in steps, for a large population: the working tables to materialise in
    order (named `{prefix}_1`..`{prefix}_4`, each joining one more per-person summary —
    diagnoses, prescriptions, observations, service use — to the registered list), and the
    query that finishes from the last of them. One join per step keeps a step's memory to one
    summary's hash table, where one query holding all four ran out of a 4.4 GiB budget at 5
    million people (docs/scale.md). Same rows as `phm_person`; the caller drops the tables."""
    window = Window(index_date, extract_date or index_date - timedelta(days=1))
    steps: list[tuple[str, exp.Query]] = []
    previous: exp.Expr = registered(window).subquery("b")
    for number, link in enumerate(_summary_links(window, codes), start=1):
        name = f"{prefix}_{number}"
        steps.append((name, _link(previous, link)))
        previous = exp.to_table(name).as_("b")
    return steps, _finish(window, exp.select(exp.Star()).from_(previous))


def phm_person(
    index_date: date, codes: PhmCodeLists, extract_date: date | None = None
) -> exp.Query:
    """One row per person alive and registered on `index_date`, from data recorded before it:
    demographics and place, the 20 Cambridge conditions, `ltc_count`, `cms_general` and
    `cms_mortality`, segmentation flags, service use in the last year, measurements, and the
    Bridges to Health `segment` with the `segment_rule` that placed them.

    Everyone is included, opted out or not, with `national_data_opt_out` to filter on:
    planning outputs drop them, direct-care worklists keep them. Pseudonymous. One query;
    `phm_person_steps` gives the same rows in steps that bound memory.
    """
    window = Window(index_date, extract_date or index_date - timedelta(days=1))
    joined: exp.Expr = registered(window).subquery("b")
    for link in _summary_links(window, codes):
        joined = _link(joined, link).subquery("b")
    return _finish(window, exp.select(exp.Star()).from_(joined))


#: One per-person summary joined to the registered list: alias, query, and the columns taken.
_SummaryLink = tuple[str, exp.Query, list[exp.Expr]]


def _summary_links(window: Window, codes: PhmCodeLists) -> list[_SummaryLink]:
    return [
        (
            "d",
            diagnoses(window, codes),
            [
                *[col(f"{g}_first", "d").as_(f"{g}_first") for g in DIAGNOSIS_GROUPS],
                *[col(f"{g}_last", "d").as_(f"{g}_last") for g in DIAGNOSIS_GROUPS],
            ],
        ),
        (
            "rx",
            prescriptions(window, codes),
            [
                *[_coalesced(f"{g}_issues_count", "rx") for g in MEDICINE_GROUPS],
                _coalesced("medicines_count", "rx"),
            ],
        ),
        (
            "o",
            observations(window),
            [
                *[
                    col(c, "o").as_(c)
                    for c in (
                        "egfr_latest",
                        "egfr_latest_date",
                        "egfr_previous",
                        "egfr_previous_date",
                        "latest_systolic_bp",
                        "latest_diastolic_bp",
                    )
                ],
                *[
                    _coalesced(c, "o")
                    for c in (
                        "raised_bp_days_24m_count",
                        "bp_recorded_12m",
                        "bmi_recorded_12m",
                        "smoking_recorded_12m",
                    )
                ],
            ],
        ),
        (
            "s",
            service_use(window),
            [
                *[_coalesced(c, "s") for c in (*PRIOR_USE, "prior_gp_6m_count")],
                col("last_gp_contact_date", "s").as_("last_gp_contact_date"),
            ],
        ),
    ]


def _link(left: exp.Expr, link: _SummaryLink) -> exp.Select:
    """Everything of `left` (aliased `b`) and the link's columns, by person (LEFT JOIN)."""
    alias, summary, columns = link
    return (
        exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier("b")), *columns)
        .from_(left)
        .join(
            summary.subquery(alias),
            on=exp.EQ(this=col("person_id", "b"), expression=col("person_id", alias)),
            join_type="LEFT",
        )
    )


def _finish(window: Window, joined: exp.Select) -> exp.Query:
    """Flags, `ltc_count`, CMS scores and the segment, from one row per person with every
    summary joined."""
    keep = [
        "person_id",
        "age",
        "sex",
        "ethnic_category",
        "ethnic_group",
        "lsoa_code",
        "imd_decile",
        "imd_quintile",
        "practice_code",
        "pcn_code",
        "place_code",
        "national_data_opt_out",
    ]
    carried = [
        *[f"{g}_issues_count" for g in MEDICINE_GROUPS],
        "medicines_count",
        "egfr_latest",
        "latest_systolic_bp",
        "latest_diastolic_bp",
        "raised_bp_days_24m_count",
        "bp_recorded_12m",
        "bmi_recorded_12m",
        "smoking_recorded_12m",
        *PRIOR_USE,
        "prior_gp_6m_count",
        "last_gp_contact_date",
    ]
    egfr_under_30 = exp.LT(this=col("egfr_latest", H), expression=exp.convert(30))
    flags = exp.select(
        *[col(c, H).as_(c) for c in keep],
        *[_flag(c.rule(window)).as_(c.name) for c in CMS_CONDITIONS],
        _frailty_level().as_("frailty_level"),
        _flag(_since("palliative_care", window.year_ago)).as_("palliative_12m"),
        _flag(_since("secondary_cancer", window.year_ago)).as_("secondary_cancer_12m"),
        _flag(_ever("liver_failure")).as_("liver_failure"),
        _flag(egfr_under_30).as_("ckd_stage_4_5"),
        _flag(_ever("learning_disability")).as_("learning_disability"),
        _flag(_ever("physical_disability")).as_("physical_disability"),
        _flag(_since("pregnancy", window.days_before(280))).as_("pregnant"),
        _flag(_since("fall", window.days_before(183))).as_("fall_6m"),
        *[col(c, H).as_(c) for c in carried],
    ).from_(joined.subquery(H))
    ltc_terms = [col(c, "f") for c in CMS_NAMES]
    ltc: exp.Expr = ltc_terms[0]
    for term in ltc_terms[1:]:
        ltc = exp.Add(this=ltc, expression=term)

    def weighted(attr: str) -> exp.Expr:
        total: exp.Expr = ZERO.copy()
        for c in CMS_CONDITIONS:
            total = exp.Add(
                this=total,
                expression=exp.Mul(
                    this=col(c.name, "f"), expression=exp.Literal.number(getattr(c, attr))
                ),
            )
        return exp.Div(
            this=exp.cast(total, exp.DataType.Type.DOUBLE), expression=exp.Literal.number("100.0")
        )

    with_ltc = exp.select(
        exp.Column(this=exp.Star(), table=exp.to_identifier("f")),
        exp.cast(ltc, exp.DataType.Type.INT).as_("ltc_count"),
        weighted("general").as_("cms_general"),
        weighted("mortality").as_("cms_mortality"),
    ).from_(flags.subquery("f"))
    return (
        exp.select(
            exp.Column(this=exp.Star(), table=exp.to_identifier("f")),
            _segment_case(window, rule_text=False).as_("segment"),
            _segment_case(window, rule_text=True).as_("segment_rule"),
        )
        .from_(with_ltc.subquery("f"))
        .order_by(col("person_id", "f"))
    )
