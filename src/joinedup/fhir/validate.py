"""Checks a FHIR R4 resource must pass before it is loaded: a known resource type, a valid id,
dates that exist on the calendar, finite numbers, strings without control characters, NHS
numbers that pass the Modulus 11 check, references that are references (to a type the element
may point to, for the elements joinedup reads), measurements that cannot be negative not
negative, and a patient born before today and not dead before being born.

Each problem comes back as text naming the element and the rule it breaks
(`Patient.birthDate: not a real calendar date or time`), never the value: the quarantine's
reasons are shown to people who may not see the record itself, so they say why a record was set
aside without repeating what it holds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from typing import Any

from joinedup.fhir.ukcore import BP_PANEL_CODES, OBSERVATION_CODES

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"

#: The resource types of FHIR R4 (4.0.1), http://hl7.org/fhir/R4/resourcelist.html.
R4_RESOURCE_TYPES: frozenset[str] = frozenset(
    [
        "Account",
        "ActivityDefinition",
        "AdverseEvent",
        "AllergyIntolerance",
        "Appointment",
        "AppointmentResponse",
        "AuditEvent",
        "Basic",
        "Binary",
        "BiologicallyDerivedProduct",
        "BodyStructure",
        "Bundle",
        "CapabilityStatement",
        "CarePlan",
        "CareTeam",
        "CatalogEntry",
        "ChargeItem",
        "ChargeItemDefinition",
        "Claim",
        "ClaimResponse",
        "ClinicalImpression",
        "CodeSystem",
        "Communication",
        "CommunicationRequest",
        "CompartmentDefinition",
        "Composition",
        "ConceptMap",
        "Condition",
        "Consent",
        "Contract",
        "Coverage",
        "CoverageEligibilityRequest",
        "CoverageEligibilityResponse",
        "DetectedIssue",
        "Device",
        "DeviceDefinition",
        "DeviceMetric",
        "DeviceRequest",
        "DeviceUseStatement",
        "DiagnosticReport",
        "DocumentManifest",
        "DocumentReference",
        "EffectEvidenceSynthesis",
        "Encounter",
        "Endpoint",
        "EnrollmentRequest",
        "EnrollmentResponse",
        "EpisodeOfCare",
        "EventDefinition",
        "Evidence",
        "EvidenceVariable",
        "ExampleScenario",
        "ExplanationOfBenefit",
        "FamilyMemberHistory",
        "Flag",
        "Goal",
        "GraphDefinition",
        "Group",
        "GuidanceResponse",
        "HealthcareService",
        "ImagingStudy",
        "Immunization",
        "ImmunizationEvaluation",
        "ImmunizationRecommendation",
        "ImplementationGuide",
        "InsurancePlan",
        "Invoice",
        "Library",
        "Linkage",
        "List",
        "Location",
        "Measure",
        "MeasureReport",
        "Media",
        "Medication",
        "MedicationAdministration",
        "MedicationDispense",
        "MedicationKnowledge",
        "MedicationRequest",
        "MedicationStatement",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "MessageDefinition",
        "MessageHeader",
        "MolecularSequence",
        "NamingSystem",
        "NutritionOrder",
        "Observation",
        "ObservationDefinition",
        "OperationDefinition",
        "OperationOutcome",
        "Organization",
        "OrganizationAffiliation",
        "Parameters",
        "Patient",
        "PaymentNotice",
        "PaymentReconciliation",
        "Person",
        "PlanDefinition",
        "Practitioner",
        "PractitionerRole",
        "Procedure",
        "Provenance",
        "Questionnaire",
        "QuestionnaireResponse",
        "RelatedPerson",
        "RequestGroup",
        "ResearchDefinition",
        "ResearchElementDefinition",
        "ResearchStudy",
        "ResearchSubject",
        "RiskAssessment",
        "RiskEvidenceSynthesis",
        "Schedule",
        "SearchParameter",
        "ServiceRequest",
        "Slot",
        "Specimen",
        "SpecimenDefinition",
        "StructureDefinition",
        "StructureMap",
        "Subscription",
        "Substance",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
        "SupplyDelivery",
        "SupplyRequest",
        "Task",
        "TerminologyCapabilities",
        "TestReport",
        "TestScript",
        "ValueSet",
        "VerificationResult",
        "VisionPrescription",
    ]
)

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# FHIR date, dateTime and instant shapes: YYYY, YYYY-MM, YYYY-MM-DD, or a full date-time.
_DATE_LIKE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def is_valid_nhs_number(value: str) -> bool:
    """Whether `value` is ten digits passing the NHS Modulus 11 check (spaces ignored)."""
    digits = value.replace(" ", "")
    if len(digits) != 10 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


def _date_problem(text: str) -> str | None:
    """Why a date-shaped string is not a real date or time, or None when it is fine (or is
    not date-shaped at all). The reason never repeats the value."""
    match = _DATE_LIKE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, _ = match.groups()
    if month is not None and not 1 <= int(month) <= 12:
        return "not a real date (the month is not 01-12)"
    try:
        if day is not None:
            date(int(year), int(month), int(day))
    except ValueError:
        return "not a real date (the month has no such day)"
    try:
        if hour is not None:
            datetime(2000, 1, 1, int(hour), int(minute), int(second or 0))
    except ValueError:
        return "not a real time of day (hours 00-23, minutes and seconds 00-59)"
    return None


#: An element name as FHIR JSON spells one (`birthDate`, `valueQuantity`, `_given` for a
#: primitive's extensions). A key that is not one is content, not structure, so it never goes
#: into a path that a reason shows.
_NAME = re.compile(r"_?[A-Za-z][A-Za-z0-9_]{0,63}")
_BAD_NAME = object()


_NAMES_SEEN: set[str] = set()  # names that passed `_NAME`: few, and met again and again


def _is_name(key: Any) -> bool:
    if key in _NAMES_SEEN:
        return True
    if not isinstance(key, str) or not _NAME.fullmatch(key):
        return False
    if len(_NAMES_SEEN) < 100_000:
        _NAMES_SEEN.add(key)
    return True


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, value
    if type(value) is dict:
        for key, child in value.items():
            if not _is_name(key):
                yield path, _BAD_NAME
            elif key != "resourceType":
                yield from _walk(child, f"{path}.{key}")
    elif type(value) is list:
        for i, child in enumerate(value):
            yield from _walk(child, f"{path}[{i}]")


def problems(resource: Any, today: date | None = None) -> list[str]:
    """Everything wrong with one resource, each naming the element; empty when it can load.
    `today` (default: the UTC date) is the day no one can yet have been born after."""
    if not isinstance(resource, dict):
        return ["not a JSON object"]
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or not kind:
        return ["resourceType is missing"]
    if kind not in R4_RESOURCE_TYPES:
        return ["resourceType is not a FHIR R4 resource type"]
    found = _id_problems(kind, resource.get("id")) + _element_problems(kind, resource)
    if kind == "Patient" and not found:
        found += _life_problems(resource, today or datetime.now(UTC).date())
    if not found:
        found += _target_problems(kind, resource) + _negative_problems(kind, resource)
    return list(dict.fromkeys(found))


def _id_problems(kind: str, rid: Any) -> list[str]:
    if rid is None or rid == "":
        return [f"{kind}.id is missing"]
    if not isinstance(rid, str) or not _ID.fullmatch(rid):
        return [f"{kind}.id is not a valid id (1-64 of A-Z a-z 0-9 - .)"]
    return []


def _element_problems(kind: str, resource: dict[str, Any]) -> list[str]:
    """What is wrong with any element, wherever it is: control characters, dates that are
    not real, references that are not text, NHS numbers failing Modulus 11, numbers beyond a
    double, names that are not FHIR names. One pass, one type test per value (the hot loop of
    a load)."""
    found: list[str] = []
    for path, value in _walk(resource, kind):
        kind_of = type(value)
        if kind_of is str:
            if not value.isprintable() and _CONTROL.search(value):
                found.append(f"{path}: a control character (FHIR strings allow tab, CR, LF only)")
            reason = _date_problem(value)
            if reason:
                found.append(f"{path}: {reason}")
        elif kind_of is dict:
            if "reference" in value and not isinstance(value["reference"], str):
                found.append(f"{path}.reference: not a string")
            if value.get("system") == NHS_NUMBER_SYSTEM:
                number = value.get("value")
                if not isinstance(number, str) or not is_valid_nhs_number(number):
                    found.append(f"{path}.value: NHS number fails the Modulus 11 check")
        elif (kind_of is float and not math.isfinite(value)) or (
            kind_of is int and not -_LARGEST < value < _LARGEST
        ):
            found.append(f"{path}: not a finite number (NaN, Infinity or out of range)")
        elif value is _BAD_NAME:
            found.append(f"{path}: has an element whose name is not a FHIR element name")
    return found


#: Integers at least this large are beyond a double's range: not a number anything can use.
_LARGEST = 2**1024


def _life_problems(patient: dict[str, Any], today: date) -> list[str]:
    """A birth date after today, or a death before birth (each compared at the precision both
    dates share, so `1980` and `1980-06-01` do not clash)."""
    found = []
    born = patient.get("birthDate")
    died = patient.get("deceasedDateTime")
    if isinstance(born, str) and _DATE_LIKE.fullmatch(born):
        if born > today.isoformat()[: len(born)]:
            found.append("Patient.birthDate: after the date of loading (a birth in the future)")
        if isinstance(died, str) and _DATE_LIKE.fullmatch(died):
            shared = min(len(born), len(died), 10)
            if died[:shared] < born[:shared]:
                found.append("Patient.deceasedDateTime: before Patient.birthDate")
    return found


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_TYPE = r"[A-Z][A-Za-z]{1,63}"
_REFERENCE = re.compile(
    rf"#{_ID.pattern}|(?P<type>{_TYPE})/{_ID.pattern}(?:/_history/{_ID.pattern})?"
    rf"|(?P<conditional>{_TYPE})\?\S+|urn:(?:uuid|oid):\S+|https?://\S+"
)


#: What the references joinedup reads may point to (FHIR R4's target profiles). A reference to
#: anything else cannot be what it claims: a condition whose subject is an Organization.
_TARGETS: dict[tuple[str, str], frozenset[str]] = {
    ("Condition", "subject"): frozenset({"Patient", "Group"}),
    ("Condition", "encounter"): frozenset({"Encounter"}),
    ("Consent", "patient"): frozenset({"Patient"}),
    ("Encounter", "subject"): frozenset({"Patient", "Group"}),
    ("Encounter", "episodeOfCare"): frozenset({"EpisodeOfCare"}),
    ("EpisodeOfCare", "patient"): frozenset({"Patient"}),
    ("MedicationRequest", "subject"): frozenset({"Patient", "Group"}),
    ("MedicationStatement", "subject"): frozenset({"Patient", "Group"}),
    ("Observation", "subject"): frozenset({"Patient", "Group", "Device", "Location"}),
    ("Observation", "encounter"): frozenset({"Encounter"}),
    ("Patient", "generalPractitioner"): frozenset(
        {"Organization", "Practitioner", "PractitionerRole"}
    ),
    ("Procedure", "subject"): frozenset({"Patient", "Group"}),
    ("ServiceRequest", "subject"): frozenset({"Patient", "Group", "Location", "Device"}),
}


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _target_problems(kind: str, resource: dict[str, Any]) -> list[str]:
    """The references joinedup reads (`_TARGETS`): each must be one of FHIR's forms, `Type/id`
    (to an R4 type), a conditional `Type?query`, an absolute URL, `urn:uuid:`/`urn:oid:` or
    `#id`, and point to a type its element allows. Other references are only required to be
    text; one that resolves to nothing is counted in the load's report, not refused."""
    found = []
    for (owner, element), allowed in _TARGETS.items():
        if owner != kind or element not in resource:
            continue
        for i, ref in enumerate(_listed(resource[element])):
            path = f"{kind}.{element}" + (f"[{i}]" if isinstance(resource[element], list) else "")
            text = ref.get("reference") if isinstance(ref, dict) else None
            if not isinstance(text, str):
                continue  # no literal reference (an identifier, say), or refused already
            match = _REFERENCE.fullmatch(text)
            target = match and (match.group("type") or match.group("conditional"))
            if match is None:
                found.append(
                    f"{path}.reference: not a reference (Type/id, Type?query, a URL, urn:uuid:, "
                    "urn:oid: or #id)"
                )
            elif target and target not in R4_RESOURCE_TYPES:
                found.append(f"{path}.reference: to a type that is not a FHIR R4 resource type")
            elif target and target not in allowed:
                found.append(
                    f"{path}.reference: to a type this element cannot point to "
                    f"({' or '.join(sorted(allowed))})"
                )
    return found


