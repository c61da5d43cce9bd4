"""`joinedup export fhir`: the warehouse's population as UK Core-shaped FHIR R4 bulk NDJSON.

One file per resource type, as the FHIR Bulk Data `$export` writes them. Each resource is built
inside DuckDB (`json_object`, with nulls stripped by an RFC 7396 merge patch, as FHIR JSON allows
no nulls) and streamed out in batches, so memory stays flat however large the population.

| table | resource |
|---|---|
| person, identity | Patient (NHS number, ethnic category, LSOA, GP, death) |
| person.national_data_opt_out | Consent (National Data Opt-out policy, provision deny) |
| registration | EpisodeOfCare (joinedup episode type `gp-registration`) |
| activity (social care packages) | EpisodeOfCare (activity type, cost) |
| activity (everything else) | Encounter (class, activity type, admission method, specialty, cost) |
| diagnosis | Condition (SNOMED or ICD-10, care setting, recording organisation) |
| medication | MedicationRequest (BNF, course of therapy, validity period, repeats) |
| observation | Observation (SNOMED, UCUM quantity or coded smoking finding) |
| rtt_pathway | ServiceRequest (referral, provider, treatment function, clock period) |
| practice, organisation | Organization (ODS code) |
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import IO, cast

from joinedup.errors import ConfigurationError
from joinedup.fhir import ukcore as uk
from joinedup.fhir.sqltext import case_map as _case
from joinedup.fhir.sqltext import quote as _q
from joinedup.warehouse import Engine
from joinedup.warehouse.schema import ETHNIC_CATEGORIES


def _coding(system: str, code: str, display: str | None = None) -> str:
    parts = f"'system', {_q(system)}, 'code', {code}"
    if display is not None:
        parts += f", 'display', {display}"
    return f"json_object({parts})"


def _concept(system: str, code: str, display: str | None = None) -> str:
    return f"json_object('coding', json_array({_coding(system, code, display)}))"


def _ods(code: str) -> str:
    return (
        f"CASE WHEN {code} IS NULL THEN NULL ELSE json_object('type', 'Organization', "
        f"'identifier', json_object('system', {_q(uk.ODS_ORGANISATION)}, 'value', {code})) END"
    )


def _patient(column: str = "person_id") -> str:
    return f"json_object('reference', 'Patient/' || {column})"


def _cost(column: str) -> str:
    return (
        f"json_array(json_object('url', {_q(uk.COST_EXTENSION)}, 'valueMoney', "
        f"json_object('value', {column}, 'currency', 'GBP')))"
    )


_ETHNIC_DISPLAY = _case("p.ethnic_category", ETHNIC_CATEGORIES)

PATIENT = f"""
SELECT 'Patient' AS resource_type, json_object(
  'resourceType', 'Patient',
  'id', CAST(p.person_id AS VARCHAR),
  'meta', json_object('source', i.source_system),
  'extension', json_array(json_object('url', {_q(uk.ETHNIC_CATEGORY_EXTENSION)},
      'valueCodeableConcept',
      {_concept(uk.ETHNIC_CATEGORY_SYSTEM, "p.ethnic_category", _ETHNIC_DISPLAY)})),
  'identifier', CASE WHEN i.nhs_number IS NULL THEN NULL ELSE json_array(json_object(
      'system', {_q(uk.NHS_NUMBER)}, 'value', i.nhs_number)) END,
  'gender', p.sex,
  'birthDate', printf('%04d-%02d', p.birth_year, p.birth_month),
  'deceasedDateTime', p.death_date,
  'address', CASE WHEN p.lsoa_code IS NULL THEN NULL ELSE json_array(json_object('use', 'home',
      'extension', json_array(json_object('url', {_q(uk.LSOA_EXTENSION)},
      'valueCode', p.lsoa_code)))) END,
  'generalPractitioner', CASE WHEN p.practice_code IS NULL THEN NULL
      ELSE json_array({_ods("p.practice_code")}) END
) AS resource
FROM person p
LEFT JOIN (SELECT person_id, arg_min(source_system, source_system) AS source_system,
           arg_min(nhs_number, source_system) AS nhs_number FROM identity GROUP BY person_id) i
  USING (person_id)
