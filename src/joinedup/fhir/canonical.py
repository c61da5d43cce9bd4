"""From the shipped views' rows (`v_<view>` tables) to the canonical population tables.

Every rule that turns FHIR into a canonical value is here, as sqlglot syntax trees the engine
renders, in one place:
- **People.** Patients the master person index given to the load holds (by an identifier's
  system and value, or by source system and id, as the index's source and record_id) are one
  person per index person_id, and a Patient it lacks joins an indexed Patient with its NHS
  number. Otherwise a Patient is the person already known by its NHS number, or else by its
  source system (`meta.source`, or `fhir`) and id; otherwise a new person, numbered after the
  highest person id so far. Patients sharing an NHS number are one person unless the index
  holds them as two. A Patient without an NHS
  number still loads, by source system and id, and is counted in the quality report.
- **Codes.** SNOMED CT first, then ICD-10 (stored without the dot); observations by the SNOMED
  or LOINC codes in `ukcore.OBSERVATION_CODES`, with blood pressure panels read through their
  components and HbA1c in % converted to mmol/mol (IFCC = (DCCT - 2.15) x 10.929).
- **Settings.** An encounter's activity type is joinedup's own coding when present, otherwise
  its class and admission method (`ukcore.CLASS_FALLBACK`); a diagnosis's setting is its care
  setting category, otherwise that of its encounter, otherwise `unknown`.

Rows that cannot be placed (no patient, no date, no code joinedup knows) are left out of the
canonical tables and counted by `quality`; the resources stay in the raw store.
"""

from __future__ import annotations

from sqlglot import exp

from joinedup.fhir import ukcore as uk
from joinedup.fhir.sqltree import (
    c,
    case,
    case_map,
    cast,
    coalesce,
    concat,
    count_star,
    day,
    exists,
    first_row,
    insert,
    is_null,
    isin,
    lit,
    not_in,
    not_null,
    ordered,
    scalar,
    select_columns,
    t,
    text_key,
    try_cast,
    union_all,
    values_table,
)
from joinedup.warehouse import JSON_DIALECTS, POPULATION_TABLES, Engine
from joinedup.warehouse.schema import (
    ACTIVITY_TYPES,
    CARE_SETTINGS,
    ETHNIC_CATEGORIES,
    OBSERVATION_TYPES,
)

_ADMISSIONS = ("emergency_admission", "elective_admission", "day_case")
_ENCOUNTER_TYPES = tuple(t for t in ACTIVITY_TYPES if t != uk.SOCIAL_CARE_PACKAGE)
_SETTING_OF_ACTIVITY = {
    "gp_consultation": "primary_care",
    "ae_attendance": "ae",
    "emergency_admission": "inpatient",
    "elective_admission": "inpatient",
    "day_case": "inpatient",
    "outpatient_attendance": "outpatient",
    "community_contact": "community",
    "mental_health_contact": "mental_health",
}
_DEAD_STATUSES = ("entered-in-error", "cancelled")
PERSON_KEY = "fhir_person_key"
#: The master person index given to a load (source, record_id, person_id); empty without one.
#: A session table (`Engine.load_session`), never stored, so not in the registry.
PERSON_INDEX = "fhir_person_index"
ENCOUNTER_ACTIVITY = "fhir_encounter_activity"
OUT = "fhir_out"


def _live(status: exp.Expr) -> exp.Expr:
    """A status that is neither entered in error nor cancelled (NULL: neither is known)."""
    return not_in(status, _DEAD_STATUSES)


def _ods(ods: str, ref: str) -> exp.Expr:
    """An organisation's ODS code: given as a logical reference, or read from the Organization
    a literal reference points at."""
    found = (
        exp.select(c("o.ods_code"))
        .from_(t("v_organization", "o"))
        .where(exp.EQ(this=c("o.organization_key"), expression=c(ref)))
    )
    return coalesce(c(ods), scalar(found))


def _key_id(*candidates: str) -> exp.Expr:
    """A BIGINT key: the first candidate that is a whole number, else `text_key` of the last
    (the resource key), so keys from foreign systems are stable across loads and engines."""
    parts = [try_cast(c(name), "BIGINT") for name in candidates[:-1]]
    parts.append(text_key(c(candidates[-1])))
    return coalesce(*parts)


def _year(text: str) -> exp.Expr:
    return try_cast(exp.Substring(this=c(text), start=lit(1), length=lit(4)), "SMALLINT")


def _with_person(source: str, alias: str, *, left: bool = False) -> exp.Select:
    """SELECT ... FROM source alias [LEFT] JOIN fhir_person_key k USING (patient_key)."""
    return (
        exp.select()
        .from_(t(source, alias))
        .join(t(PERSON_KEY, "k"), using=["patient_key"], join_type="left" if left else None)
    )