_NEVER_NEGATIVE = frozenset(
    code for codes in (*OBSERVATION_CODES.values(), BP_PANEL_CODES) for _, code in codes
)


def _codes(concept: Any) -> Iterable[str]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            yield coding["code"]


def _negative(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0


def _negative_problems(kind: str, resource: dict[str, Any]) -> list[str]:
    """Quantities that cannot be below zero and are: a length of stay, a number of repeats
    (an unsignedInt), or a measurement joinedup reads (blood pressure, BMI, eGFR, HbA1c)."""
    found = []
    length = resource.get("length") if kind == "Encounter" else None
    if isinstance(length, dict) and _negative(length.get("value")):
        found.append("Encounter.length.value: negative (a length of stay cannot be)")
    dispense = resource.get("dispenseRequest") if kind == "MedicationRequest" else None
    if isinstance(dispense, dict) and _negative(dispense.get("numberOfRepeatsAllowed")):
        found.append(
            "MedicationRequest.dispenseRequest.numberOfRepeatsAllowed: negative "
            "(an unsignedInt cannot be)"
        )
    if kind == "Observation":
        parts = [("Observation", resource)] + [
            (f"Observation.component[{i}]", c)
            for i, c in enumerate(_listed(resource.get("component") or []))
            if isinstance(c, dict)
        ]
        measured = any(c in _NEVER_NEGATIVE for c in _codes(resource.get("code")))
        for path, part in parts:
            quantity = part.get("valueQuantity")
            if not isinstance(quantity, dict) or not _negative(quantity.get("value")):
                continue
            if measured or any(c in _NEVER_NEGATIVE for c in _codes(part.get("code"))):
                found.append(f"{path}.valueQuantity.value: negative (this measurement cannot be)")
    return found
