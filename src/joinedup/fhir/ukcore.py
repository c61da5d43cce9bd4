"""The FHIR vocabulary joinedup speaks: UK Core systems and extensions, and how each canonical
value is written in FHIR and read back.

One table of facts serves both directions, so `joinedup export fhir` and the shipped views
cannot drift apart. Where UK Core has an element or a code system for a value, it is used;
where it has none (the care setting of a coded diagnosis, the cost of a contact, an RTT clock's
stop reason, the LSOA of an address), joinedup writes its own extension or code system under
`JOINEDUP_BASE` and documents it in `docs/fhir.md`.
"""

from __future__ import annotations

# --- NHS and HL7 identifiers and code systems -------------------------------------------
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
ODS_ORGANISATION = "https://fhir.nhs.uk/Id/ods-organization-code"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-uk"
ICD10_SYSTEMS = (ICD10, "http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm")
OPCS4 = "http://www.datadictionary.nhs.uk/data_dictionary/attributes/o/opcs_4_code"
LOINC = "http://loinc.org"
DMD = "https://dmd.nhs.uk"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
COURSE_OF_THERAPY = "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy"
ETHNIC_CATEGORY_EXTENSION = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
)
ETHNIC_CATEGORY_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"
ADMISSION_METHOD_EXTENSION = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AdmissionMethod"
)
ADMISSION_METHOD_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-AdmissionMethodEngland"
TREATMENT_FUNCTION = "https://fhir.nhs.uk/CodeSystem/NHSDataModelAndDictionary-treatment-function"
#: The National Data Opt-out, as a Consent policy.
NATIONAL_DATA_OPT_OUT = "https://digital.nhs.uk/services/national-data-opt-out"

# --- joinedup's own, for values UK Core has no element for ------------------------------
JOINEDUP_BASE = "https://fhir.joinedup.org"
ACTIVITY_TYPE_SYSTEM = f"{JOINEDUP_BASE}/CodeSystem/activity-type"
CARE_SETTING_SYSTEM = f"{JOINEDUP_BASE}/CodeSystem/care-setting"
EPISODE_TYPE_SYSTEM = f"{JOINEDUP_BASE}/CodeSystem/episode-type"
BNF = f"{JOINEDUP_BASE}/CodeSystem/bnf"  # BNF has no official FHIR system URI
COST_EXTENSION = f"{JOINEDUP_BASE}/StructureDefinition/cost"
LSOA_EXTENSION = f"{JOINEDUP_BASE}/StructureDefinition/lsoa"
RECORDED_BY_EXTENSION = f"{JOINEDUP_BASE}/StructureDefinition/recorded-by-organisation"
RTT_STOP_REASON_EXTENSION = f"{JOINEDUP_BASE}/StructureDefinition/rtt-stop-reason"
RTT_PATHWAY_SYSTEM = f"{JOINEDUP_BASE}/Id/rtt-pathway"
ACTIVITY_ID_SYSTEM = f"{JOINEDUP_BASE}/Id/activity"

GP_REGISTRATION = "gp-registration"
SOCIAL_CARE_PACKAGE = "social_care_package"

# How each activity type is written: Encounter.class (v3 ActCode), and the England admission
# method for admissions (UK Core AdmissionMethod: 11 waiting list, 21 emergency via A&E).
# Social care packages are EpisodeOfCare, not Encounter.
ENCOUNTER_CLASS: dict[str, str] = {
    "gp_consultation": "AMB",
    "ae_attendance": "EMER",
    "emergency_admission": "IMP",
    "elective_admission": "IMP",
    "day_case": "SS",
    "outpatient_attendance": "AMB",
    "community_contact": "HH",
    "mental_health_contact": "AMB",
}
ADMISSION_METHOD: dict[str, str] = {"emergency_admission": "21", "elective_admission": "11"}

#: For sources without joinedup's activity-type coding: class and admission method decide.
#: Admission methods 2x are emergencies (NHS Data Dictionary ADMISSION METHOD).
CLASS_FALLBACK: dict[str, str] = {
    "EMER": "ae_attendance",
    "SS": "day_case",
    "HH": "community_contact",
    "VR": "gp_consultation",
}
INPATIENT_CLASSES = ("IMP", "ACUTE", "NONAC")

#: What each canonical observation type is called, for a record that carries only its code.
OBSERVATION_NAMES: dict[str, str] = {
    "systolic_bp": "Systolic blood pressure",
    "diastolic_bp": "Diastolic blood pressure",
    "bmi": "Body mass index",
    "egfr": "eGFR (estimated glomerular filtration rate)",
    "hba1c": "HbA1c",
    "smoking_status": "Smoking status",
}
#: The words for joinedup's own activity types (ACTIVITY_TYPE_SYSTEM).
ACTIVITY_NAMES: dict[str, str] = {
    "gp_consultation": "GP consultation",
    "ae_attendance": "A&E attendance",
    "emergency_admission": "Emergency admission",
    "elective_admission": "Elective admission",
    "day_case": "Day case",
    "outpatient_attendance": "Outpatient attendance",
    "community_contact": "Community contact",
    "mental_health_contact": "Mental health contact",
    "social_care_package": "Social care package",
}
#: Observation codes, SNOMED (UK Core) and LOINC (international sources), by canonical type.
OBSERVATION_CODES: dict[str, tuple[tuple[str, str], ...]] = {
    "systolic_bp": ((SNOMED, "72313002"), (SNOMED, "271649006"), (LOINC, "8480-6")),
    "diastolic_bp": ((SNOMED, "1091811000000102"), (SNOMED, "271650006"), (LOINC, "8462-4")),
    "bmi": ((SNOMED, "60621009"), (LOINC, "39156-5")),
    "egfr": (
        (SNOMED, "1011481000000105"),
        (SNOMED, "1020291000000106"),
        (LOINC, "33914-3"),
        (LOINC, "62238-1"),
        (LOINC, "69405-9"),
    ),
    "hba1c": ((SNOMED, "1049301000000100"), (SNOMED, "999791000000106"), (LOINC, "4548-4")),
    "smoking_status": ((SNOMED, "365981007"), (LOINC, "72166-2")),
}
#: Blood pressure panels whose components carry the systolic and diastolic values.
BP_PANEL_CODES = ((SNOMED, "75367002"), (SNOMED, "163020007"), (LOINC, "85354-9"))
#: Smoking findings: current, ex and never (SNOMED; Synthea writes the same concepts).
SMOKING_CODES: dict[str, tuple[str, ...]] = {
    "77176002": ("77176002", "449868002", "428041000124106", "65568007"),
    "8517006": ("8517006",),
    "266919005": ("266919005",),
}

#: Cost of a contact whose source gave none (no joinedup cost extension): a national average
#: unit cost per contact (per spell for admissions, per week for social care packages). Sources:
#: NHS England National Cost Collection 2022/23 and PSSRU Unit Costs of Health and Social Care
#: 2023, both approximate, the same figures the synthetic generator prices with.
FALLBACK_UNIT_COST_GBP: dict[str, float] = {
    "gp_consultation": 42.0,
    "ae_attendance": 250.0,
    "emergency_admission": 1650.0,
    "elective_admission": 3800.0,
    "day_case": 950.0,
    "outpatient_attendance": 160.0,
    "community_contact": 85.0,
    "mental_health_contact": 190.0,
    "social_care_package": 330.0,  # per week of home care
}