def person_keys() -> exp.Query:
    """Each incoming Patient's person id: by the master person index when it holds the
    Patient, else by NHS number, else by source system and id; known ones keep the id they
    have, the rest are numbered after the highest person id so far."""
    source = coalesce(c("source"), lit("fhir"))
    # A Patient's keys as the index knows records: each identifier's system and value, and
    # its source system (meta.source, or fhir) and id.
    keys = union_all(
        exp.select(c("patient_key"), c("system").as_("source"), c("value").as_("record_id"))
        .from_("v_patient_identifier")
        .where(not_null(c("system")), not_null(c("value"))),
        exp.select(c("patient_key"), source.as_("source"), c("id").as_("record_id")).from_(
            "v_patient"
        ),
    )
    indexed = (
        exp.select(c("k.patient_key"), exp.Min(this=c("x.person_id")).as_("index_person_id"))
        .from_(keys.subquery("k"))
        .join(t(PERSON_INDEX, "x"), using=["source", "record_id"])
        .group_by(c("k.patient_key"))
    )
    patients = (
        exp.select(
            c("p.patient_key"),
            source.as_("source_system"),
            c("p.id").as_("source_id"),
            c("p.nhs_number"),
            c("x.index_person_id"),
        )
        .from_(t("v_patient", "p"))
        .join(indexed.subquery("x"), using=["patient_key"], join_type="left")
    )
    # A Patient the index lacks joins the person of an indexed Patient with its NHS number.
    by_number = (
        exp.select(c("nhs_number"), exp.Min(this=c("index_person_id")).as_("number_person_id"))
        .from_("patients")
        .where(not_null(c("nhs_number")), not_null(c("index_person_id")))
        .group_by(c("nhs_number"))
    )
    incoming = (
        exp.select(
            c("p.patient_key"),
            c("p.source_system"),
            c("p.source_id"),
            c("p.nhs_number"),
            c("p.index_person_id"),
            coalesce(
                concat(lit("mpi:"), coalesce(c("p.index_person_id"), c("b.number_person_id"))),
                concat(lit("nhs:"), c("p.nhs_number")),
                concat(lit("src:"), c("p.source_system"), lit("|"), c("p.source_id")),
            ).as_("match_key"),
        )
        .from_(t("patients", "p"))
        .join(by_number.subquery("b"), using=["nhs_number"], join_type="left")
    )
    by_nhs = (
        exp.select(c("nhs_number"), exp.Min(this=c("person_id")).as_("person_id"))
        .from_("identity")
        .where(not_null(c("nhs_number")))
        .group_by(c("nhs_number"))
    )
    by_source = (
        exp.select(
            c("source_system"), c("source_id"), exp.Min(this=c("person_id")).as_("person_id")
        )
        .from_("identity")
        .group_by(c("source_system"), c("source_id"))
    )
    known = (
        exp.select(
            c("i.match_key"),
            exp.Min(this=coalesce(c("n.person_id"), c("s.person_id"))).as_("person_id"),
        )
        .from_(t("incoming", "i"))
        .join(by_nhs.subquery("n"), using=["nhs_number"], join_type="left")
        .join(by_source.subquery("s"), using=["source_system", "source_id"], join_type="left")
        .group_by(c("i.match_key"))
    )
    highest = exp.select(coalesce(exp.Max(this=c("person_id")), lit(0))).from_("identity")
    new_number = exp.Window(
        this=exp.RowNumber(),
        partition_by=[is_null(c("person_id"))],
        order=exp.Order(expressions=[ordered(c("match_key"))]),
    )
    numbered = exp.select(
        c("match_key"),
        coalesce(c("person_id"), exp.Add(this=scalar(highest), expression=new_number)).as_(
            "person_id"
        ),
    ).from_("known")
    return (
        exp.select(
            *(c(f"i.{n}") for n in ("patient_key", "source_system", "source_id", "nhs_number")),
            c("i.match_key"),
            c("n.person_id"),
            c("i.index_person_id"),
        )
        .from_(t("incoming", "i"))
        .join(t("numbered", "n"), using=["match_key"])
        .with_("patients", as_=patients)
        .with_("incoming", as_=incoming)
        .with_("known", as_=known)
        .with_("numbered", as_=numbered)
    )