"""

CONSENT = f"""
SELECT 'Consent' AS resource_type, json_object(
  'resourceType', 'Consent',
  'id', 'ndop-' || person_id,
  'status', 'active',
  'scope', {_concept("http://terminology.hl7.org/CodeSystem/consentscope", "'research'")},
  'category', json_array({_concept(uk.LOINC, "'59284-0'", "'Patient Consent'")}),
  'patient', {_patient()},
  'policy', json_array(json_object('uri', {_q(uk.NATIONAL_DATA_OPT_OUT)})),
  'provision', json_object('type', 'deny')
) AS resource
FROM person WHERE national_data_opt_out
"""

REGISTRATION = f"""
SELECT 'EpisodeOfCare' AS resource_type, json_object(
  'resourceType', 'EpisodeOfCare',
  'id', 'reg-' || person_id || '-' || strftime(start_date, '%Y%m%d'),
  'status', CASE WHEN end_date IS NULL THEN 'active' ELSE 'finished' END,
  'type', json_array({_concept(uk.EPISODE_TYPE_SYSTEM, _q(uk.GP_REGISTRATION))}),
  'patient', {_patient()},
  'managingOrganization', {_ods("practice_code")},
  'period', json_object('start', start_date, 'end', end_date)
) AS resource
FROM registration
"""

SOCIAL_CARE = f"""
SELECT 'EpisodeOfCare' AS resource_type, json_object(
  'resourceType', 'EpisodeOfCare',
  'id', CAST(activity_id AS VARCHAR),
  'extension', {_cost("cost_gbp")},
  'identifier', json_array(json_object('system', {_q(uk.ACTIVITY_ID_SYSTEM)},
      'value', CAST(activity_id AS VARCHAR))),
  'status', CASE WHEN end_date IS NULL THEN 'active' ELSE 'finished' END,
  'type', json_array({_concept(uk.ACTIVITY_TYPE_SYSTEM, "activity_type")}),
  'patient', {_patient()},
  'managingOrganization', {_ods("provider_code")},
  'period', json_object('start', start_date, 'end', end_date)
) AS resource
FROM activity WHERE activity_type = {_q(uk.SOCIAL_CARE_PACKAGE)}
"""

_ADMISSION = (
    f"CASE WHEN activity_type IN ({', '.join(_q(k) for k in uk.ADMISSION_METHOD)}) THEN "
    f"json_object('extension', json_array(json_object('url', "
    f"{_q(uk.ADMISSION_METHOD_EXTENSION)}, 'valueCodeableConcept', "
    f"{_concept(uk.ADMISSION_METHOD_SYSTEM, _case('activity_type', uk.ADMISSION_METHOD))}))) "
    "END"
)

ENCOUNTER = f"""
SELECT 'Encounter' AS resource_type, json_object(
  'resourceType', 'Encounter',
  'id', CAST(activity_id AS VARCHAR),
  'extension', {_cost("cost_gbp")},
  'identifier', json_array(json_object('system', {_q(uk.ACTIVITY_ID_SYSTEM)},
      'value', CAST(activity_id AS VARCHAR))),
  'status', 'finished',
  'class', json_object('system', {_q(uk.ACT_CODE)},
      'code', {_case("activity_type", uk.ENCOUNTER_CLASS)}),
  'type', json_array({_concept(uk.ACTIVITY_TYPE_SYSTEM, "activity_type")}),
  'serviceType', CASE WHEN specialty_code IS NULL THEN NULL
      ELSE {_concept(uk.TREATMENT_FUNCTION, "specialty_code")} END,
  'subject', {_patient()},
  'period', json_object('start', start_date, 'end', end_date),
  'length', CASE WHEN length_of_stay_days IS NULL THEN NULL ELSE json_object(
      'value', length_of_stay_days, 'unit', 'days', 'system', {_q(uk.UCUM)}, 'code', 'd') END,
  'hospitalization', {_ADMISSION},
  'serviceProvider', {_ods("provider_code")}
) AS resource
FROM activity WHERE activity_type <> {_q(uk.SOCIAL_CARE_PACKAGE)}
"""

CONDITION = f"""
SELECT 'Condition' AS resource_type, json_object(
  'resourceType', 'Condition',
  'id', 'dx-' || person_id || '-' || row_number() OVER (PARTITION BY person_id
      ORDER BY diagnosis_date, code, setting, organisation_code),
  'extension', CASE WHEN organisation_code IS NULL THEN NULL ELSE json_array(json_object(
      'url', {_q(uk.RECORDED_BY_EXTENSION)}, 'valueReference', {_ods("organisation_code")})) END,
  'category', json_array({_concept(uk.CARE_SETTING_SYSTEM, "setting")}),
  'code', json_object('coding', json_array(CASE code_system
      WHEN 'snomed' THEN {_coding(uk.SNOMED, "code")}
      ELSE {
    _coding(uk.ICD10, "CASE WHEN length(code) > 3 THEN code[1:3] || '.' || code[4:] ELSE code END")
} END)),
  'subject', {_patient()},
  'recordedDate', diagnosis_date
) AS resource
FROM diagnosis
"""

MEDICATION = f"""
SELECT 'MedicationRequest' AS resource_type, json_object(
  'resourceType', 'MedicationRequest',
  'id', 'rx-' || person_id || '-' || row_number() OVER (PARTITION BY person_id
      ORDER BY start_date, code, end_date, issue_count),
  'status', CASE WHEN end_date IS NULL THEN 'active' ELSE 'completed' END,
  'intent', 'order',
  'courseOfTherapyType', {
    _concept(uk.COURSE_OF_THERAPY, "CASE WHEN is_repeat THEN 'continuous' ELSE 'acute' END")
},
  'medicationCodeableConcept', json_object('coding', json_array(json_object(
      'system', CASE code_system WHEN 'dmd' THEN {_q(uk.DMD)} ELSE {_q(uk.BNF)} END,
      'code', code, 'display', description)), 'text', description),
  'subject', {_patient()},
  'authoredOn', start_date,
  'requester', {_ods("prescriber_code")},
  'dispenseRequest', json_object('validityPeriod', json_object('start', start_date,
      'end', end_date), 'numberOfRepeatsAllowed', issue_count - 1)
) AS resource
FROM medication
"""

OBSERVATION = f"""
SELECT 'Observation' AS resource_type, json_object(
  'resourceType', 'Observation',
  'id', 'obs-' || person_id || '-' || row_number() OVER (PARTITION BY person_id
      ORDER BY observation_date, observation_type, "value", value_code),
  'status', 'final',
  'code', {_concept(uk.SNOMED, "code")},
  'subject', {_patient()},
  'effectiveDateTime', observation_date,
  'valueQuantity', CASE WHEN "value" IS NULL THEN NULL ELSE json_object('value', "value",
      'unit', unit, 'system', {_q(uk.UCUM)}, 'code', unit) END,
  'valueCodeableConcept', CASE WHEN value_code IS NULL THEN NULL
      ELSE {_concept(uk.SNOMED, "value_code")} END
) AS resource
FROM observation
"""

SERVICE_REQUEST = f"""
SELECT 'ServiceRequest' AS resource_type, json_object(
  'resourceType', 'ServiceRequest',
  'id', CAST(pathway_id AS VARCHAR),
  'extension', CASE WHEN stop_reason IS NULL THEN NULL ELSE json_array(json_object(
      'url', {_q(uk.RTT_STOP_REASON_EXTENSION)}, 'valueCode', stop_reason)) END,
  'identifier', json_array(json_object('system', {_q(uk.RTT_PATHWAY_SYSTEM)},
      'value', CAST(pathway_id AS VARCHAR))),
  'status', CASE WHEN clock_stop_date IS NULL THEN 'active' ELSE 'completed' END,
  'intent', 'order',
  'code', {_concept(uk.SNOMED, "'3457005'", "'Patient referral'")},
  'subject', {_patient()},
  'occurrencePeriod', json_object('start', clock_start_date, 'end', clock_stop_date),
  'authoredOn', clock_start_date,
  'performerType', {_concept(uk.TREATMENT_FUNCTION, "specialty_code")},
  'performer', json_array({_ods("provider_code")})
) AS resource
FROM rtt_pathway
"""

ORGANIZATION = f"""
SELECT 'Organization' AS resource_type, json_object(
  'resourceType', 'Organization',
  'id', code,
  'identifier', json_array(json_object('system', {_q(uk.ODS_ORGANISATION)}, 'value', code)),
  'active', true,
  'type', json_array({_concept(uk.JOINEDUP_BASE + "/CodeSystem/organisation-type", "kind")}),
  'name', name
) AS resource
FROM (
  SELECT practice_code AS code, practice_name AS name, 'gp_practice' AS kind FROM practice
  UNION ALL
  SELECT organisation_code, organisation_name, organisation_type FROM organisation
)
"""

#: (file stem, query) in the order files are written.
EXPORTS: tuple[tuple[str, str], ...] = (
    ("Organization", ORGANIZATION),
    ("Patient", PATIENT),
    ("Consent", CONSENT),
    ("EpisodeOfCare", REGISTRATION),
    ("EpisodeOfCare", SOCIAL_CARE),
    ("Encounter", ENCOUNTER),
    ("Condition", CONDITION),
    ("MedicationRequest", MEDICATION),
    ("Observation", OBSERVATION),
    ("ServiceRequest", SERVICE_REQUEST),
)
RESOURCE_TYPES = tuple(dict.fromkeys(name for name, _ in EXPORTS))


def _writer(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "wb", compresslevel=1))
    return path.open("wb")


def export_fhir(
    engine: Engine,
    out_dir: Path,
    *,
    types: tuple[str, ...] = RESOURCE_TYPES,
    gzip_files: bool = False,
    on_batch: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Write one NDJSON file per resource type into `out_dir`; returns resources by type.

    Files are written under temporary names and renamed when complete, so an interrupted export
    leaves no truncated file behind a finished-looking name.
    """
    unknown = [t for t in types if t not in RESOURCE_TYPES]
    if unknown:
        raise ConfigurationError(
            f"cannot export {', '.join(unknown)}: choose from {', '.join(RESOURCE_TYPES)}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".ndjson.gz" if gzip_files else ".ndjson"
    counts: dict[str, int] = {}
    for name in types:
        final = out_dir / f"{name}{suffix}"
        partial = out_dir / f".{name}{suffix}.partial"
        written = 0
        with _writer(partial) as handle:
            for stem, query in EXPORTS:
                if stem != name:
                    continue
                sql = f"SELECT CAST(json_merge_patch('{{}}', resource) AS VARCHAR) FROM ({query})"
                for batch in engine.stream(sql):
                    lines = batch.column(0).to_pylist()
                    if not lines:
                        continue
                    handle.write(("\n".join(lines) + "\n").encode("utf-8"))
                    written += len(lines)
                    if on_batch is not None:
                        on_batch(name, len(lines))
        partial.replace(final)
        counts[name] = written
    return counts
