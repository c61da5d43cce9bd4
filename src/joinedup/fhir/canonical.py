"""From the shipped views' rows (`v_<view>` tables) to the canonical population tables.

Every rule that turns FHIR into a canonical value is here, as SQL (DuckDB), in one place:
- **People.** A Patient is the person already known by its NHS number, or else by its source
  system (`meta.source`, or `fhir`) and id; otherwise a new person, numbered after the highest
  person id so far. Patients sharing an NHS number are one person. A Patient without an NHS
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

from collections.abc import Sequence

from joinedup.fhir import ukcore as uk
from joinedup.fhir.sqltext import case_map as _case
from joinedup.fhir.sqltext import in_list as _in
from joinedup.fhir.sqltext import quote as _q
from joinedup.warehouse import POPULATION_TABLES, Engine
from joinedup.warehouse.schema import (
    ACTIVITY_TYPES,
    CARE_SETTINGS,
    ETHNIC_CATEGORIES,
    OBSERVATION_TYPES,
)


def _values(rows: Sequence[tuple[str, ...]]) -> str:
    body = ", ".join("(" + ", ".join(_q(v) for v in row) + ")" for row in rows)
    return f"(VALUES {body})"


def _day(column: str) -> str:
    return f"TRY_CAST(substr({column}, 1, 10) AS DATE)"


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
_DEAD_STATUSES = _in(("entered-in-error", "cancelled"))


def _ods(ods: str, ref: str) -> str:
    """An organisation's ODS code: given as a logical reference, or read from the Organization
    a literal reference points at."""
    return (
        f"coalesce({ods}, (SELECT o.ods_code FROM v_organization o "
        f"WHERE o.organization_key = {ref}))"
    )


def _key_id(*candidates: str) -> str:
    """A BIGINT key: the first candidate that is a whole number, else a 62-bit hash of the
    last (the resource key), so keys from foreign systems are stable across loads."""
    parts = [f"TRY_CAST({c} AS BIGINT)" for c in candidates[:-1]]
    parts.append(f"CAST(hash({candidates[-1]}) % 4611686018427387904 AS BIGINT)")
    return f"coalesce({', '.join(parts)})"


PERSON_KEYS = """
CREATE OR REPLACE TABLE fhir_person_key AS
WITH incoming AS (
  SELECT patient_key, coalesce(source, 'fhir') AS source_system, id AS source_id, nhs_number,
         coalesce('nhs:' || nhs_number, 'src:' || coalesce(source, 'fhir') || '|' || id)
           AS match_key
  FROM v_patient),
known AS (
  SELECT i.match_key, min(coalesce(n.person_id, s.person_id)) AS person_id
  FROM incoming i
  LEFT JOIN (SELECT nhs_number, min(person_id) AS person_id FROM identity
             WHERE nhs_number IS NOT NULL GROUP BY 1) n USING (nhs_number)
  LEFT JOIN (SELECT source_system, source_id, min(person_id) AS person_id FROM identity
             GROUP BY 1, 2) s USING (source_system, source_id)
  GROUP BY 1),
numbered AS (
  SELECT match_key, coalesce(person_id, (SELECT coalesce(max(person_id), 0) FROM identity)
         + row_number() OVER (PARTITION BY person_id IS NULL ORDER BY match_key)) AS person_id
  FROM known)
SELECT i.*, n.person_id FROM incoming i JOIN numbered n USING (match_key)
"""


def _person() -> str:
    return f"""
SELECT k.person_id,
  TRY_CAST(substr(p.birth_date, 1, 4) AS SMALLINT) AS birth_year,
  TRY_CAST(substr(p.birth_date, 6, 2) AS SMALLINT) AS birth_month,
  coalesce(p.gender, 'unknown') AS sex,
  CASE WHEN p.ethnic_code IN {_in(ETHNIC_CATEGORIES)} THEN p.ethnic_code ELSE 'Z' END,
  p.lsoa_code,
  (SELECT a.imd_decile FROM area a WHERE a.lsoa_code = p.lsoa_code),
  {_ods("p.practice_ods", "p.practice_ref")},
  {_day("p.deceased_date")},
  coalesce((SELECT bool_or(c.national_data_opt_out AND c.status = 'active'
                           AND coalesce(c.provision_type, 'deny') = 'deny')
            FROM v_consent c JOIN fhir_person_key ck USING (patient_key)
            WHERE ck.person_id = k.person_id), false)