def _person() -> exp.Query:
    opted_out = exp.and_(
        c("c.national_data_opt_out"),
        exp.EQ(this=c("c.status"), expression=lit("active")),
        exp.EQ(this=coalesce(c("c.provision_type"), lit("deny")), expression=lit("deny")),
    )
    opt_out = (
        exp.select(exp.LogicalOr(this=opted_out))
        .from_(t("v_consent", "c"))
        .join(t(PERSON_KEY, "ck"), using=["patient_key"])
        .where(exp.EQ(this=c("ck.person_id"), expression=c("k.person_id")))
    )
    decile = (
        exp.select(c("a.imd_decile"))
        .from_(t("area", "a"))
        .where(exp.EQ(this=c("a.lsoa_code"), expression=c("p.lsoa_code")))
    )
    month = try_cast(exp.Substring(this=c("p.birth_date"), start=lit(6), length=lit(2)), "SMALLINT")
    ethnic = case(
        (isin(c("p.ethnic_code"), ETHNIC_CATEGORIES), c("p.ethnic_code")), default=lit("Z")
    )
    return (
        _with_person("v_patient", "p")
        .select(
            c("k.person_id"),
            _year("p.birth_date").as_("birth_year"),
            month.as_("birth_month"),
            coalesce(c("p.gender"), lit("unknown")).as_("sex"),
            ethnic.as_("ethnic_category"),
            c("p.lsoa_code"),
            scalar(decile).as_("imd_decile"),
            _ods("p.practice_ods", "p.practice_ref").as_("practice_code"),
            day(c("p.deceased_date")).as_("death_date"),
            coalesce(scalar(opt_out), exp.false()).as_("national_data_opt_out"),
        )
        .where(not_null(_year("p.birth_date")))
        .qualify(
            first_row(
                [c("k.person_id")],
                [ordered(is_null(c("p.nhs_number"))), ordered(c("p.patient_key"))],
            )
        )
    )


def _identity() -> exp.Query:
    """One identity per person and source system, with the Patient's first name, full date of
    birth (only when it gives a day) and postcode (upper case, spaces trimmed)."""
    full_date = exp.EQ(this=exp.Length(this=c("p.birth_date")), expression=lit(10))
    return (
        _with_person("v_patient", "p")
        .select(
            c("k.person_id"),
            c("k.nhs_number"),
            c("k.source_system"),
            c("k.source_id"),
            c("p.given_name"),
            c("p.family_name"),
            case((full_date, day(c("p.birth_date")))).as_("birth_date"),
            exp.Upper(this=exp.Trim(this=c("p.postcode"))).as_("postcode"),
        )
        .qualify(
            first_row(
                [c("k.person_id"), c("k.source_system")],
                [ordered(is_null(c("k.nhs_number"))), ordered(c("k.source_id"))],
            )
        )
    )


def _registration() -> exp.Query:
    practice = _ods("e.organisation_ods", "e.organisation_ref")
    start, end = day(c("e.period_start")), day(c("e.period_end"))
    return (
        _with_person("v_episode_of_care", "e")
        .select(
            c("k.person_id"),
            practice.as_("practice_code"),
            start.as_("start_date"),
            end.as_("end_date"),
        )
        .where(
            exp.EQ(this=c("e.episode_type"), expression=lit(uk.GP_REGISTRATION)),
            _live(c("e.status")),
            not_null(start.copy()),
            not_null(practice.copy()),
        )
        .qualify(
            first_row(
                [c("k.person_id"), start.copy()],
                [ordered(end.copy(), desc=True, nulls_first=True), ordered(practice.copy())],
            )
        )
    )


def _activity_type() -> exp.Expr:
    emergency = exp.or_(
        exp.Like(this=c("e.admission_method"), expression=lit("2%")),
        isin(c("e.priority"), ("EM", "UR", "S")),
    )
    admitted = case((emergency, lit("emergency_admission")), default=lit("elective_admission"))
    ambulatory = case(
        (not_null(c("e.specialty_code")), lit("outpatient_attendance")),
        default=lit("gp_consultation"),
    )
    return case(
        (isin(c("e.activity_type"), _ENCOUNTER_TYPES), c("e.activity_type")),
        (isin(c("e.class_code"), uk.INPATIENT_CLASSES), admitted),
        (exp.EQ(this=c("e.class_code"), expression=lit("AMB")), ambulatory),
        default=case_map(c("e.class_code"), uk.CLASS_FALLBACK),
    )


def encounter_activity() -> exp.Query:
    """Each live encounter with its person, activity type and dates (`fhir_encounter_activity`),
    read by both the activity table and the diagnoses' settings."""
    return (
        _with_person("v_encounter", "e", left=True)
        .select(
            c("e.encounter_key"),
            c("k.person_id"),
            _key_id("e.activity_id", "e.id", "e.encounter_key").as_("activity_id"),
            _activity_type().as_("activity_type"),
            day(c("e.period_start")).as_("start_date"),
            day(c("e.period_end")).as_("end_day"),
            c("e.length_value"),
            c("e.length_unit"),
            _ods("e.provider_ods", "e.provider_ref").as_("provider_code"),
            c("e.specialty_code"),
            c("e.cost"),
        )
        .where(_live(c("e.status")), not_in(coalesce(c("e.status"), lit("")), ("planned",)))
    )


def _days(start: exp.Expr, end: exp.Expr) -> exp.Expr:
    return exp.DateDiff(this=end, expression=start, unit=exp.var("DAY"))