FROM v_patient p JOIN fhir_person_key k USING (patient_key)
WHERE TRY_CAST(substr(p.birth_date, 1, 4) AS SMALLINT) IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY k.person_id
                           ORDER BY p.nhs_number IS NULL, p.patient_key) = 1
"""


IDENTITY = """
SELECT person_id, nhs_number, source_system, source_id FROM fhir_person_key
QUALIFY row_number() OVER (PARTITION BY person_id, source_system
                           ORDER BY nhs_number IS NULL, source_id) = 1
"""


def _registration() -> str:
    return f"""
SELECT k.person_id, {_ods("e.organisation_ods", "e.organisation_ref")} AS practice_code,
       {_day("e.period_start")} AS start_date, {_day("e.period_end")} AS end_date
FROM v_episode_of_care e JOIN fhir_person_key k USING (patient_key)
WHERE e.episode_type = {_q(uk.GP_REGISTRATION)} AND e.status NOT IN {_DEAD_STATUSES}
  AND {_day("e.period_start")} IS NOT NULL AND practice_code IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY k.person_id, start_date
                           ORDER BY end_date DESC NULLS FIRST, practice_code) = 1
"""


def _activity_type() -> str:
    fallback = _case("e.class_code", uk.CLASS_FALLBACK)
    return f"""CASE
  WHEN e.activity_type IN {_in(_ENCOUNTER_TYPES)} THEN e.activity_type
  WHEN e.class_code IN {_in(uk.INPATIENT_CLASSES)} THEN
    CASE WHEN e.admission_method LIKE '2%' OR e.priority IN ('EM', 'UR', 'S')
         THEN 'emergency_admission' ELSE 'elective_admission' END
  WHEN e.class_code = 'AMB' THEN
    CASE WHEN e.specialty_code IS NOT NULL THEN 'outpatient_attendance'
         ELSE 'gp_consultation' END
  ELSE {fallback} END"""


def _encounter_activity() -> str:
    return f"""
CREATE OR REPLACE TABLE fhir_encounter_activity AS
SELECT e.encounter_key, k.person_id,
  {_key_id("e.activity_id", "e.id", "e.encounter_key")} AS activity_id,
  {_activity_type()} AS activity_type,
  {_day("e.period_start")} AS start_date, {_day("e.period_end")} AS end_day,
  e.length_value, e.length_unit,
  {_ods("e.provider_ods", "e.provider_ref")} AS provider_code,
  e.specialty_code, e.cost
FROM v_encounter e LEFT JOIN fhir_person_key k USING (patient_key)
WHERE e.status NOT IN {_DEAD_STATUSES} AND coalesce(e.status, '') NOT IN ('planned')
"""


def _activity() -> str:
    admission = _in(_ADMISSIONS)
    costs = _case("activity_type", {k: str(v) for k, v in uk.FALLBACK_UNIT_COST_GBP.items()})
    return f"""
SELECT activity_id, person_id, activity_type, start_date,
  CASE WHEN activity_type IN {admission} OR end_day > start_date THEN end_day END AS end_date,
  CASE WHEN length_unit = 'd' THEN CAST(length_value AS INTEGER)
       WHEN activity_type IN {admission} AND end_day IS NOT NULL
       THEN CAST(date_diff('day', start_date, end_day) AS INTEGER) END,
  provider_code, specialty_code,
  {_case("activity_type", ACTIVITY_TYPES)},
  CAST(coalesce(cost, CAST({costs} AS DOUBLE)) AS DECIMAL(12, 2))