def _activity() -> exp.Query:
    admission = isin(c("activity_type"), _ADMISSIONS)
    fallback_cost = case(
        *(
            (exp.EQ(this=c("activity_type"), expression=lit(k)), lit(float(v)))
            for k, v in uk.FALLBACK_UNIT_COST_GBP.items()
        )
    )
    encounters = (
        exp.select(
            c("activity_id"),
            c("person_id"),
            c("activity_type"),
            c("start_date"),
            case(
                (
                    exp.or_(admission, exp.GT(this=c("end_day"), expression=c("start_date"))),
                    c("end_day"),
                )
            ).as_("end_date"),
            case(
                (
                    exp.EQ(this=c("length_unit"), expression=lit("d")),
                    cast(c("length_value"), "INTEGER"),
                ),
                (
                    exp.and_(admission.copy(), not_null(c("end_day"))),
                    cast(_days(c("start_date"), c("end_day")), "INTEGER"),
                ),
            ).as_("length_of_stay_days"),
            c("provider_code"),
            c("specialty_code"),
            case_map(c("activity_type"), ACTIVITY_TYPES).as_("point_of_delivery"),
            cast(coalesce(c("cost"), cast(fallback_cost, "DOUBLE")), "DECIMAL(12, 2)").as_(
                "cost_gbp"
            ),
        )
        .from_(ENCOUNTER_ACTIVITY)
        .where(not_null(c("person_id")), not_null(c("activity_type")), not_null(c("start_date")))
    )
    start, end = day(c("e.period_start")), day(c("e.period_end"))
    weeks = exp.Ceil(
        this=exp.Div(this=_days(start, coalesce(end, start.copy())), expression=lit(7))
    )
    package_cost = exp.Mul(
        this=lit(uk.FALLBACK_UNIT_COST_GBP[uk.SOCIAL_CARE_PACKAGE]),
        expression=exp.Greatest(this=lit(1), expressions=[weeks]),
    )
    packages = (
        _with_person("v_episode_of_care", "e")
        .select(
            _key_id("e.activity_id", "e.id", "e.episode_key"),
            c("k.person_id"),
            lit(uk.SOCIAL_CARE_PACKAGE),
            start.copy(),
            end.copy(),
            exp.null(),
            _ods("e.organisation_ods", "e.organisation_ref"),
            exp.null(),
            lit(ACTIVITY_TYPES[uk.SOCIAL_CARE_PACKAGE]),
            cast(coalesce(c("e.cost"), package_cost), "DECIMAL(12, 2)"),
        )
        .where(
            exp.EQ(this=c("e.activity_type"), expression=lit(uk.SOCIAL_CARE_PACKAGE)),
            _live(c("e.status")),
            not_null(start.copy()),
        )
    )
    return union_all(encounters, packages)


def _diagnosis() -> exp.Query:
    diagnosed = day(coalesce(c("c.recorded_date"), c("c.onset_date")))
    setting = coalesce(
        case((isin(c("c.setting"), CARE_SETTINGS), c("c.setting"))),
        case_map(c("a.activity_type"), _SETTING_OF_ACTIVITY),
        lit("unknown"),
    )
    return (
        _with_person("v_condition", "c")
        .join(t(ENCOUNTER_ACTIVITY, "a"), using=["encounter_key"], join_type="left")
        .select(
            c("k.person_id"),
            diagnosed.as_("diagnosis_date"),
            case((not_null(c("c.snomed_code")), lit("snomed")), default=lit("icd10")).as_(
                "code_system"
            ),
            coalesce(
                c("c.snomed_code"), exp.func("replace", c("c.icd10_code"), lit("."), lit(""))
            ).as_("code"),
            setting.as_("setting"),
            coalesce(c("c.recorder_ods"), c("a.provider_code")).as_("organisation_code"),
        )
        .where(
            not_null(diagnosed.copy()),
            not_null(coalesce(c("c.snomed_code"), c("c.icd10_code"))),
            not_in(coalesce(c("c.verification"), lit("")), ("entered-in-error", "refuted")),
        )
    )


def _medication() -> exp.Query:
    requests = (
        exp.select(
            c("r.patient_key"),
            coalesce(c("r.bnf_code"), c("m.bnf_code")).as_("bnf"),
            coalesce(c("r.dmd_code"), c("m.dmd_code")).as_("dmd"),
            coalesce(c("r.description"), c("r.text"), c("m.description"), c("m.text")).as_(
                "description"
            ),
            day(coalesce(c("r.validity_start"), c("r.authored_on"))).as_("start_date"),
            day(c("r.validity_end")).as_("end_date"),
            cast(
                exp.Add(this=coalesce(c("r.repeats_allowed"), lit(0)), expression=lit(1)), "INTEGER"
            ).as_("issue_count"),
            coalesce(exp.EQ(this=c("r.course"), expression=lit("continuous")), exp.false()).as_(
                "is_repeat"
            ),
            _ods("r.requester_ods", "r.requester_ref").as_("prescriber_code"),
        )
        .from_(t("v_medication_request", "r"))
        .join(t("v_medication", "m"), using=["medication_key"], join_type="left")
        .where(not_in(c("r.status"), ("entered-in-error", "cancelled", "draft")))
    )
    statements = (
        exp.select(
            c("s.patient_key"),
            coalesce(c("s.bnf_code"), c("m.bnf_code")),
            coalesce(c("s.dmd_code"), c("m.dmd_code")),
            coalesce(c("s.description"), c("s.text"), c("m.description"), c("m.text")),
            day(coalesce(c("s.effective_start"), c("s.effective_date"), c("s.date_asserted"))),
            day(c("s.effective_end")),
            lit(1),
            exp.false(),
            c("s.source_ods"),
        )
        .from_(t("v_medication_statement", "s"))
        .join(t("v_medication", "m"), using=["medication_key"], join_type="left")
        .where(not_in(c("s.status"), ("entered-in-error", "not-taken")))
    )
    code = coalesce(c("q.bnf"), c("q.dmd"))
    return (
        exp.select(
            c("k.person_id"),
            case((not_null(c("q.bnf")), lit("bnf")), default=lit("dmd")).as_("code_system"),
            code.as_("code"),
            coalesce(c("q.description"), code.copy()).as_("description"),
            c("q.start_date"),
            c("q.end_date"),
            c("q.issue_count"),
            c("q.is_repeat"),
            c("q.prescriber_code"),
        )
        .from_(t("requests", "q"))
        .join(t(PERSON_KEY, "k"), using=["patient_key"])
        .where(not_null(code.copy()), not_null(c("q.start_date")))
        .with_("requests", as_=union_all(requests, statements))
    )


def _observation_codes(alias: str) -> exp.Expr:
    rows = [
        (system, code, kind)
        for kind, codes in uk.OBSERVATION_CODES.items()
        for system, code in codes
    ]
    return values_table(rows, alias, ("system", "code", "observation_type"))


def _code_of(alias: str, system: str, code: str) -> exp.Expr:
    return exp.and_(
        exp.EQ(this=c(f"{alias}.system"), expression=lit(system)),
        exp.EQ(this=c(f"{alias}.code"), expression=c(code)),
    )


def _observation() -> exp.Query:
    kept = ("patient_key", "effective_date", "effective_start", "issued", "value", "unit_code",
            "unit", "value_snomed")  # fmt: skip
    typed = (
        exp.select(
            *(c(f"o.{n}") for n in kept),
            coalesce(c("s.observation_type"), c("l.observation_type")).as_("observation_type"),
            case(
                (not_null(c("s.observation_type")), c("o.snomed_code")), default=c("o.loinc_code")
            ).as_("code"),
        )
        .from_(t("v_observation", "o"))
        .join(
            _observation_codes("s"), on=_code_of("s", uk.SNOMED, "o.snomed_code"), join_type="left"
        )
        .join(_observation_codes("l"), on=_code_of("l", uk.LOINC, "o.loinc_code"), join_type="left")
        .where(not_in(c("o.status"), ("entered-in-error", "cancelled")))
    )
    known = (
        exp.select(
            *(c(n) for n in (*kept, "observation_type", "code")),
            coalesce(c("unit_code"), c("unit")).as_("given_unit"),
        )
        .from_("typed")
        .where(not_null(c("observation_type")))
    )
    smoking = {alias: canon for canon, aliases in uk.SMOKING_CODES.items() for alias in aliases}
    is_smoking = exp.EQ(this=c("o.observation_type"), expression=lit("smoking_status"))
    in_percent = exp.and_(
        exp.EQ(this=c("o.observation_type"), expression=lit("hba1c")),
        exp.EQ(this=c("o.given_unit"), expression=lit("%")),
    )
    ifcc = exp.Round(
        this=exp.Mul(
            this=exp.paren(exp.Sub(this=c("o.value"), expression=lit(2.15))), expression=lit(10.929)
        ),
        decimals=lit(1),
    )
    observed = day(coalesce(c("o.effective_date"), c("o.effective_start"), c("o.issued")))
    value_code = case((is_smoking.copy(), case_map(c("o.value_snomed"), smoking)))
    return (
        exp.select(
            c("k.person_id"),
            observed.as_("observation_date"),
            c("o.observation_type"),
            c("o.code"),
            case((is_smoking.copy(), exp.null()), (in_percent, ifcc), default=c("o.value")).as_(
                "value"
            ),
            case(
                (is_smoking.copy(), lit("")),
                (in_percent.copy(), lit("mmol/mol")),
                default=coalesce(
                    c("o.given_unit"), case_map(c("o.observation_type"), OBSERVATION_TYPES)
                ),
            ).as_("unit"),
            value_code.as_("value_code"),
        )
        .from_(t("known", "o"))
        .join(t(PERSON_KEY, "k"), using=["patient_key"])
        .where(
            not_null(observed.copy()),
            exp.or_(
                exp.paren(exp.and_(is_smoking.copy(), not_null(value_code.copy()))),
                exp.paren(exp.and_(exp.Not(this=is_smoking.copy()), not_null(c("o.value")))),
            ),
        )
        .with_("typed", as_=typed)
        .with_("known", as_=known)
    )