FROM fhir_encounter_activity
WHERE person_id IS NOT NULL AND activity_type IS NOT NULL AND start_date IS NOT NULL
UNION ALL
SELECT {_key_id("e.activity_id", "e.id", "e.episode_key")}, k.person_id,
  {_q(uk.SOCIAL_CARE_PACKAGE)}, {_day("e.period_start")}, {_day("e.period_end")}, NULL,
  {_ods("e.organisation_ods", "e.organisation_ref")}, NULL,
  {_q(ACTIVITY_TYPES[uk.SOCIAL_CARE_PACKAGE])},
  CAST(coalesce(e.cost, {uk.FALLBACK_UNIT_COST_GBP[uk.SOCIAL_CARE_PACKAGE]}
       * greatest(1, ceil(date_diff('day', {_day("e.period_start")},
             coalesce({_day("e.period_end")}, {_day("e.period_start")})) / 7)))
       AS DECIMAL(12, 2))
FROM v_episode_of_care e JOIN fhir_person_key k USING (patient_key)
WHERE e.activity_type = {_q(uk.SOCIAL_CARE_PACKAGE)} AND e.status NOT IN {_DEAD_STATUSES}
  AND {_day("e.period_start")} IS NOT NULL
"""


def _diagnosis() -> str:
    setting_of = _case("a.activity_type", _SETTING_OF_ACTIVITY)
    return f"""
SELECT k.person_id, {_day("coalesce(c.recorded_date, c.onset_date)")} AS diagnosis_date,
  CASE WHEN c.snomed_code IS NOT NULL THEN 'snomed' ELSE 'icd10' END,
  coalesce(c.snomed_code, replace(c.icd10_code, '.', '')),
  coalesce(CASE WHEN c.setting IN {_in(CARE_SETTINGS)} THEN c.setting END, {setting_of},
           'unknown'),
  coalesce(c.recorder_ods, a.provider_code)
FROM v_condition c JOIN fhir_person_key k USING (patient_key)
LEFT JOIN fhir_encounter_activity a USING (encounter_key)
WHERE diagnosis_date IS NOT NULL AND coalesce(c.snomed_code, c.icd10_code) IS NOT NULL
  AND coalesce(c.verification, '') NOT IN ('entered-in-error', 'refuted')
"""


def _medication() -> str:
    return f"""
WITH requests AS (
  SELECT r.patient_key, coalesce(r.bnf_code, m.bnf_code) AS bnf,
    coalesce(r.dmd_code, m.dmd_code) AS dmd,
    coalesce(r.description, r.text, m.description, m.text) AS description,
    {_day("coalesce(r.validity_start, r.authored_on)")} AS start_date,
    {_day("r.validity_end")} AS end_date,
    CAST(coalesce(r.repeats_allowed, 0) + 1 AS INTEGER) AS issue_count,
    coalesce(r.course = 'continuous', false) AS is_repeat,
    {_ods("r.requester_ods", "r.requester_ref")} AS prescriber_code
  FROM v_medication_request r LEFT JOIN v_medication m USING (medication_key)
  WHERE r.status NOT IN ('entered-in-error', 'cancelled', 'draft')
  UNION ALL
  SELECT s.patient_key, coalesce(s.bnf_code, m.bnf_code), coalesce(s.dmd_code, m.dmd_code),
    coalesce(s.description, s.text, m.description, m.text),
    {_day("coalesce(s.effective_start, s.effective_date, s.date_asserted)")},
    {_day("s.effective_end")}, 1, false, s.source_ods
  FROM v_medication_statement s LEFT JOIN v_medication m USING (medication_key)
  WHERE s.status NOT IN ('entered-in-error', 'not-taken'))
SELECT k.person_id, CASE WHEN bnf IS NOT NULL THEN 'bnf' ELSE 'dmd' END,
  coalesce(bnf, dmd), coalesce(description, coalesce(bnf, dmd)), start_date, end_date,
  issue_count, is_repeat, prescriber_code
FROM requests JOIN fhir_person_key k USING (patient_key)
WHERE coalesce(bnf, dmd) IS NOT NULL AND start_date IS NOT NULL
"""


def _observation_codes() -> str:
    rows = [
        (system, code, kind)
        for kind, codes in uk.OBSERVATION_CODES.items()
        for system, code in codes
    ]
    return _values(rows)


def _observation() -> str:
    smoking = {alias: canon for canon, aliases in uk.SMOKING_CODES.items() for alias in aliases}
    units = _case("t.observation_type", OBSERVATION_TYPES)
    return f"""