def _rtt_pathway() -> exp.Query:
    provider = _ods("r.performer_ods", "r.performer_ref")
    clock_start = day(coalesce(c("r.occurrence_start"), c("r.authored_on")))
    return (
        _with_person("v_service_request", "r")
        .select(
            _key_id("r.pathway_id", "r.id", "r.request_key").as_("pathway_id"),
            c("k.person_id"),
            provider.as_("provider_code"),
            c("r.specialty_code"),
            clock_start.as_("clock_start_date"),
            day(c("r.occurrence_end")).as_("clock_stop_date"),
            case((isin(c("r.stop_reason"), ("admitted", "non_admitted")), c("r.stop_reason"))).as_(
                "stop_reason"
            ),
        )
        .where(
            exp.paren(exp.or_(not_null(c("r.pathway_id")), c("r.is_referral"))),
            _live(c("r.status")),
            not_null(provider.copy()),
            not_null(c("r.specialty_code")),
            not_null(clock_start.copy()),
        )
    )


def _procedure() -> exp.Query:
    code = coalesce(c("p.snomed_code"), c("p.opcs_code"))
    return (
        _with_person("v_procedure", "p")
        .select(
            c("k.person_id"),
            day(coalesce(c("p.performed_date"), c("p.performed_start"))).as_("procedure_date"),
            case((not_null(c("p.snomed_code")), lit("snomed")), default=lit("opcs4")).as_(
                "code_system"
            ),
            code.as_("code"),
            c("p.description"),
            c("p.status"),
            c("p.organisation_ods").as_("organisation_code"),
        )
        .where(
            not_null(code.copy()),
            not_in(coalesce(c("p.status"), lit("")), ("entered-in-error", "not-done")),
        )
    )


def _practitioner_role() -> exp.Query:
    return exp.select(
        c("role_key"),
        c("practitioner_key"),
        _ods("organisation_ods", "organisation_ref").as_("organisation_code"),
        c("role_code"),
        c("role_display"),
        c("specialty_code"),
        c("active"),
        day(c("period_start")).as_("start_date"),
        day(c("period_end")).as_("end_date"),
    ).from_("v_practitioner_role")


#: Tables only FHIR fills (no synthetic counterpart): created by each load.
FHIR_ONLY_TABLES: dict[str, exp.Query] = {
    "procedure": _procedure(),
    "practitioner": select_columns(
        "v_practitioner",
        (
            "practitioner_key",
            "identifier_system",
            "identifier_value",
            "family",
            "given",
            "prefix",
            "gender",
            "qualification",
        ),
    ),
    "practitioner_role": _practitioner_role(),
    "source_organisation": select_columns(
        "v_organization",
        (
            "organization_key",
            "ods_code",
            "name",
            "type_code",
            "type_display",
            "active",
            "part_of",
            "postcode",
        ),
    ),
}


def canonical_queries() -> dict[str, exp.Query]:
    """The query that fills each canonical population table, its columns named as the
    table's."""
    return {
        "person": _person(),
        "identity": _identity(),
        "registration": _registration(),
        "diagnosis": _diagnosis(),
        "activity": _activity(),
        "medication": _medication(),
        "observation": _observation(),
        "rtt_pathway": _rtt_pathway(),
    }


def rebuild(engine: Engine) -> dict[str, int]:
    """Replace every canonical population table (and the FHIR-only tables) with what the
    current resources say; returns rows by table. Rows go in by column name."""
    engine.materialise(PERSON_KEY, person_keys())
    engine.materialise(ENCOUNTER_ACTIVITY, encounter_activity())
    queries = canonical_queries()
    tables = {table.name: table for table in POPULATION_TABLES}
    missing = set(tables) - set(queries)
    if missing:  # a new canonical table needs a rule here before FHIR can fill it
        raise RuntimeError(f"no FHIR rule for canonical table(s) {', '.join(sorted(missing))}")
    counts: dict[str, int] = {}
    for name, query in queries.items():
        columns = tables[name].column_names
        engine.materialise(OUT, query)
        engine.run(exp.delete(name))
        engine.run(insert(name, columns, select_columns(OUT, columns)))
        counts[name] = engine.count(name)
    for name, query in FHIR_ONLY_TABLES.items():
        engine.materialise(name, query)
        counts[name] = engine.count(name)
    return counts


def _tally(section: str, item: str, detail: exp.Expr, rows: exp.Select) -> exp.Select:
    """SELECT section, item, detail, count(*) ... GROUP BY detail: one quality row per
    detail."""
    return rows.select(
        lit(section).as_("section"),
        lit(item).as_("item"),
        detail.as_("detail"),
        count_star().as_("n"),
    ).group_by(detail.copy())


def _system_and_code() -> exp.Expr:
    return concat(
        coalesce(c("first_system"), lit("(none)")),
        lit(" "),
        coalesce(c("first_code"), lit("(none)")),
    )


def _unmapped() -> exp.Query:
    known = (
        exp.select(lit(1))
        .from_(_observation_codes("k"))
        .where(
            exp.or_(
                exp.paren(_code_of("k", uk.SNOMED, "o.snomed_code")),
                exp.paren(_code_of("k", uk.LOINC, "o.loinc_code")),
            )
        )
    )
    panel_snomed = [code for system, code in uk.BP_PANEL_CODES if system == uk.SNOMED]
    panel_loinc = [code for system, code in uk.BP_PANEL_CODES if system == uk.LOINC]
    medication_columns = ("first_system", "first_code", "bnf_code", "dmd_code", "medication_key")
    medicines = union_all(
        select_columns("v_medication_request", medication_columns),
        select_columns("v_medication_statement", medication_columns),
    )
    coded = (
        exp.select(lit(1))
        .from_(t("v_medication", "m"))
        .where(
            exp.EQ(this=c("m.medication_key"), expression=c("r.medication_key")),
            not_null(coalesce(c("m.bnf_code"), c("m.dmd_code"))),
        )
    )
    return union_all(
        _tally(
            "unmapped codes",
            "Condition.code",
            _system_and_code(),
            exp.select()
            .from_("v_condition")
            .where(is_null(c("snomed_code")), is_null(c("icd10_code"))),
        ),
        _tally(
            "unmapped codes",
            "Observation.code",
            coalesce(c("snomed_code"), c("loinc_code"), lit("(other system)")),
            exp.select()
            .from_(t("v_observation", "o"))
            .where(
                exp.EQ(this=c("part"), expression=lit("observation")),
                exp.Not(this=exists(known)),
                not_in(coalesce(c("snomed_code"), lit("")), panel_snomed),
                not_in(coalesce(c("loinc_code"), lit("")), panel_loinc),
            ),
        ),
        _tally(
            "unmapped codes",
            "Medication code",
            _system_and_code(),
            exp.select()
            .from_(medicines.subquery("r"))
            .where(is_null(c("bnf_code")), is_null(c("dmd_code")), exp.Not(this=exists(coded))),
        ),
        _tally(
            "unmapped codes",
            "Encounter.class",
            coalesce(c("e.class_code"), lit("(none)")),
            exp.select()
            .from_(t(ENCOUNTER_ACTIVITY, "a"))
            .join(t("v_encounter", "e"), using=["encounter_key"])
            .where(is_null(c("a.activity_type"))),
        ),
        _tally(
            "unmapped codes",
            "Patient ethnic category",
            c("ethnic_code"),
            exp.select()
            .from_("v_patient")
            .where(not_null(c("ethnic_code")), not_in(c("ethnic_code"), ETHNIC_CATEGORIES)),
        ),
    )


#: A literal reference `Type/id[/_history/v]` and a search `Type?identifier=system|value`.
_LITERAL = r"^([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/.*)?$"
_SEARCH = r"^([A-Za-z]+)\?identifier=(.+)$"


def _group(text: exp.Expr, pattern: str, group: int) -> exp.Expr:
    """The `group` of `pattern`'s match in `text`; empty text when it does not match."""
    return exp.RegexpExtract(this=text, expression=lit(pattern), group=lit(group))


def _nonblank(column: str) -> exp.Expr:
    return exp.NEQ(this=c(column), expression=lit(""))