WITH typed AS (
  SELECT o.*, coalesce(s.observation_type, l.observation_type) AS observation_type,
    CASE WHEN s.observation_type IS NOT NULL THEN o.snomed_code ELSE o.loinc_code END AS code
  FROM v_observation o
  LEFT JOIN {_observation_codes()} AS s(system, code, observation_type)
    ON s.system = {_q(uk.SNOMED)} AND s.code = o.snomed_code
  LEFT JOIN {_observation_codes()} AS l(system, code, observation_type)
    ON l.system = {_q(uk.LOINC)} AND l.code = o.loinc_code
  WHERE o.status NOT IN ('entered-in-error', 'cancelled')),
t AS (
  SELECT typed.*, coalesce(unit_code, unit) AS given_unit FROM typed
  WHERE observation_type IS NOT NULL)
SELECT k.person_id, {_day("coalesce(t.effective_date, t.effective_start, t.issued)")} AS day,
  t.observation_type, t.code,
  CASE WHEN t.observation_type = 'smoking_status' THEN NULL
       WHEN t.observation_type = 'hba1c' AND t.given_unit = '%'
       THEN round((t.value - 2.15) * 10.929, 1) ELSE t.value END,
  CASE WHEN t.observation_type = 'smoking_status' THEN ''
       WHEN t.observation_type = 'hba1c' AND t.given_unit = '%' THEN 'mmol/mol'
       ELSE coalesce(t.given_unit, {units}) END,
  CASE WHEN t.observation_type = 'smoking_status' THEN {_case("t.value_snomed", smoking)} END
    AS value_code
FROM t JOIN fhir_person_key k USING (patient_key)
WHERE day IS NOT NULL AND (
  (t.observation_type = 'smoking_status' AND value_code IS NOT NULL)
  OR (t.observation_type <> 'smoking_status' AND t.value IS NOT NULL))
"""


def _rtt_pathway() -> str:
    return f"""
SELECT {_key_id("r.pathway_id", "r.id", "r.request_key")}, k.person_id,
  {_ods("r.performer_ods", "r.performer_ref")} AS provider_code, r.specialty_code,
  {_day("coalesce(r.occurrence_start, r.authored_on)")} AS clock_start,
  {_day("r.occurrence_end")},
  CASE WHEN r.stop_reason IN ('admitted', 'non_admitted') THEN r.stop_reason END
FROM v_service_request r JOIN fhir_person_key k USING (patient_key)
WHERE (r.pathway_id IS NOT NULL OR r.is_referral) AND r.status NOT IN {_DEAD_STATUSES}
  AND provider_code IS NOT NULL AND r.specialty_code IS NOT NULL AND clock_start IS NOT NULL
"""


#: Tables only FHIR fills (no synthetic counterpart): created by each load.
FHIR_ONLY_TABLES: dict[str, str] = {
    "procedure": f"""
SELECT k.person_id, {_day("coalesce(p.performed_date, p.performed_start)")} AS procedure_date,
  CASE WHEN p.snomed_code IS NOT NULL THEN 'snomed' ELSE 'opcs4' END AS code_system,
  coalesce(p.snomed_code, p.opcs_code) AS code, p.description, p.status,
  p.organisation_ods AS organisation_code
FROM v_procedure p JOIN fhir_person_key k USING (patient_key)
WHERE coalesce(p.snomed_code, p.opcs_code) IS NOT NULL
  AND coalesce(p.status, '') NOT IN ('entered-in-error', 'not-done')
""",
    "practitioner": """
SELECT practitioner_key, identifier_system, identifier_value, family, given, prefix, gender,
  qualification FROM v_practitioner
""",
    "practitioner_role": f"""
SELECT role_key, practitioner_key, {_ods("organisation_ods", "organisation_ref")}
  AS organisation_code, role_code, role_display, specialty_code, active,
  {_day("period_start")} AS start_date, {_day("period_end")} AS end_date FROM v_practitioner_role
""",
    "source_organisation": """
SELECT organization_key, ods_code, name, type_code, type_display, active, part_of, postcode
FROM v_organization
""",
}


def rebuild(engine: Engine) -> dict[str, int]:
    """Replace every canonical population table (and the FHIR-only tables) with what the
    current resources say; returns rows by table."""
    engine.run(PERSON_KEYS)
    engine.run(_encounter_activity())
    queries = {
        "person": _person(),
        "identity": IDENTITY,
        "registration": _registration(),
        "diagnosis": _diagnosis(),
        "activity": _activity(),
        "medication": _medication(),
        "observation": _observation(),
        "rtt_pathway": _rtt_pathway(),
    }
    missing = {t.name for t in POPULATION_TABLES} - set(queries)
    if missing:  # a new canonical table needs a rule here before FHIR can fill it
        raise RuntimeError(f"no FHIR rule for canonical table(s) {', '.join(sorted(missing))}")
    counts: dict[str, int] = {}
    for name, query in queries.items():
        engine.run(f"CREATE OR REPLACE TABLE fhir_out AS {query}")
        engine.run(f"DELETE FROM {name}")
        engine.run(f"INSERT INTO {name} SELECT * FROM fhir_out")
        counts[name] = engine.count(name)
    for name, query in FHIR_ONLY_TABLES.items():
        engine.run(f"CREATE OR REPLACE TABLE {name} AS {query}")
        counts[name] = engine.count(name)
    return counts


def _unmapped() -> str:
    panel_snomed = _in(c for s, c in uk.BP_PANEL_CODES if s == uk.SNOMED)
    panel_loinc = _in(c for s, c in uk.BP_PANEL_CODES if s == uk.LOINC)
    known = _observation_codes()
    return f"""
SELECT 'unmapped codes', 'Condition.code', coalesce(first_system, '(none)') || ' ' ||
       coalesce(first_code, '(none)'), count(*)
FROM v_condition WHERE snomed_code IS NULL AND icd10_code IS NULL GROUP BY 3
UNION ALL
SELECT 'unmapped codes', 'Observation.code',
       coalesce(snomed_code, loinc_code, '(other system)'), count(*)
FROM v_observation o
WHERE part = 'observation' AND NOT EXISTS (SELECT 1 FROM {known} AS t(system, code, kind) WHERE
      (t.system = {_q(uk.SNOMED)} AND t.code = o.snomed_code)
      OR (t.system = {_q(uk.LOINC)} AND t.code = o.loinc_code))
  AND coalesce(snomed_code, '') NOT IN {panel_snomed}
  AND coalesce(loinc_code, '') NOT IN {panel_loinc}
GROUP BY 3
UNION ALL
SELECT 'unmapped codes', 'Medication code', coalesce(first_system, '(none)') || ' ' ||
       coalesce(first_code, '(none)'), count(*)
FROM (SELECT first_system, first_code, bnf_code, dmd_code, medication_key
      FROM v_medication_request UNION ALL
      SELECT first_system, first_code, bnf_code, dmd_code, medication_key
      FROM v_medication_statement) r
WHERE bnf_code IS NULL AND dmd_code IS NULL AND NOT EXISTS (
  SELECT 1 FROM v_medication m WHERE m.medication_key = r.medication_key
  AND coalesce(m.bnf_code, m.dmd_code) IS NOT NULL)
GROUP BY 3
UNION ALL
SELECT 'unmapped codes', 'Encounter.class', coalesce(e.class_code, '(none)'), count(*)
FROM fhir_encounter_activity a JOIN v_encounter e USING (encounter_key)
WHERE a.activity_type IS NULL GROUP BY 3
UNION ALL
SELECT 'unmapped codes', 'Patient ethnic category', ethnic_code, count(*) FROM v_patient
WHERE ethnic_code IS NOT NULL AND ethnic_code NOT IN {_in(ETHNIC_CATEGORIES)} GROUP BY 3
"""


_DANGLING = r"""
WITH refs AS (
  SELECT resource_type AS source,
         unnest(regexp_extract_all(CAST(resource AS VARCHAR), '"reference":"([^"]*)"', 1)) AS ref
  FROM fhir_current),