def _dangling(engine: Engine) -> exp.Query:
    """References that point at no resource in the store, and ODS codes no table knows."""
    d = JSON_DIALECTS[engine.dialect]
    found = exp.RegexpExtractAll(
        this=cast(c("resource"), "VARCHAR"), expression=lit('"reference":"([^"]*)"'), group=lit(1)
    )
    refs = exp.select(c("resource_type").as_("source"), d.unnest(found).as_("ref")).from_(
        "fhir_current"
    )
    ref = c("ref")
    parsed = (
        exp.select(
            c("source"),
            ref,
            _group(ref.copy(), _LITERAL, 1).as_("kind"),
            _group(ref.copy(), _LITERAL, 2).as_("id"),
            _group(ref.copy(), _SEARCH, 1).as_("search_kind"),
            _group(ref.copy(), _SEARCH, 2).as_("token"),
        )
        .from_("refs")
        .where(
            exp.Not(this=exp.StartsWith(this=ref.copy(), expression=lit("#"))),
            exp.Not(this=exp.RegexpLike(this=ref.copy(), expression=lit("^[a-z]+://"))),
        )
    )
    searched = exp.select(c("search_kind")).from_("parsed").where(_nonblank("search_kind"))
    each_identifier = (
        exp.select(
            c("resource_type").as_("kind"),
            d.unnest(d.spread(d.child(c("resource"), "identifier"))).as_("i"),
        )
        .from_("fhir_current")
        .where(c("resource_type").isin(query=searched))
    )
    identifiers = exp.select(
        c("kind"),
        concat(d.child_text(c("i"), "system"), lit("|"), d.child_text(c("i"), "value")).as_(
            "token"
        ),
    ).from_(each_identifier.subquery("u"))
    no_resource = (
        exp.select(lit(1))
        .from_(t("fhir_current", "f"))
        .where(
            exp.EQ(this=c("f.resource_type"), expression=c("p.kind")),
            exp.EQ(this=c("f.id"), expression=c("p.id")),
        )
    )
    no_identifier = (
        exp.select(lit(1))
        .from_(t("identifiers", "i"))
        .where(
            exp.EQ(this=c("i.kind"), expression=c("p.search_kind")),
            exp.EQ(this=c("i.token"), expression=c("p.token")),
        )
    )
    literal, search = _nonblank("p.kind"), _nonblank("p.search_kind")
    unresolved = exp.or_(
        exp.paren(exp.and_(literal, exp.Not(this=exists(no_resource)))),
        exp.paren(
            exp.and_(exp.Not(this=literal.copy()), search, exp.Not(this=exists(no_identifier)))
        ),
        exp.paren(exp.and_(exp.Not(this=literal.copy()), exp.Not(this=search.copy()))),
    )
    target = case(
        (literal.copy(), c("p.kind")),
        (search.copy(), c("p.search_kind")),
        default=lit("unresolvable reference"),
    )
    why = case(
        (literal.copy(), lit("no such resource")),
        (search.copy(), lit("no resource with that identifier")),
        default=lit("not Type/id or Type?identifier="),
    )
    item = concat(c("p.source"), lit(" -> "), target)
    references = (
        exp.select(
            lit("dangling references").as_("section"),
            item.as_("item"),
            why.as_("detail"),
            count_star().as_("n"),
        )
        .from_(t("parsed", "p"))
        .where(unresolved)
        .group_by(item.copy(), why.copy())
        .with_("refs", as_=refs)
        .with_("parsed", as_=parsed)
        .with_("identifiers", as_=identifiers)
    )
    used = union_all(
        exp.select(c("practice_code").as_("code")).from_("person"),
        exp.select(c("provider_code")).from_("activity"),
        exp.select(c("organisation_code")).from_("diagnosis"),
        exp.select(c("prescriber_code")).from_("medication"),
        exp.select(c("practice_code")).from_("registration"),
    )
    listed = union_all(
        exp.select(c("practice_code")).from_("practice"),
        exp.select(c("organisation_code")).from_("organisation"),
        exp.select(c("ods_code")).from_("v_organization").where(not_null(c("ods_code"))),
    )
    codes = (
        exp.select(
            lit("dangling references").as_("section"),
            lit("ODS code").as_("item"),
            lit("not in the footprint or any Organization").as_("detail"),
            exp.Count(this=exp.Distinct(expressions=[c("code")])).as_("n"),
        )
        .from_(used.subquery("u"))
        .where(not_null(c("code")), exp.Not(this=c("code").isin(query=listed)))
    )
    return union_all(references, codes)


def _people() -> exp.Query:
    def fact(item: str, detail: str, count: exp.Expr, source: str, *where: exp.Expr) -> exp.Select:
        return (
            exp.select(
                lit("people").as_("section"),
                lit(item).as_("item"),
                lit(detail).as_("detail"),
                count.as_("n"),
            )
            .from_(source)
            .where(*where)
        )

    merged = exp.Sub(
        this=count_star(), expression=exp.Count(this=exp.Distinct(expressions=[c("person_id")]))
    )
    return union_all(
        fact(
            "Patients without an NHS number",
            "loaded by source system and id",
            count_star(),
            "v_patient",
            is_null(c("nhs_number")),
        ),
        fact(
            "Patients without a birth date",
            "in identity, not in person",
            count_star(),
            "v_patient",
            is_null(_year("birth_date")),
        ),
        fact("Patients merged by NHS number", "several records, one person", merged, PERSON_KEY),
        fact(
            "Patients found in the person index",
            "placed by their person_id",
            count_star(),
            PERSON_KEY,
            not_null(c("index_person_id")),
        ),
        fact(
            "LSOAs outside the footprint",
            "no IMD decile",
            count_star(),
            "person",
            not_null(c("lsoa_code")),
            is_null(c("imd_decile")),
        ),
    )


def quality(engine: Engine) -> list[tuple[str, str, str, int]]:
    """Unmapped codes, dangling references and people facts, as (section, item, detail, n);
    zero counts are left out."""
    rows = [
        row
        for query in (_unmapped(), _dangling(engine), _people())
        for row in engine.execute(query).to_pylist()
    ]
    return [
        (str(r["section"]), str(r["item"]), str(r["detail"]), int(r["n"])) for r in rows if r["n"]
    ]