parsed AS (
  SELECT source, ref,
    regexp_extract(ref, '^([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/.*)?$', 1) AS kind,
    regexp_extract(ref, '^([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/.*)?$', 2) AS id,
    regexp_extract(ref, '^([A-Za-z]+)\?identifier=(.+)$', 1) AS search_kind,
    regexp_extract(ref, '^([A-Za-z]+)\?identifier=(.+)$', 2) AS token
  FROM refs WHERE NOT starts_with(ref, '#') AND NOT regexp_matches(ref, '^[a-z]+://')),
identifiers AS (
  SELECT resource_type AS kind,
         json_extract_string(i, '$.system') || '|' || json_extract_string(i, '$.value') AS token
  FROM fhir_current, unnest(CASE json_type(resource, '$.identifier')
      WHEN 'ARRAY' THEN CAST(json_extract(resource, '$.identifier') AS JSON[])
      WHEN 'OBJECT' THEN [json_extract(resource, '$.identifier')] ELSE [] END) AS u(i)
  WHERE resource_type IN (SELECT search_kind FROM parsed WHERE search_kind <> ''))
SELECT 'dangling references',
  source || ' -> ' || CASE WHEN kind <> '' THEN kind WHEN search_kind <> '' THEN search_kind
                           ELSE 'unresolvable reference' END,
  CASE WHEN kind <> '' THEN 'no such resource'
       WHEN search_kind <> '' THEN 'no resource with that identifier'
       ELSE 'not Type/id or Type?identifier=' END,
  count(*)
FROM parsed p
WHERE (p.kind <> '' AND NOT EXISTS (
         SELECT 1 FROM fhir_current c WHERE c.resource_type = p.kind AND c.id = p.id))
   OR (p.kind = '' AND p.search_kind <> '' AND NOT EXISTS (
         SELECT 1 FROM identifiers i WHERE i.kind = p.search_kind AND i.token = p.token))
   OR (p.kind = '' AND p.search_kind = '')
GROUP BY 2, 3
UNION ALL
SELECT 'dangling references', 'ODS code', 'not in the footprint or any Organization',
  count(DISTINCT code) FROM (SELECT practice_code AS code FROM person UNION ALL
  SELECT provider_code FROM activity UNION ALL SELECT organisation_code FROM diagnosis
  UNION ALL SELECT prescriber_code FROM medication UNION ALL SELECT practice_code
  FROM registration) WHERE code IS NOT NULL AND code NOT IN (SELECT practice_code FROM
  practice UNION ALL SELECT organisation_code FROM organisation UNION ALL SELECT ods_code
  FROM v_organization WHERE ods_code IS NOT NULL)
"""


_PEOPLE = """
SELECT 'people', 'Patients without an NHS number', 'loaded by source system and id',
       count(*) FROM v_patient WHERE nhs_number IS NULL
UNION ALL
SELECT 'people', 'Patients without a birth date', 'in identity, not in person', count(*)
FROM v_patient WHERE TRY_CAST(substr(birth_date, 1, 4) AS SMALLINT) IS NULL
UNION ALL
SELECT 'people', 'Patients merged by NHS number', 'several records, one person',
       count(*) - count(DISTINCT person_id) FROM fhir_person_key
UNION ALL
SELECT 'people', 'LSOAs outside the footprint', 'no IMD decile', count(*) FROM person
WHERE lsoa_code IS NOT NULL AND imd_decile IS NULL
"""


def quality(engine: Engine) -> list[tuple[str, str, str, int]]:
    """Unmapped codes, dangling references and people facts, as (section, item, detail, n);
    zero counts are left out."""
    rows = [row for sql in (_unmapped(), _DANGLING, _PEOPLE) for row in engine.fetch(sql)]
    return [(str(s), str(i), str(d), int(n)) for s, i, d, n in rows if n]
